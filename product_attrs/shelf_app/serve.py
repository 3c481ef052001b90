"""A development server for the built shelf app, with the headers WASM multi-threading needs.

    python -m product_attrs.shelf_app.serve [FOLDER] [--port 8765]

The app is static: any host serves it. Without the cross-origin isolation headers (COOP/COEP) a browser
gives no SharedArrayBuffer, so onnxruntime-web runs on one thread and the page says so; this server sends
them, and the MIME types of `.mjs` and `.wasm` that module scripts and streaming compilation need.
`localhost` is a secure context, so the service worker (offline use) registers.
"""

from __future__ import annotations

import argparse
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class IsolatedHandler(SimpleHTTPRequestHandler):
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
        ".json": "application/json",
    }

    isolation = True

    def end_headers(self) -> None:
        for k, v in ISOLATION_HEADERS.items() if self.isolation else ():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


class PlainHandler(IsolatedHandler):
    """Like a host without the isolation headers (tests: the app falls back to one thread)."""

    isolation = False


def make_server(
    folder: Path, port: int = 0, host: str = "127.0.0.1", verbose: bool = False, isolation: bool = True
) -> ThreadingHTTPServer:
    """A server over `folder` (port 0: any free port; `server.server_address[1]` says which)."""
    handler = functools.partial(IsolatedHandler if isolation else PlainHandler, directory=str(folder))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    from product_attrs.settings import Settings

    p = argparse.ArgumentParser(
        prog="python -m product_attrs.shelf_app.serve", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("folder", type=Path, nargs="?", help="the built app (default: <data root>/shelf_app)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    folder = args.folder or Settings.from_env().data_dir / "shelf_app"
    if not (folder / "index.html").is_file():
        print(f"{folder} holds no built app: `make shelf-app` builds it", file=sys.stderr)
        return 1
    server = make_server(folder, args.port, args.host, verbose=True)
    print(
        f"shelf app: http://localhost:{server.server_address[1]}/ (serving {folder}; Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
