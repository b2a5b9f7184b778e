import json
from functools import cache

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.safestring import mark_safe

from conversations.services import model_menu
from conversations.services.access import get_conversation_for_user
from conversations.services.errors import NotFound
from conversations.views import error_pages

# Third-party ES modules, imported by bare name from static/js/chat/*.js (pinned in static/vendor/README.md).
VENDOR_MODULES = {
    "marked": "vendor/marked-18.2.1/marked.esm.js",
    "dompurify": "vendor/dompurify-3.4.18/purify.es.mjs",
    "highlight.js": "vendor/highlight.js-11.12.0/highlight.min.js",
    # Loaded only when an answer has math (static/js/chat/markdown.js); the stylesheet is found through the
    # import map too (import.meta.resolve), so its hashed name needs no template.
    "katex": "vendor/katex-0.19.1/katex.mjs",
    "katex-css": "vendor/katex-0.19.1/katex.min.css",
}
CHAT_MODULES = settings.BASE_DIR / "static" / "js" / "chat"


@cache
def import_map() -> str:
    """The page's import map: vendored modules by name, and our own modules' plain URLs mapped to their hashed
    static names, so a relative `import "./x.js"` gets the cache-busted file (no build step needed)."""
    imports = {name: static(path) for name, path in VENDOR_MODULES.items()}
    for module in sorted(CHAT_MODULES.glob("*.js")):
        imports[f"{settings.STATIC_URL}js/chat/{module.name}"] = static(f"js/chat/{module.name}")
    text = json.dumps({"imports": imports}, indent=1)
    # Same escaping as json_script: the JSON sits inside a <script> element.
    return mark_safe(text.translate({ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}))  # noqa: S308 - escaped above


@login_required
def home(request: HttpRequest, conversation_id=None) -> HttpResponse:
    """The chat page; /c/<id> opens one of the user's conversations (404 for anyone else's)."""
    if conversation_id is not None:
        try:
            get_conversation_for_user(request.user, conversation_id)
        except NotFound:
            return error_pages.error_page(request, 404, error_pages.CHAT_NOT_FOUND)
    boot = {
        "conversation": str(conversation_id) if conversation_id else None,
        "models": model_menu.menu_for(request.user),
        "user": {"username": request.user.get_username(), "is_staff": request.user.is_staff},
        "site_name": settings.CHAT_SITE_NAME,
        "csrf_token": get_token(request),
        "urls": {
            "socket": "/ws/chat/",
            "conversations": reverse("api-conversations"),
            "search": reverse("api-search"),
            "login": reverse("login"),
            "home": reverse("home"),
        },
        "uploads": {  # images in prompts: POST one file per request, then send their ids with the turn
            "url": reverse("uploads"),
            "max_images": settings.CHAT_MAX_IMAGES_PER_TURN,
            "max_bytes": settings.CHAT_MAX_IMAGE_BYTES,
        },
    }
    return render(request, "conversations/home.html", {"boot": boot, "import_map": import_map()})
