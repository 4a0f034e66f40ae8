"""``cluster/`` sits between ``actors/`` and ``storage/``: it knows nothing of actors or the web,
and it is the only package that names the Redis driver (as ``storage/`` is for MongoDB's)."""

from __future__ import annotations

from tests.test_layers import ROOT, imported_modules

REDIS_MODULES = ("redis", "hiredis")


def test_cluster_imports_neither_actors_nor_web():
    upward = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "cluster").rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in ("web", "actors")
    ]
    assert not upward, "\n".join(upward)


def test_only_cluster_names_the_redis_driver():
    leaks = [
        f"{path.relative_to(ROOT)} imports {module}"
        for layer in ("web", "actors", "storage", "config")
        for path in sorted((ROOT / layer).rglob("*.py"))
        for module in imported_modules(path)
        if module.split(".")[0] in REDIS_MODULES
    ]
    assert not leaks, "\n".join(leaks)
