"""ASGI entry point: HTTP through Django, websockets through channels (the live console),
and the agents' long polls on the event loop itself (remediation/api/long_poll.py)."""

import os
from collections.abc import Callable

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from governance.console.routing import websocket_urlpatterns  # noqa: E402
from remediation.api.long_poll import PATH as LONG_POLL_PATH  # noqa: E402
from remediation.api.long_poll import long_poll_app  # noqa: E402


async def http(scope: dict, receive: Callable, send: Callable) -> None:
    if scope["path"] == LONG_POLL_PATH:
        await long_poll_app(scope, receive, send)
    else:
        await django_asgi_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": http,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
