// The ops console: sign-in, overview, service page, rollouts; live through the event stream.
import { ApiError, call, features, follow, probeWrite, setToken, token } from "./api.js";
import { bar, chart, confirmDialog, h, pct, shares } from "./views.js";

const S = {
  state: null, nodes: null, rollouts: null, feat: null,
  write: { ok: false, reason: "" }, deploy: { ok: false, reason: "" }, revert: { ok: false, reason: "" },
  stop: null, reloading: null, dirty: new Set(), observed: {}, events: {}, past: {}, page: null,
  fleet: null,
};
const DONE = new Set(["done", "aborted", "rolled-back"]); // rollout phases that no longer move
const WINDOW = 60; // seconds: the answer window the console reads observed shares over
const main = () => document.getElementById("main");
const enc = encodeURIComponent;

function errorBox(id) { return h("p", { class: "error", id, role: "alert" }); }
function showError(id, err) {
  const el = document.getElementById(id);
  if (el) el.textContent = err ? (err instanceof ApiError || err instanceof Error ? err.message : String(err)) : "";
}
/** A write button: hidden for read-only tokens, with the reason said once per page. */
function writeButton(label, onclick, cls = "", perm = S.write, extra = {}) {
  if (!perm.ok) return null;
  return h("button", { type: "button", class: cls, onclick, ...extra }, label);
}
function readOnlyNote(perm = S.write) {
  return perm.ok ? null : h("p", { class: "note" }, `Read-only: ${perm.reason}`);
}

// -- sign-in ---------------------------------------------------------------------------------
function signIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  const form = h("form", { class: "signin card", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("label", { for: "token" }, "Admin token"),
    h("input", { id: "token", type: "password", autocomplete: "off", "aria-describedby": "signin-error" }),
    h("p", { class: "note" }, "Kept in this tab only (sessionStorage); sent as the bearer header."),
    errorBox("signin-error"),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    setToken(form.querySelector("#token").value.trim() || null);
    try { await start(); } catch (err) { setToken(null); showError("signin-error", err); }
  });
  main().replaceChildren(form);
  if (message) showError("signin-error", message);
  form.querySelector("#token").focus();
}

async function start() {
  await call("GET", "/api/v1/state"); // checks the token (401 in words otherwise)
  S.feat = await features();
  S.write = await probeWrite("/api/v1/traffic/shift");
  S.deploy = S.feat.has("GET", "/api/v1/rollouts") ? await probeWrite("/api/v1/rollouts/-/pause") : S.write;
  S.revert = S.feat.has("POST", "/api/v1/registry/revert") ? await probeWrite("/api/v1/registry/revert") : S.write;
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
  await reload();
  if (S.stop) S.stop();
  S.stop = follow(onEvent, (live, text) => {
    const el = document.getElementById("live");
    el.textContent = text;
    el.classList.toggle("lost", !live);
    if (live) scheduleReload();
  });
  render();
}

function onEvent(type) {
  if (type === "change" || type === "reset") scheduleReload();
}
function scheduleReload() {
  if (S.reloading) return;
  S.reloading = setTimeout(async () => {
    S.reloading = null;
    try { await reload(); render(); } catch (err) { console.warn("reload failed", err.message); }
  }, 50);
}

async function reload() {
  S.state = await call("GET", "/api/v1/state");
  S.nodes = S.feat.has("GET", "/api/v1/nodes") ? (await call("GET", "/api/v1/nodes")).nodes : null;
  S.rollouts = S.feat.has("GET", "/api/v1/rollouts") ? (await call("GET", "/api/v1/rollouts")).rollouts : null;
  S.fleet = S.feat.has("GET", "/api/v1/shares") ? await call("GET", `/api/v1/shares?window=${WINDOW}s`) : null;
  S.events = {};
  await Promise.all((S.rollouts || []).map(async (r) => {
    const hist = await call("GET", `/api/v1/rollouts/${enc(r.service)}/history`);
    S.events[r.service] = (hist.rollouts.find((x) => x.id === r.id) || { events: [] }).events;
    S.past[r.service] = hist.rollouts.filter((x) => x.id !== r.id).slice(0, 5);
  }));
  await sampleShares();
}

/** The share of answers the new version of each running rollout got (the fleet's answers
 * over the last WINDOW seconds, ``/shares``): one point of its time chart per sample. */
async function sampleShares() {
  if (!S.feat.has("GET", "/api/v1/services/{name}/shares")) return;
  const now = Date.now() / 1000;
  await Promise.all((S.rollouts || []).filter((r) => !DONE.has(r.phase)).map(async (r) => {
    const doc = await call("GET", `/api/v1/services/${enc(r.service)}/shares?window=${WINDOW}s`);
    if (!(doc.answers > 0)) return;
    const row = doc.versions.find((v) => v.name === r.version);
    const pts = (S.observed[`${r.service}/${r.id}`] ||= []);
    pts.push([now, row?.percent ?? 0]);
    if (pts.length > 300) pts.shift();
  }));
}
// While a rollout runs, its chart follows the answers even when the registry is quiet.
setInterval(async () => {
  if (!S.state || S.page !== "#/rollouts" || !(S.rollouts || []).some((r) => !DONE.has(r.phase))) return;
  try { await sampleShares(); render(); } catch (err) { console.warn("shares failed", err.message); }
}, 5000);

// -- routing ---------------------------------------------------------------------------------
function render() {
  if (!S.state) return;
  const hash = location.hash || "#/";
  const keep = document.activeElement?.id;
  // What the operator typed survives a live update (the registry's values are the defaults).
  const same = S.page === hash; // a live update of the page on screen, not a navigation
  S.page = hash;
  if (!same) S.dirty.clear();
  const edited = !same ? [] : [...main().querySelectorAll("input")].filter((i) => i.id && i.value !== i.defaultValue)
    .map((i) => [i.id, i.value]);
  if (hash.startsWith("#/service/")) servicePage(decodeURIComponent(hash.slice(10)));
  else if (hash === "#/rollouts") rolloutsPage();
  else overview();
  for (const [id, value] of edited) {
    const input = document.getElementById(id);
    if (input && input.value !== value) input.value = value;
  }
  if (keep) document.getElementById(keep)?.focus();
}
window.addEventListener("hashchange", () => { render(); main().focus(); });

// -- overview ----------------------------------------------------------------------------------
function dcOrder() { return Object.keys(S.state.datacenters); }

function emptyServices() {
  const dcs = S.state.datacenters, out = [];
  for (const [name, svc] of Object.entries(S.state.services)) {
    const eps = Object.values(svc.endpoints || {});
    const weighted = new Set(Object.values(svc.traffic).flatMap((t) => Object.keys(t).filter((d) => t[d] > 0)));
    const live = eps.some((e) => e.healthy && e.weight > 0 && weighted.has(e.dc) && dcs[e.dc] &&
      !dcs[e.dc].drained && (svc.access === "ro" || dcs[e.dc].writable));
    if (!live) out.push(name);
  }
  return out;
}

function globalShare() {
  const total = {};
  const svcs = Object.values(S.state.services);
  for (const svc of svcs) {
    for (const [dc, v] of Object.entries(shares(svc.traffic.default || {}))) total[dc] = (total[dc] || 0) + v / svcs.length;
  }
  return total;
}

function overview() {
  const st = S.state, order = dcOrder(), empty = new Set(emptyServices());
  const dcRows = Object.entries(st.datacenters).map(([name, d]) =>
    h("tr", { class: d.drained ? "bad" : "" }, h("td", {}, name), h("td", {}, d.kind),
      h("td", {}, d.writable ? "writable" : "read-only"), h("td", {}, d.drained ? "drained" : "serving")));
  const nodes = S.nodes === null ? h("p", { class: "note" }, "This node does not list the fleet (no GET /api/v1/nodes).")
    : h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Nodes table" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Node", "Address", "Version", "Revision", "Status"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, S.nodes.map((n) => h("tr", { class: n.status === "ok" ? "" : "bad" },
        h("td", {}, n.id), h("td", {}, n.address || ""), h("td", {}, n.version || ""), h("td", {}, n.revision),
        h("td", {}, n.status === "ok" ? "ok" : h("span", { class: "tag", title: (n.reasons || []).join("; ") }, `${n.status}: ${(n.reasons || []).join("; ")}`)))))));
  main().replaceChildren(
    h("h1", {}, "Overview"), h("p", { class: "note" }, `Registry revision ${st.revision}`),
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "dc-h" }, h("h2", { id: "dc-h" }, "Datacenters"),
        h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Kind", "Writable", "Drained"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, dcRows))),
      h("section", { class: "card", "aria-labelledby": "share-h" }, h("h2", { id: "share-h" }, "Global share"),
        h("p", { class: "note" }, "Configured: the mean of each service's default-region weights."),
        bar(globalShare(), order, "Configured share of the default region over all services"),
        ...observedShare(order))),
    h("section", { class: "card", "aria-labelledby": "nodes-h" }, h("h2", { id: "nodes-h" }, "Nodes"), nodes),
    h("section", { class: "card", "aria-labelledby": "svc-h" }, h("h2", { id: "svc-h" }, "Services"),
      h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Services table" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Service", "Access", "Default split", "Answers"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, Object.entries(st.services).map(([name, svc]) => h("tr", { class: empty.has(name) ? "bad" : "" },
          h("td", {}, h("a", { href: `#/service/${enc(name)}` }, name)), h("td", {}, svc.access),
          h("td", {}, bar(shares(svc.traffic.default || {}), order, `${name} default split`)),
          h("td", {}, empty.has(name) ? "answering empty" : "ok"))))))));
}

/** The answers the fleet gave over every service, per datacenter (``/api/v1/shares``). */
function observedShare(order) {
  if (S.fleet === null) return [];
  if (!(S.fleet.answers > 0)) return [h("p", { class: "note" }, `Observed: no answers in the last ${S.fleet.window} s.`)];
  const seen = Object.fromEntries(S.fleet.datacenters.map((r) => [r.name, r.percent / 100]));
  return [h("p", { class: "note" }, `Observed: ${S.fleet.answers} answers in the last ${S.fleet.window} s (${S.fleet.source}).`),
    bar(seen, order, `Observed share of answers over all services, last ${S.fleet.window} s`)];
}

// -- service page ----------------------------------------------------------------------------
function weightForm(name, svc) {
  const order = dcOrder();
  const form = h("form", { class: "weights", id: "weights", "aria-describedby": "traffic-error" });
  for (const [region, table] of Object.entries(svc.traffic)) {
    const fs = h("fieldset", {}, h("legend", {}, `Region ${region}`));
    for (const dc of order) {
      const id = `w-${region}-${dc}`;
      fs.append(h("span", { class: "row" }, h("label", { for: id }, dc),
        h("input", { id, type: "number", min: 0, step: 1, value: table[dc] ?? 0, "data-region": region, "data-dc": dc,
          disabled: !S.write.ok, oninput: () => S.dirty.add("weights") })));
    }
    form.append(fs);
  }
  const read = () => {
    const out = {};
    for (const input of form.querySelectorAll("input")) {
      const w = Number(input.value);
      if (!Number.isInteger(w) || w < 0) throw new Error(`the weight of ${input.dataset.dc} in ${input.dataset.region} must be a whole number ≥ 0`);
      if (w > 0 || input.dataset.dc in (svc.traffic[input.dataset.region] || {})) (out[input.dataset.region] ||= {})[input.dataset.dc] = w;
    }
    return out;
  };
  const path = `/api/v1/services/${enc(name)}/traffic`;
  const dry = S.feat.param("PUT", "/api/v1/services/{name}/traffic", "dry_run");
  const result = h("div", { class: "result", id: "preview", "aria-live": "polite" });
  const preview = async () => {
    showError("traffic-error", null);
    try {
      const out = await call("PUT", `${path}?dry_run=1`, read());
      result.replaceChildren(...impactView(out, name));
    } catch (err) { showError("traffic-error", err); }
  };
  const apply = async () => {
    showError("traffic-error", null);
    let body;
    try { body = read(); } catch (err) { showError("traffic-error", err); return; }
    const lines = Object.entries(body).map(([r, t]) => h("p", {}, `${r}: `, Object.entries(t).map(([dc, w]) => `${dc} ${w}`).join(", ")));
    if (!(await confirmDialog(`Apply the split of ${name}?`, [h("p", {}, "New weights:"), ...lines]))) return;
    const write = async (query) => {
      await call("PUT", path + query, body);
      S.dirty.delete("weights");
      result.replaceChildren(h("p", {}, "Applied."));
      await reload(); render();
    };
    try { await write(""); } catch (err) {
      showError("traffic-error", err);
      // A guard rail (409 would_empty): the operator may still insist, after a second look.
      if (err.code === "would_empty") {
        result.replaceChildren(writeButton("Apply anyway (force)", async () => {
          if (!(await confirmDialog(`Force the split of ${name}?`, h("p", {}, err.message)))) return;
          try { await write("?force=1"); showError("traffic-error", null); } catch (e) { showError("traffic-error", e); }
        }, "danger"));
      }
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); });
  form.append(...[h("div", { class: "row" },
    dry ? writeButton("Preview", preview) : (S.write.ok ? h("span", { class: "note" }, "Preview is not available: this node does not offer dry runs (?dry_run=1).") : null),
    writeButton("Apply", apply, "primary")), errorBox("traffic-error"), result, readOnlyNote()].filter(Boolean));
  return form;
}

function impactView(out, name) {
  const svc = out.impact?.services?.[name];
  const rows = [h("p", {}, `Clients whose answer would change: ${pct(out.impact?.moved ?? 0)}`)];
  for (const [region, r] of Object.entries(svc?.regions || {})) {
    rows.push(h("div", { class: "split" }, h("span", {}, `${region} before`), bar(r.before, dcOrder(), `${region} before`),
      h("span", {}, `${region} after`), bar(r.after, dcOrder(), `${region} after`)),
      h("p", { class: "note" }, `${region}: ${pct(r.moved)} of clients would move`));
  }
  for (const w of out.warnings || []) rows.push(h("p", { class: "note" }, `Warning: ${w}`));
  return rows;
}

function releaseForm(name, svc) {
  const rel = svc.release || { stable: "", canary: null, canary_percent: 0 };
  const value = h("output", { id: "canary-value", for: "canary-percent" }, `${rel.canary_percent} %`);
  const form = h("form", { id: "release-form" },
    h("div", { class: "row" }, h("label", { for: "stable" }, "Stable version"),
      h("input", { id: "stable", type: "text", value: rel.stable || "", disabled: !S.write.ok, oninput: () => S.dirty.add("release") }),
      h("label", { for: "canary" }, "Canary version"),
      h("input", { id: "canary", type: "text", value: rel.canary || "", disabled: !S.write.ok, oninput: () => S.dirty.add("release") })),
    h("div", { class: "row" }, h("label", { for: "canary-percent" }, "Canary percent"),
      h("input", { id: "canary-percent", type: "range", min: 0, max: 100, step: 1, value: rel.canary_percent, disabled: !S.write.ok,
        oninput: (ev) => { value.textContent = `${ev.target.value} %`; S.dirty.add("release"); } }), value),
    h("div", { class: "row" }, writeButton("Apply release", async () => {
      showError("release-error", null);
      const canary = form.querySelector("#canary").value.trim() || null;
      const body = { stable: form.querySelector("#stable").value.trim(), canary,
        canary_percent: canary ? Number(form.querySelector("#canary-percent").value) : 0 };
      if (!(await confirmDialog(`Change the release of ${name}?`, h("p", {}, `stable ${body.stable}, canary ${canary || "none"} at ${body.canary_percent} %`)))) return;
      try { await call("PUT", `/api/v1/services/${enc(name)}/release`, body); S.dirty.delete("release"); await reload(); render(); }
      catch (err) { showError("release-error", err); }
    }, "primary")), errorBox("release-error"), readOnlyNote());
  form.addEventListener("submit", (ev) => ev.preventDefault());
  return form;
}

function explainForm(name) {
  const out = h("div", { class: "result", id: "explain-out", "aria-live": "polite" });
  const form = h("form", { id: "explain-form" },
    h("div", { class: "row" }, h("label", { for: "explain-ip" }, "Client IP"), h("input", { id: "explain-ip", type: "text", placeholder: "203.0.113.7" }),
      h("label", { for: "explain-uid" }, "Device id (uid)"), h("input", { id: "explain-uid", type: "text" }),
      h("button", { type: "submit" }, "Explain")), errorBox("explain-error"), out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("explain-error", null);
    const q = new URLSearchParams({ name });
    const ip = form.querySelector("#explain-ip").value.trim(), uid = form.querySelector("#explain-uid").value.trim();
    if (ip) q.set("ip", ip);
    if (uid) q.set("uid", uid);
    try {
      const trace = await call("GET", `/api/v1/explain?${q}`);
      out.replaceChildren(h("ol", { class: "trace" }, Object.entries(trace).map(([k, v]) =>
        h("li", {}, h("strong", {}, `${k}: `), typeof v === "object" ? JSON.stringify(v) : String(v)))));
    } catch (err) { showError("explain-error", err); }
  });
  return form;
}

function describe(c) {
  const v = (x) => (x === null || x === undefined ? "—" : JSON.stringify(x));
  const after = "after" in c ? c.after : c.value;
  return h("li", {}, h("strong", {}, `${c.verb || c.op} ${c.kind} ${c.key}`),
    "before" in c ? h("div", {}, h("span", { class: "note" }, "before: "), v(c.before)) : null,
    h("div", {}, h("span", { class: "note" }, "after: "), v(after)));
}

async function historyView(name, holder) {
  try {
    const has = S.feat.param("GET", "/api/v1/audit", "service");
    const rev = S.state.revision;
    const data = has ? await call("GET", `/api/v1/audit?service=${enc(name)}&limit=12`)
      : await call("GET", `/api/v1/audit?since=${Math.max(0, rev - 200)}&limit=200`);
    let entries = data.entries;
    if (!has) {
      entries = entries.map((e) => ({ ...e, changes: e.changes.filter((c) => c.key === name || c.key.startsWith(`${name}/`)) }))
        .filter((e) => e.changes.length).reverse().slice(0, 12);
    }
    const canRevert = S.feat.has("POST", "/api/v1/registry/revert");
    const revertDry = S.feat.param("POST", "/api/v1/registry/revert", "dry_run");
    holder.replaceChildren(entries.length ? h("ol", { class: "history", reversed: true }, entries.map((e) => {
      const errId = `revert-error-${e.revision}`;
      const revert = canRevert ? writeButton(`Revert to before revision ${e.revision}`, async () => {
        showError(errId, null);
        const to = e.revision - 1;
        let body = [h("p", {}, `Restore the registry as it was at revision ${to}.`)];
        try {
          if (revertDry) body = [...body, ...impactView(await call("POST", "/api/v1/registry/revert?dry_run=1", { to }), name)];
        } catch (err) { showError(errId, err); return; }
        if (!(await confirmDialog(`Revert to revision ${to}?`, body))) return;
        try { await call("POST", "/api/v1/registry/revert", { to }); await reload(); render(); }
        catch (err) { showError(errId, err); }
      }, "", S.revert, { "data-revision": e.revision }) : null;
      return h("li", { "data-revision": e.revision }, h("div", {}, `revision ${e.revision} · ${e.actor} · ${new Date(e.time * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC`),
        h("ul", {}, e.changes.map(describe)), revert, errorBox(errId));
    })) : h("p", { class: "note" }, "No changes recorded for this service."),
    ...(canRevert ? (S.revert.ok ? [] : [h("p", { class: "note" }, `Revert: ${S.revert.reason}`)])
      : [h("p", { class: "note" }, "Revert is not available: this node has no POST /api/v1/registry/revert.")]));
  } catch (err) {
    holder.replaceChildren(h("p", { class: "error", role: "alert" }, `History: ${err.message}`));
  }
}

/** Under the configured bars: the split as steered (failover, drained and empty datacenters
 * included, measured by the node on its client sample: ``/split``) and the answers the
 * fleet actually gave (``/shares``), where the node offers them. */
async function effectiveView(name) {
  const holder = document.getElementById("traffic-bars");
  const rows = [];
  try {
    if (S.feat.has("GET", "/api/v1/services/{name}/split")) {
      const data = await call("GET", `/api/v1/services/${enc(name)}/split`);
      for (const [region, fams] of Object.entries(data.regions || {})) {
        for (const [fam, split] of Object.entries(fams)) {
          rows.push(h("span", { class: "note" }, `${region} ${fam} steered`), bar(split, dcOrder(), `${region} ${fam} steered split`));
        }
      }
    }
    if (S.feat.has("GET", "/api/v1/services/{name}/shares")) {
      const data = await call("GET", `/api/v1/services/${enc(name)}/shares`);
      if (data.answers > 0) {
        const part = (list) => Object.fromEntries(list.filter((r) => r.percent !== null).map((r) => [r.name, r.percent / 100]));
        const versions = data.versions.map((r) => r.name);
        rows.push(h("span", { class: "note" }, `observed (${data.window}s)`), bar(part(data.datacenters), dcOrder(), `answers observed by datacenter over ${data.window} s`),
          h("span", { class: "note" }, "versions observed"), bar(part(data.versions), versions, `answers observed by version over ${data.window} s`));
      } else {
        rows.push(h("span", { class: "note" }, "observed"), h("span", { class: "note" }, `no answers in the last ${data.window} s`));
      }
    }
  } catch (err) {
    rows.push(h("span", {}, ""), h("p", { class: "error", role: "alert" }, `Measured split: ${err.message}`));
  }
  if (holder?.isConnected) holder.append(...rows);
}

function servicePage(name) {
  const svc = S.state.services[name];
  if (!svc) { main().replaceChildren(h("h1", {}, name), h("p", { class: "error", role: "alert" }, `Service ${name} does not exist.`)); return; }
  const order = dcOrder();
  // Inputs being edited survive a live update; everything else follows the registry. A form
  // with the caret in one of its inputs (perhaps not typed in yet) counts as edited: rebuilt
  // under the caret it would lose the selection, and the next keystroke would land beside
  // the old value instead of replacing it. (Its buttons do not count: after Apply the form
  // follows the registry again.)
  const old = (id) => {
    const form = document.getElementById(id === "weights" ? "weights" : "release-form");
    const at = document.activeElement;
    return form && (S.dirty.has(id) || (at?.tagName === "INPUT" && form.contains(at))) ? form : null;
  };
  const traffic = h("section", { class: "card", "aria-labelledby": "traffic-h" }, h("h2", { id: "traffic-h" }, "Traffic per region"),
    h("div", { class: "split", id: "traffic-bars" }, Object.entries(svc.traffic).flatMap(([region, t]) =>
      [h("span", {}, region), bar(shares(t), order, `${region} split`)])),
    h("h3", {}, "Weights"), old("weights") || weightForm(name, svc));
  const eps = h("section", { class: "card", "aria-labelledby": "ep-h" }, h("h2", { id: "ep-h" }, "Endpoints"),
    h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "Endpoints table" }, h("table", {}, h("thead", {}, h("tr", {}, ...["Id", "Datacenter", "Address", "Version", "Weight", "Health"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, Object.entries(svc.endpoints || {}).map(([id, e]) => h("tr", { class: e.healthy ? "" : "bad" },
        h("td", {}, id), h("td", {}, e.dc), h("td", {}, `${e.address}:${e.port}`), h("td", {}, e.version), h("td", {}, e.weight),
        h("td", {}, e.healthy ? "healthy" : "unhealthy")))))));
  const history = h("div", { id: "history" }, h("p", { class: "note" }, "Loading…"));
  // Only a live update of this same page keeps the history and the explain answer shown.
  const fresh = !main().querySelector(`[data-page="${CSS.escape(name)}"]`);
  const prevHistory = fresh ? null : document.getElementById("history");
  const prevExplain = fresh ? null : document.getElementById("explain-out");
  main().replaceChildren(h("h1", { "data-page": name }, name),
    h("p", { class: "note" }, `access ${svc.access} · ttl ${svc.ttl}s · ${svc.answers} answers · ${svc.all_down} · revision ${S.state.revision}`),
    traffic,
    h("div", { class: "grid" },
      h("section", { class: "card", "aria-labelledby": "rel-h" }, h("h2", { id: "rel-h" }, "Release"), old("release") || releaseForm(name, svc)),
      h("section", { class: "card", "aria-labelledby": "ex-h" }, h("h2", { id: "ex-h" }, "Explain"), explainForm(name))),
    eps,
    h("section", { class: "card", "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), history));
  if (prevHistory && prevHistory !== history) history.replaceChildren(...prevHistory.childNodes);
  const explainOut = document.getElementById("explain-out");
  if (prevExplain && explainOut && prevExplain !== explainOut) explainOut.replaceChildren(...prevExplain.childNodes);
  historyView(name, history);
  effectiveView(name);
}

// -- rollouts ----------------------------------------------------------------------------------
const VERBS = [["Pause", "pause"], ["Resume", "resume"], ["Promote", "promote"], ["Abort", "abort"], ["Rollback", "rollback"]];

function rolloutsPage() {
  if (S.rollouts === null) {
    main().replaceChildren(h("h1", {}, "Rollouts"), h("p", { class: "note" }, "This node has no deployer routes (/api/v1/rollouts)."));
    return;
  }
  const cards = S.rollouts.map((r) => {
    const errId = `rollout-error-${r.service}`;
    const buttons = VERBS.map(([label, verb]) => writeButton(label, async () => {
      showError(errId, null);
      if (!(await confirmDialog(`${label} the rollout of ${r.service}?`, h("p", {}, `${r.service} ${r.version}: ${label.toLowerCase()}.`)))) return;
      try { await call("POST", `/api/v1/rollouts/${enc(r.service)}/${verb}`); await reload(); render(); }
      catch (err) { showError(errId, err); }
    }, verb === "abort" || verb === "rollback" ? "danger" : "", S.deploy, { "aria-label": `${label} ${r.service}` }));
    // Configured: the canary percent at each recorded step; observed: the new version's
    // share of the fleet's answers, sampled while this page is open.
    const configured = (S.events?.[r.service] || []).map((e) => [e.time, e.percent]);
    if (configured.length) configured.push([Date.now() / 1000, r.percent || 0]);
    const observed = S.observed[`${r.service}/${r.id}`] || [];
    const last = observed.length ? `, observed ${observed[observed.length - 1][1]} % of answers (last ${WINDOW} s)` : ", no answers observed yet";
    return h("section", { class: "card", "aria-labelledby": `ro-${r.id}-${r.service}`, "data-service": r.service },
      h("h2", { id: `ro-${r.id}-${r.service}` }, `${r.service} → ${r.version}`),
      h("p", {}, `phase ${r.phase}${r.paused ? " (paused)" : ""} · step ${r.step ?? "—"} of ${r.steps} · canary ${r.percent ?? 0} % · intent ${r.intent || "none"}`),
      h("label", { for: `prog-${r.service}` }, "Canary progress"),
      h("progress", { id: `prog-${r.service}`, max: 100, value: r.percent || 0 }, `${r.percent || 0} %`),
      h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": `Datacenters of the ${r.service} rollout` }, h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Datacenter"), h("th", { scope: "col" }, "Healthy / total"))),
        h("tbody", {}, Object.entries(r.datacenters || {}).map(([dc, c]) => h("tr", { class: c.healthy < c.total ? "bad" : "" }, h("td", {}, dc), h("td", {}, `${c.healthy} / ${c.total}`)))))),
      r.message ? h("p", { class: "note" }, r.message) : null,
      h("h3", {}, "Events"), h("ol", { class: "history", reversed: true }, (S.events?.[r.service] || []).slice(-6).reverse().map((e) =>
        h("li", {}, `${new Date(e.time * 1000).toISOString().slice(11, 19)} UTC · ${e.phase} · ${e.percent} % · ${e.text}`))),
      (S.past[r.service] || []).length ? [h("h3", {}, "Earlier rollouts"), h("ul", {}, S.past[r.service].map((x) =>
        h("li", {}, `${x.version} (from ${x.previous || "nothing"}) · ${x.phase} · ${new Date(x.created * 1000).toISOString().slice(0, 16).replace("T", " ")} UTC · ${x.actor}${x.message ? ` · ${x.message}` : ""}`)))] : null,
      h("p", { class: "note" }, `Share of ${r.version} over time: `, h("span", { class: "legend-configured" }, "configured (dashed)"), ", ",
        h("span", { class: "legend-observed" }, `answers observed over the last ${WINDOW} s (solid)`)),
      chart([{ points: configured, cls: "configured" }, { points: observed, cls: "observed" }],
        `Share of ${r.version} in ${r.service} over time: configured ${r.percent ?? 0} %${last}`),
      h("div", { class: "row" }, buttons), errorBox(errId), readOnlyNote(S.deploy));
  });
  main().replaceChildren(h("h1", {}, "Rollouts"), ...(cards.length ? cards : [h("p", { class: "note" }, "No rollouts recorded.")]));
}

// -- start -------------------------------------------------------------------------------------
document.getElementById("signout").addEventListener("click", () => {
  setToken(null);
  if (S.stop) S.stop();
  S.stop = null; S.state = null;
  document.getElementById("live").textContent = "";
  signIn();
});

if (token() !== null) start().catch((err) => signIn(err.message)); else signIn();
