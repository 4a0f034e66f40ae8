"""``chat-server serve`` runs the server; ``chat-server token`` prints a development JWT."""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from actors.principal import ID_MAX_CHARS, SAFE_ID_CHARS, is_safe_id
from config import load_settings
from config.settings import DEV_JWT_SECRET, ConfigError
from web.auth import issue_token

# What a source checkout that was never installed reports as its version.
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version() -> str:
    """The installed version; from a source checkout that was never installed, pyproject.toml's."""
    try:
        return importlib.metadata.version("chat-server")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown (not installed)"


def positive_seconds(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {value}: the token would be expired already")
    return value


def port_number(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1 to 65535)")
    return value


def claim(raw: str) -> str:
    """What the server accepts as a tenant or user id: it refuses tokens naming anything else."""
    if not is_safe_id(raw):
        raise argparse.ArgumentTypeError(f"must be 1 to {ID_MAX_CHARS} of {SAFE_ID_CHARS}")
    return raw


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat-server", description="Multi-tenant real-time chat server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the server (configured by environment variables)", description="Run the server; every setting comes from environment variables (see README)."
    )
    serve.add_argument("--port", type=port_number, help="port to listen on; overrides $PORT (default 9090)")
    token = commands.add_parser(
        "token", help="print a JWT signed with $JWT_SECRET, for development", description="Print a JWT signed with $JWT_SECRET (and $JWT_ALGORITHM), for development and trying things out."
    )
    token.add_argument("--tenant", required=True, type=claim, help="tenant id (the {tenant_id} of the WebSocket URL); required")
    token.add_argument("--user", required=True, type=claim, help="user id, as participant_ids and events name it; required")
    token.add_argument("--role", help="'admin' makes a tenant-wide administrator; omit it for an ordinary user")
    token.add_argument("--name", help="display name carried in the token (optional)")
    token.add_argument("--ttl", type=positive_seconds, default=3600, help="seconds until it expires, more than 0 (default 3600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {"port": args.port} if getattr(args, "port", None) is not None else {}
    try:
        settings = load_settings(**overrides)
    except ConfigError as error:
        print(f"chat-server: {error}", file=sys.stderr)
        return 2
    if args.command == "token":
        print(issue_token(settings, tenant_id=args.tenant, user_id=args.user, role=args.role, ttl_secs=args.ttl, name=args.name))
        return 0
    from web.server import configure_logging, serve

    configure_logging(settings.log_level)
    if settings.jwt_secret == DEV_JWT_SECRET:
        import logging

        logging.getLogger("chat").warning("JWT_SECRET is not set: using the development secret; set it in production")
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
