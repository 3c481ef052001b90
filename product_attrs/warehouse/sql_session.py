"""`make sql`: a SQL session on the lake, attached read-only, in Harlequin (the terminal SQL IDE).

Harlequin runs on this environment's Python duckdb, so the same offline extensions load; its init script
attaches the lake as ``lake`` and makes it the default database, so the README's queries run as written.
``-c QUERY`` runs one query through the same init script without the IDE (scripts, CI, a quick look).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from product_attrs.settings import get_settings
from product_attrs.warehouse.extensions import extension_directory
from product_attrs.warehouse.lake import LAKE, Lake, LakeMissing, exists


def init_sql(lake: Lake) -> str:
    """The statements that open the lake read-only in a fresh DuckDB session."""
    folder = extension_directory()
    lines = [f"SET extension_directory = '{folder}';"] if folder is not None else []
    lines += ["SET TimeZone = 'UTC';", f"{lake.attach_sql(read_only=True)};", f"USE {LAKE};"]
    return "\n".join(lines) + "\n"


def run_query(lake: Lake, query: str) -> str:
    """Run ``query`` after the init script; the result as CSV (header first)."""
    import duckdb

    with duckdb.connect() as con:
        for statement in init_sql(lake).splitlines():
            con.execute(statement).fetchall()
        frame = con.execute(query).df()
    return frame.to_csv(index=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--command", help="run one query and print its result as CSV")
    parser.add_argument("--print-init", action="store_true", help="print the init script and exit")
    args = parser.parse_args(argv)
    lake = Lake.from_settings(get_settings())
    if args.print_init:
        print(init_sql(lake), end="")
        return 0
    if not exists(lake):
        print(f"no lake yet at {lake.describe()}: run `make demo` (or materialize an asset) first")
        return 2
    if args.command:
        try:
            print(run_query(lake, args.command), end="")
        except LakeMissing as exc:
            print(exc, file=sys.stderr)
            return 2
        return 0
    harlequin = shutil.which("harlequin", path=str(Path(sys.executable).parent)) or shutil.which("harlequin")
    if harlequin is None:
        print("harlequin is not installed: pip install -c requirements.lock -e '.[sql]'", file=sys.stderr)
        return 2
    fd, script = tempfile.mkstemp(prefix="product_attrs-sql-", suffix=".sql")  # 0600: may hold a password
    with os.fdopen(fd, "w") as handle:
        handle.write(init_sql(lake))
    os.execv(harlequin, [harlequin, "--adapter", "duckdb", "--init-path", script, ":memory:"])
    return 0  # pragma: no cover - execv does not return


if __name__ == "__main__":
    raise SystemExit(main())
