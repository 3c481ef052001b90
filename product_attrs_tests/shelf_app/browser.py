"""Drive the built shelf app in headless Chromium: the helper of the shelf app's browser tests and benchmark.

The browser is started as the UI test starts it (``ui_browser.start_chromium``: Debian's Chromium and
chromedriver, nothing that reaches the network on its own); the app is served by the app's own dev server
(``product_attrs.shelf_app.serve``, with the cross-origin isolation headers) in a thread of this process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from product_attrs.shelf_app.serve import make_server
from product_attrs_tests.ui_browser import missing_browser, start_chromium, wait_for

__all__ = ["missing_browser", "served", "chromium", "open_app", "call"]


@contextmanager
def served(folder: Path, isolation: bool = True) -> Iterator[Any]:
    """The app's dev server on a free port of the loopback interface; `.url` is http://localhost:<port>/."""
    server = make_server(folder, 0, isolation=isolation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://localhost:{server.server_address[1]}/"  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        stop(server)


def stop(server: Any) -> None:
    """Shut the server down and close its socket (idempotent): the network is then really gone."""
    if getattr(server, "_stopped", False):
        return
    server.shutdown()
    server.server_close()
    server._stopped = True


@contextmanager
def chromium(tmp: Path, width: int = 900, height: int = 900, camera: bool = False) -> Iterator[Any]:
    """`camera`: Chromium's fake camera (a moving test pattern), allowed without asking."""
    tmp.mkdir(parents=True, exist_ok=True)
    flags = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream") if camera else ()
    driver = start_chromium(tmp / "profile", tmp / "chromedriver.log", flags)
    try:
        driver.set_window_size(width, height)
        driver.set_script_timeout(300)
        yield driver
    finally:
        driver.quit()


def open_app(driver: Any, url: str, timeout: float = 120) -> dict[str, Any]:
    """Load the page and wait until its session is ready; returns shelfApp.runtime()."""
    driver.get(url)
    state = wait_for(
        driver,
        lambda d: d.execute_script("return document.body.dataset.ready || null"),
        timeout,
        "the shelf app to load its model",
    )
    if state != "true":
        raise AssertionError(
            f"the app did not start: {driver.execute_script('return document.body.innerText')}"
        )
    return driver.execute_script("return window.shelfApp.runtime()")


def call(driver: Any, expression: str) -> Any:
    """Await a promise-returning JavaScript expression in the page; raises with the page's error."""
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        f"Promise.resolve().then(() => {expression})"
        ".then((v) => done({ok: v}), (e) => done({error: String(e && e.stack || e)}));"
    )
    if "error" in result:
        raise AssertionError(f"{expression}: {result['error']}")
    return result["ok"]
