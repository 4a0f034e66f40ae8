"""``REDIS_URL`` makes a node of a cluster, and a node refuses the embedded database: its data
would live in one process, which no other node could read."""

from __future__ import annotations

from web import cli


def test_redis_url_without_mongodb_uri_refuses_to_start(capsys, monkeypatch):
    monkeypatch.delenv("MONGODB_URI", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["serve"]) == 2
    assert "REDIS_URL needs MONGODB_URI" in capsys.readouterr().err

