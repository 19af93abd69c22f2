"""The case desk `/desk` in a real browser: a clerk signs in once, reviews, acknowledges and
rejects transfers, creates and revokes a viewer link, follows a case's custody timeline, prints
the transfer list to PDF, and a site admin reads holds, usage, integrity and the audit log.

Headless Chromium (Debian's `chromium`) driven by Playwright against an in-process server on a
fixed port (so the links it makes open in the same browser). Every test collects console errors
and page errors, so a Content-Security-Policy violation (an inline script or style) fails it,
and every request URL, so the token can never travel in one. Screenshots and PDFs go into the
test's output folder.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from avidence.server import tokens
from avidence.server.catalog.schema_exchange import DEFAULT_AGENCY

from support.agencies import TwoAgencies, two_agencies
from support.browser import CHROMIUM_ARGS, chromium
from support.servers import free_port
from support.tickets import upload

CASE = "GA-2026-0042"


@dataclass
class Desk:
    """Police (its own agency) sends evidence to the site's own agency, whose clerk uses the
    desk; the site admin administers storage."""

    world: TwoAgencies
    url: str
    clerk: str  # a handler of the site's own agency
    items: list[str]
    case_id: str
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def api(self) -> Any:
        return self.world.api

    async def send(self, items: list[str], note: str) -> str:
        """Police's handler sends `items` of the case to the site's agency; the transfer id."""
        police = self.world.police
        response = await self.api.client.post(
            f"/api/cases/{self.case_id}/transfers",
            json={"to": DEFAULT_AGENCY, "items": items, "note": note},
            headers=police.auth("handler"),
        )
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])

    async def get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.clerk}"}
        response = await self.api.client.get(path, headers=headers)
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture()
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async for world in two_agencies(tmp_path, port=port, public_url=url):
        _, clerk = await tokens.create(
            world.api.catalog.engine, role="handler", name="Clerk Wang", agency_id=DEFAULT_AGENCY
        )
        police_uploader = world.police.tokens["uploader"]
        items = [
            await upload(
                world.api,
                f"interview {i} ".encode() * (1000 + i),
                filename=f"interview-{i}.ts",
                case=CASE,
                item=f"interview {i}",
                token=police_uploader,
            )
            for i in (1, 2)
        ]
        found = await world.api.client.get(
            f"/api/cases?number={CASE}", headers=world.police.auth("handler")
        )
        case_id = (await found.json())["cases"][0]["id"]
        yield Desk(world, url, clerk, items, case_id)


async def open_browser(p: Any, desk: Desk, **options: Any) -> tuple[Any, Any]:
    browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
    context = await browser.new_context(
        locale="en-US", viewport=options.pop("viewport", {"width": 1280, "height": 900})
    )
    page = await context.new_page()
    page.on("console", lambda m: desk.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: desk.problems.append(str(e)))
    context.on("request", lambda r: desk.requests.append(r.url))
    return browser, page


async def sign_in(page: Any, desk: Desk, token: str, lang: str = "en") -> None:
    response = await page.goto(f"{desk.url}/desk?lang={lang}")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    await page.fill("#token", token)
    await page.click("#sign-in button[type=submit]")
    await page.wait_for_selector("#tabs a")


def assert_token_kept_out(desk: Desk, *secrets: str) -> None:
    assert desk.requests, "no request was seen"
    for secret in secrets:
        leaked = [url for url in desk.requests if secret in url]
        assert not leaked, leaked


async def test_clerk_reviews_acknowledges_and_rejects_then_prints_the_list(
    desk: Desk, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    first = await desk.send([desk.items[0]], "first hand-over")
    second = await desk.send([desk.items[1]], "second hand-over")
    record = await desk.get(f"/api/evidence/{desk.items[0]}", desk.world.police.tokens["admin"])
    async with async_playwright() as p:
        browser, page = await open_browser(p, desk)
        try:
            await sign_in(page, desk, desk.clerk)
            assert (await page.locator("#who").inner_text()).startswith("Clerk Wang · case handler")
            tabs = await page.locator("#tabs a").all_inner_texts()
            assert tabs == ["Inbox", "Cases", "Links"]  # a handler of the site: no storage admin
            card = page.locator(f"#transfer-{first}")
            await card.wait_for()
            assert await page.locator(".card.transfer.pending").count() == 2
            assert "first hand-over" in await card.inner_text()
            assert await card.locator(".items .blake3").inner_text() == record["blake3"]
            assert await card.locator(".items .sha256").inner_text() == record["sha256"]
            assert "City police" in await card.inner_text()
            await page.screenshot(path=str(tmp_path / "desk-inbox.png"), full_page=True)

            # One click opens the review in the viewer, in a new tab.
            async with page.context.expect_page() as opened:
                await card.locator("button.review").click()
            viewer = await opened.value
            await viewer.wait_for_load_state()
            assert viewer.url.startswith(f"{desk.url}/t/")
            assert "interview-1.ts" in await viewer.content()
            await viewer.close()
            assert await card.locator(".review-link a").count() == 1

            # Acknowledge: the server checks first, and the page shows what it checked.
            await card.locator("button.ack").click()
            checked = card.locator(".checked")
            await checked.wait_for()
            text = await checked.inner_text()
            assert "Acknowledged" in text and "signature" in text
            assert record["sha256"] in text and "the server" in text
            assert await card.get_attribute("class") == "card transfer acknowledged"
            await page.screenshot(path=str(tmp_path / "desk-acknowledged.png"), full_page=True)

            # Reject the other one with a reason; an empty reason is refused in the page.
            other = page.locator(f"#transfer-{second}")
            await other.locator("button.reject").click()
            await other.locator("form.reason button[type=submit]").click()
            assert (
                await other.locator(".status").inner_text() == "Say why the transfer is rejected."
            )
            await other.locator("textarea").fill("wrong case: belongs to GA-2026-0041")
            await other.locator("form.reason button[type=submit]").click()
            await other.locator(".decided").wait_for()
            assert "wrong case" in await other.locator(".decided").inner_text()

            # The printable transfer list, printed to PDF by Chromium.
            await page.goto(f"{desk.url}/desk#list/transfer/{first}")
            paper = page.locator("#paper")
            await paper.wait_for()
            row = paper.locator(f"tr[data-evidence='{desk.items[0]}']")
            assert await row.locator(".blake3").inner_text() == record["blake3"]
            assert await row.locator(".sha256").inner_text() == record["sha256"]
            assert (await row.locator(".receipt").inner_text()).startswith("rcp_")
            assert "Clerk Wang" in await row.inner_text()  # who acknowledged
            assert "City police handler" in await row.inner_text()  # who sent
            assert str(record["size"]) in await row.inner_text()
            qr = paper.locator("img.qr")
            assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
            code = (await paper.locator("#verify-code").inner_text()).replace("-", "")
            await page.emulate_media(media="print")
            await page.screenshot(path=str(tmp_path / "transfer-list-print.png"), full_page=True)
            assert await page.locator("#tabs").is_hidden()
            pdf = tmp_path / "transfer-list.pdf"
            await page.pdf(path=str(pdf), format="A4", print_background=True)
            assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 10_000
            await page.emulate_media(media="screen")

            # The QR code's page checks a printed code against the record.
            await page.goto(f"{desk.url}/desk#verify/transfer/{first}/{code}")
            await page.locator("#verdict").wait_for()
            assert await page.locator("#verdict").get_attribute("class") == "verdict ok"
            await page.goto(f"{desk.url}/desk#verify/transfer/{first}/{'0' * 20}")
            await page.wait_for_function(
                "() => document.querySelector('#verdict.bad') !== null", timeout=10_000
            )
            assert desk.problems == [], desk.problems
        finally:
            await browser.close()
    assert_token_kept_out(desk, desk.clerk)
    states = {t["id"]: t for t in (await desk.get("/api/transfers?inbox=1"))["transfers"]}
    assert states[first]["state"] == "acknowledged"
    assert states[first]["decided_by"].endswith("(Clerk Wang)")
    assert states[second]["state"] == "rejected"
    assert states[second]["reason"] == "wrong case: belongs to GA-2026-0041"


async def test_links_are_created_listed_and_revoked(desk: Desk, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    police = desk.world.police.tokens["handler"]
    async with async_playwright() as p:
        browser, page = await open_browser(p, desk)
        try:
            await sign_in(page, desk, police)
            await page.click("#tab-links")
            await page.locator("#link-form").wait_for()
            await page.select_option("#link-case", desk.case_id)
            await page.click("#link-create")
            assert await page.locator("#link-form .status").inner_text() == "Name the recipient."
            await page.fill("#link-recipient", "Judge Li, City court")
            await page.fill("#link-views", "3")
            await page.select_option("#link-expires", "30d")
            await page.check("#link-download")
            await page.click("#link-create")
            await page.locator("#issued-url").wait_for()
            url = await page.input_value("#issued-url")
            code = await page.locator("#issued-code").inner_text()
            assert url.startswith(f"{desk.url}/t/") and len(code) >= 6
            row = page.locator("tr.link-row.active")
            await row.wait_for()
            assert "Judge Li, City court" in await row.inner_text()
            assert "0 / 3" in await row.inner_text()
            await page.screenshot(path=str(tmp_path / "desk-links.png"), full_page=True)

            listed = (await desk.get("/api/tickets", police))["tickets"]
            assert len(listed) == 1
            ticket = listed[0]
            assert ticket["recipient"] == "Judge Li, City court" and ticket["max_views"] == 3
            assert ticket["permissions"] == ["view", "download"] and ticket["access_code"]
            assert sorted(ticket["evidence"]) == sorted(desk.items)

            page.once("dialog", lambda dialog: dialog.accept())
            await row.locator("button.revoke").click()
            await page.locator("tr.link-row.revoked").wait_for()
            shown = await page.locator("tr.link-row.revoked").inner_text()
            assert "revoked" in shown
            answer = await page.goto(url)
            assert answer is not None and answer.status == 410
            gone = "Failed to load resource: the server responded with a status of 410 (Gone)"
            assert desk.problems == [gone], desk.problems
        finally:
            await browser.close()
    ticket = await desk.get(f"/api/tickets/{ticket['id']}", police)
    assert ticket["state"] == "revoked"
    assert_token_kept_out(desk, police)


async def test_case_timeline_and_admin_views_print_and_fit_a_tablet(
    desk: Desk, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    transfer = await desk.send(desk.items, "the whole case")
    acked = await desk.api.client.post(
        f"/api/transfers/{transfer}/ack", json={}, headers={"Authorization": f"Bearer {desk.clerk}"}
    )
    assert acked.status == 200, await acked.text()
    admin = desk.api.admin  # the site's own admin: storage administration too
    async with async_playwright() as p:
        browser, page = await open_browser(p, desk, viewport={"width": 820, "height": 1180})
        try:
            await sign_in(page, desk, admin, lang="zh")
            assert await page.locator("#tabs a").all_inner_texts() == [
                "待接收",
                "案件",
                "查看链接",
                "存储管理",
            ]
            await page.click("#tab-cases")
            await page.locator("a.case-link").first.click()
            await page.locator(".timeline").wait_for()
            steps = await page.locator(".timeline li.step").evaluate_all(
                "items => items.map(i => i.dataset.step)"
            )
            for step in ("uploaded", "hashed", "transferred", "acknowledged"):
                assert step in steps, steps
            assert steps.index("transferred") < steps.index("acknowledged")
            handover = page.locator(".timeline li.step.handover").first
            assert "City police" in await handover.inner_text()
            for evidence_id in desk.items:
                assert await page.locator(f"#item-{evidence_id} .blake3").count() == 1
            # A tablet: the timeline fits the width, nothing scrolls sideways.
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 820, width
            await page.screenshot(path=str(tmp_path / "desk-case-tablet.png"), full_page=True)
            pdf = tmp_path / "case-timeline.pdf"
            await page.pdf(path=str(pdf), format="A4")
            assert pdf.read_bytes().startswith(b"%PDF")

            await page.click("#tab-admin")
            await page.locator("#admin-audit").wait_for()
            for part in ("holds", "retention", "usage", "integrity", "audit"):
                assert await page.locator(f"#admin-{part}").count() == 1, part
            bars = page.locator("#admin-usage figure[data-chart=by_case] rect.bar")
            assert await bars.count() >= 1
            assert await page.locator("#admin-usage figure[data-chart=by_agency]").count() == 1
            witnesses = page.locator("#admin-audit table.witnesses")
            assert "checkpoints.jsonl" in await witnesses.inner_text()
            # The suite shows: which hash chains the entries, which key signs checkpoints.
            assert "哈希链 SHA-256" in await page.locator("#admin-audit").inner_text()
            # An admin places a legal hold on the case from here.
            await page.fill("#hold-target", CASE)
            await page.fill("#hold-reason", "appeal pending")
            await page.click("#admin-holds button[type=submit]")
            await page.locator("#admin-holds table.holds").wait_for()
            await page.locator("#admin-audit").wait_for()  # the views drawn again after it
            assert CASE in await page.locator("#admin-holds table.holds").inner_text()
            await page.screenshot(path=str(tmp_path / "desk-admin.png"), full_page=True)
            assert desk.problems == [], desk.problems
        finally:
            await browser.close()
    assert_token_kept_out(desk, admin)


async def test_roles_see_their_tabs_and_a_bad_token_is_explained(
    desk: Desk, tmp_path: Path
) -> None:
    from playwright.async_api import async_playwright

    police = desk.world.police.tokens
    async with async_playwright() as p:
        browser, page = await open_browser(p, desk)
        try:
            await page.goto(f"{desk.url}/desk?lang=en")
            await page.fill("#token", "avd_not-a-token")
            await page.press("#token", "Enter")
            status = page.locator("#sign-in-status")
            await page.wait_for_function(
                "() => document.querySelector('#sign-in-status').textContent.includes('did not')"
            )
            assert "did not accept" in await status.inner_text()
            assert await page.evaluate("sessionStorage.length") == 0

            await sign_in(page, desk, police["uploader"])
            assert await page.locator("#tabs a").all_inner_texts() == ["Links"]
            # Another agency's admin administers no storage of the site.
            await page.click("#sign-out")
            await sign_in(page, desk, police["admin"])
            assert await page.locator("#tabs a").all_inner_texts() == ["Inbox", "Cases", "Links"]
            # An auditor reads but has no buttons that act.
            await page.click("#sign-out")
            await desk.send([desk.items[0]], "for the auditor to see")
            _, auditor = await tokens.create(
                desk.api.catalog.engine, role="auditor", name="Auditor", agency_id=DEFAULT_AGENCY
            )
            await sign_in(page, desk, auditor)
            await page.locator(".card.transfer.pending").wait_for()
            assert await page.locator(".card.transfer button").count() == 0
            assert await page.locator("#tabs a").all_inner_texts() == [
                "Inbox",
                "Cases",
                "Links",
                "Administration",
            ]
            # Signed in, the token survives a reload of this tab only, never in a cookie.
            await page.reload()
            await page.wait_for_selector("#tabs a")
            cookies = await page.context.cookies()
            assert all(auditor not in c["value"] for c in cookies)
            assert await page.evaluate("document.cookie") in ("", "avd_lang=en")
            await page.click("#sign-out")
            assert await page.evaluate("sessionStorage.length") == 0
            assert desk.problems == [
                "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
            ], desk.problems
        finally:
            await browser.close()
    assert_token_kept_out(desk, *police.values(), auditor)


async def test_the_token_never_appears_in_a_url_on_any_view(desk: Desk, tmp_path: Path) -> None:
    """Every view, reached by keyboard and by address, the language switch and the review
    link: no request URL, no address shown and no history entry ever holds the token."""
    from playwright.async_api import async_playwright

    transfer = await desk.send([desk.items[0]], "for every view")
    acked = await desk.api.client.post(
        f"/api/transfers/{transfer}/ack", json={}, headers={"Authorization": f"Bearer {desk.clerk}"}
    )
    assert acked.status == 200  # the site's agency now holds the case, so its admin sees it
    admin = desk.api.admin
    addresses: list[str] = []
    async with async_playwright() as p:
        browser, page = await open_browser(p, desk)
        page.on("framenavigated", lambda frame: addresses.append(frame.url))
        try:
            await sign_in(page, desk, admin)
            for view in ("cases", "links", "admin", "inbox"):
                await page.focus(f"#tab-{view}")
                await page.keyboard.press("Enter")
                await page.wait_for_function(f"() => document.body.dataset.view === '{view}'")
                addresses.append(page.url)
            for fragment in (
                f"case/{desk.case_id}",
                f"list/transfer/{transfer}",
                f"list/case/{desk.case_id}",
                f"verify/transfer/{transfer}/0000",
            ):
                await page.goto(f"{desk.url}/desk#{fragment}")
                await page.wait_for_function(
                    "() => document.querySelector('#view h2, #view .paper') !== null"
                )
                addresses.append(page.url)
            await page.click("#lang")  # the switch keeps the view, and only the view
            await page.wait_for_selector("#tabs a")
            assert page.url.endswith(f"lang=zh#verify/transfer/{transfer}/0000")
            assert desk.problems == [], desk.problems
        finally:
            await browser.close()
    assert all(admin not in address for address in addresses), addresses
    assert_token_kept_out(desk, admin)
    assert any("/api/admin/audit" in url for url in desk.requests)
