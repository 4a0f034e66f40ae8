"""ASGI entry point: ``bench.baselines.channels_app.asgi:application``.

Serve with daphne (``daphne -b 127.0.0.1 -p PORT bench.baselines.channels_app.asgi:application``)
or uvicorn (``uvicorn --host 127.0.0.1 --port PORT bench.baselines.channels_app.asgi:application``),
from the repository root, with ``DJANGO_SETTINGS_MODULE=bench.baselines.channels_app.settings``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.baselines.channels_app.settings")

import django  # noqa: E402

django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from .consumers import ChatConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "websocket": URLRouter([
        re_path(r"^ws/chat/(?P<tenant_id>[^/]+)/$", ChatConsumer.as_asgi()),
    ]),
})
