"""Apply `airflow_settings.yaml` to an Airflow through its REST API, the way the Astro CLI does.

The Astro CLI (`settings/settings.go`, since CLI PR #2078) waits for the API server, takes a token
from `/auth/token`, then POSTs each pool, variable and connection of the file to
`/api/v2/{pools,variables,connections}` and PATCHes the same body when the answer is 409 (exists).
Connection bodies: `connection_id`, `conn_type`, `host`, `login`, `password`, `schema` for non-empty
fields, `port` unless it is 0, `extra` as JSON text (a YAML map is JSON-encoded, keys sorted; a string
is sent as it is); a `conn_uri` alone is split into those fields. `make airflow` and `make demo` apply
the file through `apply()` below, so the local path and the Astro path send the same requests.

Where the CLI skips or mangles an entry silently, `load()` refuses the file and names each entry
(index and id) and field instead: unknown fields, a missing id or type, a port that is not a port,
a number or boolean where YAML has already changed the text (`0123` reads as 83), extra keys with
capitals (the CLI lower-cases them, astronomer/astro-cli#1737), duplicates. Fully blank entries (the
placeholders of `astro dev init`) are skipped, as the CLI skips them.

    python -m tools.airflow_settings --check                     # validate only
    python -m tools.airflow_settings --url http://127.0.0.1:PORT # a running API server
    python -m tools.airflow_settings                             # Airflow's API app in this process,
                                                                 # on the database of AIRFLOW_HOME
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FILE = PROJECT_ROOT / "airflow_settings.yaml"

FIELDS = {
    "connections": ("conn_id", "conn_type", "conn_host", "conn_schema", "conn_login", "conn_password")
    + ("conn_port", "conn_uri", "conn_extra"),
    "variables": ("variable_name", "variable_value"),
    "pools": ("pool_name", "pool_slot", "pool_description"),
}
_ID_FIELD = {"connections": "conn_id", "variables": "variable_name", "pools": "pool_name"}
_TEXT = ("conn_id", "conn_type", "conn_host", "conn_schema", "conn_login", "conn_password", "conn_uri")
_TEXT += ("variable_name", "variable_value", "pool_name", "pool_description")
# default_pool exists in every Airflow and accepts changes to these fields only (as the CLI sends).
_DEFAULT_POOL_MASK = "?update_mask=slots&update_mask=include_deferred"
_MAX_PORT = 65535


class SettingsError(ValueError):
    """The settings file is malformed. `problems` holds one line per entry and field at fault."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(f"{source} is not valid:\n" + "\n".join(f"  - {p}" for p in self.problems))


class ApplyError(RuntimeError):
    """The API server refused a request; the message names the resource, its id and the answer."""


@dataclass(frozen=True)
class ConnectionSpec:
    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = None
    port: int | None = None
    extra: str | None = None
    """JSON text, as Airflow stores a connection's extra."""
    uri: str | None = None

    def payload(self) -> dict[str, Any]:
        """The body the Astro CLI sends to /api/v2/connections for this entry."""
        if self.uri is not None:
            return {"connection_id": self.conn_id, **_split_uri(self.uri)}
        body: dict[str, Any] = {"connection_id": self.conn_id}
        names = {"conn_type": "conn_type", "host": "host", "login": "login", "password": "password"}
        names |= {"schema": "schema", "port": "port", "extra": "extra"}
        for attr, key in names.items():
            if (value := getattr(self, attr)) is not None:
                body[key] = value
        return body


@dataclass(frozen=True)
class AirflowSettings:
    connections: tuple[ConnectionSpec, ...] = ()
    variables: tuple[dict[str, str], ...] = ()
    pools: tuple[dict[str, Any], ...] = ()

    def connection(self, conn_id: str) -> ConnectionSpec:
        for conn in self.connections:
            if conn.conn_id == conn_id:
                return conn
        raise KeyError(conn_id)


def _split_uri(uri: str) -> dict[str, Any]:
    parts = urlsplit(uri)
    body: dict[str, Any] = {"conn_type": parts.scheme, "host": parts.hostname or ""}
    if parts.username is not None:
        body["login"] = unquote(parts.username)
    if parts.password is not None:
        body["password"] = unquote(parts.password)
    if parts.port is not None:
        body["port"] = parts.port
    if parts.path:
        body["schema"] = parts.path.removeprefix("/")
    if parts.query:
        body["extra"] = json.dumps({k: ",".join(v) for k, v in parse_qs(parts.query).items()})
    return body


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {dict: "a mapping", list: "a list"}.get(type(value), f"a {type(value).__name__}")


def _blank(value: Any) -> bool:
    return value is None or value == ""


class _Entry:
    """One list entry: reads its fields and records problems under its label."""

    def __init__(self, section: str, index: int, data: Mapping[Any, Any], problems: list[str]) -> None:
        ident = data.get(_ID_FIELD[section])
        shown = repr(ident) if isinstance(ident, str) and ident else "missing"
        self.label = f"{section}[{index}] ({_ID_FIELD[section]} {shown})"
        self.data, self.problems, self.count = data, problems, len(problems)
        for name in data:
            if name not in FIELDS[section]:
                self.fail(str(name), f"is not a known field; expected one of {', '.join(FIELDS[section])}")
        for name in _TEXT:
            value = data.get(name)
            if name in FIELDS[section] and not _blank(value) and not isinstance(value, str):
                # Refused rather than converted: YAML has already changed such values (0123 -> 83,
                # yes -> True), so the text the author meant is lost.
                self.fail(name, f"must be text, got {_kind(value)} ({value!r}); put the value in quotes")

    @property
    def ok(self) -> bool:
        return len(self.problems) == self.count

    def fail(self, name: str, message: str) -> None:
        self.problems.append(f"{self.label}: field {name!r} {message}")

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.data.get(name)
        if _blank(value) and required:
            self.fail(name, "is missing or empty")
        return value if isinstance(value, str) and value else None

    def whole(self, name: str, what: str) -> int | None:
        value = self.data.get(name)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if _blank(value):
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(name, f"must be a whole number ({what}), got {_kind(value)} ({value!r})")
            return None
        return value


def _extra(entry: _Entry) -> str | None:
    value = entry.data.get("conn_extra")
    if _blank(value):
        return None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as err:
            entry.fail("conn_extra", f"is a string but not JSON ({err.msg} at position {err.pos})")
            return None
        if not isinstance(parsed, dict):
            entry.fail("conn_extra", "must be a JSON object (or a YAML map)")
        return value
    if not isinstance(value, Mapping):
        entry.fail("conn_extra", f"must be a YAML map or a JSON string, got {_kind(value)}")
        return None
    for key in value:
        if not isinstance(key, str):
            entry.fail("conn_extra", f"has a key that is not text: {key!r}")
        elif key != key.lower():
            message = (
                f"key {key!r} has capitals, which the Astro CLI lower-cases; write it as {key.lower()!r}"
            )
            entry.fail("conn_extra", message)
    try:
        # Compact with sorted keys: what Go's json.Marshal of the CLI's map produces.
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as err:
        entry.fail("conn_extra", f"has a value JSON cannot hold ({err}); quote dates and similar values")
        return None


def _connection(entry: _Entry) -> ConnectionSpec | None:
    conn_id = entry.text("conn_id", required=True)
    port = entry.whole("conn_port", "1-65535, or 0 for none")
    if port is not None and not 0 <= port <= _MAX_PORT:
        entry.fail("conn_port", f"must be between 1 and {_MAX_PORT} (or 0 for none), got {port}")
    fields = {
        "conn_type": entry.text("conn_type"),
        "host": entry.text("conn_host"),
        "schema": entry.text("conn_schema"),
        "login": entry.text("conn_login"),
        "password": entry.text("conn_password"),
        # The CLI reads the port into an int: 0 and "no port" are the same to it.
        "port": port or None,
        "extra": _extra(entry),
    }
    uri = entry.text("conn_uri")
    if uri is not None and (given := [k for k, v in fields.items() if v is not None]):
        entry.fail("conn_uri", f"describes the whole connection; remove it or {', '.join(given)}")
    elif uri is None and _blank(entry.data.get("conn_type")):
        entry.fail("conn_type", "is missing or empty (give conn_type, or conn_uri alone)")
    if not entry.ok or conn_id is None:
        return None
    return ConnectionSpec(conn_id=conn_id, uri=uri, **fields)


def _variable(entry: _Entry) -> dict[str, str] | None:
    key = entry.text("variable_name", required=True)
    value = entry.text("variable_value", required=True)
    return {"key": key, "value": value} if entry.ok and key and value else None


def _pool(entry: _Entry) -> dict[str, Any] | None:
    name = entry.text("pool_name", required=True)
    slots = entry.whole("pool_slot", "the number of slots, -1 for unlimited")
    if slots is None and _blank(entry.data.get("pool_slot")):
        entry.fail("pool_slot", "is missing (the number of slots; -1 for unlimited)")
    elif slots is not None and (slots == 0 or slots < -1):
        # The CLI skips a pool of 0 slots; a pool that can run nothing is surely a mistake.
        entry.fail("pool_slot", f"must be at least 1 (or -1 for unlimited), got {slots}")
    if not entry.ok or name is None:
        return None
    description = entry.text("pool_description") or ""
    return {"name": name, "slots": slots, "description": description, "include_deferred": False}


_READERS = {"connections": _connection, "variables": _variable, "pools": _pool}


def parse(document: Any, source: str = "airflow_settings.yaml") -> AirflowSettings:
    """Validate an already-loaded YAML document and return its settings."""
    if document is None:
        return AirflowSettings()
    if not isinstance(document, Mapping):
        raise SettingsError(
            source, [f"the file must be a mapping with the key 'airflow', got {_kind(document)}"]
        )
    problems = [
        f"top-level key {k!r} is not known; everything goes under 'airflow'"
        for k in document
        if k != "airflow"
    ]
    body = document.get("airflow") or {}
    if not isinstance(body, Mapping):
        raise SettingsError(source, [*problems, f"'airflow' must be a mapping, got {_kind(body)}"])
    problems += [f"airflow.{k} is not known; expected {', '.join(FIELDS)}" for k in body if k not in FIELDS]
    found: dict[str, list[Any]] = {}
    for section, read in _READERS.items():
        raw = body.get(section) or []
        if not isinstance(raw, list):
            problems.append(f"{source}: airflow.{section} must be a list of entries, got {_kind(raw)}")
            raw = []
        seen: dict[str, int] = {}
        found[section] = []
        for index, data in enumerate(raw):
            if data is None or (isinstance(data, Mapping) and all(_blank(v) for v in data.values())):
                continue
            if not isinstance(data, Mapping):
                problems.append(f"{section}[{index}] must be a mapping of fields, got {_kind(data)}")
                continue
            spec = read(_Entry(section, index, data, problems))
            if spec is None:
                continue
            ident = data[_ID_FIELD[section]]
            if ident in seen:
                problems.append(f"{section}[{index}] repeats {ident!r} of {section}[{seen[ident]}]")
            seen.setdefault(ident, index)
            found[section].append(spec)
    if problems:
        raise SettingsError(source, problems)
    return AirflowSettings(**{section: tuple(specs) for section, specs in found.items()})


def load(path: str | Path = DEFAULT_FILE) -> AirflowSettings:
    """Read and validate a settings file. Raises SettingsError naming each faulty entry and field."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SettingsError(str(path), [f"is not valid YAML: {err}"]) from err
    return parse(document, source=str(path))


def _upsert(
    client: httpx.Client, resource: str, ident: str, body: Mapping[str, Any], suffix: str = ""
) -> str:
    answer = client.post(f"/api/v2/{resource}", json=body)
    verb = "Added"
    if answer.status_code == httpx.codes.CONFLICT:
        answer = client.patch(f"/api/v2/{resource}/{quote(ident, safe='')}{suffix}", json=body)
        verb = "Updated"
    if not answer.is_success:
        action = "updating" if verb == "Updated" else "creating"
        raise ApplyError(f"error {action} {resource} {ident!r} (HTTP {answer.status_code}): {answer.text}")
    return f"{verb} {resource.removesuffix('s')}: {ident}"


def apply(client: httpx.Client, settings: AirflowSettings) -> list[str]:
    """POST every pool, variable and connection (PATCH on 409), in the CLI's order; one line each.

    ``client`` is an ``httpx.Client`` whose base URL is the API server's root and which sends its
    token (see :func:`api_client`). Raises ApplyError on the first request the server refuses.
    """
    done = []
    for pool in settings.pools:
        suffix = _DEFAULT_POOL_MASK if pool["name"] == "default_pool" else ""
        done.append(_upsert(client, "pools", pool["name"], pool, suffix))
    for variable in settings.variables:
        done.append(_upsert(client, "variables", variable["key"], variable))
    for conn in settings.connections:
        done.append(_upsert(client, "connections", conn.conn_id, conn.payload()))
    return done


def token(client: httpx.Client) -> str:
    """A JWT from the simple auth manager's `/auth/token`, with the credentials the CLI sends.

    Any credentials pass when `[core] simple_auth_manager_all_admins` is on, as under `astro dev`.
    """
    answer = client.post("/auth/token", json={"username": "admin", "password": "admin"})
    if not answer.is_success:
        raise ApplyError(
            f"{client.base_url}auth/token refused a token (HTTP {answer.status_code}): {answer.text}; "
            "set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True for a local Airflow"
        )
    return answer.json()["access_token"]


@contextlib.contextmanager
def api_client(base_url: str, *, timeout: float = 30.0) -> Iterator[httpx.Client]:
    """A client for a running API server (``http://127.0.0.1:PORT``) that sends a fresh token."""
    with httpx.Client(base_url=base_url, timeout=timeout) as client:
        client.headers["Authorization"] = f"Bearer {token(client)}"
        yield client


@contextlib.contextmanager
def in_process_client() -> Iterator[httpx.Client]:
    """Airflow's own API app in this process, on the metadata database of AIRFLOW_HOME.

    The same routes, validation and database writes as a running API server, without starting one:
    for `make demo`, whose Airflow homes never run a server.
    """
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    with TestClient(create_app(apps="core"), base_url="http://airflow.local") as client:
        client.headers["Authorization"] = f"Bearer {token(client)}"
        yield client


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.airflow_settings", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_FILE, help="settings file (default: %(default)s)"
    )
    parser.add_argument(
        "--url", help="root URL of a running API server (default: the API app in this process)"
    )
    parser.add_argument("--check", action="store_true", help="only validate the file")
    args = parser.parse_args(argv)
    try:
        settings = load(args.file)
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    except OSError as err:
        print(f"cannot read {args.file}: {err}", file=sys.stderr)
        return 2
    counts = ", ".join(f"{len(getattr(settings, section))} {section}" for section in FIELDS)
    if args.check:
        print(f"{args.file}: valid ({counts})")
        return 0
    try:
        with api_client(args.url) if args.url else in_process_client() as client:
            print("\n".join(apply(client, settings)))
    except (ApplyError, httpx.HTTPError) as err:
        print(f"{args.file}: {err}", file=sys.stderr)
        return 1
    print(f"Applied {counts} from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
