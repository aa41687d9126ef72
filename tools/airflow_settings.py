"""Load `airflow_settings.yaml` into a local Airflow the way `astro dev start` does, without Docker.

The file is the Astro CLI's format::

    airflow:
      connections:
        - conn_id, conn_type, conn_host, conn_schema, conn_login, conn_password, conn_port, conn_extra
          (or conn_uri instead of the others)
      variables:
        - variable_name, variable_value
      pools:
        - pool_name, pool_slot, pool_description

Read as the Astro CLI reads it: an omitted or zero `conn_port` means "no port"; `conn_extra` given as a
YAML map is stored as its JSON text, given as a string it is stored as it is; an existing connection
with the same id is replaced; variables and pools are created or updated. Entries left entirely blank
(the placeholders of `astro dev init`'s template) are skipped.

Where the Astro CLI silently skips or mangles an entry, this loader refuses the whole file instead and
names the entry (index and id) and the field, so a typo cannot leave Airflow half-configured: unknown
fields, a missing id or type, a port that is not a port, a number or boolean where text is expected
(YAML would have changed it: `0123` reads as 83), extra keys with capitals (the Astro CLI lower-cases
them, astronomer/astro-cli#1737), duplicates.

API: `load(path)` parses and validates (no Airflow import, no database), `apply(settings)` writes into
the metadata database of the Airflow that AIRFLOW_HOME points at, `connection_env(settings)` gives the
connections as AIRFLOW_CONN_* values for `airflow dags test` without writing anything.

CLI: `python -m tools.airflow_settings [--file airflow_settings.yaml] [--check]`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from airflow.models import Connection

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = PROJECT_ROOT / "airflow_settings.yaml"

CONNECTION_FIELDS = (
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_uri",
    "conn_extra",
)
VARIABLE_FIELDS = ("variable_name", "variable_value")
POOL_FIELDS = ("pool_name", "pool_slot", "pool_description")
SECTIONS = ("connections", "variables", "pools")

# The characters Airflow accepts in a connection id (anything else is rejected when it is stored).
_CONN_ID = re.compile(r"[A-Za-z0-9_#!()\-.:/\\]{1,250}")
_MAX_PORT = 65535


class SettingsError(ValueError):
    """The settings file is malformed. `problems` holds one line per entry and field at fault."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source} is not valid:\n" + "\n".join(f"  - {p}" for p in self.problems))


@dataclass(frozen=True)
class ConnectionSpec:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    # JSON text, which is how Airflow stores a connection's extra.
    extra: str | None = None
    uri: str | None = None

    @property
    def env_name(self) -> str:
        return f"AIRFLOW_CONN_{self.conn_id.upper()}"

    def to_json(self) -> str:
        """Airflow's JSON form of the connection (what an AIRFLOW_CONN_* variable may hold)."""
        data: dict[str, Any] = {"conn_type": self.conn_type}
        for key in ("host", "schema", "login", "password", "port"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.extra is not None:
            data["extra"] = json.loads(self.extra)
        return json.dumps(data)

    def to_airflow(self) -> Connection:
        from airflow.models import Connection

        if self.uri is not None:
            return Connection(conn_id=self.conn_id, uri=self.uri)
        return Connection(
            conn_id=self.conn_id,
            conn_type=self.conn_type,
            host=self.host,
            schema=self.schema,
            login=self.login,
            password=self.password,
            port=self.port,
            extra=self.extra,
        )


@dataclass(frozen=True)
class VariableSpec:
    key: str
    value: str


@dataclass(frozen=True)
class PoolSpec:
    name: str
    slots: int
    description: str = ""


@dataclass(frozen=True)
class AirflowSettings:
    connections: tuple[ConnectionSpec, ...] = ()
    variables: tuple[VariableSpec, ...] = ()
    pools: tuple[PoolSpec, ...] = ()

    def connection(self, conn_id: str) -> ConnectionSpec:
        for conn in self.connections:
            if conn.conn_id == conn_id:
                return conn
        raise KeyError(conn_id)


class _Entry:
    """Reads the fields of one list entry, recording problems under the entry's name."""

    def __init__(self, label: str, data: Mapping[Any, Any], problems: list[str]) -> None:
        self.label = label
        self.data = data
        self.problems = problems

    def fail(self, field: str, message: str) -> None:
        self.problems.append(f"{self.label}: field {field!r} {message}")

    def text(self, field: str, *, required: bool = False) -> str | None:
        value = self.data.get(field)
        if value is None or value == "":
            if required:
                self.fail(field, "is missing or empty")
            return None
        if isinstance(value, str):
            return value
        # Refused rather than converted: YAML has already changed such values (0123 -> 83, 1.10 -> 1.1,
        # yes -> True), so the text the author meant is lost.
        kind = "a boolean" if isinstance(value, bool) else _kind(value)
        self.fail(field, f"must be text, got {kind} ({value!r}); put the value in quotes")
        return None


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _is_blank(entry: Mapping[Any, Any]) -> bool:
    return all(value is None or value == "" for value in entry.values())


def _entries(section: str, raw: Any, source: str, problems: list[str]) -> list[tuple[int, Mapping[Any, Any]]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{source}: airflow.{section} must be a list of entries, got {_kind(raw)}")
        return []
    entries = []
    for index, entry in enumerate(raw):
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"{source}: {section}[{index}] must be a mapping of fields, got {_kind(entry)}")
            continue
        if not _is_blank(entry):
            entries.append((index, entry))
    return entries


def _label(section: str, index: int, id_field: str, entry: Mapping[Any, Any]) -> str:
    ident = entry.get(id_field)
    shown = repr(ident) if isinstance(ident, str) and ident else "missing"
    return f"{section}[{index}] ({id_field} {shown})"


def _unknown_fields(entry: _Entry, known: Sequence[str]) -> None:
    for field in entry.data:
        if field not in known:
            entry.fail(str(field), f"is not a known field; expected one of {', '.join(known)}")


def _port(entry: _Entry) -> int | None:
    value = entry.data.get("conn_port")
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        entry.fail("conn_port", f"must be a whole number, got {_kind(value)} ({value!r})")
        return None
    if value == 0:
        # The Astro CLI reads the port into an int, so 0 and "no port" are the same to it.
        return None
    if not 0 < value <= _MAX_PORT:
        entry.fail("conn_port", f"must be between 1 and {_MAX_PORT} (or 0 for none), got {value}")
        return None
    return value


def _extra(entry: _Entry) -> str | None:
    value = entry.data.get("conn_extra")
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            entry.fail("conn_extra", f"is a string but not JSON ({err.msg} at position {err.pos})")
            return None
        if not isinstance(parsed, dict):
            entry.fail("conn_extra", "must be a JSON object (or a YAML map)")
            return None
        return value
    if not isinstance(value, Mapping):
        entry.fail("conn_extra", f"must be a YAML map or a JSON string, got {_kind(value)}")
        return None
    ok = True
    for key in value:
        if not isinstance(key, str):
            entry.fail("conn_extra", f"has a key that is not text: {key!r}")
            ok = False
        elif key != key.lower():
            entry.fail(
                "conn_extra",
                f"key {key!r} has capitals, which the Astro CLI lower-cases; write it as {key.lower()!r}",
            )
            ok = False
    if not ok:
        return None
    try:
        # Sorted and compact, as the Astro CLI's JSON encoding of the map produces it.
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as err:
        entry.fail("conn_extra", f"has a value JSON cannot hold ({err}); quote dates and similar values")
        return None


def _connection(label: str, data: Mapping[Any, Any], problems: list[str]) -> ConnectionSpec | None:
    entry = _Entry(label, data, problems)
    before = len(problems)
    _unknown_fields(entry, CONNECTION_FIELDS)
    conn_id = entry.text("conn_id", required=True)
    if conn_id is not None and not _CONN_ID.fullmatch(conn_id):
        entry.fail("conn_id", "may hold only letters, digits and _ # ! ( ) - . : / \\ (at most 250)")
    uri = entry.text("conn_uri")
    fields = {
        "conn_type": entry.text("conn_type"),
        "conn_host": entry.text("conn_host"),
        "conn_schema": entry.text("conn_schema"),
        "conn_login": entry.text("conn_login"),
        "conn_password": entry.text("conn_password"),
        "conn_port": _port(entry),
        "conn_extra": _extra(entry),
    }
    if uri is not None:
        given = [name for name, value in fields.items() if value is not None]
        if given:
            # The Astro CLI would quietly drop the URI here; say so instead.
            entry.fail("conn_uri", f"describes the whole connection; remove it or {', '.join(given)}")
    elif data.get("conn_type") in (None, ""):
        entry.fail("conn_type", "is missing or empty (give conn_type, or conn_uri alone)")
    if len(problems) > before or conn_id is None:
        return None
    return ConnectionSpec(
        conn_id=conn_id,
        conn_type=fields["conn_type"],
        host=fields["conn_host"],
        schema=fields["conn_schema"],
        login=fields["conn_login"],
        password=fields["conn_password"],
        port=fields["conn_port"],
        extra=fields["conn_extra"],
        uri=uri,
    )


def _variable(label: str, data: Mapping[Any, Any], problems: list[str]) -> VariableSpec | None:
    entry = _Entry(label, data, problems)
    before = len(problems)
    _unknown_fields(entry, VARIABLE_FIELDS)
    key = entry.text("variable_name", required=True)
    value = entry.text("variable_value", required=True)
    if len(problems) > before or key is None or value is None:
        return None
    return VariableSpec(key=key, value=value)


def _pool(label: str, data: Mapping[Any, Any], problems: list[str]) -> PoolSpec | None:
    entry = _Entry(label, data, problems)
    before = len(problems)
    _unknown_fields(entry, POOL_FIELDS)
    name = entry.text("pool_name", required=True)
    description = entry.text("pool_description") or ""
    slots = data.get("pool_slot")
    if isinstance(slots, str) and slots.strip().lstrip("-").isdigit():
        slots = int(slots)
    if slots is None or slots == "":
        entry.fail("pool_slot", "is missing (the number of slots; -1 for unlimited)")
    elif isinstance(slots, bool) or not isinstance(slots, int):
        entry.fail("pool_slot", f"must be a whole number, got {_kind(slots)} ({slots!r})")
    elif slots == 0 or slots < -1:
        # The Astro CLI skips a pool with 0 slots; a pool that can run nothing is surely a mistake.
        entry.fail("pool_slot", f"must be at least 1 (or -1 for unlimited), got {slots}")
    if len(problems) > before or name is None:
        return None
    return PoolSpec(name=name, slots=int(slots), description=description)


def _check_unique(
    section: str, specs: Sequence[tuple[int, Any]], key: Callable[[Any], str], problems: list[str]
) -> None:
    seen: dict[str, int] = {}
    for index, spec in specs:
        name = key(spec)
        if name in seen:
            problems.append(f"{section}[{index}] repeats {name!r} of {section}[{seen[name]}]")
        else:
            seen[name] = index


def parse(document: Any, source: str = "airflow_settings.yaml") -> AirflowSettings:
    """Validate an already-loaded YAML document and return its settings."""
    if document is None:
        return AirflowSettings()
    problems: list[str] = []
    if not isinstance(document, Mapping):
        problem = f"the file must be a mapping with the key 'airflow', got {_kind(document)}"
        raise SettingsError(source, [problem])
    for key in document:
        if key != "airflow":
            problems.append(f"top-level key {key!r} is not known; everything goes under 'airflow'")
    body = document.get("airflow")
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise SettingsError(source, [*problems, f"'airflow' must be a mapping, got {_kind(body)}"])
    for key in body:
        if key not in SECTIONS:
            problems.append(f"airflow.{key} is not known; expected {', '.join(SECTIONS)}")

    connections: list[tuple[int, ConnectionSpec]] = []
    for index, data in _entries("connections", body.get("connections"), source, problems):
        label = _label("connections", index, "conn_id", data)
        if (conn := _connection(label, data, problems)) is not None:
            connections.append((index, conn))
    variables: list[tuple[int, VariableSpec]] = []
    for index, data in _entries("variables", body.get("variables"), source, problems):
        label = _label("variables", index, "variable_name", data)
        if (var := _variable(label, data, problems)) is not None:
            variables.append((index, var))
    pools: list[tuple[int, PoolSpec]] = []
    for index, data in _entries("pools", body.get("pools"), source, problems):
        label = _label("pools", index, "pool_name", data)
        if (pool := _pool(label, data, problems)) is not None:
            pools.append((index, pool))

    _check_unique("connections", connections, lambda c: c.conn_id, problems)
    _check_unique("variables", variables, lambda v: v.key, problems)
    _check_unique("pools", pools, lambda p: p.name, problems)
    if problems:
        raise SettingsError(source, problems)
    return AirflowSettings(
        connections=tuple(c for _, c in connections),
        variables=tuple(v for _, v in variables),
        pools=tuple(p for _, p in pools),
    )


def load(path: str | Path = DEFAULT_FILE) -> AirflowSettings:
    """Read and validate a settings file. Raises SettingsError naming each faulty entry and field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SettingsError(str(path), [f"is not valid YAML: {err}"]) from err
    return parse(document, source=str(path))


def connection_env(settings: AirflowSettings) -> dict[str, str]:
    """The connections as AIRFLOW_CONN_<ID> environment variables (JSON, or the URI for conn_uri)."""
    return {
        conn.env_name: conn.uri if conn.uri is not None else conn.to_json() for conn in settings.connections
    }


def apply(settings: AirflowSettings) -> None:
    """Write the settings into the metadata database of the Airflow that AIRFLOW_HOME points at.

    Pools and variables are created or updated; a connection replaces any connection with its id.
    Everything is written in one transaction, so a failure leaves the database as it was.
    """
    # Imported here: importing airflow reads AIRFLOW_HOME, and load() must work without Airflow.
    from airflow.models import Connection, Pool, Variable
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        for pool in settings.pools:
            Pool.create_or_update_pool(
                name=pool.name,
                slots=pool.slots,
                description=pool.description,
                include_deferred=False,
                session=session,
            )
        for variable in settings.variables:
            Variable.set(variable.key, variable.value, session=session)
        for conn in settings.connections:
            session.execute(delete(Connection).where(Connection.conn_id == conn.conn_id))
            # The old row must be gone before the new one is inserted: conn_id is unique.
            session.flush()
            session.add(conn.to_airflow())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.airflow_settings",
        description="Load airflow_settings.yaml into the Airflow of AIRFLOW_HOME, as `astro dev start` does.",
    )
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_FILE, help="settings file (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="only validate the file; touch no database")
    args = parser.parse_args(argv)
    try:
        settings = load(args.file)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    except OSError as err:
        print(f"cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    counts = (
        f"{len(settings.connections)} connections, {len(settings.variables)} variables, "
        f"{len(settings.pools)} pools"
    )
    if args.check:
        print(f"{args.file}: valid ({counts})")
        return 0
    apply(settings)
    print(f"Loaded {counts} from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
