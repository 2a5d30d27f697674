"""The page for the supply team over HTTP (issue 19): sessions, roles exactly as the API's,
CSRF, and nothing loaded from outside the service. The browser's view: tests/browser."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.deps import ACTORS, READERS

from . import ui_world
from .support import KEYS, Service

pytestmark = pytest.mark.e2e

PAGES = ("/ui/alerts", "/ui/alerts/rows", "/ui/stock-points", f"/ui/stock-points/{ui_world.SKU}/{ui_world.WARD}",
         "/ui/approvals", "/ui/recalls", "/ui/kpis", "/ui/kpis/fill_rate")
OUTSIDE = re.compile(r"""(?:https?:)?//[a-z0-9.-]+|@import|url\(\s*['"]?(?:https?:)?//""", re.I)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from ui_world.serving(tmp_path_factory, "ui")


def signed_in(svc: Service, key: str) -> tuple[httpx.Client, str]:
    """A client with a session for ``key``, and the session's CSRF token."""
    c = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)
    form = c.get("/ui/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = c.post("/ui/sign-in", data={"key": key, "csrf": token, "next": "/ui/approvals"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/approvals", r.text
    page = c.get("/ui/alerts")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    return c, csrf.group(1) if csrf else ""


def test_the_session_cookie_is_httponly_samesite_strict_and_holds_no_key(svc: Service):
    c = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)
    form = c.get("/ui/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    r = c.post("/ui/sign-in", data={"key": KEYS["buyer"], "csrf": token})
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("replenish_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert KEYS["buyer"] not in cookie
    # (Secure is set where the page is served over TLS; here it is plain HTTP on loopback.)


def test_a_wrong_key_or_a_sign_in_without_its_form_token_gets_no_session(svc: Service):
    c = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)
    form = c.get("/ui/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    wrong = c.post("/ui/sign-in", data={"key": "not-a-key", "csrf": token})
    assert wrong.status_code == 303 and wrong.headers["location"] == "/ui/sign-in"
    assert "replenish_session" not in wrong.headers.get("set-cookie", "")
    assert "unknown API key" in c.get("/ui/sign-in").text  # (shown once, from our own cookie)
    other = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)  # no form cookie
    forged = other.post("/ui/sign-in", data={"key": KEYS["admin"], "csrf": token})
    assert forged.status_code == 303 and forged.headers["location"] == "/ui/sign-in"
    assert "replenish_session" not in forged.headers.get("set-cookie", "")
    assert "the form expired" in other.get("/ui/sign-in").text
    # A link from elsewhere cannot put words on the page: messages come only from our cookie.
    assert "mail your key" not in c.get("/ui/sign-in?err=mail+your+key+to+x&msg=mail+your+key").text


def test_without_a_session_pages_go_to_sign_in_and_actions_are_refused(svc: Service):
    c = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)
    for path in PAGES:
        r = c.get(path)
        if path.endswith("/rows"):
            assert r.status_code == 401
        else:
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/sign-in?next="), path
    r = c.post("/ui/requisitions/RQ-x/approve", data={"reason": "x", "csrf": "x"})
    assert r.status_code == 401
    c.cookies.set("replenish_session", "eyJuIjoiZTJlLWFkbWluIn0.bm90LWEtc2lnbmF0dXJl")
    forged = c.get("/ui/alerts")
    assert forged.status_code == 303


@pytest.mark.parametrize("role", list(KEYS))
def test_each_role_sees_exactly_the_pages_and_actions_the_api_gives_it(svc: Service, role: str):
    c, csrf = signed_in(svc, KEYS[role])
    for path in PAGES:
        r = c.get(path)
        assert r.status_code == (200 if role in READERS else 403), (role, path, r.status_code)
    approvals = c.get("/ui/approvals").text
    has_buttons = 'class="approve"' in approvals and 'class="reject"' in approvals
    assert has_buttons == (role in ACTORS)
    # The server refuses an action whatever the page showed: a role that may not act gets 403
    # even with its own valid form token; nothing changes.
    with svc.client("admin") as admin:
        before = admin.get("/v1/requisitions").json()["requisitions"]
    waiting = next(r for r in before if r["status"] == "pending_approval")
    if role in ACTORS:  # past the gate (an unknown requisition: refused by the domain, not the role)
        r = c.post("/ui/requisitions/RQ-none/reject", data={"reason": "role check", "csrf": csrf})
        assert r.status_code == 303 and "RQ-none" in c.get(r.headers["location"]).text, r.headers
    else:
        r = c.post(f"/ui/requisitions/{waiting['id']}/reject", data={"reason": "role check", "csrf": csrf or "none"})
        assert r.status_code == 403
        with svc.client("admin") as admin:
            assert admin.get(f"/v1/requisitions/{waiting['id']}").json()["status"] == "pending_approval"


def test_a_form_posted_without_the_sessions_token_is_refused_and_changes_nothing(svc: Service):
    c, _ = signed_in(svc, KEYS["admin"])
    with svc.client("admin") as admin:
        alert = next(a for a in admin.get("/v1/alerts").json()["alerts"] if a["status"] == "open")
    for token in ("", "forged-token"):
        r = c.post(f"/ui/alerts/{alert['id']}/acknowledge", data={"reason": "forged", "csrf": token})
        assert r.status_code == 403, r.text
    with svc.client("admin") as admin:
        after = next(a for a in admin.get("/v1/alerts").json()["alerts"] if a["id"] == alert["id"])
    assert after["status"] == "open"


def test_an_alert_acknowledged_on_the_page_is_stored_with_its_reason_and_principal(svc: Service):
    c, csrf = signed_in(svc, KEYS["buyer"])
    with svc.client("admin") as admin:
        alert = next(a for a in admin.get("/v1/alerts").json()["alerts"] if a["status"] == "open")
    r = c.post(f"/ui/alerts/{alert['id']}/acknowledge",
               data={"reason": "lot pulled from the shelf", "csrf": csrf, "back": "/ui/alerts?severity=critical"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/alerts?severity=critical"
    assert f"alert {alert['id']} acknowledged" in c.get(r.headers["location"]).text
    with svc.client("admin") as admin:
        now = next(a for a in admin.get("/v1/alerts").json()["alerts"] if a["id"] == alert["id"])
    assert now["status"] == "acknowledged"
    assert now["acknowledged_by"] == "e2e-buyer"
    with svc.client("auditor") as auditor:  # the reason is stored with the change
        stream = auditor.get(f"/v1/audit/streams/sp:{now['sku']}@{now['location']}").json()
    assert any(e.get("reason") == "lot pulled from the shelf" and e.get("by") == "e2e-buyer"
               for e in stream["events"]), stream["events"][-3:]
    # A reason is needed, as on the API; and an action never sends the user to another site.
    r = c.post(f"/ui/alerts/{alert['id']}/resolve", data={"reason": " ", "csrf": csrf, "back": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/alerts"
    assert "a reason is needed" in c.get("/ui/alerts").text


def test_a_cookie_that_is_not_ours_or_a_huge_form_gets_a_clear_answer(svc: Service):
    c = httpx.Client(base_url=svc.base, follow_redirects=False, timeout=30)
    for junk in ("abc.\u00e9".encode(), b"x" * 5000, b"a.b.c", b"eyJuIjoxfQ.AAAA"):
        r = c.get("/ui/alerts", headers={"Cookie": b"replenish_session=" + junk})
        assert r.status_code == 303  # to the sign-in form, never a 500
    big = c.post("/ui/sign-in", content=b"key=" + b"x" * 100_000,
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 413


def test_a_session_ends_with_its_own_key(svc: Service, tmp_path: Path):
    """Signed in with a key that is later taken out (another key of the same principal kept):
    that session no longer opens a page after the restart."""
    from .support import Service as Svc
    keys = f"{KEYS['admin']}:admin:e2e-admin,{KEYS['buyer']}:buyer:shared,second-buyer-key-9f:buyer:shared"
    (tmp_path / "d").mkdir()
    first = Svc(tmp_path / "d", {"REPLENISH_API_KEYS": keys, "REPLENISH_UI_SESSION_SECRET": "s" * 40}).start()
    try:
        c, _ = signed_in(first, KEYS["buyer"])
        assert c.get("/ui/alerts").status_code == 200
    finally:
        first.stop()
    second = Svc(tmp_path / "d", {"REPLENISH_API_KEYS": keys.replace(f"{KEYS['buyer']}:buyer:shared,", ""),
                                  "REPLENISH_UI_SESSION_SECRET": "s" * 40}).start()
    try:
        c.base_url = httpx.URL(second.base)
        assert c.get("/ui/alerts").status_code == 303  # the key is gone: signed out
    finally:
        second.stop()


def test_no_served_html_css_or_script_references_an_outside_url(svc: Service):
    c, _ = signed_in(svc, KEYS["admin"])
    bodies = {path: c.get(path).text for path in (*PAGES, "/ui/sign-in")}
    static = Path(__file__).resolve().parents[2] / "api" / "ui" / "static"
    for f in static.iterdir():
        r = c.get(f"/ui/static/{f.name}")
        assert r.status_code == 200
        bodies[f.name] = r.text
    for name, body in bodies.items():
        found = OUTSIDE.findall(body)
        assert not found, (name, found)
    for name in PAGES:
        r = c.get(name)
        assert "default-src 'self'" in r.headers["content-security-policy"], name
        assert "<script>" not in r.text and " on" + "click=" not in r.text  # no inline script
