"""``chat-server`` in-process: every option explained, bad values refused by argparse, the version."""

from __future__ import annotations

import importlib.metadata
import re
import time
import tomllib

import jwt
import pytest

from tests.support.server import ROOT
from web import cli

OPTIONS = {"serve": ["--port"], "token": ["--tenant", "--user", "--role", "--name", "--ttl"]}
SECRET = "cli-test-secret-0123456789abcdef0123456789abcdef"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``chat-server argv``."""
    try:
        code = cli.main(list(argv))
    except SystemExit as done:
        code = done.code
    out, err = capsys.readouterr()
    return code, out, err


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("command", OPTIONS)
def test_help_describes_every_option(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    for option in OPTIONS[command]:
        described = re.search(rf"^  {option} [A-Z]+ +(\S.*)$", out, re.M)
        assert described, f"{command} --help does not describe {option}:\n{out}"


def test_top_level_help_lists_the_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and re.search(r"^    serve +\S", out, re.M) and re.search(r"^    token +\S", out, re.M), out


def test_token_carries_what_was_asked(capsys, monkeypatch):
    monkeypatch.setenv("JWT_SECRET", SECRET)
    code, out, _ = run(capsys, "token", "--tenant", "acme", "--user", "alice", "--role", "admin", "--name", "Alice", "--ttl", "60")
    assert code == 0
    claims = jwt.decode(out.strip(), SECRET, algorithms=["HS256"])
    assert {k: claims[k] for k in ("tenant_id", "user_id", "role", "name")} == {"tenant_id": "acme", "user_id": "alice", "role": "admin", "name": "Alice"}
    assert 0 < claims["exp"] - time.time() <= 60


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["token", "--tenant", "acme", "--user", "alice", "--ttl", "-5"], "argument --ttl: must be a positive number of seconds"),
        (["token", "--tenant", "acme", "--user", "alice", "--ttl", "0"], "argument --ttl: must be a positive number of seconds"),
        (["token", "--tenant", "acme", "--user", "alice", "--ttl", "soon"], "argument --ttl: 'soon' is not a whole number of seconds"),
        (["token", "--tenant", "", "--user", "alice"], "argument --tenant: must be 1 to 128 of letters, digits"),
        (["token", "--tenant", "acme", "--user", "x" * 129], "argument --user: must be 1 to 128 of letters, digits"),
        (["token", "--tenant", "acme", "--user", "bob\nforged"], "argument --user: must be 1 to 128 of letters, digits"),
        (["token", "--user", "alice"], "the following arguments are required: --tenant"),
        (["serve", "--port", "0"], "argument --port: 0 is not a port number (1 to 65535)"),
        (["serve", "--port", "http"], "argument --port: 'http' is not a port number"),
    ],
)
def test_bad_values_are_refused_with_a_clear_error(capsys, argv, complaint):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert f"chat-server {argv[0]}: error: {complaint}" in err, err


def test_version_is_the_packages(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out == f"chat-server {pyproject_version()}\n"


def test_version_without_an_installed_package(capsys, monkeypatch, tmp_path):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert run(capsys, "--version")[1] == f"chat-server {pyproject_version()}\n", "a source checkout reports its pyproject.toml"
    monkeypatch.setattr(cli, "PYPROJECT", tmp_path / "missing.toml")
    assert run(capsys, "--version")[1] == "chat-server unknown (not installed)\n"
