"""Drive this project's Dagster UI in a real headless Chromium: the helper of ``test_ui.py``.

* ``dagster_dev(...)`` runs the README's ``dagster dev -m product_attrs.definitions`` in its own process
  group, waits until the webserver answers and the code location has loaded (or says why it did not), and
  always stops the whole group (webserver, daemon, code servers, run workers) on the way out.
* ``start_chromium(...)`` starts Debian's Chromium through Debian's chromedriver (one build, so their
  versions always match) with selenium and every flag that keeps it off the network; then a few page
  helpers for the asset graph.

Selenium is imported inside the functions that use it, so this module imports (and the UI test skips with
a reason) where selenium or the browser is not installed. ``scripts/install_browser.sh`` installs the browser.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and nothing that reaches the network on its own (sync, updates, QUIC probes, first-run pages).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--window-size=2400,1600",
)
MODULE = "product_attrs.definitions"
INSTALL_HINT = "run scripts/install_browser.sh and pip install -e '.[dev]'"

T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the UI test cannot run here, or None when Chromium, chromedriver and selenium are all there."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed: UI test skipped ({INSTALL_HINT})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"the selenium package is not installed: UI test skipped ({INSTALL_HINT})"
    return None


# ----------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Never through a proxy: the server is on the loopback interface.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class DagsterDev:
    """A running ``dagster dev``: its URL, its process (leader of its own group) and its log file."""

    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with _OPENER.open(request, timeout=timeout) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]


WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""


def _answers(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_up(server: DagsterDev, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(f"{server.url}/server_info"):
        if server.process.poll() is not None:
            code = server.process.returncode
            raise RuntimeError(f"dagster dev exited with code {code} before serving:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.url} did not answer in {timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)
    # The webserver answers before the code location has loaded: wait for it, and say why it failed.
    while True:
        entries = server.graphql(WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries") or []
        if entries and all(entry["loadStatus"] == "LOADED" for entry in entries):
            errors = [
                f"{entry['name']}: {entry['locationOrLoadError']['message']}"
                for entry in entries
                if (entry["locationOrLoadError"] or {}).get("__typename") == "PythonError"
            ]
            if errors:
                raise RuntimeError("the code location failed to load:\n" + "\n".join(errors))
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"code location not loaded in {timeout:.0f} s: {entries}\n{server.log_tail()}")
        time.sleep(0.5)


def _sigint_default() -> None:
    # A process started in the background by a non-interactive shell inherits SIGINT ignored, and `dagster
    # dev` maps SIGTERM onto its SIGINT handler: it would ignore both. Give it the default back.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_process_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM to the whole group (dagster dev shuts its services down), then SIGKILL whatever is left."""
    pgid = process.pid  # started with start_new_session=True: it leads its own group
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(pgid, signal.SIGKILL)  # code servers or a run worker that outlived the leader
    except ProcessLookupError:
        pass
    process.wait()


@contextmanager
def dagster_dev(
    env: dict[str, str], cwd: Path, log_path: Path, startup_timeout: float = 150
) -> Iterator[DagsterDev]:
    """The README's ``dagster dev -m product_attrs.definitions`` on a free loopback port, stopped on exit."""
    beside_python = Path(sys.executable).with_name("dagster")
    on_path = shutil.which("dagster", path=env.get("PATH"))
    executable = str(beside_python) if beside_python.exists() else on_path
    if executable is None:
        raise FileNotFoundError("no dagster executable beside the running Python or on the PATH")
    port = free_port()
    command = [executable, "dev", "-m", MODULE, "-p", str(port), "-h", "127.0.0.1"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_sigint_default,
        )
    server = DagsterDev(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_until_up(server, startup_timeout)
        yield server
    finally:
        stop_process_group(process)


# ---------------------------------------------------------------------------------------------- browser


def start_chromium(profile_dir: Path, log_path: Path, extra_flags: tuple[str, ...] = ()) -> WebDriver:
    """Debian's Chromium, headless, with a fresh profile, driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    # Both paths given: selenium never runs selenium-manager (which would try to download a driver).
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log_path))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    return driver


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float, what: str) -> T:
    """The first truthy value of condition(driver) within timeout seconds (React re-renders are retried)."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        NoSuchElementException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException, ElementClickInterceptedException)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=ignored)
    return wait.until(condition, message=f"timed out after {timeout:.0f} s waiting for {what}")


def body_text(driver: WebDriver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def has_text(driver: WebDriver, text: str) -> bool:
    """Whether a visible element's own text is exactly text."""
    from selenium.webdriver.common.by import By

    elements = driver.find_elements(By.XPATH, f"//*[text()[normalize-space()='{text}']]")
    return any(element.is_displayed() for element in elements)


def button(driver: WebDriver, label: str) -> WebElement | None:
    """The visible, enabled button whose text is exactly label, or None."""
    from selenium.webdriver.common.by import By

    for element in driver.find_elements(By.XPATH, f"//button[normalize-space()='{label}']"):
        if element.is_displayed() and element.is_enabled():
            return element
    return None


def dismiss_welcome(driver: WebDriver, timeout: float = 30) -> None:
    """Skip the "Join the Dagster community" dialog that a fresh instance shows on the first visit."""
    skip = wait_for(driver, lambda d: button(d, "Skip"), timeout, 'the welcome dialog\'s "Skip" button')
    skip.click()
    wait_for(driver, lambda d: button(d, "Skip") is None, 10, "the welcome dialog to close")


def linked_run_id(driver: WebDriver) -> str | None:
    """The id of the first run the page links to (``/runs/<uuid>``), or None."""
    from selenium.webdriver.common.by import By

    for link in driver.find_elements(By.CSS_SELECTOR, "a[href*='/runs/']"):
        run_id = (link.get_attribute("href") or "").split("/runs/", 1)[1].split("?")[0].strip("/")
        if len(run_id) == 36:  # a UUID, not the /runs/ list
            return run_id
    return None


def graph_labels(driver: WebDriver) -> set[str]:
    """The titles of the nodes the asset graph draws now: asset names, and group names (folded or not)."""
    from selenium.webdriver.common.by import By

    labels = set()
    for node in driver.find_elements(By.CSS_SELECTOR, "svg foreignObject"):
        text = node.text.strip()
        if text:
            labels.add(text.splitlines()[0].strip())
    return labels


def shown(names: set[str], labels: set[str]) -> set[str]:
    """The names that some drawn label shows. Zoomed out to fit a large graph, the UI cuts long names in
    the middle ("attrib…_classifier"): such a label shows a name that starts and ends as it does."""

    def shows(label: str, name: str) -> bool:
        if label == name:
            return True
        head, cut, tail = label.partition("…")
        long_enough = len(name) > len(head) + len(tail)
        return bool(cut) and long_enough and name.startswith(head) and name.endswith(tail)

    return {name for name in names if any(shows(label, name) for label in labels)}


def zoom_out(driver: WebDriver) -> bool:
    """Click the graph's zoom-out button once, as a user would when the graph is larger than the window."""
    from selenium.webdriver.common.by import By

    icons = [i for i in driver.find_elements(By.CSS_SELECTOR, '[aria-label="zoom_out"]') if i.is_displayed()]
    if not icons:
        return False
    icons[0].find_element(By.XPATH, "./ancestor::button[1]").click()
    return True


def expand_all_groups(driver: WebDriver) -> None:
    """Right-click the graph's background and pick "Expand all groups", as a user would."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    def canvas(d: WebDriver) -> WebElement | None:
        svgs = [s for s in d.find_elements(By.CSS_SELECTOR, "svg") if s.is_displayed()]
        return max(svgs, key=lambda s: s.size["width"] * s.size["height"], default=None)

    graph = wait_for(driver, canvas, 30, "the asset graph")
    # Just inside the top-left corner: the layout is centred, so this is background, not a node.
    dx, dy = -graph.size["width"] // 2 + 12, -graph.size["height"] // 2 + 12
    ActionChains(driver).move_to_element_with_offset(graph, dx, dy).context_click().perform()
    item_xpath = "//*[text()[starts-with(normalize-space(), 'Expand all groups')]]"
    item = wait_for(driver, lambda d: d.find_element(By.XPATH, item_xpath), 10, "the menu item")
    item.click()


@contextmanager
def evidence_on_failure(
    driver: WebDriver, folder: Path, name: str, server: DagsterDev | None = None
) -> Iterator[None]:
    """On an exception: a screenshot and the page's HTML in folder; their paths and the server log on it."""
    try:
        yield
    except BaseException as error:
        folder.mkdir(parents=True, exist_ok=True)
        shot, html = folder / f"{name}.png", folder / f"{name}.html"
        try:
            driver.save_screenshot(str(shot))
            html.write_text(driver.page_source)
            error.add_note(f"UI at failure: {shot} and {html} (URL {driver.current_url})")
        except Exception as screenshot_error:  # the browser itself may be gone
            error.add_note(f"no screenshot: {screenshot_error!r}")
        if server is not None:
            error.add_note(f"dagster dev log ({server.log_path}), last lines:\n{server.log_tail(40)}")
        raise
