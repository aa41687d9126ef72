"""tools/airflow_settings.py: airflow_settings.yaml read into the Astro CLI's REST payloads, malformed files
refused, and the payloads applied (POST, PATCH on 409) through Airflow's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.settings_file import settings_file
from tools.airflow_settings import (
    PROJECT_ROOT,
    AirflowSettings,
    SettingsError,
    load,
    main,
    parse,
)

AZURITE_ACCOUNT = "AccountName=devstoreaccount1"


def settings_from(text: str) -> AirflowSettings:
    return parse(yaml.safe_load(textwrap.dedent(text)), source="test.yaml")


def one_connection(fields: str) -> AirflowSettings:
    body = textwrap.indent(textwrap.dedent(fields).strip(), " " * 6)
    return settings_from(f"airflow:\n  connections:\n    - conn_id: c\n{body}\n")


# --- the committed file -------------------------------------------------------------------------------


def test_real_file_defines_every_backend_connection() -> None:
    settings = load(settings_file())
    assert [c.conn_id for c in settings.connections] == [
        "s3_xcom_backend_conn",
        "gcs_xcom_backend_conn",
        "azure_xcom_backend_conn",
        "pokeapi_default",
    ]

    s3 = settings.connection("s3_xcom_backend_conn")
    assert s3.conn_type == "aws"
    assert (s3.login, s3.password) == ("local-dev-access-key", "local-dev-secret-key")
    assert json.loads(s3.extra)["endpoint_url"] == "http://seaweedfs:8333"

    gcs = settings.connection("gcs_xcom_backend_conn")
    assert gcs.conn_type == "google_cloud_platform"
    # A real boolean: the provider reads the flag's truth, and the string "false" would be true.
    assert json.loads(gcs.extra)["is_anonymous"] is True

    azure = settings.connection("azure_xcom_backend_conn")
    assert azure.conn_type == "wasb"
    connection_string = json.loads(azure.extra)["connection_string"]
    assert AZURITE_ACCOUNT in connection_string
    assert "BlobEndpoint=http://azurite:10000/devstoreaccount1" in connection_string

    pokeapi = settings.connection("pokeapi_default")
    assert (pokeapi.conn_type, pokeapi.host) == ("http", "https://pokeapi.co")


def test_real_file_passes_the_cli_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--file", str(settings_file()), "--check"]) == 0
    assert "4 connections" in capsys.readouterr().out


# --- how fields are read ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["conn_port: 0", "conn_port:", "conn_port: ''", ""])
def test_port_zero_or_absent_means_no_port(port: str) -> None:
    conn = one_connection(f"conn_type: postgres\nconn_host: db\n{port}").connections[0]
    assert conn.port is None
    assert "port" not in conn.payload()


@pytest.mark.parametrize("port", ["conn_port: 5432", "conn_port: '5432'"])
def test_port_is_an_integer(port: str) -> None:
    conn = one_connection(f"conn_type: postgres\n{port}").connections[0]
    assert conn.port == 5432
    assert conn.payload()["port"] == 5432


def test_map_extra_becomes_its_json_string() -> None:
    conn = one_connection(
        """
        conn_type: aws
        conn_extra:
          region_name: us-east-1
          endpoint_url: http://seaweedfs:8333
          config_kwargs:
            retries: {max_attempts: 3}
          verify: false
        """
    ).connections[0]
    assert isinstance(conn.extra, str)
    assert json.loads(conn.extra) == {
        "region_name": "us-east-1",
        "endpoint_url": "http://seaweedfs:8333",
        "config_kwargs": {"retries": {"max_attempts": 3}},
        "verify": False,
    }
    # Keys sorted and no spaces, as the Astro CLI's JSON encoder writes the map.
    assert conn.extra.startswith('{"config_kwargs":{"retries":{"max_attempts":3}},"endpoint_url":')


def test_string_extra_is_kept_as_written() -> None:
    text = '{"b": 1, "a": "x"}'
    conn = one_connection(f"conn_type: generic\nconn_extra: '{text}'").connections[0]
    assert conn.extra == text


def test_uri_alone_describes_a_connection() -> None:
    settings = settings_from(
        """
        airflow:
          connections:
            - conn_id: by_uri
              conn_uri: postgres://user:pw@db:5432/app
        """
    )
    conn = settings.connections[0]
    assert conn.uri == "postgres://user:pw@db:5432/app"
    # Split into fields, as the CLI does before it POSTs.
    assert conn.payload() == {
        "connection_id": "by_uri",
        "conn_type": "postgres",
        "host": "db",
        "login": "user",
        "password": "pw",
        "port": 5432,
        "schema": "app",
    }


def test_variables_and_pools() -> None:
    settings = settings_from(
        """
        airflow:
          variables:
            - variable_name: favourite
              variable_value: pikachu
          pools:
            - pool_name: single_writer
              pool_slot: 1
              pool_description: one at a time
            - pool_name: unlimited
              pool_slot: -1
        """
    )
    assert settings.variables == ({"key": "favourite", "value": "pikachu"},)
    assert settings.pools == (
        {"name": "single_writer", "slots": 1, "description": "one at a time", "include_deferred": False},
        {"name": "unlimited", "slots": -1, "description": "", "include_deferred": False},
    )


def test_blank_template_entries_are_skipped() -> None:
    # The placeholders `astro dev init` writes: the Astro CLI skips them and so does the loader.
    settings = settings_from(
        """
        airflow:
          connections:
            - conn_id:
              conn_type:
              conn_host:
              conn_port:
          pools:
            - pool_name:
              pool_slot:
          variables:
            - variable_name:
              variable_value:
        """
    )
    assert settings == AirflowSettings()


@pytest.mark.parametrize("text", ["", "airflow:\n", "airflow:\n  connections: []\n"])
def test_empty_documents_give_empty_settings(text: str) -> None:
    assert parse(yaml.safe_load(text)) == AirflowSettings()


def test_payloads_are_what_the_cli_posts() -> None:
    s3 = load(settings_file()).connection("s3_xcom_backend_conn").payload()
    assert s3 == {
        "connection_id": "s3_xcom_backend_conn",
        "conn_type": "aws",
        "login": "local-dev-access-key",
        "password": "local-dev-secret-key",
        # JSON text, compact with sorted keys, as Go's json.Marshal writes the CLI's map.
        "extra": '{"endpoint_url":"http://seaweedfs:8333","region_name":"us-east-1"}',
    }


# --- malformed files ------------------------------------------------------------------------------------

MALFORMED = {
    "missing conn_id": (
        "connections:\n  - conn_type: aws\n  - conn_type: http\n    conn_host: x",
        ["connections[0] (conn_id missing)", "'conn_id'"],
    ),
    "missing conn_type": (
        "connections:\n  - conn_id: ok\n    conn_type: http\n  - conn_id: typeless\n    conn_host: h",
        ["connections[1] (conn_id 'typeless')", "'conn_type'"],
    ),
    "misspelt field": (
        "connections:\n  - conn_id: typo\n    conn_type: http\n    conn_hots: example.com",
        ["connections[0] (conn_id 'typo')", "'conn_hots'", "not a known field"],
    ),
    "port is not a number": (
        "connections:\n  - conn_id: db\n    conn_type: postgres\n    conn_port: fivefourthreetwo",
        ["connections[0] (conn_id 'db')", "'conn_port'", "whole number"],
    ),
    "port out of range": (
        "connections:\n  - conn_id: db\n    conn_type: postgres\n    conn_port: 70000",
        ["connections[0] (conn_id 'db')", "'conn_port'", "70000"],
    ),
    "port is a boolean": (
        "connections:\n  - conn_id: db\n    conn_type: postgres\n    conn_port: true",
        ["connections[0] (conn_id 'db')", "'conn_port'"],
    ),
    "extra is a list": (
        "connections:\n  - conn_id: e\n    conn_type: aws\n    conn_extra: [a, b]",
        ["connections[0] (conn_id 'e')", "'conn_extra'", "a list"],
    ),
    "extra string is not json": (
        "connections:\n  - conn_id: e\n    conn_type: aws\n    conn_extra: 'region=eu'",
        ["connections[0] (conn_id 'e')", "'conn_extra'", "not JSON"],
    ),
    "extra key with capitals": (
        "connections:\n  - conn_id: e\n    conn_type: aws\n    conn_extra:\n      Region_Name: eu",
        ["connections[0] (conn_id 'e')", "'conn_extra'", "'region_name'"],
    ),
    "extra value json cannot hold": (
        "connections:\n  - conn_id: e\n    conn_type: aws\n    conn_extra:\n      since: 2024-01-01",
        ["connections[0] (conn_id 'e')", "'conn_extra'"],
    ),
    "password read as a number": (
        "connections:\n  - conn_id: pw\n    conn_type: generic\n    conn_password: 0123",
        ["connections[0] (conn_id 'pw')", "'conn_password'", "quotes"],
    ),
    "uri together with fields": (
        "connections:\n  - conn_id: both\n    conn_type: http\n    conn_uri: http://h",
        ["connections[0] (conn_id 'both')", "'conn_uri'", "conn_type"],
    ),
    "duplicate conn_id": (
        "connections:\n  - conn_id: d\n    conn_type: http\n  - conn_id: d\n    conn_type: aws",
        ["connections[1] repeats 'd' of connections[0]"],
    ),
    "entry is not a mapping": (
        "connections:\n  - just_a_string",
        ["connections[0]", "mapping"],
    ),
    "section is not a list": (
        "connections:\n  conn_id: x",
        ["airflow.connections", "list"],
    ),
    "variable without value": (
        "variables:\n  - variable_name: v",
        ["variables[0] (variable_name 'v')", "'variable_value'"],
    ),
    "variable value read as a boolean": (
        "variables:\n  - variable_name: flag\n    variable_value: yes",
        ["variables[0] (variable_name 'flag')", "'variable_value'", "boolean"],
    ),
    "pool without slots": (
        "pools:\n  - pool_name: p\n    pool_slot: 0",
        ["pools[0] (pool_name 'p')", "'pool_slot'"],
    ),
    "pool slots not a number": (
        "pools:\n  - pool_name: p\n    pool_slot: many",
        ["pools[0] (pool_name 'p')", "'pool_slot'", "whole number"],
    ),
    "unknown section": (
        "connection:\n  - conn_id: x",
        ["airflow.connection is not known"],
    ),
}


@pytest.mark.parametrize("body, expected", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_entries_name_the_entry_and_field(body: str, expected: list[str]) -> None:
    document = yaml.safe_load("airflow:\n" + textwrap.indent(body, "  "))
    with pytest.raises(SettingsError) as caught:
        parse(document, source="test.yaml")
    message = str(caught.value)
    assert message.startswith("test.yaml is not valid")
    for part in expected:
        assert part in message


def test_every_problem_is_reported_at_once() -> None:
    document = yaml.safe_load(
        textwrap.dedent(
            """
            airflow:
              connections:
                - conn_id: a
                  conn_port: nope
                - conn_id: b
                  conn_type: http
                  conn_extra: 5
            """
        )
    )
    with pytest.raises(SettingsError) as caught:
        parse(document)
    problems = caught.value.problems
    assert any("connections[0] (conn_id 'a')" in p and "'conn_port'" in p for p in problems)
    assert any("connections[0] (conn_id 'a')" in p and "'conn_type'" in p for p in problems)
    assert any("connections[1] (conn_id 'b')" in p and "'conn_extra'" in p for p in problems)


def test_invalid_yaml_is_a_settings_error(tmp_path: Path) -> None:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text("airflow:\n  connections:\n    - conn_id: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load(path)


def test_cli_refuses_a_malformed_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "airflow_settings.yaml"
    path.write_text("airflow:\n  connections:\n    - conn_id: x\n      conn_prot: 1\n")
    assert main(["--file", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "connections[0] (conn_id 'x')" in err and "'conn_prot'" in err


# --- apply() through Airflow's API app, on a real database ---------------------------------------------

EXTRA_SETTINGS = """
airflow:
  connections:
    - conn_id: s3_xcom_backend_conn
      conn_type: aws
      conn_login: replaced-key
      conn_password: replaced-secret
      conn_port: 0
      conn_extra:
        endpoint_url: http://seaweedfs:8333
  variables:
    - variable_name: favorite_pokemon
      variable_value: snorlax
  pools:
    - pool_name: single_writer
      pool_slot: 1
      pool_description: one task at a time
    - pool_name: default_pool
      pool_slot: 3
"""

# Applies the file twice more (everything exists now: 409, then PATCH) and reads the database back.
APPLY_AGAIN_AND_READ_BACK = """
import json, sys
from tools.airflow_settings import apply, in_process_client, load

with in_process_client() as client:
    for _ in range(2):
        print("APPLIED " + json.dumps(apply(client, load(sys.argv[1]))))

from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session

with create_session() as session:
    conns = {
        c.conn_id: {
            "conn_type": c.conn_type, "host": c.host, "login": c.login, "password": c.password,
            "port": c.port, "extra": c.extra_dejson,
        }
        for c in session.query(Connection)
    }
    pools = {p.pool: [p.slots, p.description] for p in session.query(Pool)}
state = {"connections": conns, "pools": pools, "variable": Variable.get("favorite_pokemon")}
print("STATE " + json.dumps(state))
"""


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_apply_writes_into_a_real_airflow_database(tmp_path: Path) -> None:
    # A database of its own rather than the session's `airflow_db`: this writes connections under the
    # ids other tests rely on. Each step runs in its own process because Airflow reads AIRFLOW_HOME when
    # it is first imported.
    committed = settings_file()
    home = tmp_path / "airflow_home"
    home.mkdir()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    env.pop("AIRFLOW_CONN_S3_XCOM_BACKEND_CONN", None)
    python = sys.executable
    _run([python, "-m", "airflow", "db", "migrate"], env)
    # A connection the file updates: PATCH changes the fields it sends and keeps the others.
    _run(
        [python, "-m", "airflow", "connections", "add", "s3_xcom_backend_conn"]
        + ["--conn-type", "generic", "--conn-host", "old-host", "--conn-port", "9999"],
        env,
    )
    _run([python, "-m", "tools.airflow_settings", "--file", str(committed)], env)
    extra_file = tmp_path / "more_settings.yaml"
    extra_file.write_text(EXTRA_SETTINGS)
    output = _run([python, "-c", APPLY_AGAIN_AND_READ_BACK, str(extra_file)], env).stdout.splitlines()
    applied = [json.loads(line.removeprefix("APPLIED ")) for line in output if line.startswith("APPLIED ")]
    # The first pass creates what is new and updates what exists; the second finds everything there.
    assert applied == [
        ["Added pool: single_writer", "Updated pool: default_pool"]
        + ["Added variable: favorite_pokemon", "Updated connection: s3_xcom_backend_conn"],
        ["Updated pool: single_writer", "Updated pool: default_pool"]
        + ["Updated variable: favorite_pokemon", "Updated connection: s3_xcom_backend_conn"],
    ]
    state = json.loads(next(line.removeprefix("STATE ") for line in output if line.startswith("STATE ")))
    conns = state["connections"]
    assert set(conns) >= {
        "s3_xcom_backend_conn",
        "gcs_xcom_backend_conn",
        "azure_xcom_backend_conn",
        "pokeapi_default",
    }
    assert conns["s3_xcom_backend_conn"] == {
        "conn_type": "aws",
        # Not in the file, so not in the PATCH body: kept from before, as under `astro dev start`.
        "host": "old-host",
        "login": "replaced-key",
        "password": "replaced-secret",
        "port": 9999,
        "extra": {"endpoint_url": "http://seaweedfs:8333"},
    }
    assert conns["gcs_xcom_backend_conn"]["extra"] == {"is_anonymous": True, "project": "local-dev-project"}
    assert AZURITE_ACCOUNT in conns["azure_xcom_backend_conn"]["extra"]["connection_string"]
    assert conns["pokeapi_default"]["host"] == "https://pokeapi.co"
    assert state["pools"]["single_writer"] == [1, "one task at a time"]
    assert state["pools"]["default_pool"][0] == 3
    assert state["variable"] == "snorlax"
