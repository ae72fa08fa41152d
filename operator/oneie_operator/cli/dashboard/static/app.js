// oneie dashboard: a vanilla ES module, no build step. Every DOM node is built with textContent
// (never innerHTML), so nothing from the cluster is ever interpreted as markup.
const main = document.getElementById("main");
const banner = document.getElementById("banner");
let csrf = "";
let renderTimer = 0;
let pending = null;
let sessionNamespace = "default"; // the action in progress: {ns, name, verb, target}

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
    else if (r.view === "new" && r.ns) await renderNew(r);
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
    newConnectionPicker(body),
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

function newConnectionPicker(body) {
  const seen = [...new Set(body.organizations.map((o) => o.namespace).concat(body.connections.map((c) => c.namespace)))].sort();
  const namespaces = seen.length ? seen : [sessionNamespace];
  const select = el("select", { id: "new-ns" }, namespaces.map((ns) => el("option", { value: ns }, ns)));
  return el("div", { class: "filters", id: "new-connection" },
    el("label", { for: "new-ns" }, "Namespace", select),
    el("button", { class: "primary", type: "button",
      onclick: () => { location.hash = `#/new/${encodeURIComponent(select.value)}`; } }, "New connection…"));
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
let keepOutcome = false; // the next hash change keeps lastOutcome (Save and switch → organization view)

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
          el("a", { class: "button", id: "new-connection", href: `#/new/${encodeURIComponent(r.ns)}?org=${encodeURIComponent(r.name)}` },
            "New connection…"),
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

// -- new connection ------------------------------------------------------------------------------
// The form comes from the cluster (GET /api/new/<ns>: the operator's provider catalog and the
// BackendConnection schema). It is built once per visit: live updates refresh only the verdict,
// so nothing typed is lost. Secret inputs are cleared as soon as they are sent.
let draft = null; // {ns, root, form, created, verdict, actions...}

function fieldInput(f) {
  const id = `set-${f.name}`;
  const describedBy = `${id}-help`;
  let input;
  if (f.enum) input = el("select", { id, name: f.name }, (f.required ? [] : [""]).concat(f.enum).map((v) => el("option", { value: v, selected: v === f.default }, v || "(default)")));
  else if (f.type === "boolean") input = el("input", { id, name: f.name, type: "checkbox", checked: f.default === true });
  else input = el("input", { id, name: f.name, type: f.type === "string" ? "text" : "number", required: f.required,
    maxlength: f.maxLength, placeholder: f.default !== undefined && f.default !== null ? String(f.default) : "",
    "aria-describedby": describedBy, autocomplete: "off", spellcheck: "false" });
  return el("div", { class: "field" },
    el("label", { for: id }, f.name, f.required ? el("span", { class: "req", "aria-hidden": "true" }, " *") : el("span", { class: "muted" }, " (optional)")),
    input, el("p", { class: "help muted", id: describedBy }, f.description || "", f.pattern ? ` Format: ${f.pattern}` : ""));
}

function secretInput(key, optional, description) {
  const id = `secret-${key}`;
  return el("div", { class: "field" },
    el("label", { for: id }, key, optional ? el("span", { class: "muted" }, " (optional)") : el("span", { class: "req", "aria-hidden": "true" }, " *")),
    el("input", { id, name: key, type: "password", autocomplete: "new-password", required: !optional, spellcheck: "false",
      "data-secret": "true", "aria-describedby": `${id}-help` }),
    el("p", { class: "help muted", id: `${id}-help` }, description || "Stored only in the credentials Secret; never shown again."));
}

function providerBlock(p) {
  const settings = p.fields === null
    ? [el("div", { class: "field" }, el("label", { for: "settings-json" }, `Settings (JSON, spec.${p.name})`),
        el("textarea", { id: "settings-json", rows: 4, spellcheck: "false" }, "{}"),
        el("p", { class: "help muted" }, "The cluster publishes no schema for this provider's settings; the operator checks them."))]
    : p.fields.map(fieldInput);
  const keys = p.secretFields.map((k) => secretInput(k, false, p.secretDescriptions[k]))
    .concat(p.optionalSecretFields.map((k) => secretInput(k, true, p.secretDescriptions[k])));
  return el("div", { id: "provider-form" },
    p.description ? el("p", { class: "muted" }, p.description) : null,
    el("fieldset", {}, el("legend", {}, "Settings"), settings),
    el("fieldset", {}, el("legend", {}, "Credentials (kept in a Secret, never shown again)"),
      keys.length ? keys : el("p", { class: "muted" }, "The operator's catalog lists no Secret keys for this provider.")));
}

function collect(p) {
  let settings = {};
  if (p.fields === null) {
    try { settings = JSON.parse(document.getElementById("settings-json").value || "{}"); }
    catch (err) { return { error: `The settings are not valid JSON: ${err.message}` }; }
  } else {
    for (const f of p.fields) {
      const input = document.getElementById(`set-${f.name}`);
      if (f.type === "boolean") { if (input.checked !== (f.default === true)) settings[f.name] = input.checked; continue; }
      const v = input.value.trim();
      if (v === "") { if (f.required) return { error: `Fill in ${f.name}: ${f.description}`, focus: input }; continue; }
      settings[f.name] = f.type === "integer" || f.type === "number" ? Number(v) : v;
    }
  }
  const secrets = {};
  for (const input of document.querySelectorAll("input[data-secret]")) {
    if (input.value === "" && input.required) return { error: `Fill in the credential ${input.name}.`, focus: input };
    if (input.value !== "") secrets[input.name] = input.value;
  }
  return { settings, secrets };
}

function clearSecrets() { for (const input of document.querySelectorAll("input[data-secret]")) input.value = ""; }

async function refreshVerdict() {
  if (!draft || !draft.created) return;
  const c = draft.created;
  const { ok, body } = await api(`/api/new/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}`);
  // A live update's read still in flight when Cancel (or another page) replaced the draft: its
  // answer is about a connection that is gone, and must not overwrite what the user sees now.
  if (!draft || draft.created !== c) return;
  if (!ok) { draft.verdict.replaceChildren(failureBox(body)); return; }
  draft.ready = body.ready === "True";
  const head = body.ready === "True" ? "The connection works. " : body.ready === "False" ? "The test failed. " : "Testing… ";
  draft.verdict.replaceChildren(el("div", { class: `result ${cls(body.ready)}`, role: "status", id: "verdict-text" },
    el("strong", {}, head), body.reason ? `${body.reason}: ` : "", body.message || ""));
  updateButtons();
}

function updateButtons() {
  if (!draft) return;
  document.getElementById("do-test").disabled = !!draft.created || draft.busy;
  document.getElementById("do-cancel").disabled = !draft.created || draft.busy;
  document.getElementById("do-save").disabled = !draft.created || !draft.ready || draft.busy;
}

async function renderNew(r) {
  if (draft && draft.ns === r.ns && main.contains(draft.root)) { await refreshVerdict(); return; }
  const { ok, body } = await api(`/api/new/${encodeURIComponent(r.ns)}`);
  const title = el("h2", {}, "New connection ", el("span", { class: "muted" }, `in ${r.ns}`));
  const back = el("p", {}, el("a", { href: "#/fleet" }, "← Fleet"));
  if (!ok) { draft = null; replaceMain(back, title, failureBox(body)); return; }
  if (!body.providers.length) { draft = null; replaceMain(back, title, failureBox({ message: body.catalogNote || "No provider is known." })); return; }
  const wantedOrg = r.params.get("org") || "";
  const providerSelect = el("select", { id: "provider" }, body.providers.map((p) => el("option", { value: p.name }, `${p.displayName} (${p.name})`)));
  const nameInput = el("input", { id: "conn-name", type: "text", required: true, autocomplete: "off", spellcheck: "false",
    "aria-describedby": "conn-name-help", maxlength: 63 });
  const orgSelect = el("select", { id: "save-org" }, body.organizations.map((o) => el("option", { value: o.name, selected: o.name === wantedOrg },
    `${o.name} (now ${o.active || "nothing"})`)), el("option", { value: "" }, "(none: keep it for later)"));
  const slot = el("div", {});
  const verdict = el("div", { id: "verdict", "aria-live": "polite" });
  const provider = () => body.providers.find((p) => p.name === providerSelect.value);
  const showProvider = () => { slot.replaceChildren(providerBlock(provider())); if (!nameInput.value || nameInput.dataset.auto) { nameInput.value = `${providerSelect.value}-${Math.random().toString(36).slice(2, 6)}`; nameInput.dataset.auto = "1"; } };
  providerSelect.addEventListener("change", showProvider);
  nameInput.addEventListener("input", () => { delete nameInput.dataset.auto; });
  const form = el("form", { id: "new-form", novalidate: true },
    el("div", { class: "field" }, el("label", { for: "provider" }, "Provider"), providerSelect),
    el("div", { class: "field" }, el("label", { for: "conn-name" }, "Connection name"), nameInput,
      el("p", { class: "help muted", id: "conn-name-help" }, "Lower-case letters, digits and hyphens; the Secret is named <name>-credentials.")),
    slot,
    el("div", { class: "actions", role: "group", "aria-label": "Actions" },
      el("button", { type: "submit", class: "primary", id: "do-test" }, "Test connection"),
      el("button", { type: "button", id: "do-cancel", disabled: true }, "Cancel"),
      el("label", { for: "save-org" }, "Switch organization", orgSelect),
      el("button", { type: "button", id: "do-save", disabled: true }, "Save and switch")),
    verdict);
  const root = el("div", { id: "new-view" }, back, title,
    body.gitops ? el("p", { class: "warning", id: "new-gitops" }, body.gitops) : null,
    el("p", { class: "muted" }, `Form from ${body.schemaSource}${body.catalogNote ? "" : " and the operator's provider catalog"}.`),
    body.catalogNote ? el("p", { class: "warning" }, body.catalogNote) : null, form);
  draft = { ns: r.ns, root, verdict, created: null, ready: false, busy: false };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const p = provider();
    const data = collect(p);
    if (data.error) { verdict.replaceChildren(failureBox({ message: data.error })); if (data.focus) data.focus.focus(); return; }
    if (body.gitops && !(await confirmAction(`Create the connection ${nameInput.value} and its Secret in ${r.ns}?`, body.gitops))) return;
    draft.busy = true; updateButtons();
    verdict.replaceChildren(el("div", { class: "result", role: "status" }, "Creating the Secret and the connection…"));
    const res = await api(`/api/new/${encodeURIComponent(r.ns)}`, { method: "POST",
      body: JSON.stringify({ name: nameInput.value.trim(), provider: p.name, settings: data.settings, secrets: data.secrets }) });
    clearSecrets(); // typed credentials are not kept in the page after they were sent
    draft.busy = false;
    if (!res.ok) { verdict.replaceChildren(failureBox(res.body)); updateButtons(); return; }
    draft.created = res.body;
    draft.ready = false;
    verdict.replaceChildren(el("div", { class: "result", role: "status" }, "Created; waiting for the operator's verdict…"));
    updateButtons();
    await refreshVerdict();
  });
  form.querySelector("#do-cancel").addEventListener("click", async () => {
    const c = draft.created;
    draft.busy = true; updateButtons();
    const res = await api(`/api/new/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}`, { method: "DELETE" });
    draft.busy = false;
    if (!res.ok) { verdict.replaceChildren(failureBox(res.body)); updateButtons(); return; }
    draft.created = null; draft.ready = false;
    verdict.replaceChildren(el("div", { class: "result", role: "status", id: "cancelled" }, `Removed: ${res.body.removed.join(", ") || "nothing was left"}.`));
    updateButtons();
  });
  form.querySelector("#do-save").addEventListener("click", async () => {
    const c = draft.created;
    const org = orgSelect.value;
    const info = body.organizations.find((o) => o.name === org);
    const text = org ? `Keep the connection ${c.name} and switch ${r.ns}/${org} from ${(info && info.active) || "(nothing)"} to it?`
      : `Keep the connection ${c.name}?`;
    if (!(await confirmAction(text, (info && info.gitops) || body.gitops))) return;
    draft.busy = true; updateButtons();
    const res = await api(`/api/new/${encodeURIComponent(c.namespace)}/${encodeURIComponent(c.name)}/save`,
      { method: "POST", body: JSON.stringify({ organization: org }) });
    draft.busy = false;
    if (!res.ok) { verdict.replaceChildren(failureBox(res.body)); updateButtons(); return; }
    draft.created = null;
    if (!org) { verdict.replaceChildren(el("div", { class: "result", role: "status" }, `Saved ${c.name}.`)); updateButtons(); return; }
    const doc = res.body.result || {};
    const warnings = (res.body.warnings || []).map((w) => el("p", { class: "warning" }, w));
    lastOutcome = { key: `organizations/${r.ns}/${org}`, node: el("div", { class: "result", role: "status" },
      `Saved ${c.name}; switch requested: ${doc.from || "(nothing)"} → ${doc.to || c.name}. The steps follow live below.`, warnings) };
    keepOutcome = true;
    draft = null;
    location.hash = `#/org/${encodeURIComponent(r.ns)}/${encodeURIComponent(org)}`;
  });
  showProvider();
  replaceMain(root);
  updateButtons();
}

// -- start -----------------------------------------------------------------------------------------
async function start() {
  const session = await api("/api/session");
  if (!session.ok) { replaceMain(failureBox(session.body)); return; }
  csrf = session.body.csrf;
  sessionNamespace = session.body.namespace;
  document.getElementById("identity").textContent = `Acting with your kubeconfig identity · ${session.body.scope}`;
  window.addEventListener("hashchange", () => { if (!keepOutcome) lastOutcome = null; keepOutcome = false; render(); });
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
