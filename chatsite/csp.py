"""django-csp's middleware, plus websockets of the request's own host in connect-src.

CSP Level 3 browsers count ws(s):// of the page's own host as 'self'; older ones don't. The host comes from
request.get_host(), which ALLOWED_HOSTS has already validated, so this never widens the policy to another site.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware as BaseCSPMiddleware
from csp.middleware import PolicyParts
from django.core.exceptions import DisallowedHost


class CSPMiddleware(BaseCSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:  # the response is Django's 400 for a bad Host header: nothing to add
            return parts
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), f"ws://{host}", f"wss://{host}"]
        parts.update = update
        return parts
