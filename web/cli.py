"""``chat-server serve`` runs the server; ``chat-server token`` prints a development JWT."""

from __future__ import annotations

import argparse
import asyncio
import sys

from config import load_settings
from config.settings import DEV_JWT_SECRET, ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat-server", description="Multi-tenant real-time chat server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (configured by environment variables)")
    serve.add_argument("--port", type=int, help="overrides $PORT (default 9090)")
    token = commands.add_parser("token", help="print a JWT signed with $JWT_SECRET, for development")
    token.add_argument("--tenant", required=True)
    token.add_argument("--user", required=True)
    token.add_argument("--role", help="'admin' makes a tenant-wide administrator")
    token.add_argument("--name")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {"port": args.port} if getattr(args, "port", None) else {}
    try:
        settings = load_settings(**overrides)
    except ConfigError as error:
        print(f"chat-server: {error}", file=sys.stderr)
        return 2
    if args.command == "token":
        from web.auth import issue_token

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
