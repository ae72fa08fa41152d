"""The dashboard's "New connection" flow in headless Chromium against the emulator (RBAC on) and
the real operator: the form comes from what the cluster serves (the operator's provider catalog
ConfigMap and the BackendConnection CRD schema), "Test connection" shows the operator's verdict,
"Cancel" removes what the test created, "Save and switch" switches an organization, and what the
user typed as a credential reaches the Secret and nothing else.

Screenshots go to ``.artifacts/dashboard/``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from dash_support import ARGS, BC, BROWSER_MARKS, CHROMIUM, NS, org_on, seeded_environment, shot

from oneie_operator.cli.dashboard.security import Guard
from oneie_operator.cli.dashboard.server import build_app, serve, url_of
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.testing.kubeapi import wait_for

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = BROWSER_MARKS
SECRET = ("v1", "Secret")
CONFIGMAP = ("v1", "ConfigMap")
#: Every credential typed into the form in this module (the leak scan looks for each).
TYPED: set[str] = set()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    async with seeded_environment(Path(tmp_path_factory.mktemp("newconn")), {"main": "convex"}) as environment:
        yield environment


class Dashboard:
    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.base = url.split("/?")[0]
        self.bodies: list[str] = []  # every response body the browser received
        self.requests: list[str] = []  # every request body the browser sent (the typed secret goes here only)
        self.console: list[str] = []
        self.sse = ""  # the raw event stream, read alongside

    def view(self, fragment: str) -> str:
        return self.base + "/" + fragment


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dash(env: LocalEnvironment) -> AsyncIterator[Dashboard]:
    assert env.secure is not None
    cluster = Cluster(str(env.secure.kubeconfig), None, None)
    guard = Guard()
    runner, port = await serve(build_app(cluster, guard, pinned_namespace=None, all_namespaces=False), guard,
                               "127.0.0.1", 0)
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1366, "height": 900})
        d = Dashboard(page, url_of("127.0.0.1", port, guard.token))

        async def keep(response: Any) -> None:
            if "/api/events" not in response.url:
                with contextlib.suppress(Exception):  # redirects have no body
                    d.bodies.append(await response.text())

        page.on("response", keep)
        page.on("request", lambda request: d.requests.append(request.post_data or ""))
        page.on("console", lambda message: d.console.append(message.text))
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            async with session.get(d.url) as response:
                assert response.status == 200

            async def read_stream() -> None:
                async with session.get(f"{d.base}/api/events", timeout=aiohttp.ClientTimeout(total=None)) as stream:
                    async for line in stream.content:
                        d.sse += line.decode()

            reader = asyncio.create_task(read_stream())
            await page.goto(d.url)
            yield d
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                await reader
        await browser.close()
    await runner.cleanup()


async def _fill_provider(page: Any, env: LocalEnvironment, provider: str, name: str,
                         credentials: dict[str, str]) -> None:
    await page.get_by_label("Provider").select_option(provider)
    await page.get_by_label("Connection name").fill(name)
    for key, value in env.providers.settings(provider).items():
        await page.locator(f"#set-{key}").fill(str(value))
    for key, value in credentials.items():
        TYPED.add(value)
        field = page.locator(f"#secret-{key}")
        assert await field.get_attribute("type") == "password"  # masked
        await field.fill(value)


async def test_the_form_comes_from_the_cluster(env: LocalEnvironment, dash: Dashboard) -> None:
    """The operator published its catalog; a provider that only the operator has (added to the
    ConfigMap here, unknown to this Python process) gets its form: the catalog's keys, masked,
    and a JSON settings field since the CRD has no schema block for it."""
    catalog = await env.api.get(*CONFIGMAP, "oneie-system", "oneie-providers")
    assert catalog is not None, "the operator publishes oneie-system/oneie-providers at start-up"
    providers = json.loads(catalog["data"]["providers.json"])
    assert {p["name"] for p in providers} == {"convex", "notion", "supabase", "wordpress"}
    wordpress = next(p for p in providers if p["name"] == "wordpress")
    assert wordpress["secretFields"] == ["username", "applicationPassword"]
    assert "application password" in wordpress["secretDescriptions"]["applicationPassword"]
    providers.append({"name": "echo", "displayName": "Echo (plug-in)", "secretFields": ["apiKey"],
                      "optionalSecretFields": [], "secretDescriptions": {"apiKey": "The echo service's API key."},
                      "capabilities": []})
    await env.api.patch(*CONFIGMAP, "oneie-system", "oneie-providers",
                        {"data": {"providers.json": json.dumps(providers)}})
    page = dash.page
    expect = playwright_api.expect
    await page.goto(dash.view("#/fleet"))
    await page.locator("#new-ns").select_option(NS)
    await page.locator("#new-connection").get_by_role("button", name="New connection…").click()
    await expect(page.get_by_role("heading", name="New connection")).to_be_visible()
    await expect(page.get_by_text("CustomResourceDefinition backendconnections.one.ie")).to_be_visible()
    await page.get_by_label("Provider").select_option("wordpress")
    url = page.get_by_label("url")
    await expect(url).to_be_visible()
    await expect(page.locator("#set-url-help")).to_contain_text("WordPress")  # the CRD's description
    await expect(page.locator("#secret-applicationPassword")).to_have_attribute("type", "password")
    await expect(page.locator("#secret-applicationPassword-help")).to_contain_text("Application passwords")
    await page.get_by_label("Provider").select_option("echo")
    await expect(page.get_by_label("Settings (JSON, spec.echo)")).to_be_visible()
    await expect(page.locator("#secret-apiKey")).to_have_attribute("type", "password")
    await expect(page.locator("#secret-apiKey-help")).to_have_text("The echo service's API key.")
    await shot(page, "new-connection-form")


async def test_a_wrong_password_shows_the_providers_reason_and_cancel_removes_it(env: LocalEnvironment,
                                                                                   dash: Dashboard) -> None:
    page = dash.page
    expect = playwright_api.expect
    await page.goto(dash.view(f"#/new/{NS}"))
    creds = dict(env.providers.credentials["wordpress"])
    wrong = secrets.token_hex(12)  # well-formed (24 letters and digits, in fours) but not this user's
    creds["applicationPassword"] = " ".join(wrong[i:i + 4] for i in range(0, 24, 4))
    await _fill_provider(page, env, "wordpress", "blog-wrong", creds)
    await page.get_by_role("button", name="Test connection").click()
    verdict = page.locator("#verdict")
    await expect(verdict).to_contain_text("The test failed", timeout=30000)
    await expect(verdict).to_contain_text("CredentialsRejected: WordPress rejected the credentials")  # the provider's
    await expect(page.locator("#secret-applicationPassword")).to_have_value("")  # not kept after submit
    await expect(page.get_by_role("button", name="Save and switch")).to_be_disabled()
    secret = await env.api.get(*SECRET, NS, "blog-wrong-credentials")
    assert secret is not None and secret["metadata"]["labels"]["one.ie/credentials"] == "true"
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["applicationPassword"]).decode() == creds["applicationPassword"]
    await shot(page, "new-connection-rejected")
    await page.get_by_role("button", name="Cancel").click()
    await expect(verdict).to_contain_text("Removed: BackendConnection blog-wrong, Secret blog-wrong-credentials")
    assert await env.api.get(*SECRET, NS, "blog-wrong-credentials") is None

    async def gone() -> bool:
        return await env.api.get(*BC, NS, "blog-wrong") is None

    await wait_for(gone, timeout=30, what="the cancelled connection deleted (after the operator's finalizer)")


async def test_invalid_input_reads_as_a_sentence(env: LocalEnvironment, dash: Dashboard) -> None:
    """Rejected input is a sentence naming the field, and nothing is left behind."""
    page = dash.page
    expect = playwright_api.expect
    await page.goto(dash.view(f"#/new/{NS}"))
    await page.get_by_label("Provider").select_option("convex")
    await page.get_by_label("Connection name").fill("Not A Name")
    await page.get_by_label("url").fill("https://example.convex.cloud")
    await page.locator("#secret-deployKey").fill("x")
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.locator("#verdict")).to_contain_text("Name the connection with lower-case letters")
    # the API server's own 422 (the CRD's pattern for restPrefix), as a sentence naming the field
    await page.get_by_label("Provider").select_option("wordpress")
    await page.get_by_label("Connection name").fill("blog-invalid")
    await page.get_by_label("url").fill("https://blog.example.com")
    await page.get_by_label("restPrefix").fill("wp-json")
    await page.locator("#secret-username").fill("editor")
    await page.locator("#secret-applicationPassword").fill("abcd efgh ijkl mnop qrst uvwx")
    await page.get_by_role("button", name="Test connection").click()
    verdict = page.locator("#verdict")
    await expect(verdict).to_contain_text("The Kubernetes API server rejected the input while checking the connection "
                                          "blog-invalid: spec.wordpress.restPrefix")
    assert "{" not in (await verdict.text_content() or "")  # a sentence, not the raw API error
    await shot(page, "new-connection-invalid")
    assert await env.api.get(*SECRET, NS, "blog-invalid-credentials") is None  # nothing left behind
    assert await env.api.get(*BC, NS, "blog-invalid") is None


async def test_a_new_connection_becomes_ready_and_save_and_switch_completes(env: LocalEnvironment,
                                                                              dash: Dashboard) -> None:
    page = dash.page
    expect = playwright_api.expect
    await page.goto(dash.view(f"#/org/{NS}/acme"))
    await page.get_by_role("link", name="New connection…").click()
    await expect(page.get_by_role("heading", name="New connection")).to_be_visible()
    await _fill_provider(page, env, "supabase", "acme-supabase", dict(env.providers.credentials["supabase"]))
    await page.get_by_role("button", name="Test connection").click()
    verdict = page.locator("#verdict")
    await expect(verdict).to_contain_text("The connection works", timeout=30000)
    await shot(page, "new-connection-ready")
    await expect(page.get_by_label("Switch organization")).to_have_value("acme")
    await page.get_by_role("button", name="Save and switch").click()
    await expect(page.locator("#confirm-text")).to_contain_text("switch tenant-acme/acme from main to it")
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.locator("#outcome")).to_contain_text("Saved acme-supabase; switch requested")
    await expect(page.locator("#active")).to_have_text("acme-supabase", timeout=30000)
    last = page.locator("#last-switch")
    await expect(last).to_contain_text("main → acme-supabase: Succeeded", timeout=30000)
    await expect(last.get_by_role("listitem").filter(has_text="activate")).to_be_visible()
    await wait_for(lambda: org_on(env, "acme-supabase"), timeout=10, what="acme switched in the cluster")
    assert await env.api.get(*BC, NS, "acme-supabase") is not None  # saved: kept
    await shot(page, "new-connection-switched")


async def test_a_gitops_managed_namespace_warns_before_creating(env: LocalEnvironment, dash: Dashboard) -> None:
    """Flux manages the namespace: the form says so, and Test connection asks first with the
    plug-in's warning; cancelling that creates nothing."""
    flux = {"kustomize.toolkit.fluxcd.io/name": "tenants", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
    namespace = await env.api.get("v1", "Namespace", None, NS)
    if namespace is None:
        await env.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS, "labels": flux}})
    else:
        await env.api.patch("v1", "Namespace", None, NS, {"metadata": {"labels": flux}})
    try:
        page = dash.page
        expect = playwright_api.expect
        await page.goto(dash.view("#/fleet"))
        await page.goto(dash.view(f"#/new/{NS}"))
        await expect(page.locator("#new-gitops")).to_contain_text(f"Namespace {NS} is managed by Flux")
        await _fill_provider(page, env, "convex", "flux-convex", dict(env.providers.credentials["convex"]))
        await page.get_by_role("button", name="Test connection").click()
        await expect(page.locator("#confirm-gitops")).to_contain_text("Flux")
        await shot(page, "new-connection-gitops")
        await page.locator("#confirm").get_by_role("button", name="Cancel").click()
        assert await env.api.get(*BC, NS, "flux-convex") is None
        assert await env.api.get(*SECRET, NS, "flux-convex-credentials") is None
    finally:
        await env.api.patch("v1", "Namespace", None, NS, {"metadata": {"labels": {k: None for k in flux}}})


async def test_an_organization_owner_gets_the_form_and_a_user_is_refused(env: LocalEnvironment) -> None:
    """With a tenant's own identity (RBAC on): the owner reads the operator's catalog (the chart's
    reader Role) and the schema, so the form is complete; an organization user, who may not
    create Secrets, gets the API server's refusal as a sentence and nothing is created."""
    assert env.secure is not None
    expect = playwright_api.expect
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for context in ("org-owner", "org-user"):
                cluster = Cluster(str(env.secure.kubeconfig), context, NS)
                guard = Guard()
                runner, port = await serve(build_app(cluster, guard, pinned_namespace=NS, all_namespaces=False),
                                           guard, "127.0.0.1", 0)
                page = await browser.new_page(viewport={"width": 1366, "height": 900})
                try:
                    await page.goto(url_of("127.0.0.1", port, guard.token))
                    await page.goto(url_of("127.0.0.1", port, guard.token).split("/?")[0] + f"/#/new/{NS}")
                    await expect(page.get_by_text("the operator's provider catalog")).to_be_visible()
                    await page.get_by_label("Provider").select_option("notion")
                    await expect(page.locator("#secret-token")).to_have_attribute("type", "password")
                    if context == "org-owner":
                        await expect(page.get_by_label("databaseId")).to_be_visible()  # from the served schema
                        await shot(page, "new-connection-owner")
                        continue
                    await page.get_by_label("Connection name").fill("user-notion")
                    for key, value in env.providers.settings("notion").items():
                        await page.locator(f"#set-{key}").fill(str(value))
                    typed = "secret_" + secrets.token_hex(16)
                    TYPED.add(typed)
                    await page.locator("#secret-token").fill(typed)
                    await page.get_by_role("button", name="Test connection").click()
                    verdict = page.locator("#verdict")
                    await expect(verdict).to_contain_text("Refused by the Kubernetes API server for your identity")
                    await expect(verdict).to_contain_text('User "acme-user" cannot create resource')
                    await shot(page, "new-connection-refused")
                    assert await env.api.get(*SECRET, NS, "user-notion-credentials") is None
                    assert await env.api.get(*BC, NS, "user-notion") is None
                finally:
                    await page.close()
                    await runner.cleanup()
        finally:
            await browser.close()


async def test_typed_credentials_reach_the_secret_only(env: LocalEnvironment, dash: Dashboard) -> None:
    """What was typed went out in the form's request and into the Secret; no response, no
    event of the stream, no console line and no log line of the operator holds it."""
    assert TYPED and dash.bodies and dash.sse
    assert any(any(value in body for value in TYPED) for body in dash.requests)  # the scan can find them
    for value in TYPED:
        encoded = base64.b64encode(value.encode()).decode()
        for text in (*dash.bodies, dash.sse, *dash.console, *env.everything_emitted()):
            assert value not in text
            assert encoded not in text
