"""Small helpers shared by the runner, the server adapters and the scenarios."""

from __future__ import annotations

import math
import os
import resource
import socket
import time
from array import array

import jwt

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENANT = "bench-tenant"
JWT_SECRET = "bench-secret-" + "x" * 24


def make_token(user_id: str, tenant_id: str = TENANT, secret: str = JWT_SECRET, ttl_secs: int = 3 * 3600) -> str:
    return jwt.encode({"user_id": user_id, "tenant_id": tenant_id, "exp": int(time.time()) + ttl_secs},
                      secret, algorithm="HS256")


def ws_path(user_id: str, tenant_id: str = TENANT) -> str:
    return f"/ws/chat/{tenant_id}/?token={make_token(user_id, tenant_id)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc=None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def raise_nofile(want: int = 65536) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE's soft limit towards its hard limit (children inherit it).

    Returns (soft, hard) as in force afterwards.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def percentiles(values, ps=(50, 90, 99, 100)) -> dict:
    """Nearest-rank percentiles of a sequence (nanoseconds in, milliseconds out)."""
    if not values:
        return {p: None for p in ps}
    s = sorted(values)
    n = len(s)
    out = {}
    for p in ps:
        k = max(0, min(n - 1, math.ceil(p / 100.0 * n) - 1))
        out[p] = s[k] / 1e6
    return out


def lat_ms(a: array, p: float):
    return percentiles(a, (p,))[p]
