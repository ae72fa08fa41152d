"""The dashboard in headless Chromium (Debian's, driven by Playwright) against the emulator with
authentication and RBAC on and the real operator: every read and write is made with the
kubeconfig identity the dashboard was started with.

Screenshots of each view go to ``.artifacts/dashboard/`` at the repository root.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from dash_support import ARGS, BC, BROWSER_MARKS, CHROMIUM, NS, ORG, SHOTS, org_on, seeded_environment, shot

from oneie_operator.cli.dashboard.security import Guard
from oneie_operator.cli.dashboard.server import build_app, serve, url_of
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.demo.dashboard import dashboard
from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.testing.kubeapi import wait_for

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = BROWSER_MARKS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    connections = {"main": "convex", "next": "supabase"}
    async with seeded_environment(Path(tmp_path_factory.mktemp("dashboard")), connections) as environment:
        yield environment


class Dashboard:
    def __init__(self, url: str, bodies: list[str]) -> None:
        self.url = url
        self.bodies = bodies  # every response body the browser received


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(env: LocalEnvironment) -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        await launched.close()


async def _start(env: LocalEnvironment, context: str | None) -> tuple[Any, str]:
    assert env.secure is not None
    cluster = Cluster(str(env.secure.kubeconfig), context, NS if context else None)
    guard = Guard()
    app = build_app(cluster, guard, pinned_namespace=NS if context else None, all_namespaces=False)
    runner, port = await serve(app, guard, "127.0.0.1", 0)
    return runner, url_of("127.0.0.1", port, guard.token)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin(env: LocalEnvironment, browser: Any) -> AsyncIterator[tuple[Any, Dashboard]]:
    """The dashboard started with the kubeconfig's default context (a cluster admin)."""
    runner, url = await _start(env, None)
    page = await browser.new_page(viewport={"width": 1366, "height": 900})
    bodies: list[str] = []

    async def keep(response: Any) -> None:
        if "/api/events" not in response.url:
            try:
                bodies.append(await response.text())
            except Exception:  # redirects have no body
                pass

    page.on("response", keep)
    yield page, Dashboard(url, bodies)
    await page.close()
    await runner.cleanup()


async def test_fleet_shows_the_objects_live(env: LocalEnvironment, admin: tuple[Any, Dashboard]) -> None:
    page, dash = admin
    await page.goto(dash.url)
    assert "token=" not in page.url  # the token became a cookie and left the address bar
    expect = playwright_api.expect
    await expect(page.get_by_role("link", name="acme")).to_be_visible()
    await expect(page.get_by_role("link", name="main").first).to_be_visible()
    await expect(page.get_by_role("link", name="next")).to_be_visible()
    await expect(page.get_by_text("(all namespaces)")).to_be_visible()
    # live: an object created now appears without reloading (SSE from the watch)
    await env.api.apply({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": "later", "namespace": NS},
                         "spec": {"provider": "notion", "credentialsSecretRef": {"name": "later-creds"},
                                  "notion": env.providers.settings("notion")}})
    await expect(page.get_by_role("link", name="later")).to_be_visible(timeout=15000)
    # search filters, and the filter lives in the address (a reload keeps it)
    await page.get_by_label("Search").fill("supabase")
    await expect(page.get_by_role("link", name="later")).to_have_count(0)
    await expect(page.get_by_role("link", name="next")).to_be_visible()
    assert "q=supabase" in page.url
    await page.reload()
    await expect(page.get_by_label("Search")).to_have_value("supabase")
    await page.get_by_label("Search").fill("")
    await expect(page.get_by_role("link", name="acme")).to_be_visible()
    await expect(page.get_by_role("link", name="later")).to_be_visible()
    await shot(page, "fleet")


async def test_switch_in_the_page_shows_its_steps(env: LocalEnvironment, admin: tuple[Any, Dashboard]) -> None:
    page, dash = admin
    expect = playwright_api.expect
    await page.goto(dash.url.split("?")[0] + f"#/org/{NS}/acme")
    await expect(page.locator("#active")).to_have_text("main")
    await page.get_by_label("Switch to").select_option("next")
    await page.get_by_role("button", name="Switch", exact=True).click()
    await expect(page.locator("#confirm-text")).to_contain_text("from main to next")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#active")).to_have_text("next", timeout=30000)
    last = page.locator("#last-switch")
    await expect(last).to_contain_text("main → next: Succeeded", timeout=30000)
    for step in ("resolve", "test", "activate", "healthGate"):
        await expect(last.get_by_role("listitem").filter(has_text=step)).to_be_visible()
    await expect(page.get_by_role("listitem").filter(has_text=re.compile(r"\d+ ms"))).not_to_have_count(0)
    assert await org_on(env, "next")
    await page.reload()  # the view is in the URL
    await expect(page.locator("#active")).to_have_text("next")
    await shot(page, "organization")
    await page.screenshot(path=str(SHOTS / "readme.png"))  # the viewport only: docs/images/dashboard.png


async def test_rollback_in_the_page(env: LocalEnvironment, admin: tuple[Any, Dashboard]) -> None:
    page, dash = admin
    expect = playwright_api.expect
    await page.goto(dash.url.split("?")[0] + f"#/org/{NS}/acme")
    await expect(page.locator("#active")).to_have_text("next")
    await page.get_by_role("button", name="Roll back").click()
    await expect(page.locator("#confirm-text")).to_contain_text("back to main")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#last-switch")).to_contain_text("next → main: Succeeded", timeout=30000)
    await expect(page.locator("#active")).to_have_text("main")
    await wait_for(lambda: org_on(env, "main"), timeout=10, what="the rollback in the cluster")


async def test_a_failed_switch_shows_the_reason_and_offers_retry(env: LocalEnvironment,
                                                                 admin: tuple[Any, Dashboard]) -> None:
    """A switch to a connection that is not Ready (its Secret is missing) fails; the page shows
    the operator's reason and message, the current backend stays, and Retry becomes available."""
    page, dash = admin
    expect = playwright_api.expect
    await page.goto(dash.url.split("?")[0] + f"#/org/{NS}/acme")
    await expect(page.locator("#do-retry")).to_be_disabled()
    await expect(page.locator("#switch-to option").last).to_contain_text("not Ready")
    await page.get_by_label("Switch to").select_option("later")
    await page.get_by_role("button", name="Switch", exact=True).click()
    await page.get_by_role("button", name="Confirm").click()
    last = page.locator("#last-switch")
    await expect(last).to_contain_text("main → later: RolledBack", timeout=30000)
    await expect(last).to_contain_text("ConnectionNotReady")
    await expect(last).to_contain_text("'later' is not Ready")
    await expect(page.locator("#active")).to_have_text("main")
    await expect(page.locator("#do-retry")).to_be_enabled()
    await shot(page, "organization-failed")


async def test_connection_view_shows_the_secret_without_values(env: LocalEnvironment,
                                                              admin: tuple[Any, Dashboard]) -> None:
    page, dash = admin
    expect = playwright_api.expect
    await page.goto(dash.url.split("?")[0] + f"#/conn/{NS}/main")
    secret = page.locator("#secret")
    await expect(secret).to_contain_text("main-creds")
    for key in env.providers.credentials["convex"]:
        await expect(secret).to_contain_text(key)
    await expect(secret).to_contain_text("Labelled one.ie/credentials")
    before = await page.locator("#last-probe").text_content()
    await page.get_by_role("button", name="Probe now").click()
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#last-probe")).not_to_have_text(before or "", timeout=30000)
    await shot(page, "connection")


async def test_an_organization_user_is_refused_with_the_reason(env: LocalEnvironment, browser: Any) -> None:
    runner, url = await _start(env, "org-user")
    page = await browser.new_page(viewport={"width": 1366, "height": 900})
    try:
        expect = playwright_api.expect
        await page.goto(url)
        await expect(page.get_by_text(f"namespace {NS}", exact=False).first).to_be_visible()
        await expect(page.get_by_role("link", name="acme")).to_be_visible()
        await page.goto(url.split("?")[0] + f"#/conn/{NS}/main")
        await page.get_by_role("button", name="Probe now").click()
        await page.get_by_role("button", name="Confirm").click()
        refusal = page.locator("#outcome")
        await expect(refusal).to_contain_text("Refused", timeout=10000)
        await expect(refusal).to_contain_text('User "acme-user" cannot patch resource "backendconnections"')
        # the reads it may not make are shown as refused too, with the reason
        await expect(page.locator("#secret")).to_contain_text('cannot get resource "secrets"')
        await shot(page, "refused")
    finally:
        await page.close()
        await runner.cleanup()


async def test_nothing_sent_to_the_browser_holds_a_credential(env: LocalEnvironment,
                                                             admin: tuple[Any, Dashboard]) -> None:
    _, dash = admin
    secrets = {v for creds in env.providers.credentials.values() for v in creds.values() if len(v) >= 6}
    encoded = {base64.b64encode(v.encode()).decode() for v in secrets}
    assert dash.bodies, "the browser received responses"
    for body in dash.bodies:
        for value in secrets | encoded:
            assert value not in body
    for line in env.everything_emitted():
        for value in secrets:
            assert value not in line


async def test_the_command_prints_a_url_with_its_token(env: LocalEnvironment, browser: Any) -> None:
    """``kubectl oneie dashboard`` as a process (the way the demo starts it): the printed URL
    opens the fleet; the same address without the token is refused."""
    async with dashboard(env.kubeconfig) as url:
        assert url is not None and re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", url), url
        page = await browser.new_page()
        try:
            response = await page.goto(url.split("?")[0])
            assert response is not None and response.status == 403
            await page.goto(url)
            await playwright_api.expect(page.get_by_role("link", name="acme")).to_be_visible(timeout=15000)
        finally:
            await page.close()


async def test_a_gitops_managed_organization_warns_before_a_change(env: LocalEnvironment,
                                                                   admin: tuple[Any, Dashboard]) -> None:
    page, dash = admin
    expect = playwright_api.expect
    tracking = {"argocd.argoproj.io/tracking-id": "acme-app:one.ie/Organization:tenant-acme/acme"}
    await env.api.patch(*ORG, NS, "acme", {"metadata": {"annotations": tracking}})
    try:
        await page.goto(dash.url.split("?")[0] + f"#/org/{NS}/acme")
        await expect(page.locator("main .warning").first).to_contain_text("managed by Argo CD")
        await page.get_by_role("button", name="Roll back").click()
        await expect(page.locator("#confirm-gitops")).to_contain_text("the next sync will revert this change")
        await page.get_by_role("button", name="Cancel").click()
        obj = await env.api.get(*ORG, NS, "acme")
        assert obj is not None and obj["status"]["activeConnection"] == "main"  # cancelled: nothing changed
    finally:
        await env.api.patch(*ORG, NS, "acme", {"metadata": {"annotations": {k: None for k in tracking}}})


async def test_the_event_stream_names_objects_only(env: LocalEnvironment, admin: tuple[Any, Dashboard]) -> None:
    """The SSE stream, read raw while a Secret and a connection change, carries names and
    versions, never a credential."""
    import aiohttp

    _, dash = admin
    base = dash.url.split("/?")[0]
    secrets = {v for creds in env.providers.credentials.values() for v in creds.values() if len(v) >= 6}
    jar = aiohttp.CookieJar(unsafe=True)
    received = ""
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.get(dash.url) as response:
            assert response.status == 200
        async with session.get(f"{base}/api/events", timeout=aiohttp.ClientTimeout(total=30)) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            await env.api.patch(*BC, NS, "main", {"metadata": {"annotations": {"note": "sse"}}})
            async for line in stream.content:
                received += line.decode()
                if '"name": "main"' in received:
                    break
    assert "event: change" in received
    for value in secrets:
        assert value not in received


async def test_a_banner_when_the_api_server_is_unreachable(tmp_path: Path, browser: Any) -> None:
    from oneie_operator.testing.cluster import write_kubeconfig

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")  # nothing listens on port 9
    cluster = Cluster(str(kubeconfig), None, NS)
    guard = Guard()
    runner, port = await serve(build_app(cluster, guard, pinned_namespace=NS, all_namespaces=False), guard,
                               "127.0.0.1", 0)
    page = await browser.new_page()
    try:
        await page.goto(url_of("127.0.0.1", port, guard.token))
        banner = page.locator("#banner")
        await playwright_api.expect(banner).to_be_visible(timeout=15000)
        await playwright_api.expect(banner).to_contain_text("cannot be reached")
        await shot(page, "unreachable")
    finally:
        await page.close()
        await runner.cleanup()
