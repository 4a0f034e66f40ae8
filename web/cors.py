"""Which browser origins may use the server: one policy, ``ALLOWED_ORIGINS``, for sockets and REST.

REST answers an allowed origin by echoing it (also when ``*`` is configured: one rule for both,
with ``Vary: Origin`` for caches). Never ``Access-Control-Allow-Credentials``: the API takes
bearer tokens, not cookies, so a browser has no ambient credential to send along.
"""

from __future__ import annotations

from urllib.parse import urlparse

# A preflight's answer: every method a REST route may serve (others get 405, with CORS headers).
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    # Browsers cap it anyway (Chromium at 2 h); ten minutes lets a changed ALLOWED_ORIGINS take hold soon.
    "Access-Control-Max-Age": "600",
}
# Beyond the CORS-safelisted ones: how long to wait after a 429, and a download's file name.
EXPOSED_HEADERS = "Retry-After, Content-Disposition"


def origin_allowed(origin: str, host: str, allowed: tuple[str, ...]) -> bool:
    """Same host as the request, or listed in ``ALLOWED_ORIGINS`` (``*`` trusts every origin)."""
    if "*" in allowed or origin in allowed:
        return True
    return urlparse(origin).netloc.lower() == host.lower()


def response_headers(origin: str | None, host: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The CORS headers of any answer to ``origin``: none at all when it is not allowed."""
    if not origin or not origin_allowed(origin, host, allowed):
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED_HEADERS}
