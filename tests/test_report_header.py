"""The pytest header says which database tiers run, and when the MongoDB tier cannot, why and
how to enable it (it used to be skipped without a word)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.server import ROOT


def _header(home, **env: str) -> str:
    """What ``pytest --co`` prints with only ``env`` saying where a MongoDB tier could come from."""
    environ = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URI", "FERRETDB_BIN", "XDG_CACHE_HOME")}
    environ.update(HOME=str(home), **env)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", __file__],
        cwd=ROOT, env=environ, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_header_says_why_the_mongodb_tier_is_skipped_and_how_to_enable_it(tmp_path):
    out = _header(tmp_path, FERRETDB_BIN=str(tmp_path / "nowhere"))
    assert "database tiers: embedded only" in out
    assert (
        f"no MONGODB_URI and no FerretDB binary at FERRETDB_BIN={tmp_path / 'nowhere'}"
        f" or {tmp_path / '.cache' / 'chat-ferretdb' / 'ferretdb'}"
    ) in out
    assert "bash .ci/build-ferretdb.sh" in out and "set MONGODB_URI" in out


def test_header_names_what_the_mongodb_tier_runs_against(tmp_path):
    binary = tmp_path / "ferretdb"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert f"database tiers: embedded, mongodb: FerretDB {binary}\n" in _header(tmp_path, FERRETDB_BIN=str(binary))

    out = _header(tmp_path, FERRETDB_BIN=str(binary), MONGODB_URI="mongodb://chat:s3cret@db.example:27017/")
    assert "database tiers: embedded, mongodb: mongodb://chat:***@db.example:27017/ (MONGODB_URI)\n" in out
    assert "s3cret" not in out
