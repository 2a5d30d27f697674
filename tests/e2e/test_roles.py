"""Least privilege: each role gets exactly its routes (ARCHITECTURE.md, invariant 8).

The table below is the intended one (``api/deps.py``). Every route the service serves must
have an entry: the live ``/openapi.json`` and the app's own route list are compared with it,
so a new route without one fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .support import (
    GTIN_EACH,
    KEYS,
    SITE,
    SKU,
    Service,
    iso,
    now,
    post_events,
    receipt,
    setup_master,
)

pytestmark = pytest.mark.e2e

PUBLIC = "public"
SCANNER, BUYER, AUDITOR, ADMIN = "scanner", "buyer", "auditor", "admin"
ROLES = (SCANNER, BUYER, AUDITOR, ADMIN)
POSTERS = frozenset({SCANNER, BUYER, ADMIN})
SCANNERS = frozenset({SCANNER, ADMIN})
READERS = frozenset({BUYER, AUDITOR, ADMIN})
AUDITORS = frozenset({AUDITOR, ADMIN})
ACTORS = frozenset({BUYER, ADMIN})
ADMINS = frozenset({ADMIN})

# (method, path) -> the roles that may call it, or PUBLIC.
ROUTES: dict[tuple[str, str], frozenset[str] | str] = {
    ("POST", "/v1/events"): POSTERS,
    ("POST", "/v1/scans"): SCANNERS,
    # Open to every role; each sees the outcomes of its role's events (auditors and admins all):
    # tests/integration/test_profiles_ingest.py.
    ("GET", "/v1/events/{event_id}"): frozenset(ROLES),
    ("GET", "/v1/stock-points/{sku}/{location}"): READERS,
    ("GET", "/v1/alerts"): READERS,
    ("GET", "/v1/alerts/stream"): READERS,
    ("POST", "/v1/alerts/{alert_id}/acknowledge"): ACTORS,
    ("POST", "/v1/alerts/{alert_id}/resolve"): ACTORS,
    ("POST", "/v1/webhooks"): ADMINS,
    ("GET", "/v1/webhooks"): ADMINS,
    ("DELETE", "/v1/webhooks/{hook_id}"): ADMINS,
    ("GET", "/v1/audit/stock-points/{sku}/{location}/events"): AUDITORS,
    ("GET", "/v1/audit/verify"): AUDITORS,
    ("GET", "/v1/audit/streams/{stream_id}"): AUDITORS,
    ("GET", "/v1/recalls"): READERS,
    ("GET", "/v1/recalls/{reference}"): READERS,
    ("GET", "/v1/trace"): READERS,
    ("GET", "/v1/expiry"): READERS,
    ("GET", "/v1/audit/state-digest"): AUDITORS,
    ("GET", "/v1/audit/public-key"): AUDITORS,
    ("POST", "/v1/audit/checkpoints"): ADMINS,
    ("GET", "/v1/audit/checkpoints/latest"): AUDITORS,
    ("GET", "/v1/audit/proof/inclusion"): AUDITORS,
    ("GET", "/v1/audit/proof/consistency"): AUDITORS,
    ("GET", "/v1/requisitions"): READERS,
    ("GET", "/v1/requisitions/{requisition_id}"): READERS,
    ("POST", "/v1/requisitions/{requisition_id}/approve"): ACTORS,
    ("POST", "/v1/requisitions/{requisition_id}/reject"): ACTORS,
    ("GET", "/v1/purchase-orders"): READERS,
    ("GET", "/v1/in-transit"): READERS,
    ("GET", "/v1/transfer-requests"): frozenset(ROLES),  # the pick list is read where it is picked
    ("GET", "/v1/suppliers/scorecards"): READERS,
    ("GET", "/v1/kpis"): READERS,
    ("GET", "/v1/kpis/{name}"): READERS,
    ("POST", "/v1/admin/projections/rebuild"): ADMINS,
    ("POST", "/v1/admin/snapshot"): ADMINS,
    ("POST", "/v1/import/{kind}"): ADMINS,
    # FHIR R4: resources in as events are (posters; each event type's own roles within), the
    # capability statement to every key, open requisitions as SupplyRequests to readers.
    ("GET", "/fhir/r4/metadata"): frozenset(ROLES),
    ("GET", "/fhir/r4/SupplyRequest"): READERS,
    ("POST", "/fhir/r4"): POSTERS,
    ("POST", "/fhir/r4/{resource_type}"): POSTERS,
    ("POST", "/epcis/capture"): POSTERS,  # (each event type's own roles within, as FHIR)
    ("GET", "/epcis/events"): READERS,  # a lot's trace, as /v1/trace
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
}
# Documentation pages FastAPI serves outside the schema: no key, and they show no data.
DOCS: dict[tuple[str, str], str] = {
    ("GET", "/docs"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # Swagger UI's and ReDoc's own assets, served from the service (no CDN): public, as the pages.
    ("GET", "/static-offline-docs/{path}"): PUBLIC,
}
# Prometheus metrics (outside the schema): no key from REPLENISH_METRICS_ALLOW's addresses
# (loopback by default: this test's), an auditor's or admin's key from anywhere else
# (tests/e2e/test_metrics_http.py).
OPS: dict[tuple[str, str], frozenset[str] | str] = {("GET", "/metrics"): PUBLIC}
# The page for the supply team (/ui/, outside the schema): a session cookie instead of a key;
# each page and action has the API's roles for the same thing (tests/e2e/test_ui_http.py tests
# them role by role; without a session a page sends to the sign-in form).
UI: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/ui/"): PUBLIC,  # (a redirect to the alerts)
    ("GET", "/ui/sign-in"): PUBLIC,
    ("POST", "/ui/sign-in"): PUBLIC,
    ("POST", "/ui/sign-out"): frozenset(ROLES),
    ("GET", "/ui/alerts"): READERS,
    ("GET", "/ui/alerts/rows"): READERS,
    ("GET", "/ui/alerts/stream"): READERS,
    ("POST", "/ui/alerts/{alert_id}/acknowledge"): ACTORS,
    ("POST", "/ui/alerts/{alert_id}/resolve"): ACTORS,
    ("GET", "/ui/stock-points"): READERS,
    ("GET", "/ui/stock-points/{sku}/{location}"): READERS,
    ("GET", "/ui/approvals"): READERS,
    ("POST", "/ui/requisitions/{requisition_id}/approve"): ACTORS,
    ("POST", "/ui/requisitions/{requisition_id}/reject"): ACTORS,
    ("GET", "/ui/recalls"): READERS,
    ("GET", "/ui/kpis"): READERS,
    ("GET", "/ui/kpis/{name}"): READERS,
    ("GET", "/ui/static/{path}"): PUBLIC,  # the page's stylesheet and script
}
# What an allowed caller gets, when it is not 200 (the route is open to it; the answer is about
# the request: an unknown webhook id is 404, a new webhook 201).
ALLOWED_STATUS = {
    ("POST", "/v1/webhooks"): 201,
    ("DELETE", "/v1/webhooks/{hook_id}"): 404,
    ("GET", "/v1/events/{event_id}"): 404,
    ("GET", "/v1/recalls/{reference}"): 404,
    ("GET", "/v1/requisitions/{requisition_id}"): 404,
    ("POST", "/v1/requisitions/{requisition_id}/approve"): 404,
    ("POST", "/v1/requisitions/{requisition_id}/reject"): 404,
    ("POST", "/v1/import/{kind}"): 404,
    ("POST", "/fhir/r4"): 400,  # (no Bundle sent)
    ("POST", "/fhir/r4/{resource_type}"): 400,  # (no resource sent)
    ("POST", "/epcis/capture"): 400,  # (no document sent)
}
# Query strings that routes need (the fixture's stock point has lot L1).
QUERY = {("GET", "/v1/trace"): f"?sku={SKU}&lot=L1", ("GET", "/epcis/events"): f"?sku={SKU}&lot=L1", ("GET", "/v1/transfer-requests"): "?source=CS",
         ("GET", "/v1/audit/proof/inclusion"): "?notification=1&size=2",
         ("GET", "/v1/audit/proof/consistency"): "?first=1&second=2"}

CALLERS = (*ROLES, "no key", "wrong key", "wrong scheme")


def _body(method: str, path: str, n: int) -> dict[str, Any] | None:
    t = now()
    if path == "/v1/events":
        return {"event_id": f"role-use-{n}", "type": "usage", "occurred_at": iso(t), "site": SITE,
                "location": "W3", "sku": SKU, "lot": "L1", "quantity": 1}
    if path == "/v1/scans":
        return {"barcode": "]d2" + "01" + GTIN_EACH + "10L1", "location": "W3", "site": SITE,
                "event_id": f"role-scan-{n}", "occurred_at": iso(t)}
    if path.startswith("/v1/alerts/{alert_id}/") or path.startswith("/v1/requisitions/{requisition_id}/"):
        return {"reason": "role table check"}
    if path == "/v1/webhooks" and method == "POST":
        return {"url": "http://127.0.0.1:9/role-table-hook", "kinds": ["stockout"]}
    return None


def _headers(caller: str) -> dict[str, str]:
    if caller in KEYS:
        return {"Authorization": f"Bearer {KEYS[caller]}"}
    if caller == "wrong key":
        return {"Authorization": "Bearer not-a-key-of-this-service"}
    if caller == "wrong scheme":
        return {"Authorization": f"Basic {KEYS[ADMIN]}"}
    return {}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the whole table, with a stock point so reads find something, and an
    audit signing key with one checkpoint made."""
    from streams.checkpoints import new_signing_key
    data = tmp_path_factory.mktemp("roles") / "data"
    data.mkdir()
    new_signing_key(data.parent / "audit.pem")
    svc = Service(data, {"REPLENISH_AUDIT_SIGNING_KEY": str(data.parent / "audit.pem")}).start()
    try:
        clients = {role: svc.client(role) for role in KEYS}
        t = now()
        setup_master(clients, t - timedelta(days=1))
        assert post_events(clients[SCANNER], [receipt("role-r", t - timedelta(minutes=5), 1000, "L1",
                                                       (t + timedelta(days=300)).date().isoformat())])[0][
            "status"] == "accepted"
        # An alert to acknowledge and resolve: a usage of a lot never received here.
        assert post_events(clients[SCANNER], [{**_body("POST", "/v1/events", -1), "lot": "NEVER"}])[0][
            "status"] == "accepted"
        alerts = clients[BUYER].get("/v1/alerts").json()["alerts"]
        assert alerts, "the fixture needs an alert"
        svc.alert_id = alerts[0]["id"]  # type: ignore[attr-defined]
        assert clients[ADMIN].post("/v1/audit/checkpoints").status_code == 200
        for c in clients.values():
            c.close()
        yield svc
    finally:
        svc.stop()


_counter = iter(range(1_000_000))


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path"), list(ROUTES) + list(DOCS) + list(OPS))
def test_each_role_gets_exactly_its_routes(served: Service, method: str, path: str, caller: str):
    allowed = {**ROUTES, **DOCS, **OPS}[(method, path)]
    url = (path.replace("{sku}", SKU).replace("{location}", "W3")
           .replace("{alert_id}", served.alert_id).replace("{hook_id}", "no-such-hook")
           .replace("{event_id}", "no-such-event").replace("{reference}", "no-such-recall")
           .replace("{stream_id}", f"item:{SKU}").replace("{requisition_id}", "no-such-requisition").replace("{name}", "stockout_rate").replace("{kind}", "no-such-kind").replace("{resource_type}", "SupplyDelivery").replace("{path}", "swagger-ui.css")) + QUERY.get((method, path), "")  # type: ignore[attr-defined]
    request = httpx.Request(method, served.base + url, headers=_headers(caller),
                            json=_body(method, path, next(_counter)))
    with httpx.Client(timeout=30) as client:
        # Stream, so that the alert stream (Server-Sent Events, never ending) answers its status.
        r = client.send(request, stream=True)
        try:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                first = next(r.iter_bytes())
                assert first.startswith(b":"), first
            else:
                r.read()
        finally:
            r.close()
    if allowed == PUBLIC:
        assert r.status_code == 200, (caller, r.status_code, r.text)
    elif caller not in ROLES:
        assert r.status_code == 401, (caller, r.status_code, r.text)
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    elif caller not in allowed:
        assert r.status_code == 403, (caller, r.status_code, r.text)
        assert caller in r.json()["detail"]
        assert "role table" not in str(r.json())
    else:
        assert r.status_code == ALLOWED_STATUS.get((method, path), 200), (caller, r.status_code, r.text)
        if path in ("/v1/events", "/v1/scans"):
            (result,) = r.json()["results"]
            # The route is open to the role; what it may post is decided per event type.
            expected = "rejected" if caller == BUYER else "accepted"
            assert result["status"] == expected, (caller, result)
            if caller == BUYER:
                assert result["errors"][0]["code"] == "forbidden_type"


def test_every_route_in_the_live_openapi_has_a_role_table_entry(served: Service):
    spec = httpx.get(f"{served.base}/openapi.json", timeout=30).json()
    live = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert live == set(ROUTES), f"routes without a table entry: {live - set(ROUTES)}; " \
                                f"table entries with no route: {set(ROUTES) - live}"
    # The schema tells clients which routes need a key.
    for (method, path), allowed in ROUTES.items():
        op = spec["paths"][path][method.lower()]
        assert bool(op.get("security")) == (allowed != PUBLIC), (method, path, op.get("security"))


def _walk(routes: list[Any]) -> Iterator[tuple[str, set[str]]]:
    """(path, methods) of every route, through included routers (FastAPI keeps them nested)."""
    for route in routes:
        if hasattr(route, "effective_candidates"):  # an included APIRouter
            yield from _walk(route.effective_candidates())
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles):  # static files: read only
            yield route.path + "/{path}", {"GET"}
        else:
            path, methods = getattr(route, "path", None), getattr(route, "methods", None)
            assert path and methods, f"a route of a kind the role table does not know: {route!r}"
            yield path.replace(":path}", "}"), set(methods)  # as the schema spells it


def test_every_route_of_the_app_has_a_role_table_entry(tmp_path: Path):
    """Also the routes hidden from the schema (``include_in_schema=False``)."""
    from infra.settings import Settings
    from infra.wiring import build_app

    settings = Settings(data_dir=tmp_path, api_keys=SecretStr("k:admin"), case_id_key=SecretStr("x"),
                        dev=False).prepared()
    app = build_app(settings)
    served_routes = {(method, path) for path, methods in _walk(app.routes)
                     for method in methods if method != "HEAD"}
    table = set(ROUTES) | set(DOCS) | set(UI) | set(OPS)
    assert served_routes == table, f"untabled: {served_routes - table}; stale: {table - served_routes}"
    assert {(m, p) for (m, p) in served_routes if p == "/openapi.json"} == {("GET", "/openapi.json")}


def test_the_pages_roles_are_the_apis_for_the_same_thing():
    """Each /ui/ page or action names its roles as the API's route for the same thing does
    (read from the routes' own dependencies, as README's table)."""
    from api.access import route_roles
    from infra.settings import Settings
    from infra.wiring import build_app

    app = build_app(Settings(data_dir=Path("/tmp/replenish-ui-roles"), api_keys=SecretStr("k:admin"),
                             case_id_key=SecretStr("x"), dev=False).prepared())
    served = route_roles(app)
    for (method, path), allowed in UI.items():
        if path.startswith("/ui/static/"):
            continue  # (static files: not a route with dependencies)
        assert served[(method, path)] == (frozenset() if allowed == PUBLIC else allowed), (method, path)
    same = {"/ui/alerts": "/v1/alerts", "/ui/alerts/stream": "/v1/alerts/stream",
            "/ui/alerts/{alert_id}/acknowledge": "/v1/alerts/{alert_id}/acknowledge",
            "/ui/stock-points/{sku}/{location}": "/v1/stock-points/{sku}/{location}",
            "/ui/approvals": "/v1/requisitions", "/ui/recalls": "/v1/recalls", "/ui/kpis/{name}": "/v1/kpis/{name}",
            "/ui/requisitions/{requisition_id}/approve": "/v1/requisitions/{requisition_id}/approve"}
    for ui_path, api_path in same.items():
        method = "POST" if ui_path.endswith(("acknowledge", "approve")) else "GET"
        assert served[(method, ui_path)] == served[(method, api_path)], ui_path


def test_the_docs_pages_load_nothing_from_outside_the_service(served: Service):
    """A hospital network reaches no CDN: every script, style and icon of /docs and /redoc is
    the service's own, and each is served."""
    import re
    for page in ("/docs", "/redoc"):
        html = httpx.get(served.base + page, timeout=30).text
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^'"]+)['"]""", html)
        urls = [a or b for a, b in assets]
        assert urls, page
        assert [u for u in urls if re.match(r"^(https?:)?//", u)] == [], (page, urls)
        for u in urls:
            if u.startswith("/static-offline-docs/"):
                assert httpx.get(served.base + u, timeout=30).status_code == 200, u


def test_the_routes_own_dependencies_and_readme_agree_with_the_role_table(tmp_path: Path):
    """``api.access`` reads who may call what from the routes themselves: it must give this
    file's table, and README's role table must be what it renders (``replenish roles``)."""
    from api.access import PUBLIC as OPEN
    from api.access import TABLE_BEGIN, TABLE_END, roles_table, route_roles
    from infra.settings import Settings
    from infra.wiring import build_app

    settings = Settings(data_dir=tmp_path, api_keys=SecretStr("k:admin"), case_id_key=SecretStr("x"),
                        dev=False).prepared()
    app = build_app(settings)
    read = route_roles(app)
    intended = {key: (OPEN if allowed == PUBLIC else allowed) for key, allowed in ROUTES.items()}
    assert {k: v for k, v in read.items() if k in intended} == intended
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme[readme.index(TABLE_BEGIN):readme.index(TABLE_END) + len(TABLE_END)]
    assert block == roles_table(app), "README's role table is stale: paste `replenish roles` over it"
