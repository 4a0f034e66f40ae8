"""Fixtures: a real server process per test module tier (embedded mock DB, and FerretDB when built).

Async test functions run on a fresh asyncio loop each; they talk to the server only
over real sockets. Tests that need other settings start their own ``ServerProcess``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.support.client import User, unique
from tests.support.ferretdb import DEFAULT_BINARY, FerretDB, find_ferretdb_binary
from tests.support.server import ServerProcess


def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        funcargs = pyfuncitem.funcargs
        args = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


def _mongodb_source() -> str | None:
    """What the MongoDB tier runs against (``MONGODB_URI`` first, then a built FerretDB), or None."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        parts = urlsplit(uri)
        if parts.password:  # the header goes into CI logs
            parts = parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}")
        return f"{urlunsplit(parts)} (MONGODB_URI)"
    binary = find_ferretdb_binary()
    return f"FerretDB {binary}" if binary else None


def _backends() -> list[str]:
    return ["mock", "mongodb"] if _mongodb_source() else ["mock"]


def _tier_lines() -> list[str]:
    source = _mongodb_source()
    if source:
        return [f"database tiers: embedded, mongodb: {source}"]
    places = f"FERRETDB_BIN={os.environ['FERRETDB_BIN']}" if os.environ.get("FERRETDB_BIN") else "FERRETDB_BIN (unset)"
    return [
        "database tiers: embedded only",
        f"mongodb tier skipped: no MONGODB_URI and no FerretDB binary at {places} or {DEFAULT_BINARY}; "
        "build one with `bash .ci/build-ferretdb.sh` or set MONGODB_URI",
    ]


def pytest_report_header(config) -> list[str]:
    return _tier_lines()


def pytest_terminal_summary(terminalreporter) -> None:
    """Say it again at the end when a tier was skipped: ``-q`` hides the header."""
    if _mongodb_source() is None:
        terminalreporter.write_line(_tier_lines()[1], yellow=True)


@pytest.fixture(scope="session")
def mongodb_uri():
    """A real MongoDB wire server: ``MONGODB_URI`` if given, else a FerretDB we start; None if neither."""
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"]
        return
    binary = find_ferretdb_binary()
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="chat-ferretdb-") as state_dir:
        server = FerretDB(binary, state_dir)
        server.start()
        try:
            yield server.uri
        finally:
            server.stop()


@pytest.fixture(scope="session")
def ferretdb():
    """A FerretDB of our own, for tests that stop and restart the database."""
    binary = find_ferretdb_binary()
    if binary is None:
        pytest.skip("FerretDB binary not built (.ci/build-ferretdb.sh)")
    with tempfile.TemporaryDirectory(prefix="chat-ferretdb-own-") as state_dir:
        server = FerretDB(binary, state_dir)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session", params=_backends())
def server(request, mongodb_uri):
    """The chat server, once against the embedded database and once against real MongoDB."""
    uri = mongodb_uri if request.param == "mongodb" else None
    proc = ServerProcess(mongodb_uri=uri, db_name=f"chat_{unique('db').replace('-', '_')}" if uri else None).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session", params=_backends())
def database_uri(request, mongodb_uri):
    """Each tier's ``MONGODB_URI`` for tests that open storage in-process; None is the embedded database."""
    return mongodb_uri if request.param == "mongodb" else None


@pytest.fixture
def tenant():
    return unique("tenant")


@pytest.fixture
def users(server, tenant):
    """``users("alice", "bob")`` makes users of the test's tenant with distinct ids."""

    def make(*names: str, role: str | None = None) -> list[User]:
        return [User(server, tenant, unique(name), role=role) for name in names]

    return make
