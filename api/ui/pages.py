"""The page for the supply team, under ``/ui/``: alerts (live), stock points (a chart of
the policy over time, the decisions and why, lots in FEFO order, open orders), approvals,
recalls and KPI tiles. Server-rendered HTML (Jinja2); one small script of ours for the live
alerts (EventSource) and printing; nothing loaded from outside the service.

Who may do what is the API's own table (``api.deps``: readers read, buyers and admins act):
each page's dependency carries its roles as the API's routes do (``api.access`` reads them),
and an action is refused on the server whatever the page showed. Sessions and CSRF tokens:
``api.ui.session``. The actions go through the same runner calls as the API's routes.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
import statistics
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from api.deps import ACTORS, READERS, engine_call
from api.keys import find
from api.routes.alerts import alert_stream, feed_end
from api.ui import chart
from api.ui.session import (
    COOKIE,
    MAX_AGE_S,
    SIGN_IN_COOKIE,
    Session,
    Sessions,
    same_token,
)
from domain.codes import ALERT_SEVERITY, ROLES
from domain.events import iso_utc
from projections import queries
from streams import traceability
from streams.procurement import ApprovalError

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)

# Every page's answer: nothing from elsewhere (no CDN, no inline script), never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 16_384
SEVERITIES = tuple(sorted(set(ALERT_SEVERITY.values())))


class NeedsSignIn(Exception):
    """No valid session: GET pages go to the sign-in form, other requests get 401."""


class Forbidden(Exception):
    def __init__(self, session: Session, roles: tuple[str, ...]) -> None:
        self.session, self.roles = session, roles


def sessions(request: Request) -> Sessions:
    return request.app.state.ui_sessions


async def current(request: Request) -> Session:
    found = sessions(request).read(request.cookies.get(COOKIE), request.app.state.principals)
    if found is None:
        raise NeedsSignIn()
    return found


def ui_require(*roles: str) -> Callable[..., Any]:
    """A page or action for ``roles`` only, as the API's ``api.deps.require``."""
    async def check(request: Request, session: Annotated[Session, Depends(current)]) -> Session:
        if session.principal.role not in roles:
            raise Forbidden(session, roles)
        if request.method == "POST":
            form = await read_form(request)
            if not same_token(form.get("csrf"), session.csrf):
                raise Forbidden(session, ())
        return session
    check.roles = frozenset(roles)  # type: ignore[attr-defined]  # (read by api.access)
    return check


Reader = Annotated[Session, Depends(ui_require(*READERS))]
Actor = Annotated[Session, Depends(ui_require(*ACTORS))]


class FormTooLarge(Exception):
    """A form body over ``MAX_FORM_BYTES`` (answered 413, read no further)."""


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each), read once per request; a body
    over ``MAX_FORM_BYTES`` is not read into memory (``FormTooLarge``)."""
    cached = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FormTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge()
    try:
        form = {k: v[0] for k, v in parse_qs(bytes(body).decode("utf-8"), keep_blank_values=True).items()}
    except UnicodeDecodeError:
        form = {}
    request.state.form = form
    return form


FLASH_COOKIE = "replenish_flash"


def with_flash(response: Response, message: str | None = None, error: str | None = None) -> Response:
    """What an action did, for the next page to show once: in a short-lived cookie of ours (a
    link from elsewhere cannot put words on the page)."""
    if message or error:
        value = base64.urlsafe_b64encode(orjson.dumps({"m": (message or "")[:300], "e": (error or "")[:300]}))
        response.set_cookie(FLASH_COOKIE, value.decode(), max_age=60, httponly=True, samesite="strict", path="/ui")
    return response


def _flash(request: Request) -> tuple[str, str]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw or len(raw) > 2000:
        return "", ""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw.encode()))
        return str(data.get("m") or ""), str(data.get("e") or "")
    except (ValueError, TypeError, AttributeError, binascii.Error):
        return "", ""


def page(request: Request, template: str, session: Session | None, status_code: int = 200,
         **context: Any) -> Response:
    message, error = _flash(request)
    context |= {"session": session, "may_act": bool(session and session.principal.role in ACTORS),
                "query": request.query_params, "path": request.url.path,
                "flash_message": message, "flash_error": error}
    response = templates.TemplateResponse(request, template, context, status_code=status_code,
                                          headers=SECURITY_HEADERS)
    if message or error:
        response.delete_cookie(FLASH_COOKIE, path="/ui")
    return response


def back(to: str, message: str | None = None, error: str | None = None) -> Response:
    """After an action, back to the page it came from (POST, then GET), with what happened."""
    base, _, query = to.partition("?")
    if not ours(base):
        base, query = "/ui/alerts", ""
    params = {k: v[0] for k, v in parse_qs(query).items()}
    response = RedirectResponse(base + ("?" + urlencode(params) if params else ""), status_code=303,
                                headers=SECURITY_HEADERS)
    return with_flash(response, message, error)


# -- sign-in ---------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return RedirectResponse("/ui/alerts", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "sign_in.html", None, token=token, next=_next(request.query_params.get("next")))
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=900, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/ui/sign-in")
    return response


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(SIGN_IN_COOKIE) or ""
    if not expected or not same_token(form.get("csrf"), expected):
        return with_flash(RedirectResponse("/ui/sign-in", status_code=303), error="the form expired; sign in again")
    key = form.get("key", "").strip()
    principal = find(request.app.state.principals, key)
    if principal is None:
        return with_flash(RedirectResponse("/ui/sign-in", status_code=303), error="unknown API key")
    value, _ = sessions(request).issue(principal, key)
    response = RedirectResponse(_next(form.get("next")), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(COOKIE, value, max_age=int(MAX_AGE_S), httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/ui")
    response.delete_cookie(SIGN_IN_COOKIE, path="/ui/sign-in")
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request, session: Annotated[Session, Depends(ui_require(*ROLES))]) -> Response:
    response = RedirectResponse("/ui/sign-in", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/ui")
    return response


def ours(target: str | None) -> bool:
    """A page of ours (never another site): where a redirect after a form may go."""
    return bool(target) and target.startswith("/ui/") and "//" not in target and "\\" not in target


def _next(target: str | None) -> str:
    """Where to go after signing in."""
    return target if target and ours(target) else "/ui/alerts"


# -- alerts ------------------------------------------------------------------------------

async def _alerts(request: Request) -> tuple[list[dict[str, Any]], dict[str, str]]:
    q = request.query_params
    shown = {k: q.get(k, "").strip() for k in ("status", "site", "location", "severity", "sku")}
    runner = request.app.state.runner
    status = shown["status"] if shown["status"] in ("open", "acknowledged", "resolved") else None
    found = await runner.read(runner.processor.alerts, status=status, sku=shown["sku"] or None,
                              location=shown["location"] or None, limit=5000)
    # By default the alerts still to work (open or acknowledged); "all" shows resolved ones too.
    rows = [a for a in found if (status or shown["status"] == "all" or a["status"] != "resolved")
            and (not shown["site"] or a.get("site") == shown["site"])
            and (not shown["severity"] or a.get("severity") == shown["severity"])][:500]
    return rows, shown


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, session: Reader) -> Response:
    rows, shown = await _alerts(request)
    return page(request, "alerts.html", session, alerts=rows, shown=shown,
                severities=SEVERITIES, statuses=("open", "acknowledged", "resolved", "all"))


@router.get("/alerts/rows", response_class=HTMLResponse)
async def alert_rows(request: Request, session: Reader) -> Response:
    rows, _ = await _alerts(request)
    return page(request, "alert_rows.html", session, alerts=rows)


@router.get("/alerts/stream")
async def alerts_stream(request: Request, session: Reader) -> StreamingResponse:
    runner = request.app.state.runner
    return alert_stream(request, runner, await feed_end(runner))


async def _alert_action(request: Request, session: Session, alert_id: str, status: str) -> Response:
    form = await read_form(request)
    reason = form.get("reason", "").strip()
    to = form.get("back", "/ui/alerts")
    if not reason:
        return back(to, error="a reason is needed")
    runner = request.app.state.runner
    alert = await runner.change_alert(alert_id, status, reason[:2000], session.principal)
    if alert is None:
        return back(to, error=f"no alert {alert_id}")
    return back(to, message=f"alert {alert_id} {status}")


@router.post("/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
async def acknowledge(request: Request, alert_id: str, session: Actor) -> Response:
    return await _alert_action(request, session, alert_id, "acknowledged")


@router.post("/alerts/{alert_id}/resolve", response_class=HTMLResponse)
async def resolve(request: Request, alert_id: str, session: Actor) -> Response:
    return await _alert_action(request, session, alert_id, "resolved")


# -- stock points --------------------------------------------------------------------------

@router.get("/stock-points", response_class=HTMLResponse)
async def stock_points_page(request: Request, session: Reader) -> Response:
    q = request.query_params
    sku, location = q.get("sku", "").strip(), q.get("location", "").strip()
    runner = request.app.state.runner
    rows = await runner.read(traceability.stock_points, runner.processor, sku or None, location or None)
    return page(request, "stock_points.html", session, rows=rows[:500], total=len(rows), sku=sku, location=location)


@router.get("/stock-points/{sku}/{location}", response_class=HTMLResponse)
async def stock_point_page(request: Request, sku: str, location: str, session: Reader) -> Response:
    runner = request.app.state.runner
    p = runner.processor
    try:
        days = min(max(int(request.query_params.get("days", "60")), 1), 3660)
    except ValueError:
        days = 60
    now = p.clock()

    def read() -> tuple[Any, Any, Any]:
        return (p.stock_point_view(sku, location),
                traceability.stock_point_series(p, sku, location, now - timedelta(days=days)),
                p.purchasing.in_transit(sku, location, now))

    view, series, orders = await runner.read(read)
    if view is None:
        return page(request, "message.html", session, status_code=404, heading="Not found",
                    text=f"no events recorded for {sku} at {location}")
    return page(request, "stock_point.html", session, view=view, orders=orders, days=days,
                chart=chart.svg(series or {}, iso_utc(now)), decisions=view["last_decisions"][:15])


# -- approvals -------------------------------------------------------------------------------

WAITING = ("pending_approval", "awaiting_second_approval")


@router.get("/approvals", response_class=HTMLResponse)
async def approvals_page(request: Request, session: Reader) -> Response:
    runner = request.app.state.runner
    purchasing = runner.processor.purchasing
    waiting = [r for s in WAITING for r in await runner.read(purchasing.requisitions, status=s)]
    done = [r for s in ("ordered", "approved", "rejected") for r in await runner.read(purchasing.requisitions, status=s)]
    done.sort(key=lambda r: max([a.get("at") or "" for a in r.get("approvals") or []]
                                + [(r.get("rejection") or {}).get("at") or "", r.get("raised_at") or ""]), reverse=True)
    return page(request, "approvals.html", session, waiting=waiting, done=done[:20])


async def _decide(request: Request, session: Session, requisition_id: str, approve: bool) -> Response:
    form = await read_form(request)
    reason = form.get("reason", "").strip()
    if not reason:
        return back("/ui/approvals", error="a reason is needed")
    runner = request.app.state.runner
    try:
        req = await runner.decide_requisition(requisition_id, approve, reason[:2000], session.principal)
    except ApprovalError as exc:
        return back("/ui/approvals", error=str(exc))
    if not approve:
        return back("/ui/approvals", message=f"{requisition_id} rejected")
    if req.get("po_id"):
        return back("/ui/approvals", message=f"{requisition_id} approved: purchase order {req['po_id']}")
    return back("/ui/approvals", message=f"{requisition_id} approved; it waits for a second approver")


@router.post("/requisitions/{requisition_id}/approve", response_class=HTMLResponse)
async def approve(request: Request, requisition_id: str, session: Actor) -> Response:
    return await _decide(request, session, requisition_id, True)


@router.post("/requisitions/{requisition_id}/reject", response_class=HTMLResponse)
async def reject(request: Request, requisition_id: str, session: Actor) -> Response:
    return await _decide(request, session, requisition_id, False)


# -- recalls ------------------------------------------------------------------------------------

@router.get("/recalls", response_class=HTMLResponse)
async def recalls_page(request: Request, session: Reader) -> Response:
    runner = request.app.state.runner
    found = await runner.read(traceability.recalls, runner.processor, "open")
    return page(request, "recalls.html", session, recalls=found)


# -- KPIs -----------------------------------------------------------------------------------------

def _ratio(num: str, den: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def f(rows: list[dict[str, Any]]) -> float | None:
        n = sum(float(r.get(num) or 0) for r in rows)
        d = sum(float(r.get(den) or 0) for r in rows)
        return n / d if d else None
    return f


def _median(col: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def f(rows: list[dict[str, Any]]) -> float | None:
        xs = [float(r[col]) for r in rows if isinstance(r.get(col), int | float) and math.isfinite(r[col])]
        return statistics.median(xs) if xs else None
    return f


def _sum(col: str) -> Callable[[list[dict[str, Any]]], float | None]:
    def f(rows: list[dict[str, Any]]) -> float | None:
        return sum(float(r.get(col) or 0) for r in rows) if rows else None
    return f


# The KPI tiles: (KPI, headline label, how the headline is made from the rows).
TILES: tuple[tuple[str, str, Callable[[list[dict[str, Any]]], float | None]], ...] = (
    ("fill_rate", "supplier fill rate (ordered quantity received)", _ratio("filled", "ordered")),
    ("days_of_supply", "days of supply (median stock point)", _median("days_of_supply")),
    ("stockout_rate", "stock-point days out of stock", _ratio("stockout_days", "stock_point_days")),
    ("expired_value", "value expired", _sum("expired_value")),
    ("supplier_scorecard", "supplier score (median)", _median("score")),
)
PERCENT = {"fill_rate", "stockout_rate"}


@router.get("/kpis", response_class=HTMLResponse)
async def kpis_page(request: Request, session: Reader) -> Response:
    client = getattr(request.app.state, "projections", None)
    tiles = []
    for name, label, headline in TILES:
        tile: dict[str, Any] = {"name": name, "label": label, "definition": queries.KPIS[name].definition}
        if client is None:
            tile["error"] = "the KPI projections are not available"
        else:
            try:
                result = await engine_call(request, queries.run, client, name, queries.make_filters())
                value = headline(result.rows)
                tile["rows"] = len(result.rows)
                tile["value"] = None if value is None else (
                    f"{value:.1%}" if name in PERCENT else f"{value:,.1f}")
            except Exception as exc:  # the tables are being rebuilt, or the engine is unwell
                tile["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        tiles.append(tile)
    return page(request, "kpis.html", session, tiles=tiles)


@router.get("/kpis/{name}", response_class=HTMLResponse)
async def kpi_page(request: Request, name: str, session: Reader) -> Response:
    client = getattr(request.app.state, "projections", None)
    if name not in queries.KPIS:
        return page(request, "message.html", session, status_code=404, heading="Not found", text=f"no KPI {name!r}")
    if client is None:
        return page(request, "message.html", session, status_code=503, heading="Not available",
                    text="the KPI projections are not available")
    try:
        result = await engine_call(request, queries.run, client, name, queries.make_filters())
    except Exception as exc:  # the tables are being rebuilt, or the engine is unwell
        return page(request, "message.html", session, status_code=503, heading="Not available",
                    text=f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    return page(request, "kpi.html", session, name=name, definition=queries.KPIS[name].definition,
                columns=result.columns, rows=result.rows[:1000], total=len(result.rows))


__all__ = ["SECURITY_HEADERS", "STATIC_DIR", "Forbidden", "FormTooLarge", "NeedsSignIn", "page", "router",
           "ui_require"]
