"""The page for the supply team (``/ui/``): see ``api.ui.pages``."""

from __future__ import annotations

import secrets
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from api.responses import JSON
from api.ui.pages import (
    SECURITY_HEADERS,
    STATIC_DIR,
    Forbidden,
    FormTooLarge,
    NeedsSignIn,
    page,
    router,
)
from api.ui.session import Sessions


def install(app: FastAPI, secret: bytes | None = None) -> None:
    """Serve the page on ``app``: its routes, its static files (``/ui/static``) and the answers
    to a missing session (GET: the sign-in form; otherwise 401) and a role that may not
    (403). ``secret``: the session cookies' signing key (``REPLENISH_UI_SESSION_SECRET``);
    without one, a random key per process (sessions end at a restart)."""
    app.state.ui_sessions = Sessions(secret if secret else secrets.token_bytes(32))
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    async def needs_sign_in(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.endswith("/stream") \
                and not request.url.path.endswith("/rows"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/ui/sign-in?next=" + quote(target, safe=""), status_code=303,
                                    headers=SECURITY_HEADERS)
        return JSON({"detail": "sign in first (/ui/sign-in)", "code": "unauthorized"}, status_code=401)

    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        reason = (f"the role '{exc.session.principal.role}' may not use this page "
                  f"(allowed: {', '.join(exc.roles)})") if exc.roles else \
            "the form's token does not match this session: reload the page and try again"
        return page(request, "message.html", exc.session, status_code=403, heading="Not allowed", text=reason)

    async def too_large(request: Request, exc: Exception) -> Response:
        return JSON({"detail": "the form is too large", "code": "too_large"}, status_code=413)

    app.add_exception_handler(NeedsSignIn, needs_sign_in)
    app.add_exception_handler(FormTooLarge, too_large)
    app.add_exception_handler(Forbidden, forbidden)


__all__ = ["install"]
