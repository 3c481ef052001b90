"""Lake fixtures: every lake test runs on a SQLite catalog and on a real PostgreSQL server's.

The server is started once per test session, and only when a PostgreSQL test runs; each test gets its own
database on it. Where PostgreSQL is missing or does not start, those tests are skipped saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from product_attrs.warehouse.lake import Lake
from product_attrs_tests.warehouse import postgres

CATALOGS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.Server]:
    """A PostgreSQL server for the session, stopped (and its folder removed) at the end even when tests
    fail."""
    try:
        server = postgres.start()
    except postgres.Unavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=CATALOGS)
def lake_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A catalog spec never written: a SQLite file under tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'lake' / 'catalog.sqlite'}"
    server: postgres.Server = request.getfixturevalue("postgres_server")
    return "postgres:" + server.conninfo(server.create_database())


@pytest.fixture
def lake(lake_catalog: str, tmp_path: Path) -> Lake:
    """An empty lake on each catalog, its data files under tmp_path."""
    return Lake(lake_catalog, tmp_path / "lake" / "data")
