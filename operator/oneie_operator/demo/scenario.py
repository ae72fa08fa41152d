"""``oneie-operator demo``: the whole story on one machine, with no cluster.

It starts the Kubernetes emulator with our CRDs, local servers that behave like Convex,
WordPress, Notion and Supabase, and the real operator; applies the files in ``examples/``
(pointed at the local servers); then walks through the bad inputs and what the operator does
about them, printing statuses and Events. With ``--exit`` it exits 0 only if every step went
as expected, including a scan proving that no credential reached a log line, Event or status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from oneie_operator import names as api_names
from oneie_operator.demo.dashboard import dashboard
from oneie_operator.demo.environment import LocalEnvironment, env_stop_operator, local_environment
from oneie_operator.handlers.kopfpatches.log_lines import install_demo_filters
from oneie_operator.reconcile.connections import owned_secret_name
from oneie_operator.testing.kubeapi import KubeAPI, KubeAPIError, condition, wait_for
from oneie_operator.testing.repository import EXAMPLES_DIR

NS = "tenant-acme"
BC = (api_names.API_VERSION, api_names.CONNECTION_KIND)
PROVIDERS = ("convex", "wordpress", "notion", "supabase")
#: Made for the held-deletion step and deleted by it (``acme`` and its connections stay).
HELD_CONNECTION = "held-convex"
HELD_ORGANIZATION = "held"


class Step:
    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.failures: list[str] = []
        self.count = 0

    async def check(self, title: str, action: Awaitable[str | None]) -> None:
        self.count += 1
        started = time.monotonic()
        try:
            detail = await action
        except Exception as exc:  # a failed expectation, reported and counted
            self.failures.append(f"{title}: {exc}")
            self.out(f"  ✗ {title}: {type(exc).__name__}: {exc}")
            return
        took = time.monotonic() - started
        self.out(f"  ✓ {title} ({took:.2f}s){': ' + detail if detail else ''}")


def load_yaml(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


async def wait_condition(
    env: LocalEnvironment, name: str, status: str, reason: str | None = None, timeout: float = 20.0
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        obj = await env.api.get(*BC, NS, name)
        ready = condition(obj, "Ready")
        if obj and ready.get("status") == status and (reason is None or ready.get("reason") == reason):
            return obj
        return None

    return await wait_for(probe, timeout=timeout, what=f"{name} Ready={status}{' ' + reason if reason else ''}")


async def wait_event(env: LocalEnvironment, name: str, reason: str, timeout: float = 20.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        for event in await env.api.events(NS, name):
            if event.get("reason") == reason:
                return event
        return None

    return await wait_for(probe, timeout=timeout, what=f"Event {reason} on {name}")


def ready_message(obj: Mapping[str, Any]) -> str:
    ready = condition(obj, "Ready")
    return f"{ready.get('reason')}: {ready.get('message')}"


async def apply_examples(env: LocalEnvironment, examples: Path, secrets_seen: set[str]) -> list[str]:
    await env.api.apply(load_yaml(examples / "namespace.yaml"))
    names = []
    for provider in PROVIDERS:
        secret = load_yaml(examples / provider / "secret.yaml")
        secret["stringData"] = dict(env.providers.credentials[provider])
        secrets_seen.update(secret["stringData"].values())
        connection = load_yaml(examples / provider / "backendconnection.yaml")
        connection["spec"][provider] = {**(connection["spec"].get(provider) or {}), **env.providers.settings(provider)}
        await env.api.apply(secret)
        await env.api.apply(connection)
        names.append(connection["metadata"]["name"])
    return names


def bad_connection(name: str, provider: str, block: Mapping[str, Any], secret: str) -> dict[str, Any]:
    return {
        "apiVersion": BC[0],
        "kind": BC[1],
        "metadata": {"name": name, "namespace": NS},
        "spec": {"provider": provider, provider: dict(block), "credentialsSecretRef": {"name": secret}},
    }


def secret_obj(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        # Opted in: the operator reads only Opaque Secrets labelled one.ie/credentials=true.
        "metadata": {"name": name, "namespace": NS, "labels": {api_names.CREDENTIALS_LABEL: api_names.OPTED_IN}},
        "type": "Opaque",
        "stringData": dict(data),
    }


async def leak_scan(env: LocalEnvironment, plaintexts: Iterable[str]) -> str:
    """No credential in any log line, Event, status, annotation, metric or encrypted Secret.

    Tenants' own credential Secrets and the Service Binding Secrets (whose purpose is to hand the
    credentials to the tenant's workloads) are scanned for their metadata only."""
    texts: list[tuple[str, str]] = [("log", line) for line in env.logs.lines]
    for api_version, kind in (("v1", "Event"), BC, (api_names.API_VERSION, api_names.ORGANIZATION_KIND)):
        for obj in await env.api.items(api_version, kind):
            texts.append((f"{kind} {obj['metadata'].get('name')}", json.dumps(obj)))
    for secret in await env.api.items("v1", "Secret"):
        meta = secret.get("metadata") or {}
        labels = meta.get("labels") or {}
        # A Service Binding carries credentials for workloads, by design.
        binding = api_names.ORGANIZATION_LABEL in labels
        if all(labels.get(k) == v for k, v in api_names.MANAGED_BY.items()) and not binding:
            decoded = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            texts.append((f"Secret {meta.get('name')}", json.dumps({"meta": meta, "data": decoded})))
        else:
            texts.append((f"Secret {meta.get('name')} metadata", json.dumps(meta)))
    from prometheus_client import generate_latest

    texts.append(("metrics", generate_latest(env.services.metrics.registry).decode()))
    leaks = [(where, p) for p in plaintexts if len(p) >= 8 for where, text in texts if p in text]
    if leaks:
        raise AssertionError(f"credential plaintext found in: {sorted({w for w, _ in leaks})}")
    return f"{len(texts)} logs/objects/metrics scanned, {len(set(plaintexts))} credentials, 0 found"


async def scenario(env: LocalEnvironment, out: Callable[[str], None]) -> Step:
    step = Step(out)
    plaintexts: set[str] = set()
    out("\n1. Apply examples/ (a Secret and a BackendConnection per provider), pointed at local provider servers")
    names = await apply_examples(env, EXAMPLES_DIR, plaintexts)
    for name in names:

        async def ready(name: str = name) -> str:
            obj = await wait_condition(env, name, "True")
            labels = sorted(
                k.split("/", 1)[1] for k in obj["metadata"].get("labels", {}) if k.startswith("capability.")
            )
            creds = obj["status"]["credentials"]
            return f"Ready, key {creds['keyId']}, fields {creds['fields']}, capabilities {labels}"

        await step.check(f"{name} becomes Ready with verified, encrypted credentials", ready())

    out("\n2. Bad input: each gives a clear error naming the field, an Event, and keeps the last good state")
    wrong = {**env.providers.credentials["wordpress"], "applicationPassword": "abcd efgh ijkl mnop qrst uvwx"}
    plaintexts.update(wrong.values())
    await env.api.apply(secret_obj("wrong-wordpress-credentials", wrong))
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "bad-unknown-provider",
            bad_connection("bad-unknown-provider", "oracle", {"url": "https://db.example.com"}, "x"),
            "UnknownProvider",
        ),
        (
            "bad-wrong-password",
            bad_connection(
                "bad-wrong-password", "wordpress", env.providers.settings("wordpress"), "wrong-wordpress-credentials"
            ),
            "CredentialsRejected",
        ),
        (
            "bad-missing-secret",
            bad_connection("bad-missing-secret", "convex", env.providers.settings("convex"), "no-such-secret"),
            "SecretNotFound",
        ),
        (
            "bad-metadata-address",
            bad_connection(
                "bad-metadata-address", "convex", {"url": "http://169.254.169.254"}, "acme-convex-credentials"
            ),
            "DestinationForbidden",
        ),
        (
            "bad-url",
            # The CRD already refuses what is not an http(s) URL (the API server answers 422); this
            # one passes the CRD and is refused by the provider's settings model: an API path.
            bad_connection(
                "bad-url", "supabase", {"url": "https://abcdefghijklmnopqrst.supabase.co/rest/v1"},
                "acme-supabase-credentials",
            ),
            "InvalidSpec",
        ),
    ]
    for name, obj, reason in cases:
        await env.api.apply(obj)

        async def rejected(name: str = name, reason: str = reason) -> str:
            got = await wait_condition(env, name, "False", reason)
            await wait_event(env, name, reason)
            return ready_message(got)

        await step.check(f"{name} → {reason}", rejected())

    out("\n3. Provider trouble: Notion answers 500, then recovers; the operator retries by itself")
    env.providers["notion"].fault = "500"
    notion = load_yaml(EXAMPLES_DIR / "notion" / "backendconnection.yaml")
    notion["metadata"]["name"] = "acme-notion-2"
    notion["spec"]["notion"] = env.providers.settings("notion")
    await env.api.apply(notion)
    await step.check(
        "acme-notion-2 → ProviderServerError, retrying (Reconciling=True)",
        _reason_then(env, "acme-notion-2", "ProviderServerError"),
    )
    env.providers["notion"].fault = "ok"
    await step.check("acme-notion-2 recovers to Ready without any change", _ready_msg(env, "acme-notion-2"))

    out("\n4. Credential rotation: a bad new key is refused and the last verified credentials stay in force")
    good = dict(env.providers.credentials["convex"])
    bad = {"deployKey": "dev:happy-otter-123|" + "R" * 40}
    plaintexts.update(bad.values())
    before = await env.api.get("v1", "Secret", NS, owned_secret_name("acme-convex"))
    await env.api.apply(secret_obj("acme-convex-credentials", bad))
    await step.check(
        "acme-convex → CredentialsRejected after the Secret changed (no restart)",
        _reason_then(env, "acme-convex", "CredentialsRejected"),
    )

    async def kept() -> str:
        after = await env.api.get("v1", "Secret", NS, owned_secret_name("acme-convex"))
        if (before or {}).get("data") != (after or {}).get("data"):
            raise AssertionError("the encrypted Secret changed although the new key was rejected")
        return "encrypted Secret unchanged"

    await step.check("the encrypted credentials were not replaced", kept())
    await env.api.apply(secret_obj("acme-convex-credentials", good))
    await step.check("restoring the good key makes acme-convex Ready again", _ready_msg(env, "acme-convex"))

    out("\n5. Tampering: someone edits the operator's encrypted Secret")
    owned = await env.api.get("v1", "Secret", NS, owned_secret_name("acme-notion"))
    assert owned is not None
    token = base64.b64decode(owned["data"]["token"]).decode()
    forged = token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")
    await env.api.patch(
        "v1",
        "Secret",
        NS,
        owned_secret_name("acme-notion"),
        {"data": {"token": base64.b64encode(forged.encode()).decode()}},
    )
    await step.check(
        "DecryptionFailed is reported as a Warning Event", _event_msg(env, "acme-notion", "DecryptionFailed")
    )

    async def healed() -> str:
        async def probe() -> str | None:
            now = await env.api.get("v1", "Secret", NS, owned_secret_name("acme-notion"))
            value = base64.b64decode((now or {}).get("data", {}).get("token", "")).decode()
            return "re-verified and re-encrypted" if value and value != forged else None

        return await wait_for(probe, timeout=20, what="re-encryption")

    await step.check("the operator re-encrypts from the source Secret", healed())

    out("\n6. The tenant's organization: a timed switch, an explicit rollback, a failed switch")
    org_file = load_yaml(EXAMPLES_DIR / "organization.yaml")
    org_name = org_file["metadata"]["name"]
    await env.api.apply(org_file)
    await step.check(f"{org_name} is served by acme-convex", _org_settled(env, org_name, "acme-convex", "Succeeded"))
    await _patch_org(env, org_name, "acme-supabase")
    await step.check(
        f"{org_name} switches to acme-supabase (kubectl apply / GitOps commit)",
        _org_settled(env, org_name, "acme-supabase", "Succeeded"),
    )
    await _patch_org(env, org_name, "acme-convex", rollback=True)
    await step.check(
        "kubectl oneie rollback: back to acme-convex", _org_settled(env, org_name, "acme-convex", "Succeeded")
    )
    env.providers["wordpress"].fault, env.providers["wordpress"].fault_path = "500", "/wp-json/?"
    await _patch_org(env, org_name, "acme-wordpress")
    await step.check(
        "a switch whose health gate fails rolls back by itself (acme-convex stays)",
        _org_settled(env, org_name, "acme-convex", "RolledBack"),
    )
    env.providers["wordpress"].fault, env.providers["wordpress"].fault_path = "ok", None
    await _patch_org(env, org_name, "acme-convex")

    out("\n7. A connection in use cannot be deleted out from under its organization")
    # On objects made for the purpose: `acme` and its connections stay, as the README shows them.
    held = load_yaml(EXAMPLES_DIR / "convex" / "backendconnection.yaml")
    held["metadata"]["name"] = HELD_CONNECTION
    held["spec"]["convex"] = {**(held["spec"].get("convex") or {}), **env.providers.settings("convex")}
    await env.api.apply(held)
    await step.check(f"{HELD_CONNECTION} becomes Ready", _ready_msg(env, HELD_CONNECTION))
    held_org = load_yaml(EXAMPLES_DIR / "organization.yaml")
    held_org["metadata"]["name"] = HELD_ORGANIZATION
    held_org["spec"]["backend"]["connectionRef"]["name"] = HELD_CONNECTION
    await env.api.apply(held_org)
    await step.check(
        f"{HELD_ORGANIZATION} is served by {HELD_CONNECTION}",
        _org_settled(env, HELD_ORGANIZATION, HELD_CONNECTION, "Succeeded"),
    )
    await env.api.delete(*BC, NS, HELD_CONNECTION)
    await step.check(
        f"deleting {HELD_CONNECTION} is held (DeletionBlocked)",
        _event_msg(env, HELD_CONNECTION, "DeletionBlocked"),
    )
    await env.api.delete(api_names.API_VERSION, api_names.ORGANIZATION_KIND, NS, HELD_ORGANIZATION)

    async def gone() -> str:
        await wait_for(lambda: _absent(env, *BC, HELD_CONNECTION), timeout=60, what=f"{HELD_CONNECTION} deleted")
        await wait_for(
            lambda: _absent(env, "v1", "Secret", owned_secret_name(HELD_CONNECTION)),
            timeout=10,
            what="encrypted Secret garbage-collected",
        )
        return "connection deleted, encrypted Secret garbage-collected"

    await step.check(f"once {HELD_ORGANIZATION} is gone, the deletion completes", gone())
    await step.check(
        f"{org_name} is still served by acme-convex (README: kubectl wait ... bconn/acme-convex org/{org_name})",
        _org_ready(env, org_name, "acme-convex"),
    )

    out("\n8. Secrets never leak")
    plaintexts.update(v for creds in env.providers.credentials.values() for v in creds.values())
    await step.check("no credential in logs, Events, statuses, annotations or metrics", leak_scan(env, plaintexts))
    return step


async def _patch_org(env: LocalEnvironment, name: str, connection: str, *, rollback: bool = False) -> None:
    patch: dict[str, Any] = {"spec": {"backend": {"connectionRef": {"name": connection}}}}
    if rollback:
        patch["metadata"] = {"annotations": {api_names.ROLLBACK_ANNOTATION: str(time.time())}}
    await env.api.patch(api_names.API_VERSION, api_names.ORGANIZATION_KIND, NS, name, patch)


async def _org_settled(env: LocalEnvironment, name: str, active: str, result: str) -> str:
    async def probe() -> dict[str, Any] | None:
        obj = await env.api.get(api_names.API_VERSION, api_names.ORGANIZATION_KIND, NS, name)
        status = (obj or {}).get("status") or {}
        last = status.get("lastSwitch") or {}
        done = (
            obj is not None
            and status.get("activeConnection") == active
            and last.get("result") == result
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and not status.get("switching")
        )
        return obj if done else None

    obj = await wait_for(probe, timeout=30, what=f"{name} on {active} ({result})")
    last = obj["status"]["lastSwitch"]
    steps = ", ".join(f"{s['name']} {s['milliseconds']:.0f} ms" for s in last["steps"] if s["result"] != "Skipped")
    extra = f" — {last['reason']}" if result != "Succeeded" else ""
    took = f"{last['totalMilliseconds']:.0f} ms"
    return f"{last['from'] or 'nothing'} → {last['to']} {last['result']} in {took} ({steps}){extra}"


async def _org_ready(env: LocalEnvironment, name: str, active: str) -> str:
    async def probe() -> dict[str, Any] | None:
        obj = await env.api.get(api_names.API_VERSION, api_names.ORGANIZATION_KIND, NS, name)
        status = (obj or {}).get("status") or {}
        ready = condition(obj, "Ready") if obj else {}
        done = (
            obj is not None
            and status.get("activeConnection") == active
            and ready.get("status") == "True"
            and status.get("observedGeneration") == obj["metadata"]["generation"]
        )
        return obj if done else None

    obj = await wait_for(probe, timeout=30, what=f"{name} Ready on {active}")
    return f"Ready on {active}: {condition(obj, 'Ready').get('message')}"


async def _reason_then(env: LocalEnvironment, name: str, reason: str) -> str:
    obj = await wait_condition(env, name, "False", reason)
    await wait_event(env, name, reason)
    return ready_message(obj)


async def _ready_msg(env: LocalEnvironment, name: str) -> str:
    return ready_message(await wait_condition(env, name, "True", timeout=30))


async def _event_msg(env: LocalEnvironment, name: str, reason: str) -> str:
    event = await wait_event(env, name, reason, timeout=40)
    return str(event.get("message"))


async def _absent(env: LocalEnvironment, api_version: str, kind: str, name: str) -> bool:
    return await env.api.get(api_version, kind, NS, name) is None


async def print_overview(env: LocalEnvironment, out: Callable[[str], None]) -> None:
    from oneie_operator.kube.tables import render_connections

    out("\nBackendConnections now:")
    out(render_connections(await env.api.items(*BC, NS)))
    out("\nEvents (oldest first):")
    for event in sorted(await env.api.events(NS), key=_event_order):
        out(
            f"  {event.get('type', ''):8} {event.get('reason', ''):22} "
            f"{(event.get('involvedObject') or {}).get('name', ''):24} {str(event.get('message', ''))[:110]}"
        )


def _event_order(event: dict[str, Any]) -> tuple[str, int]:
    """When an Event happened: its timestamp (Kopf writes microseconds), then its resourceVersion, which
    the emulator assigns in write order (a real API server's is opaque; this is the demo's own)."""
    meta = event.get("metadata") or {}
    stamp = event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp") or ""
    version = str(meta.get("resourceVersion") or "0")
    return str(stamp), int(version) if version.isdigit() else 0


async def show_access(env: LocalEnvironment, out: Callable[[str], None]) -> bool:
    """Who may do what (README): an organization user may not change a connection, its owner may."""
    if env.secure is None:
        return True
    connections = await env.api.items(*BC, NS)
    if not connections:
        return True
    name = connections[0]["metadata"]["name"]
    out("\nWho may do what (RBAC on, the chart's roles; README 'Who may do what'):")
    ok = True
    patch = {"metadata": {"annotations": {api_names.DEMO_ANNOTATION: "access-check"}}}
    for context, expected in (("org-user", 403), ("org-owner", 200), ("platform-owner", 200)):
        token = env.secure.tokens[context]
        api = KubeAPI(env.url, token=token, verify=str(env.workdir / "tls" / "emulator.crt"))
        try:
            await api.patch(*BC, NS, name, patch)
            status, message = 200, "allowed"
        except KubeAPIError as exc:
            status, message = exc.status, str(exc)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                message = f"{exc.status} {json.loads(exc.body)['message']}"
        finally:
            await api.aclose()
        ok = ok and status == expected
        out(f"  {'ok ' if status == expected else 'BAD'} {context:15} patch backendconnection {NS}/{name}: "
            f"{message[:200]}")
    return ok


#: What the demo writes into its workdir (kubeconfigs, the operator's token, the emulator's TLS
#: files): removed when it stops, so nothing points at an emulator that is gone.
WORKDIR_FILES = ("kubeconfig", "operator-kubeconfig", "operator.token", "tls")


def remove_workdir_files(workdir: Path) -> None:
    import shutil

    for name in WORKDIR_FILES:
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        workdir.rmdir()  # only if nothing else is in it


async def _main(exit_when_done: bool, workdir: Path, port: int, out: Callable[[str], None]) -> int:
    try:
        return await _run(exit_when_done, workdir, port, out)
    finally:
        remove_workdir_files(workdir)


async def _run(exit_when_done: bool, workdir: Path, port: int, out: Callable[[str], None]) -> int:
    async with local_environment(workdir, port=port, rbac=True, namespace=NS) as env:
        out(f"Kubernetes emulator at {env.url} (HTTPS, authentication and RBAC on); kubeconfig: {env.kubeconfig}")
        out("Provider servers: " + ", ".join(f"{s}={env.providers[s].base_url}" for s in PROVIDERS))
        step = await scenario(env, out)
        await print_overview(env, out)
        access_ok = await show_access(env, out)
        out(f"\n{step.count - len(step.failures)} of {step.count} steps went as expected.")
        if not exit_when_done:
            out(
                f"\nThe operator keeps running. Look around with kubectl:\n"
                f"  export KUBECONFIG={env.kubeconfig.resolve()}\n"
                f"  kubectl get bconn -A                       # the default context is a cluster admin\n"
                f"  kubectl get events -n {NS}\n"
                f"Each role of the chart has its own context (README 'Who may do what'):\n"
                f"  kubectl --context platform-owner get org -A           # every namespace, no Secrets\n"
                f"  kubectl --context org-owner -n {NS} get secrets       # their namespace, Secrets too\n"
                f"  kubectl --context org-user -n {NS} get bconn          # read only:\n"
                f"  kubectl --context org-user -n {NS} annotate bconn acme-notion note=x  # refused (403)\n"
                f"  kubectl oneie --context org-user -n {NS} probe acme-notion             # refused (403)\n"
                f"  kubectl --context org-user auth can-i --list -n {NS}"
            )
            async with dashboard(env.kubeconfig) as url:
                out(f"Dashboard (kubectl oneie dashboard, as the cluster admin): {url or 'did not start'}\n"
                    "Press Ctrl-C to stop.")
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
                await _stop_now(env)
        return 1 if step.failures or not access_ok else 0


#: On Ctrl-C, how long Kopf may finish work in progress (its default: 2 s).
STOP_GRACE_SECONDS = 0.3


async def _stop_now(env: LocalEnvironment) -> None:
    """Ctrl-C: stop the operator, giving work in progress :data:`STOP_GRACE_SECONDS`."""
    env.kopf_settings.queueing.exit_timeout = STOP_GRACE_SECONDS
    await env_stop_operator(env)


def run_demo(*, exit_when_done: bool, workdir: str, port: int = 0, verbose: bool = False) -> int:
    install_demo_filters()  # Kopf's "Unprocessed streams left" on Ctrl-C is expected here
    for noisy in ("aiohttp.access", "httpx", "kopf", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        return asyncio.run(_main(exit_when_done, Path(workdir), port, out))
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        print(f"demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
