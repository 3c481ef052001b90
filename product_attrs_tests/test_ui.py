"""The Dagster UI in a real (headless) Chromium: the README's ``dagster dev -m product_attrs.definitions``
shows the project's whole asset graph, and materializing an asset from the UI runs it and writes its output.

One ``dagster dev`` (webserver, daemon, code server) serves both tests, with its instance (a copy of the
project's ``dagster.yaml``) and its data root in a temporary folder. Needs Debian's chromium and
chromedriver (``scripts/install_browser.sh``) and selenium (a dev dependency); skips saying so where one is
absent. On a failure a test leaves a screenshot and the page's HTML in its tmp_path and puts the paths and
the server log on the error.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from product_attrs.catalog.ingest import CatalogFiles
from product_attrs.settings import ENV_DATA_DIR, ENV_WORKERS, Settings
from product_attrs_tests.ui_browser import (
    DagsterDev,
    body_text,
    button,
    dagster_dev,
    dismiss_welcome,
    evidence_on_failure,
    expand_all_groups,
    graph_labels,
    has_text,
    linked_run_id,
    missing_browser,
    shown,
    start_chromium,
    wait_for,
    zoom_out,
)

REPO = Path(__file__).resolve().parents[1]
# A floor: the graph test checks every asset of the Definitions, these at least.
CORE_ASSETS = {
    "raw_styles", "image_manifest", "catalog", "catalog_splits", "detection_dataset", "warehouse_catalog",
}  # fmt: skip
MATERIALIZED_ASSET = "raw_styles"  # the first asset of the graph, nothing upstream: a quick run
RUN_TIMEOUT_S = 150
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

_MISSING = missing_browser()
pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
    pytest.mark.timeout(360),
]

RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename
    ... on Run { status assetSelection { path } }
    ... on PythonError { message } } }
"""


@pytest.fixture(scope="module")
def ui_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The server's environment: a private data root with the small demo data, a private Dagster instance."""
    root = tmp_path_factory.mktemp("ui")
    data_dir = root / "data"
    dagster_home = data_dir / "dagster_home"  # where `make dagster-home` puts it
    dagster_home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCT_ATTRS_") and k != "DAGSTER_HOME"}
    env.update({ENV_DATA_DIR: str(data_dir), ENV_WORKERS: "2", "DAGSTER_HOME": str(dagster_home)})
    # The assets would generate the (larger) default demo data on demand; the small one keeps this quick.
    subprocess.run(
        [sys.executable, "-m", "product_attrs.sample_data", "--out", str(data_dir / "demo"), "--small"],
        env=env, cwd=root, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return env


@pytest.fixture(scope="module")
def dagster_ui(ui_env: dict[str, str]) -> Iterator[DagsterDev]:
    root = Path(ui_env[ENV_DATA_DIR]).parent
    with dagster_dev(ui_env, cwd=root, log_path=root / "dagster_dev.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser(dagster_ui: DagsterDev, tmp_path_factory: pytest.TempPathFactory):
    """Headless Chromium with a fresh profile; closed before the server stops (it depends on dagster_ui)."""
    folder = tmp_path_factory.mktemp("chromium")
    driver = start_chromium(profile_dir=folder / "profile", log_path=folder / "chromedriver.log")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def project_graph() -> tuple[set[str], set[str]]:
    """The asset names and group names the UI must show, read from the project's Definitions."""
    from product_attrs.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    return {key.path[-1] for key in keys}, {graph.get(key).group_name for key in keys} - {None}


def _open(browser, server: DagsterDev, path: str) -> None:
    browser.get(f"{server.url}{path}")
    # A fresh instance greets the first visit with a "Join the Dagster community" dialog over the page.
    if server.graphql("{ shouldShowNux }")["shouldShowNux"]:
        dismiss_welcome(browser)


def test_dagster_dev_shows_the_whole_asset_graph(dagster_ui, browser, project_graph, tmp_path):
    assets, groups = project_graph
    assert CORE_ASSETS <= assets
    with evidence_on_failure(browser, tmp_path, "asset_graph", dagster_ui):
        _open(browser, dagster_ui, "/asset-groups")

        # With several groups the global lineage opens with each group folded into one node.
        def drawn(d) -> set[str] | None:
            labels = graph_labels(d)
            return labels if shown(groups, labels) == groups or shown(assets, labels) == assets else None

        first = wait_for(browser, drawn, 60, f"the graph to draw the groups {sorted(groups)} (or the assets)")
        seen = shown(assets, first)
        if seen != assets:
            expand_all_groups(browser)

            def all_drawn(d) -> bool:
                # Expanded, the graph may be larger than the window: zoom out step by step, as a user
                # would, collecting what each view draws (a node off-screen is not drawn at all).
                seen.update(shown(assets, graph_labels(d)))
                if seen != assets:
                    zoom_out(d)
                return seen == assets

            wait_for(browser, all_drawn, 60, "every asset drawn")

        labels = graph_labels(browser)
        missing = assets - shown(assets, labels) - seen
        assert not missing, f"missing from the graph: {sorted(missing)}; drawn: {sorted(labels)}"
        # Group names are drawn on the folded view; expanded, a one-asset group may show only its asset.
        named = shown(groups, first) | shown(groups, labels)
        assert named == groups, f"groups missing: {sorted(groups - named)}"


def test_materialize_from_the_ui_runs_the_asset_and_writes_its_output(dagster_ui, browser, ui_env, tmp_path):
    styles = CatalogFiles(Settings.from_env(ui_env).catalog_out_dir).styles
    assert not styles.exists()
    with evidence_on_failure(browser, tmp_path, "materialize", dagster_ui):
        _open(browser, dagster_ui, f"/assets/{MATERIALIZED_ASSET}")
        wait_for(browser, lambda d: button(d, "Materialize"), 60, 'the "Materialize" button').click()
        # The UI confirms with a toast "Launched run <id>" linking to the run (the instance had no other run).
        wait_for(browser, lambda d: "Launched run" in body_text(d), 30, 'the "Launched run" toast')
        run_id = wait_for(browser, linked_run_id, 10, "a link to the launched run")

        run = _wait_for_run(dagster_ui, run_id, RUN_TIMEOUT_S)
        assert run["status"] == "SUCCESS", f"run {run_id} ended {run['status']}:\n{dagster_ui.log_tail(60)}"
        assert [key["path"] for key in run["assetSelection"]] == [[MATERIALIZED_ASSET]]

        # The run's page says so too (its status tag; the event log would say RUN_SUCCESS).
        browser.get(f"{dagster_ui.url}/runs/{run_id}")
        wait_for(browser, lambda d: has_text(d, "Success"), 30, 'the run page\'s "Success" status')

    assert styles.exists(), f"{MATERIALIZED_ASSET} ran but {styles} is missing"
    assert pq.read_metadata(styles).num_rows > 0


def _wait_for_run(server: DagsterDev, run_id: str, timeout: float) -> dict:
    """The run (status, asset selection) once it has ended, read from the server's GraphQL API."""
    deadline = time.monotonic() + timeout
    while True:
        run = server.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", f"no run {run_id}: {run}"
        if run["status"] in TERMINAL:
            return run
        if time.monotonic() > deadline:
            status = run["status"]
            raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f} s:\n{server.log_tail(60)}")
        time.sleep(1)
