"""The Airflow UI in a real browser (Debian's Chromium, driven by Playwright) against `make airflow`.

A user's path: unpause and trigger both tutorial DAGs from the UI, wait for success, open a task's
XCom tab and read what the backend wrote there; clear a task from the UI, let it run again, and
check in the bucket that the old object is gone and the new one is there.

The XCom tab shows what the database holds (Airflow 3.3's UI never calls the backend): the row the
backend wrote, naming the object and describing the value (type, size, format, shape, columns,
first rows; include/xcom_backend/preview.py). XCOM_UPDATE_SCREENSHOTS=1 writes the screenshots into
docs/.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.xcom_backend.reference import ROW_KEY, Reference
from include.xcom_backend.registry import open_store
from include.xcom_backend.stores.base import ObjectStore
from tests.conftest import stores_required
from tests.support.airflow_process import (
    RunningAirflow,
    kill,
    poll_get,
    start_airflow,
    stop_airflow,
    wait_for_dag,
    wait_for_run,
)
from tools.dagrun import PROJECT_ROOT

pytestmark = pytest.mark.stores

CHROMIUM = Path("/usr/bin/chromium")
# What works for Debian's Chromium as root in a container (see /work/shared/users-world.md).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "apt-get install -y chromium (Debian's package; Playwright's own browser download is not used)"
REFERENCE = re.compile(r"xcom_minio://custom-xcom-backend/\S+#sha256=[0-9a-f]{64}")
# Lines of the tab's JSON view that can scroll into sight: the view shows about 15 at a time.
MAX_SCROLLS = 40
# The task whose XCom is shown and cleared, per DAG: each returns a value the backend stores.
XCOM_TASKS = {"simple_xcom_dag": "pick_a_random_number", "fetch_pokemon_data_dag": "calculate_xp_per_height"}
UI_TIMEOUT_MS = 60_000


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed; run `make setup`"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found; {INSTALL_HINT}"
    return None


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if problem := _browser_missing():
        if stores_required():
            pytest.fail(f"{problem} (CI: the browser tests must run)", pytrace=False)
        pytest.skip(problem)
    from playwright.sync_api import expect, sync_playwright

    # The UI renders slowly when the two cores are busy; every wait below is bounded by this.
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 640},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture(scope="module")
def airflow(
    local_stores, browser_context, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAirflow]:
    # `local_stores` for its skip where the servers cannot start; the browser first, so a missing
    # Chromium skips before Airflow is started for nothing.
    run = start_airflow(tmp_path_factory.mktemp("browser-airflow") / "home")
    try:
        yield run
        assert stop_airflow(run) == 0, run.output[-4000:]
    finally:
        kill(run)


@pytest.fixture
def page(browser_context) -> Iterator[object]:
    page = browser_context.new_page()
    yield page
    page.close()


@pytest.fixture
def minio_store(airflow: RunningAirflow, monkeypatch: pytest.MonkeyPatch, reset_stores) -> ObjectStore:
    """The bucket the running Airflow writes to, through the project's store adapter."""
    for name, value in json.loads((airflow.home / "stores.json").read_text()).items():
        monkeypatch.setenv(name, value)
    reset_stores()
    return open_store("minio")


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    if os.environ.get("XCOM_UPDATE_SCREENSHOTS") == "1":
        from PIL import Image

        # A 64-colour palette: a UI screenshot stays legible at a third of the size.
        Image.open(shot).quantize(64).save(PROJECT_ROOT / "docs" / name, optimize=True)
    return shot


def trigger_from_ui(page, airflow: RunningAirflow, dag_id: str) -> str:
    """Unpause and trigger the DAG with clicks; returns the id of the run the click created."""
    from playwright.sync_api import expect

    with airflow.client() as client:
        wait_for_dag(client, dag_id)
        before = {r["dag_run_id"] for r in client.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]}
    page.goto(f"{airflow.url}/dags/{dag_id}")
    pause_switch = page.get_by_role("checkbox")
    expect(pause_switch).not_to_be_checked()  # new DAGs start paused
    page.locator("[data-scope=switch][data-part=control]").first.click()
    expect(pause_switch).to_be_checked()
    page.get_by_role("button", name="Trigger Dag").click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger", exact=True).click()
    with airflow.client() as client:
        for _ in range(60):
            runs = client.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
            if new := [r["dag_run_id"] for r in runs if r["dag_run_id"] not in before]:
                return new[0]
            page.wait_for_timeout(500)
    raise AssertionError(f"clicking Trigger created no run of {dag_id}")


def read_xcom_tab(page, airflow: RunningAirflow, dag_id: str, run_id: str, task_id: str) -> str:
    """Open the task instance, click Storage then XCom, unfold the values and return the text of the
    return_value row's JSON view, scrolled through from top to bottom (its lines, each once)."""
    from playwright.sync_api import expect

    page.goto(f"{airflow.url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}")
    page.get_by_role("link", name="Storage", exact=True).click()
    page.get_by_role("link", name="XCom", exact=True).click()
    row = page.get_by_role("row").filter(has_text="return_value")
    # A dict value is a folded JSON editor until "Expand all extra JSON" is clicked.
    page.get_by_test_id("expand-all-button").click()
    expect(row).to_contain_text('"type"')
    view = row.locator(".monaco-editor").first
    lines: list[str] = []
    unchanged = scrolls = 0
    while scrolls < MAX_SCROLLS:
        new = [line for line in view.locator(".view-line").all_inner_texts() if line not in lines]
        lines.extend(new)
        unchanged = 0 if new else unchanged + 1
        if unchanged == 3:
            break
        view.hover()
        page.mouse.wheel(0, 120)
        scrolls += 1
        page.wait_for_timeout(150)
    # Back to the top, where the type and the preview start, for the screenshot.
    for _ in range(scrolls):
        page.mouse.wheel(0, -120)
        page.wait_for_timeout(50)
    return "\n".join(lines).replace("\u00a0", " ")


def xcom_row(airflow: RunningAirflow, dag_id: str, run_id: str, task_id: str) -> dict:
    """The return_value row as the REST API gives it (what the database holds)."""
    with airflow.client() as client:
        answer = client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
            params={"deserialize": False},
        )
    stored = answer.raise_for_status().json()["value"]
    assert isinstance(stored, dict) and ROW_KEY in stored, stored
    return stored


def assert_tab_describes(shown: str, stored: dict) -> None:
    """The tab says what the value is: its type, format and preview, as the row holds them."""
    assert f'"type": "{stored["type"]}"' in shown, shown
    assert f'"format": "{stored["format"]}"' in shown and '"preview"' in shown, shown
    preview = stored["preview"]
    for name in preview.get("columns", []):
        assert f'"{name}"' in shown, (name, shown)
    if "shape" in preview:
        assert all(re.search(rf"\b{n}\b", shown) for n in preview["shape"]), (preview["shape"], shown)
    if "value" in preview:
        assert f'"value": "{preview["value"]}"' in shown, shown


def tab_and_row(page, airflow: RunningAirflow, dag_id: str, run_id: str, task_id: str) -> dict:
    """The row, after checking that the XCom tab describes the value as the row does."""
    shown = read_xcom_tab(page, airflow, dag_id, run_id, task_id)
    stored = xcom_row(airflow, dag_id, run_id, task_id)
    assert_tab_describes(shown, stored)
    return stored


def test_trigger_from_the_ui_and_read_the_xcom_tab(airflow, page, minio_store, tmp_path) -> None:
    for dag_id, task_id in XCOM_TASKS.items():
        run_id = trigger_from_ui(page, airflow, dag_id)
        with airflow.client() as client:
            assert wait_for_run(client, dag_id, run_id) == "success", airflow.output[-4000:]
        stored = tab_and_row(page, airflow, dag_id, run_id, task_id)
        _screenshot(page, tmp_path, f"xcom-tab-{dag_id}.png")
        if dag_id == "fetch_pokemon_data_dag":
            assert stored["type"] == "pandas.DataFrame", stored
            assert stored["preview"]["columns"][-1] == "xp_per_height", stored
            assert stored["preview"]["shape"] == [2, 4], stored
        reference = Reference.parse(stored)
        assert reference is not None and REFERENCE.fullmatch(str(reference)), stored
        assert f"/{dag_id}/" in reference.key and f"/{task_id}/" in reference.key
        # The row names the object in the bucket, byte for byte (the digest is in the reference).
        assert minio_store.get(reference.key), f"{reference} is not in the bucket"


def test_clear_from_the_ui_replaces_the_object(airflow, page, minio_store) -> None:
    from playwright.sync_api import expect

    dag_id, task_id = "fetch_pokemon_data_dag", XCOM_TASKS["fetch_pokemon_data_dag"]
    run_id = (
        trigger_from_ui(page, airflow, dag_id) if not _runs(airflow, dag_id) else _runs(airflow, dag_id)[-1]
    )
    with airflow.client() as client:
        assert wait_for_run(client, dag_id, run_id) == "success"
    old = Reference.parse(tab_and_row(page, airflow, dag_id, run_id, task_id))
    task_prefix = old.key.rsplit("/", 1)[0] + "/"
    assert [o.key for o in minio_store.list(task_prefix)] == [old.key]

    page.goto(f"{airflow.url}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}")
    page.get_by_role("button", name="Press shift+c to clear").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(task_id)
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()

    with airflow.client() as client:
        instance = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        for _ in range(240):
            answer = poll_get(client, instance)
            ti = answer.raise_for_status().json() if answer is not None else {"try_number": 0, "state": None}
            if ti["try_number"] > 1 and ti["state"] == "success":
                break
            page.wait_for_timeout(1000)
        assert ti["try_number"] > 1 and ti["state"] == "success", ti
        assert wait_for_run(client, dag_id, run_id) == "success"

    new = Reference.parse(tab_and_row(page, airflow, dag_id, run_id, task_id))
    assert new.key != old.key
    assert [o.key for o in minio_store.list(task_prefix)] == [new.key], "old object left or new one missing"


def _runs(airflow: RunningAirflow, dag_id: str) -> list[str]:
    with airflow.client() as client:
        return [r["dag_run_id"] for r in client.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]]
