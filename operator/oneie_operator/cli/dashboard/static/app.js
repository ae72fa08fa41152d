// oneie dashboard: a vanilla ES module, no build step. Every DOM node is built with textContent
// (never innerHTML), so nothing from the cluster is ever interpreted as markup.
const main = document.getElementById("main");
const banner = document.getElementById("banner");
let csrf = "";
let renderTimer = 0;
let pending = null; // the action in progress: {ns, name, verb, target}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  const headers = { "Accept": "application/json" };
  if (options.method && options.method !== "GET") {
    headers["X-CSRF-Token"] = csrf;
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, { ...options, headers, credentials: "same-origin" });
  } catch (err) {
    showBanner("The dashboard cannot be reached: is `kubectl oneie dashboard` still running?");
    throw err;
  }
  const body = await response.json().catch(() => ({ message: `HTTP ${response.status}` }));
  if (response.status === 502 && body.unreachable) showBanner(body.message);
  return { ok: response.ok, status: response.status, body };
}

function showBanner(text) { banner.textContent = text; banner.hidden = !text; }

function route() {
  const [path, query] = (location.hash.replace(/^#/, "") || "/fleet").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || "fleet", ns: parts[1], name: parts[2], params: new URLSearchParams(query || "") };
}

function cls(value) { return String(value ?? "Unknown").replace(/[^A-Za-z]/g, "") || "Unknown"; }
function ms(value) {
  if (value === undefined || value === null || value === "") return "–";
  const n = Number(value);
  return n < 10 ? `${n.toFixed(1)} ms` : `${Math.round(n)} ms`;
}
function when(value) {
  if (!value) return "–";
  const m = String(value).match(/^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/);
  return m ? `${m[1]} ${m[2]} UTC` : String(value);
}
function pct(value) { return value === undefined || value === null ? "–" : `${(Number(value) * 100).toFixed(1)} %`; }
function orgLink(ns, name) { return el("a", { href: `#/org/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` }, name); }
function connLink(ns, name) {
  return name ? el("a", { href: `#/conn/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` }, name) : "–";
}
function failureBox(body) {
  return el("div", { class: `result ${body.refused ? "refused" : "error"}`, role: "status" },
    el("strong", {}, body.refused ? "Refused. " : "Error. "), body.message || "");
}

async function render() {
  const r = route();
  try {
    if (r.view === "org" && r.ns && r.name) await renderOrg(r);
    else if (r.view === "conn" && r.ns && r.name) await renderConn(r);
    else await renderFleet(r);
  } catch (err) { /* the banner says why */ }
}

function scheduleRender() { clearTimeout(renderTimer); renderTimer = setTimeout(render, 250); }

function replaceMain(...nodes) {
  const focused = document.activeElement && document.activeElement.id;
  const value = focused && document.activeElement.value;
  main.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
  if (focused) {
    const again = document.getElementById(focused);
    if (again) { again.focus(); if (value !== undefined && again.value !== value) again.value = value; }
  }
}

// -- fleet -----------------------------------------------------------------------------------------
async function renderFleet(r) {
  const { ok, body } = await api("/api/fleet");
  if (!ok) { replaceMain(el("h2", {}, "Fleet"), failureBox(body)); return; }
  const q = (r.params.get("q") || "").toLowerCase();
  const state = r.params.get("ready") || "";
  const match = (o) => (!q || JSON.stringify([o.namespace, o.name, o.provider, o.activeConnection || ""]).toLowerCase().includes(q))
    && (!state || o.ready === state);
  const setParam = (key, value) => {
    const params = new URLSearchParams(route().params);
    if (value) params.set(key, value); else params.delete(key);
    const next = `#/fleet${params.toString() ? "?" + params : ""}`;
    history.replaceState(null, "", next);
    scheduleRender();
  };
  const orgs = body.organizations.filter(match);
  const conns = body.connections.filter(match);
  replaceMain(
    el("h2", {}, `Fleet `, el("span", { class: "muted" }, `(${body.scope})`)),
    el("div", { class: "filters", role: "search" },
      el("label", { for: "search" }, "Search", el("input", { id: "search", type: "search", value: r.params.get("q") || "",
        placeholder: "name, namespace, provider", oninput: (e) => setParam("q", e.target.value) })),
      el("label", { for: "ready" }, "Ready",
        el("select", { id: "ready", onchange: (e) => setParam("ready", e.target.value) },
          ["", "True", "False", "Unknown"].map((v) => el("option", { value: v, selected: v === state }, v || "any"))))),
    el("h3", {}, `Organizations (${orgs.length})`),
    el("table", {}, el("caption", { class: "muted" }, "Each organization's active backend and its last switch"),
      el("thead", {}, el("tr", {}, ["Namespace", "Organization", "Provider", "Active connection", "Ready", "Healthy",
        "Last switch", "Switch took"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, orgs.map((o) => el("tr", {},
        el("td", {}, o.namespace), el("td", {}, orgLink(o.namespace, o.name)), el("td", {}, o.provider || "–"),
        el("td", {}, connLink(o.namespace, o.activeConnection)),
        el("td", { class: cls(o.ready), title: o.message }, o.ready, o.reason ? ` (${o.reason})` : ""),
        el("td", { class: cls(o.healthy) }, o.healthy),
        el("td", { class: cls(o.lastSwitch && o.lastSwitch.result) },
          o.switching ? el("span", { class: "live" }, `switching: ${o.switching.step || "…"}`)
            : o.lastSwitch ? `${o.lastSwitch.from || "(none)"} → ${o.lastSwitch.to} ${o.lastSwitch.result}` : "–"),
        el("td", {}, ms(o.lastSwitch && o.lastSwitch.totalMilliseconds)))))),
    el("h3", {}, `Connections (${conns.length})`),
    el("table", {}, el("caption", { class: "muted" }, "Backend connections, their readiness and health"),
      el("thead", {}, el("tr", {}, ["Namespace", "Connection", "Provider", "Ready", "Stalled", "Health",
        "Response time", "Error rate", "Used by"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, conns.map((c) => el("tr", {},
        el("td", {}, c.namespace), el("td", {}, connLink(c.namespace, c.name)), el("td", {}, c.provider),
        el("td", { class: cls(c.ready), title: c.message }, c.ready, c.reason ? ` (${c.reason})` : ""),
        el("td", {}, c.stalled),
        el("td", { class: cls(c.health) }, c.health), el("td", {}, ms(c.responseTimeMilliseconds)),
        el("td", {}, pct(c.errorRate)), el("td", {}, (c.usedBy || []).join(", ") || "–")))))
  );
}

// -- organization ----------------------------------------------------------------------------------
function timeline(steps, label) {
  if (!steps || !steps.length) return el("p", { class: "muted" }, "No timed steps recorded.");
  const longest = Math.max(1, ...steps.map((s) => Number(s.milliseconds) || 0));
  return el("div", { class: "timeline", role: "list", "aria-label": label }, steps.map((s) => {
    const bar = el("div", { class: `bar ${cls(s.result)}` });
    bar.style.width = `${Math.max(0.5, (100 * (Number(s.milliseconds) || 0)) / longest)}%`; // CSSOM: allowed by the CSP
    return el("div", { class: "row", role: "listitem" }, el("span", {}, s.name),
      el("div", { class: "track", "aria-hidden": "true" }, bar),
      el("span", { class: cls(s.result) }, `${ms(s.milliseconds)} ${s.result || ""}`));
  }));
}

function historyTable(history) {
  // status.history keeps each switch's total; its steps only when the operator kept them
  const longest = Math.max(1, ...history.map((h) => Number(h.totalMilliseconds) || 0));
  return el("table", { id: "history" }, el("caption", { class: "muted" },
    "Recent switches, newest first; the bar is the switch's total duration"),
    el("thead", {}, el("tr", {}, ["Finished", "From → to", "Result", "Reason", "Duration", "Steps"]
      .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, history.slice().sort((a, b) => String(b.finishedAt || b.startedAt || "")
      .localeCompare(String(a.finishedAt || a.startedAt || ""))).map((h) => {
      const bar = el("div", { class: `bar ${cls(h.result)}` });
      bar.style.width = `${Math.max(0.5, (100 * (Number(h.totalMilliseconds) || 0)) / longest)}%`;
      return el("tr", {}, el("td", {}, when(h.finishedAt || h.startedAt)),
        el("td", {}, `${h.from || "(nothing)"} → ${h.to}`), el("td", { class: cls(h.result) }, h.result || ""),
        el("td", {}, h.reason || ""),
        el("td", { class: "duration" }, el("div", { class: "track", "aria-hidden": "true" }, bar), ms(h.totalMilliseconds)),
        el("td", {}, h.steps && h.steps.length ? h.steps.map((st) => `${st.name} ${ms(st.milliseconds)}`).join(", ") : "not kept"));
    })));
}

function conditionsTable(conditions) {
  return el("table", {}, el("thead", {}, el("tr", {}, ["Condition", "Status", "Reason", "Message", "Since"]
    .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, (conditions || []).map((c) => el("tr", {}, el("td", {}, c.type),
      el("td", { class: cls(c.status) }, c.status), el("td", {}, c.reason || ""), el("td", {}, c.message || ""),
      el("td", {}, when(c.lastTransitionTime))))));
}

function eventsTable(events) {
  if (events.refused) return failureBox(events);
  if (!events.items.length) return el("p", { class: "muted" }, "No recent Events.");
  return el("table", {}, el("thead", {}, el("tr", {}, ["Time", "Type", "Reason", "Message"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, events.items.slice().reverse().map((e) => el("tr", {}, el("td", {}, when(e.time)), el("td", {}, e.type),
      el("td", {}, e.reason), el("td", {}, e.message)))));
}

async function confirmAction(text, gitops) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const warn = document.getElementById("confirm-gitops");
  warn.textContent = gitops ? `Warning: ${gitops}` : "";
  warn.hidden = !gitops;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-ok").focus();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true }));
}

let lastOutcome = null; // {key, node}: the result of the last action, kept across live re-renders

async function act(kind, ns, name, verb, body, text, gitops) {
  if (!(await confirmAction(text, gitops))) return;
  const key = `${kind}/${ns}/${name}`;
  pending = { key, verb };
  lastOutcome = { key, node: el("div", { class: "result", role: "status" }, `${verb}: requested…`) };
  scheduleRender();
  const res = await api(`/api/${kind}/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/${verb}`,
    { method: "POST", body: JSON.stringify(body || {}) });
  if (!res.ok) lastOutcome = { key, node: failureBox(res.body) };
  else {
    const warnings = (res.body.warnings || []).map((w) => el("p", { class: "warning" }, w));
    const doc = res.body.result || {};
    const summary = doc.unchanged ? "Nothing to do: already in use."
      : doc.kind === "ProbeRequested" ? "Probe requested; the health below updates when the operator has probed."
      : `${verb} requested: ${doc.from || "(nothing)"} → ${doc.to || ""}. The steps follow live below.`;
    lastOutcome = { key, node: el("div", { class: "result", role: "status" }, summary, warnings) };
  }
  pending = null;
  scheduleRender();
}

async function renderOrg(r) {
  const { ok, body } = await api(`/api/organizations/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.name)}`);
  const title = el("h2", {}, "Organization ", r.name, " ", el("span", { class: "muted" }, `in ${r.ns}`));
  if (!ok) { replaceMain(el("p", {}, el("a", { href: "#/fleet" }, "← Fleet")), title, failureBox(body)); return; }
  const s = body.summary;
  const key = `organizations/${r.ns}/${r.name}`;
  const last = body.lastSwitch;
  const switching = body.switching;
  // Ready connections first: a switch to one that is not Ready fails and keeps the current backend
  const targets = body.connections.filter((c) => c.name !== s.activeConnection)
    .sort((a, b) => Number(b.ready) - Number(a.ready) || a.name.localeCompare(b.name));
  const select = el("select", { id: "switch-to" }, targets.map((c) =>
    el("option", { value: c.name }, `${c.name} (${c.provider}${c.ready ? "" : ", not Ready"})`)));
  const failedLast = last && ["Failed", "RolledBack"].includes(last.result) && s.activeConnection !== s.desiredConnection;
  replaceMain(
    el("p", {}, el("a", { href: "#/fleet" }, "← Fleet")), title,
    body.gitops ? el("p", { class: "warning" }, body.gitops) : null,
    el("div", { class: "cols" },
      el("div", {}, el("dl", {},
        el("dt", {}, "Active connection"), el("dd", { id: "active" }, connLink(r.ns, s.activeConnection)),
        el("dt", {}, "Previous connection"), el("dd", {}, connLink(r.ns, s.previousConnection)),
        el("dt", {}, "Desired (spec)"), el("dd", {}, s.desiredConnection || "(platform default)"),
        el("dt", {}, "Provider"), el("dd", {}, s.provider || "–"),
        el("dt", {}, "Ready"), el("dd", { class: cls(s.ready) }, `${s.ready} ${s.reason ? "(" + s.reason + ")" : ""}`),
        el("dt", {}, "Healthy"), el("dd", { class: cls(s.healthy) }, `${s.healthy} ${s.healthReason ? "(" + s.healthReason + ")" : ""}`))),
      el("div", {},
        el("div", { class: "actions", role: "group", "aria-label": "Actions" },
          el("label", { for: "switch-to" }, "Switch to", select),
          el("button", { class: "primary", id: "do-switch", disabled: !targets.length || !!pending,
            onclick: () => act("organizations", r.ns, r.name, "switch", { to: select.value },
              `Switch ${r.ns}/${r.name} from ${s.activeConnection || "(nothing)"} to ${select.value}?`, body.gitops) }, "Switch"),
          el("button", { id: "do-rollback", disabled: !s.previousConnection || !!pending,
            onclick: () => act("organizations", r.ns, r.name, "rollback", {},
              `Roll ${r.ns}/${r.name} back to ${s.previousConnection}?`, body.gitops) }, "Roll back"),
          el("button", { id: "do-retry", disabled: !failedLast || !!pending,
            title: failedLast ? "" : "Retry is for a failed switch; the last one did not fail",
            onclick: () => act("organizations", r.ns, r.name, "retry", {},
              `Retry the failed switch of ${r.ns}/${r.name}?`, body.gitops) }, "Retry")),
        el("div", { id: "outcome", "aria-live": "polite" }, lastOutcome && lastOutcome.key === key ? lastOutcome.node : null))),
    el("h3", {}, "Switch in progress"),
    switching ? el("p", { class: "live", id: "switching" }, `${switching.from || "(nothing)"} → ${switching.to}: step ${switching.step || "…"}`)
      : el("p", { class: "muted", id: "switching" }, "None."),
    el("h3", {}, "Last switch"),
    last ? el("div", { id: "last-switch" },
      el("p", {}, `${last.from || "(nothing)"} → ${last.to}: `, el("strong", { class: cls(last.result) }, last.result),
        ` in ${ms(last.totalMilliseconds)}`, last.reason ? ` — ${last.reason}` : "", last.message ? `: ${last.message}` : ""),
      timeline(last.steps, "Steps of the last switch"))
      : el("p", { class: "muted", id: "last-switch" }, "No switch yet."),
    el("h3", {}, "Switch history"),
    body.history.length ? historyTable(body.history)
      : el("p", { class: "muted" }, "No history yet."),
    el("h3", {}, "Conditions"), conditionsTable(body.conditions),
    el("h3", {}, "Events"), eventsTable(body.events),
  );
}

// -- connection ------------------------------------------------------------------------------------
async function renderConn(r) {
  const { ok, body } = await api(`/api/connections/${encodeURIComponent(r.ns)}/${encodeURIComponent(r.name)}`);
  const title = el("h2", {}, "Connection ", r.name, " ", el("span", { class: "muted" }, `in ${r.ns}`));
  if (!ok) { replaceMain(el("p", {}, el("a", { href: "#/fleet" }, "← Fleet")), title, failureBox(body)); return; }
  const s = body.summary, h = body.health, sec = body.secret;
  const key = `connections/${r.ns}/${r.name}`;
  replaceMain(
    el("p", {}, el("a", { href: "#/fleet" }, "← Fleet")), title,
    el("div", { class: "cols" },
      el("div", {}, el("dl", {},
        el("dt", {}, "Provider"), el("dd", {}, s.provider),
        el("dt", {}, "Ready"), el("dd", { class: cls(s.ready) }, `${s.ready} ${s.reason ? "(" + s.reason + ")" : ""}`),
        el("dt", {}, "Health"), el("dd", { class: cls(h.status), id: "health" }, h.status || "unknown"),
        el("dt", {}, "Response time"), el("dd", {}, ms(h.responseTimeMilliseconds)),
        el("dt", {}, "Error rate"), el("dd", {}, pct(h.errorRate)),
        el("dt", {}, "Last probe"), el("dd", { id: "last-probe" }, h.lastProbeTime || "–"),
        el("dt", {}, "Capabilities"), el("dd", {}, (body.capabilities || []).join(", ") || "–"),
        el("dt", {}, "Used by"), el("dd", {}, (s.usedBy || []).map((o) => orgLink(r.ns, o))),
        el("dt", {}, "Encryption key"), el("dd", {}, (body.credentials.keyId || "–")))),
      el("div", {},
        el("div", { class: "actions", role: "group", "aria-label": "Actions" },
          el("button", { class: "primary", id: "do-probe", disabled: !!pending,
            onclick: () => act("connections", r.ns, r.name, "probe", {}, `Probe ${r.ns}/${r.name} now?`, body.gitops) }, "Probe now")),
        el("div", { id: "outcome", "aria-live": "polite" }, lastOutcome && lastOutcome.key === key ? lastOutcome.node : null),
        el("h3", {}, "Credentials Secret"),
        el("dl", { id: "secret" },
          el("dt", {}, "Name"), el("dd", {}, sec.name || "–"),
          el("dt", {}, "In place"), el("dd", { class: sec.exists ? "True" : "False" },
            sec.exists === true ? "yes" : sec.exists === false ? "no" : "unknown", sec.message ? ` — ${sec.message}` : ""),
          sec.exists ? [el("dt", {}, "Keys"), el("dd", {}, (sec.keys || []).join(", ")),
            el("dt", {}, "Labelled one.ie/credentials"), el("dd", { class: sec.labelled ? "True" : "False" }, sec.labelled ? "yes" : "no"),
            el("dt", {}, "resourceVersion"), el("dd", {}, sec.resourceVersion)] : []))),
    el("h3", {}, "Spec"), el("p", { class: "muted" }, "Settings and the Secret's name; credential values are never shown."),
    el("pre", {}, JSON.stringify(body.spec, null, 2)),
    el("h3", {}, "Conditions"), conditionsTable(body.conditions),
    el("h3", {}, "Events (health transitions and more)"), eventsTable(body.events),
  );
}

// -- start -----------------------------------------------------------------------------------------
async function start() {
  const session = await api("/api/session");
  if (!session.ok) { replaceMain(failureBox(session.body)); return; }
  csrf = session.body.csrf;
  document.getElementById("identity").textContent = `Acting with your kubeconfig identity · ${session.body.scope}`;
  window.addEventListener("hashchange", () => { lastOutcome = null; render(); });
  const events = new EventSource("/api/events");
  events.addEventListener("change", scheduleRender);
  events.addEventListener("hello", () => showBanner(""));
  events.addEventListener("reachable", () => { showBanner(""); scheduleRender(); });
  events.addEventListener("unreachable", (e) => showBanner(JSON.parse(e.data).message));
  events.addEventListener("open", () => { if (banner.textContent.startsWith("The dashboard")) showBanner(""); });
  events.onerror = () => showBanner("The dashboard cannot be reached: is `kubectl oneie dashboard` still running?");
  await render();
}

start();
