"""ASGI entry point: HTTP goes to Django (WhiteNoise serves static files), websockets to Channels.

Websockets pass the origin check (ALLOWED_HOSTS) and the session-based authentication before routing.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Must run before anything imports models (the routing below does).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from conversations.engine import StartEngine  # noqa: E402
from conversations.engine.routing import websocket_urlpatterns  # noqa: E402

# StartEngine: the process's start-up (SIGTERM drain, sweeper) runs once, on the first connection.
application = StartEngine(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
