"""The page for the supply team in a real browser (issue 19): live alerts, approving by
clicking, what an auditor sees and may do, the stock point's chart, and /docs with no way out."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from e2e import ui_world
from e2e.support import KEYS, SITE, Service, iso, now, post_events, statuses
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import full_page

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from ui_world.serving(tmp_path_factory, "ui-browser")


def sign_in(browser: webdriver.Chrome, svc: Service, key: str, then: str = "/ui/alerts") -> None:
    browser.delete_all_cookies()
    browser.get(f"{svc.base}/ui/sign-in?next={then}")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # (the sign-in page's own address holds ``then`` in its query: wait for the page itself)
    WebDriverWait(browser, 10).until(lambda b: urlsplit(b.current_url).path == then.split("?")[0])
    WebDriverWait(browser, 10).until(lambda b: b.execute_script("return document.readyState") == "complete")


def wait(browser: webdriver.Chrome, seconds: float = 10) -> WebDriverWait:
    return WebDriverWait(browser, seconds, poll_frequency=0.05)


def test_docs_list_the_operations_with_no_way_out(svc: Service, browser: webdriver.Chrome, shots: Path):
    browser.get(f"{svc.base}/docs")
    ops = wait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock") or None)
    assert len(ops) >= 30
    assert "/v1/events" in browser.page_source
    full_page(browser, shots / "docs.png")


def test_a_scan_posted_through_the_api_appears_on_an_open_alerts_page_within_two_seconds(
        svc: Service, browser: webdriver.Chrome, shots: Path):
    t = now()
    with svc.client("admin") as admin:  # a second recalled lot, on the shelf
        assert statuses(post_events(admin, [
            {"event_id": "ui-b-rcv", "type": "receipt", "occurred_at": iso(t - timedelta(hours=2)), "site": SITE,
             "location": ui_world.WARD, "sku": ui_world.OTHER, "lot": "L-UI-LIVE", "quantity": 5},
            {"event_id": "ui-b-recall", "type": "recall_issued", "occurred_at": iso(t - timedelta(hours=1)),
             "sku": ui_world.OTHER, "lots": ["L-UI-LIVE"], "reference": "FSCA-UI-LIVE", "recall_class": "I"}])) \
            == ["accepted", "accepted"]
    sign_in(browser, svc, KEYS["buyer"])
    rows = browser.find_element(By.ID, "alert-rows")
    wait(browser).until(lambda b: rows.get_attribute("data-connected") == "true")

    def scanned_rows(b: webdriver.Chrome) -> int:  # (the recall raised its own alert about the lot)
        # One read of the table as it is (the live update replaces its rows: no element handles).
        return b.execute_script("""return Array.from(document.querySelectorAll('#alert-rows tr')).filter(
            tr => tr.textContent.includes('recalled lot scanned') && tr.textContent.includes('L-UI-LIVE')).length""")

    assert scanned_rows(browser) == 0
    with svc.client("scanner") as scanner:
        result = post_events(scanner, [{"event_id": "ui-b-scan", "type": "usage", "occurred_at": iso(now()),
                                        "site": SITE, "location": ui_world.WARD, "sku": ui_world.OTHER,
                                        "lot": "L-UI-LIVE", "quantity": 1}])
    answered = time.monotonic()
    assert statuses(result) == ["rejected"]  # a recalled lot: refused, and an alert
    wait(browser, 5).until(lambda b: scanned_rows(b) == 1)
    shown_after = time.monotonic() - answered
    assert shown_after < 2.0, shown_after
    full_page(browser, shots / "alerts.png")


def test_a_buyer_approves_by_clicking_and_the_second_approver_rule_is_kept(
        svc: Service, browser: webdriver.Chrome, shots: Path):
    sign_in(browser, svc, KEYS["buyer"], "/ui/approvals")
    full_page(browser, shots / "approvals.png")
    with svc.client("buyer") as buyer:
        waiting = {r["lines"][0]["sku"]: r for r in buyer.get("/v1/requisitions", params={"status": "pending_approval"})
                   .json()["requisitions"]}
    big = waiting[ui_world.SKU]  # over the second-approval limit
    card = browser.find_element(By.CSS_SELECTOR, f'article[data-requisition="{big["id"]}"]')
    assert "Needs 2 approvals" in card.text
    card.find_element(By.CSS_SELECTOR, "form[action$='/approve'] input[name=reason]").send_keys("checked the contract")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".flash.ok")))
    assert "second approver" in flash.text
    # The same buyer again: refused (409 on the API), shown as an error, nothing ordered.
    card = browser.find_element(By.CSS_SELECTOR, f'article[data-requisition="{big["id"]}"]')
    assert "You approved it" in card.text
    card.find_element(By.CSS_SELECTOR, "form[action$='/approve'] input[name=reason]").send_keys("again")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    assert wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".flash.err")))
    # Another buyer completes it: the purchase order is issued and shown.
    sign_in(browser, svc, ui_world.BUYER2_KEY, "/ui/approvals")
    card = browser.find_element(By.CSS_SELECTOR, f'article[data-requisition="{big["id"]}"]')
    card.find_element(By.CSS_SELECTOR, "form[action$='/approve'] input[name=reason]").send_keys("second look: fine")
    card.find_element(By.CSS_SELECTOR, "button.approve").click()
    flash = wait(browser).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".flash.ok")))
    assert "purchase order" in flash.text
    with svc.client("buyer") as buyer:
        req = buyer.get(f"/v1/requisitions/{big['id']}").json()
    assert req["status"] == "ordered" and req["po_id"] and req["po_id"] in flash.text
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-requisition="{big["id"]}"]')
    assert req["po_id"] in row.text and "e2e-buyer-2" in row.text


def test_an_auditor_sees_no_approve_button_and_a_forged_post_is_refused(svc: Service, browser: webdriver.Chrome):
    sign_in(browser, svc, KEYS["auditor"], "/ui/approvals")
    assert browser.find_elements(By.CSS_SELECTOR, "article.req"), "a requisition waits"
    assert not browser.find_elements(By.CSS_SELECTOR, "button.approve, button.reject")
    with svc.client("buyer") as buyer:
        pending = next(r for r in buyer.get("/v1/requisitions", params={"status": "pending_approval"})
                       .json()["requisitions"])
    # A form the page never showed, posted from the auditor's signed-in browser.
    status = browser.execute_async_script(
        """const done = arguments[arguments.length - 1];
           fetch(arguments[0], {method: "POST", credentials: "same-origin",
                 headers: {"Content-Type": "application/x-www-form-urlencoded"},
                 body: "reason=forged&csrf=guess"}).then(r => done(r.status));""",
        f"/ui/requisitions/{pending['id']}/approve")
    assert status == 403
    # And with the auditor's own valid token (read from the sign-out form): still refused.
    token = browser.find_element(By.CSS_SELECTOR, "form.who input[name=csrf]").get_attribute("value")
    cookie = browser.get_cookie("replenish_session")["value"]
    with httpx.Client(base_url=svc.base, cookies={"replenish_session": cookie}, timeout=30) as c:
        r = c.post(f"/ui/requisitions/{pending['id']}/approve", data={"reason": "forged", "csrf": token})
    assert r.status_code == 403
    with svc.client("buyer") as buyer:
        assert buyer.get(f"/v1/requisitions/{pending['id']}").json()["status"] == "pending_approval"


def test_the_stock_points_chart_shows_the_reorder_point_rising_after_a_burst(
        svc: Service, browser: webdriver.Chrome, shots: Path):
    sign_in(browser, svc, KEYS["buyer"], "/ui/stock-points")
    full_page(browser, shots / "stock_points.png")
    page = f"/ui/stock-points/{ui_world.SKU}/{ui_world.WARD}"
    browser.get(svc.base + page)
    line = browser.find_element(By.CSS_SELECTOR, 'polyline[data-series="reorder_point"]')
    before = float(line.get_attribute("data-last"))
    points_before = len(line.get_attribute("points").split())
    # A delivery, then a burst: 40 single uses within the hour (ten times the ward's usual day).
    t = now()
    with svc.client("scanner") as scanner:
        assert statuses(post_events(scanner, [
            {"event_id": "ui-burst-rcv", "type": "receipt", "occurred_at": iso(t - timedelta(minutes=90)),
             "site": SITE, "location": ui_world.WARD, "sku": ui_world.SKU, "lot": "L-UI-1", "quantity": 100}])) \
            == ["accepted"]
        assert set(statuses(post_events(scanner, [
            {"event_id": f"ui-burst-{k}", "type": "usage", "occurred_at": iso(t - timedelta(minutes=60 - k)),
             "site": SITE, "location": ui_world.WARD, "sku": ui_world.SKU, "lot": "L-UI-1", "quantity": 1}
            for k in range(40)]))) == {"accepted"}
    browser.get(svc.base + page)
    line = browser.find_element(By.CSS_SELECTOR, 'polyline[data-series="reorder_point"]')
    after = float(line.get_attribute("data-last"))
    assert after > before, (before, after)
    assert len(line.get_attribute("points").split()) > points_before
    with svc.client("buyer") as buyer:
        assert buyer.get(f"/v1/stock-points/{ui_world.SKU}/{ui_world.WARD}").json()["reorder_point"] == after
    decisions = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=h-decisions]").text
    assert "spike" in decisions  # why it moved
    full_page(browser, shots / "stock_point.png")


def test_recalls_and_kpis_render_and_the_page_fits_a_tablet(svc: Service, browser: webdriver.Chrome, shots: Path):
    sign_in(browser, svc, KEYS["auditor"], "/ui/recalls")
    assert "FSCA-UI-1" in browser.find_element(By.TAG_NAME, "main").text
    full_page(browser, shots / "recalls.png")
    browser.get(svc.base + "/ui/kpis")
    tiles = browser.find_elements(By.CSS_SELECTOR, "a.tile")
    assert len(tiles) == 5
    full_page(browser, shots / "kpis.png")
    browser.set_window_size(800, 1100)  # a tablet's width: nothing wider than the window
    for path in ("/ui/alerts", "/ui/approvals", f"/ui/stock-points/{ui_world.SKU}/{ui_world.WARD}"):
        browser.get(svc.base + path)
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 800 + 1, (path, width)
    browser.get(svc.base + "/ui/sign-in")
    browser.delete_all_cookies()
    browser.get(svc.base + "/ui/sign-in")
    full_page(browser, shots / "sign_in.png")
