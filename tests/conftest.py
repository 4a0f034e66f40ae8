"""Fixtures: a real server process per test module tier (embedded mock DB, and FerretDB when built).

Async test functions run on a fresh asyncio loop each; they talk to the server only
over real sockets. Tests that need other settings start their own ``ServerProcess``.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import tempfile

import pytest

from tests.support.client import User, unique
from tests.support.ferretdb import FerretDB, find_ferretdb_binary
from tests.support.server import ServerProcess


def pytest_pyfunc_call(pyfuncitem):
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        funcargs = pyfuncitem.funcargs
        args = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(pyfuncitem.obj(**args))
        return True
    return None


def _backends() -> list[str]:
    backends = ["mock"]
    if os.environ.get("MONGODB_URI") or find_ferretdb_binary():
        backends.append("mongodb")
    return backends


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
