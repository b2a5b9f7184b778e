from django.conf import settings


def site(request) -> dict:
    """Values every page template needs."""
    return {"site_name": settings.CHAT_SITE_NAME, "signup_mode": settings.CHAT_SIGNUP}
