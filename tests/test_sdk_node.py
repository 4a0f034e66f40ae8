"""The SDK's own tests (clients/js/tests, Node's test runner) against a real server on each database tier.

The server runs with a small replay limit and connection cap, so that the SDK's resync and
4429 backoff show within a few messages and sockets; node gets its URL, a tenant and a token per
user from the environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from tests.support.client import make_token, unique
from tests.support.fuzz import backends
from tests.support.server import ROOT, ServerProcess

NODE = shutil.which("node")
SDK_DIR = ROOT / "clients" / "js"
USERS = ("ann", "ben", "alice", "bob", "carol")
MAX_CONNECTIONS = 4
NODE_SECS = 240


def node_major() -> int:
    return int(subprocess.run([NODE, "--version"], capture_output=True, text=True, check=True).stdout.lstrip("v").split(".")[0])


pytestmark = pytest.mark.skipif(
    NODE is None or node_major() < 20, reason="the SDK's tests need Node 20 or later (`node` on PATH)"
)


def websocket_flag() -> list[str]:
    """Node 20 has a WebSocket only behind a flag; later versions have it by default."""
    probe = subprocess.run([NODE, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"])
    return [] if probe.returncode == 0 else ["--experimental-websocket"]


@pytest.fixture(scope="module", params=backends())
def sdk_server(request, mongodb_uri):
    uri = mongodb_uri if request.param == "mongodb" else None
    env = {"REPLAY_LIMIT": "20", "MAX_CONNECTIONS_PER_USER": str(MAX_CONNECTIONS)}
    proc = ServerProcess(env=env, mongodb_uri=uri, db_name=f"chat_{unique('sdk').replace('-', '_')}" if uri else None).start()
    yield proc
    proc.stop()


@pytest.mark.timeout(NODE_SECS + 30)
def test_the_sdk_passes_its_node_tests(sdk_server):
    tenant = unique("tenant")
    tokens = {name: make_token(sdk_server.jwt_secret, tenant, unique(name)) for name in USERS}
    env = {
        **os.environ,
        "CHAT_SDK_TEST_URL": sdk_server.http_url,
        "CHAT_SDK_TEST_TENANT": tenant,
        "CHAT_SDK_TEST_TOKENS": json.dumps(tokens),
        "CHAT_SDK_TEST_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    run = subprocess.run(
        [NODE, *websocket_flag(), "--test", "--test-reporter=tap"],
        cwd=SDK_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_SECS,
    )
    report = run.stdout + run.stderr
    counts = {name: int(n) for name, n in re.findall(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$", run.stdout, re.M)}
    assert run.returncode == 0 and counts.get("fail") == 0, report
    assert counts["tests"] > 0 and counts["pass"] == counts["tests"], f"{counts}\n{report}"
