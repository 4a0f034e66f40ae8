"""The browser SDK at ``/sdk/chat.js`` and the demo app at ``/demo/``: files of the checkout
(``clients/``), read once at start.

Cacheable for a few minutes, then revalidated by ``ETag`` (Tornado computes it from the body and
answers a matching ``If-None-Match`` with 304), so a deploy reaches browsers within minutes.
The SDK may be imported by pages of any origin: a module script from another origin needs CORS,
and a public file with no credentials has nothing to protect.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import tornado.web

from web.unbranded import Unbranded

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
SDK_FILE = CLIENTS / "js" / "chat.js"
DEMO_DIR = CLIENTS / "demo"
DEMO_INDEX = "index.html"
CACHE_CONTROL = "public, max-age=300"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    any_origin: bool = False

    @classmethod
    def load(cls, path: Path, *, any_origin: bool = False) -> Asset:
        return cls(path.read_bytes(), CONTENT_TYPES[path.suffix], any_origin)


class AssetHandler(Unbranded, tornado.web.RequestHandler):
    def initialize(self, asset: Asset) -> None:
        self.asset = asset

    def get(self) -> None:
        self.set_header("Content-Type", self.asset.content_type)
        self.set_header("Cache-Control", CACHE_CONTROL)
        self.set_header("X-Content-Type-Options", "nosniff")
        if self.asset.any_origin:
            self.set_header("Access-Control-Allow-Origin", "*")
        self.finish(self.asset.body)


def demo_files() -> list[str]:
    """The demo's files besides its page, each served at ``/demo/<name>``."""
    return sorted(path.name for path in DEMO_DIR.iterdir() if path.suffix in CONTENT_TYPES and path.name != DEMO_INDEX)


def asset_routes(demo_enabled: bool) -> list[tuple]:
    routes = [(r"/sdk/chat\.js", AssetHandler, {"asset": Asset.load(SDK_FILE, any_origin=True)})]
    if demo_enabled:
        routes.append((r"/demo/?", AssetHandler, {"asset": Asset.load(DEMO_DIR / DEMO_INDEX)}))
        routes += [(rf"/demo/{re.escape(name)}", AssetHandler, {"asset": Asset.load(DEMO_DIR / name)}) for name in demo_files()]
    return routes
