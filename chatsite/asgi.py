"""ASGI entry point: HTTP goes to Django (WhiteNoise serves static files), websockets to Channels.

Websockets pass the origin check (scheme, host and port: chatsite/ws_origin.py) and the session-based authentication before routing.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Must run before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite import twisted_writes  # noqa: E402
from chatsite.ws_origin import SiteOriginValidator  # noqa: E402
from conversations.engine import StartEngine  # noqa: E402
from conversations.engine.routing import websocket_urlpatterns  # noqa: E402

# Frames leave in the call that writes them (a loop turn and two system calls less each).
twisted_writes.install()

# StartEngine: the process's start-up (SIGTERM drain, sweeper) runs once, on the first connection.
application = StartEngine(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": SiteOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
