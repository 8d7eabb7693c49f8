// storepulse dashboard: a small, dependency-free single-page app over the public HTTP API
// (/api/v1/summary, /api/v1/incidents, /api/v1/breakdown, /api/v1/terminals,
// /api/v1/alerts/...). Refreshes itself on the live event stream without reloading. Strings come
// from the catalogue in i18n.js; times show with their zone and how long ago.
"use strict";

// The label vocabulary (filters of the terminal search, rows of the heat table) comes from the
// API (GET /api/v1/labels), loaded with the first refresh: no copy of it lives here.
let LABELS = [];

// The collector's Content-Security-Policy allows no inline script and no inline style
// attribute: computed colours travel in data-style and are applied through the CSSOM, which
// the policy permits, as soon as the markup is inserted.
function applyDataStyles(node) {
  if (node.nodeType !== Node.ELEMENT_NODE) return;
  const els = node.querySelectorAll("[data-style]");
  if (node.hasAttribute("data-style")) node.style.cssText = node.dataset.style;
  for (const el of els) el.style.cssText = el.dataset.style;
}
new MutationObserver((changes) => {
  for (const c of changes) for (const n of c.addedNodes) applyDataStyles(n);
}).observe(document.documentElement, { childList: true, subtree: true });

// Language: ?lang=zh|en (handy for wall displays), then the last choice, then the browser's.
const langParam = new URLSearchParams(location.search).get("lang");
let lang = ["en", "zh"].includes(langParam) ? langParam
  : localStorage.getItem("storepulse.lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
let data = { active: [], resolved: [], summary: null };

const t = (k) => I18N[lang][k] ?? k;
const sub = (table) => (k) => I18N[lang][table][k] ?? k;
const kindName = sub("kind"), className = sub("class"), labelName = sub("labelname"), stateName = sub("statename");
const eventName = sub("event"), sevName = sub("sev"), tierName = sub("tiername");
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const locale = () => (lang === "zh" ? "zh-CN" : "en-GB");
// Times: ISO-like date and time in one zone, with the zone's offset, plus how long ago. The zone
// is the collector's `http.time_zone` (in the page's <meta name="storepulse-time-zone">) or,
// unset or unknown to this browser, the browser's own.
const BROWSER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const CONFIGURED_ZONE = (() => {
  const z = (document.querySelector('meta[name="storepulse-time-zone"]') || {}).content || "";
  if (!z) return "";
  try { new Intl.DateTimeFormat("en-GB", { timeZone: z }); return z; } catch (e) { return ""; }
})();
const ZONE = CONFIGURED_ZONE || BROWSER_ZONE;
function parts(ms, opts) {
  const o = {};
  for (const p of new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, hourCycle: "h23", ...opts }).formatToParts(new Date(ms))) o[p.type] = p.value;
  return o;
}
function zoneOffset(ms) {
  const p = parts(ms, { timeZoneName: "shortOffset" });
  return (p.timeZoneName || "UTC").replace("GMT", "UTC").replace(/^UTC$/, "UTC+0");
}
const fmtAbs = (ms) => {
  const p = parts(ms, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${zoneOffset(ms)}`;
};
function ago(ms) {
  const m = Math.round((Date.now() - ms) / 60000);
  if (m < 0) return t("in_min").replace("{n}", -m);
  if (m < 1) return t("ago_now");
  if (m < 120) return t("ago_min").replace("{n}", m);
  if (m < 48 * 60) return t("ago_h").replace("{n}", Math.round(m / 60));
  return t("ago_d").replace("{n}", Math.round(m / 1440));
}
const fmtTime = (ms) => (ms ? `<time datetime="${new Date(ms).toISOString()}">${fmtAbs(ms)}</time> <span class="ago">(${esc(ago(ms))})</span>` : "-");
const fmtClock = (ms) => { const p = parts(ms, { hour: "2-digit", minute: "2-digit" }); return `${p.hour}:${p.minute}`; };
const pct = (x) => (x * 100).toFixed(x < 0.01 ? 2 : 1) + "%";
const num = (x, d = 1) => (x == null ? "-" : Number(x).toFixed(d));
const mb = (b) => (b == null ? "-" : (b / 1048576).toFixed(0) + " MB");
const $ = (id) => document.getElementById(id);

function applyStatic() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  const conn = $("conn");
  if (conn.className) conn.textContent = t(conn.className === "ok" ? "live" : "disconnected");
  $("zone").textContent = `${t("zone")} ${zoneOffset(Date.now())} (${ZONE}, ${t(CONFIGURED_ZONE ? "zone_collector" : "zone_browser")})`;
  $("zone").dataset.zone = ZONE;
}

// API token (when the collector requires one): kept in this browser only, sent in a header
// (never in a URL).
let token = localStorage.getItem("storepulse.token") || "";
class NeedToken extends Error {}
class Forbidden extends Error {}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  if (body) headers["content-type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body ? JSON.stringify(body) : undefined });
  if (r.status === 401) throw new NeedToken(path);
  if (r.status === 403) throw new Forbidden(path);
  if (!r.ok) {
    let msg = path + ": " + r.status;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.status === 204 ? null : r.json();
}
const getJson = (path) => api("GET", path);

function askToken() {
  const view = $("view");
  if ($("token-form")) return;
  view.innerHTML = `<form id="token-form" class="tile"><p>${t("token_needed")}</p>
    <input type="password" id="token" autocomplete="off" placeholder="${t("token")}"> <button type="submit">${t("save")}</button></form>`;
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    localStorage.setItem("storepulse.token", token);
    view.innerHTML = "";
    refresh().then(() => render(true));
  });
  $("token").focus();
}

async function refresh() {
  try {
    const [active, resolved, summary, labels] = await Promise.all([
      getJson("/api/v1/incidents?state=active"),
      getJson("/api/v1/incidents?state=resolved&limit=20"),
      getJson("/api/v1/summary"),
      LABELS.length ? null : getJson("/api/v1/labels"),
    ]);
    if (labels) LABELS = labels.labels;
    data = { active: active.incidents, resolved: resolved.incidents, summary };
    $("updated").textContent = fmtAbs(Date.now());
    $("conn").textContent = t("live");
    $("conn").className = "ok";
    // The first time the labels arrive, forms built without them are built again.
    render(Boolean(labels));
  } catch (e) {
    if (e instanceof NeedToken) { askToken(); return; }
    $("conn").textContent = t("disconnected");
    $("conn").className = "bad";
  }
}

function handleError(e, el) {
  if (e instanceof NeedToken) { askToken(); return; }
  if (e instanceof Forbidden) {
    el.innerHTML = `<div class="msg bad" id="forbidden">${esc(t("forbidden"))}</div>`;
    return;
  }
  el.innerHTML = `<div class="msg bad">${esc(e.message)}</div>`;
}

// ---------------------------------------------------------------------------- overview

function scopeText(scope) { return Object.entries(scope || {}).map(([k, v]) => `${labelName(k)} ${v}`).join(" · "); }

// Severity: most severe first. An incident without one (an older collector) ranks last.
const SEV_RANK = { critical: 0, major: 1, minor: 2, info: 3 };
const sevRank = (i) => SEV_RANK[i.severity] ?? 4;
function byUrgency(a, b) { return sevRank(a) - sevRank(b) || (b.started_unix_ms || 0) - (a.started_unix_ms || 0); }

function incidentCard(i) {
  const rem = ((i.remediation && i.remediation[lang]) || []).map((r) => `<li>${esc(r)}</li>`).join("");
  // "Since" is the first failing payment or missed beat the incident counts (started), not
  // when detection opened it; both show, then the resolution.
  const since = `<span class="since">${t("failing_since")} ${fmtTime(i.started_unix_ms)}</span>`;
  const when = i.state === "resolved"
    ? `${since} · <span class="resolved-at">${t("resolved_at")} ${fmtTime(i.resolved_unix_ms)}</span>`
    : `${since} · <span class="detected">${t("detected")} ${fmtTime(i.opened_unix_ms)}</span>`;
  const merged = i.merged_into != null
    ? `<div class="meta merged" data-merged-into="${esc(i.merged_into)}">${t("merged_into")} <a href="#/incident/${encodeURIComponent(i.merged_into)}">#${esc(i.merged_into)}</a></div>` : "";
  const sev = i.severity ? `<span class="badge sev-${esc(i.severity)}" data-severity="${esc(i.severity)}" title="${esc(t("severity"))}">${esc(sevName(i.severity))}</span>` : "";
  const tier = i.tier ? `<span class="badge tier-${esc(i.tier)}">${esc(tierName(i.tier))}</span>` : "";
  return `<div class="incident ${i.state} sev-${esc(i.severity || "none")}" data-incident="${i.id}" data-kind="${esc(i.kind)}" data-severity="${esc(i.severity || "")}">
    <div class="head">${sev}${tier}<a class="inc kind" href="#/incident/${i.id}">${esc(kindName(i.kind))}</a>
      <span class="scope">${esc(scopeText(i.scope))}</span></div>
    <div class="meta">${t("affected")}: ${i.affected.terminals} ${t("terminals_l")} · ${i.affected.stores} ${t("stores_l")} · ${i.affected.merchants} ${t("merchants_l")}</div>
    <div class="meta when">${when}</div>${merged}
    <p class="explanation">${esc(i.explanation[lang])}</p>
    ${rem ? `<div class="meta">${t("remediation")}:</div><ul>${rem}</ul>` : ""}
  </div>`;
}

// Filters over the active incidents: kind, severity, scope label (client side).
let filt = { kind: "", severity: "", scope: "" };
function filterBar() {
  const kinds = [...new Set(data.active.map((i) => i.kind))].sort();
  const sevs = [...new Set(data.active.map((i) => i.severity).filter(Boolean))].sort((a, b) => (SEV_RANK[a] ?? 4) - (SEV_RANK[b] ?? 4));
  const keys = [...new Set(data.active.flatMap((i) => Object.keys(i.scope || {})))].sort();
  const sel = (id, label, vals, cur, name) => `<label>${t(label)} <select id="${id}"><option value="">${t("any")}</option>${vals.map((v) => `<option value="${esc(v)}" ${v === cur ? "selected" : ""}>${esc(name(v))}</option>`).join("")}</select></label>`;
  return sel("f-kind", "filter_kind", kinds, filt.kind, kindName) + sel("f-sev", "filter_severity", sevs, filt.severity, sevName) + sel("f-scope", "filter_scope", keys, filt.scope, labelName);
}
function filtered() {
  return data.active.filter((i) => (!filt.kind || i.kind === filt.kind) && (!filt.severity || i.severity === filt.severity)
    && (!filt.scope || Object.prototype.hasOwnProperty.call(i.scope || {}, filt.scope))).sort(byUrgency);
}

function successClass() {
  const r = data.summary && data.summary.last_hour.success_rate;
  return r == null ? "" : r > 0.95 ? "ok" : r > 0.85 ? "warn" : "bad";
}

function tiles() {
  const s = data.summary;
  const c = s ? s.terminals : { total: "-", online: "-", stale: "-", offline: "-" };
  return `<div class="tile"><div class="n" id="n-total">${c.total}</div><div class="l">${t("terminals")}</div></div>
      <div class="tile"><div class="n ok" id="n-online">${c.online}</div><div class="l">${stateName("online")}</div></div>
      <div class="tile"><div class="n warn">${c.stale}</div><div class="l">${stateName("stale")}</div></div>
      <div class="tile"><div class="n bad">${c.offline}</div><div class="l">${stateName("offline")}</div></div>
      <div class="tile"><div class="n ${data.active.length ? "bad" : "ok"}" id="n-incidents">${data.active.length}</div><div class="l">${t("active_incidents")}</div></div>
      <div class="tile"><div class="n">${s ? s.last_hour.attempts : "-"}</div><div class="l">${t("payments_hour")}</div></div>
      <div class="tile"><div class="n ${successClass()}">${s && s.last_hour.success_rate != null ? pct(s.last_hour.success_rate) : "-"}</div><div class="l">${t("success_rate")}</div></div>`;
}

// Failures by class per minute over the last hour, as stacked bars with a time axis and a count
// axis (cardholder declines are shown too: they are normal, and their share tells ops at a
// glance that nothing else is).
const CLASS_COLORS = { cardholder: "#6e7681", fraud_risk: "#8957e5", merchant_config: "#f85149", terminal_config: "#db6d28",
  terminal_fault: "#d29922", network: "#58a6ff", platform: "#ff7b72", issuer: "#a371f7", settlement: "#3fb950", other: "#8b98a5" };
function failureChart(id = "failure-chart", height = 150) {
  const mins = ((data.summary && data.summary.per_minute) || []).slice(-60);
  if (!mins.length) return "";
  const L = 48, B = 22, T = 22, W = 960, H = 150, plotW = W - L - 8, plotH = H - B - T;
  const bw = Math.max(2, Math.floor(plotW / 60) - 2);
  const max = Math.max(1, ...mins.map((m) => Object.values(m.failures).reduce((a, b) => a + b, 0)));
  const x0 = mins[mins.length - 1].minute_unix_ms - 59 * 60000;
  const xOf = (ms) => L + ((ms - x0) / 60000) * (plotW / 60);
  let g = "";
  for (const f of [0, 0.5, 1]) {
    const y = T + plotH - f * plotH, v = Math.round(f * max);
    g += `<line x1="${L}" x2="${W - 8}" y1="${y}" y2="${y}" stroke="#26313d"/><text x="${L - 6}" y="${y + 4}" text-anchor="end" class="axis">${v}</text>`;
  }
  for (let k = 0; k <= 60; k += 10) {
    const ms = x0 + k * 60000;
    g += `<text x="${xOf(ms)}" y="${H - 6}" text-anchor="${k === 0 ? "start" : k === 60 ? "end" : "middle"}" class="axis">${esc(fmtClock(ms))}</text>`;
  }
  g += `<text x="${L}" y="12" class="axis">${t("count_axis")} / ${t("minutes")}</text>`;
  let bars = "";
  for (const m of mins) {
    let y = T + plotH;
    for (const [cls, n] of Object.entries(m.failures)) {
      const h = (n / max) * plotH;
      y -= h;
      bars += `<rect x="${xOf(m.minute_unix_ms).toFixed(1)}" y="${y.toFixed(1)}" width="${bw}" height="${h.toFixed(1)}" fill="${CLASS_COLORS[cls] || "#8b98a5"}"><title>${esc(fmtClock(m.minute_unix_ms))} ${esc(className(cls))}: ${n}</title></rect>`;
    }
  }
  const legend = Object.entries(CLASS_COLORS).map(([c, col]) => `<span data-style="color:${col}">■</span> ${esc(className(c))}`).join(" &nbsp; ");
  return `<h2>${t("failures_by_class")}</h2><div class="tile chart"><svg id="${id}" viewBox="0 0 ${W} ${H}" width="100%" height="${height}" role="img" aria-label="${t("failures_by_class")}">${g}${bars}</svg><div class="meta legend">${legend}</div></div>`;
}

// The breakdown: rows = label values, columns = time buckets (newest first), cell = failure
// rate; the header row and the value column stay put while scrolling.
let heat = { by: "region", range: 1, sort: "worst", html: "" };

function heatColor(rate, attempts) {
  if (!attempts) return "";
  // 0 → calm; 20 % and above → full alarm red.
  const a = Math.min(1, rate / 0.2);
  return `background:rgba(248,81,73,${(0.1 + 0.85 * a).toFixed(2)})`;
}

function heatTable(b) {
  if (!b.values.length) return `<div class="empty">${t("no_data")}</div>`;
  const order = b.buckets.map((_, i) => i).reverse();
  const step = Math.max(1, Math.ceil(order.length / 12));
  const head = order.map((i, k) => `<th class="col" data-bucket="${b.buckets[i]}">${k % step === 0 ? esc(fmtClock(b.buckets[i])) : ""}</th>`).join("");
  const rows = b.values.slice().sort((x, y) => heat.sort === "name" ? String(x.value).localeCompare(String(y.value))
    : heat.sort === "volume" ? y.attempts - x.attempts : y.failure_rate - x.failure_rate || y.failures - x.failures);
  const body = rows.map((v) => {
    const cells = order.map((i) => {
      const n = v.series.attempts[i], f = v.series.failures[i];
      const rate = n ? f / n : 0;
      const title = `${v.value} · ${fmtClock(b.buckets[i])} · ${t("failure_rate")} ${n ? pct(rate) : "-"} · ${t("failures")} ${f} / ${t("attempts")} ${n} · ${t("declines")} ${v.series.declines[i]}`;
      return `<td class="cell" data-rate="${n ? rate.toFixed(4) : ""}" data-attempts="${n}" data-style="${heatColor(rate, n)}" title="${esc(title)}">${n ? (rate * 100).toFixed(rate > 0 && rate < 0.1 ? 1 : 0) : ""}</td>`;
    }).join("");
    return `<tr data-value="${esc(v.value)}"><th class="rowh">${esc(v.value)}</th>
      <td class="cell tot" data-style="${heatColor(v.failure_rate, v.attempts)}" title="${esc(`${t("failures")} ${v.failures} / ${t("attempts")} ${v.attempts}`)}">${pct(v.failure_rate)}</td>
      <td class="cell">${v.failures}/${v.attempts}</td><td class="cell">${v.declines}</td>${cells}</tr>`;
  }).join("");
  return `<div class="scroll heat-wrap"><table class="heat" id="heat-table" data-by="${esc(b.by)}" data-range="${heat.range}" data-from="${b.buckets[0] ?? ""}"><thead><tr><th class="rowh">${esc(labelName(b.by))}</th><th>${t("failure_rate")}</th><th>${t("failures")}/${t("attempts")}</th><th>${t("declines")}</th>${head}</tr></thead><tbody>${body}</tbody></table></div>
    <div class="meta">${t("heat_note")} (%)</div>`;
}

async function loadHeat() {
  const el = $("heat");
  if (!el) return;
  const now = Date.now();
  const from = now - heat.range * 3600e3;
  const bucket = heat.range > 6 ? "&bucket=1h" : "";
  try {
    const b = await getJson(`/api/v1/breakdown?by=${encodeURIComponent(heat.by)}&from=${from}&to=${now}&limit=30${bucket}`);
    heat.html = heatTable(b);
    if ($("heat")) $("heat").innerHTML = heat.html;
  } catch (e) {
    handleError(e, el);
  }
}

function overviewSkeleton() {
  const opts = LABELS.map((l) => `<option value="${l}" ${l === heat.by ? "selected" : ""}>${esc(labelName(l))}</option>`).join("");
  const ranges = [[1, "last_1h"], [6, "last_6h"], [24, "last_24h"]].map(([h, k]) => `<option value="${h}" ${heat.range === h ? "selected" : ""}>${t(k)}</option>`).join("");
  const sorts = ["worst", "volume", "name"].map((k) => `<option value="${k}" ${heat.sort === k ? "selected" : ""}>${t("sort_" + k)}</option>`).join("");
  return `<div id="ov"><section class="tiles" id="tiles"></section><div id="chart"></div>
    <h2>${t("incidents_active")}</h2><div class="controls" id="filters"></div><div id="active"></div>
    <h2 id="breakdown">${t("heat_title")}</h2>
    <div class="controls"><label>${t("heat_by")} <select id="heat-by">${opts}</select></label>
      <label>${t("heat_range")} <select id="heat-range">${ranges}</select></label>
      <label>${t("heat_sort")} <select id="heat-sort">${sorts}</select></label></div>
    <div id="heat">${heat.html}</div>
    <h2>${t("incidents_resolved")}</h2><div id="resolved"></div></div>`;
}

function renderActive() {
  const list = filtered();
  $("active").innerHTML = list.length ? list.map(incidentCard).join("") : `<div class="empty">${t("none_active")}</div>`;
}

function renderOverview(full) {
  const view = $("view");
  if (full || !$("ov")) {
    view.innerHTML = overviewSkeleton();
    $("heat-by").addEventListener("change", (ev) => { heat.by = ev.target.value; heat.html = ""; $("heat").innerHTML = ""; loadHeat(); });
    $("heat-range").addEventListener("change", (ev) => { heat.range = Number(ev.target.value); loadHeat(); });
    $("heat-sort").addEventListener("change", (ev) => { heat.sort = ev.target.value; loadHeat(); });
  }
  $("tiles").innerHTML = tiles();
  $("chart").innerHTML = failureChart();
  $("filters").innerHTML = filterBar();
  for (const [id, key] of [["f-kind", "kind"], ["f-sev", "severity"], ["f-scope", "scope"]]) {
    $(id).addEventListener("change", (ev) => { filt[key] = ev.target.value; renderActive(); });
  }
  renderActive();
  $("resolved").innerHTML = data.resolved.length ? data.resolved.map(incidentCard).join("") : `<div class="empty">${t("none_resolved")}</div>`;
  loadHeat();
}

// ---------------------------------------------------------------------- incident detail

function evidenceChart(e) {
  // Observed against expected failures in the incident's window, as two bars on a count axis.
  const max = Math.max(e.failures, e.expected_failures, 1);
  const W = 460, L = 90, plotW = 300;
  const w = (x) => Math.max(2, (x / max) * plotW);
  const win = e.window_secs ? Math.round(e.window_secs / 60) : null;
  const unit = `${t("failures")}${win ? ` / ${win} ${t("minutes")}` : ""}`;
  let axis = "";
  for (const f of [0, 0.5, 1]) {
    axis += `<line x1="${L + f * plotW}" x2="${L + f * plotW}" y1="4" y2="58" stroke="#26313d"/><text x="${L + f * plotW}" y="72" text-anchor="middle" class="axis">${Math.round(f * max)}</text>`;
  }
  return `<svg width="${W}" height="90" role="img" aria-label="${t("evidence")}" id="evidence-chart">${axis}
    <text x="0" y="20" class="axis">${t("observed")}</text><rect x="${L}" y="8" height="16" width="${w(e.failures)}" fill="#f85149"></rect>
    <text x="${L + 6 + w(e.failures)}" y="20" fill="#e6edf3" font-size="12">${e.failures.toFixed(0)}</text>
    <text x="0" y="48" class="axis">${t("expected")}</text><rect x="${L}" y="36" height="16" width="${w(e.expected_failures)}" fill="#3fb950"></rect>
    <text x="${L + 6 + w(e.expected_failures)}" y="48" fill="#e6edf3" font-size="12">${e.expected_failures.toFixed(1)}</text>
    <text x="${L}" y="86" class="axis">${esc(unit)}</text></svg>`;
}

async function incidentDetail(id) {
  let i;
  try { i = await getJson(`/api/v1/incidents/${encodeURIComponent(id)}`); } catch (e) { return `<div class="empty">${esc(e.message)}</div>`; }
  const e = i.evidence;
  const codes = e.top_codes.map((c) => `<tr><td>${esc(c.scheme)}</td><td><code>${esc(c.code)}</code></td><td>${esc(className(c.class))}</td><td class="cell">${c.count}</td><td>${esc(c.meaning[lang] || "")}</td></tr>`).join("");
  const ex = e.examples.map((x) => `<tr><td><a href="#/terminal/${encodeURIComponent(x.terminal_id)}">${esc(x.terminal_id)}</a></td><td>${fmtTime(x.time_unix_ms)}</td><td>${esc(x.scheme)}</td><td><code>${esc(x.code)}</code></td></tr>`).join("");
  const tl = (i.timeline || []).map((x) => `<tr><td>${fmtTime(x.at_unix_ms)}</td><td>${esc(eventName(x.event))}</td><td class="cell">${x.affected_terminals}</td><td>${esc(x.explanation[lang])}</td></tr>`).join("");
  const dev = e.device ? ` · ${t("device")}: ${num(e.device.temperature_c.now, 0)} °C (${t("usual")} ${num(e.device.temperature_c.baseline, 0)}), ${t("cpu")} ${num(e.device.cpu_percent.now, 0)}% (${t("usual")} ${num(e.device.cpu_percent.baseline, 0)}%)` : "";
  // While the incident is open the page is fetched again on every live event (render), so the
  // evidence follows detection's re-judgement without a reload.
  const live = i.state === "active" ? ` · <span class="live-note">${t("evidence_live")}</span>` : "";
  return `<p><a href="#/">${t("back")}</a></p><div id="incident-detail" data-incident="${i.id}" data-updated="${i.updated_unix_ms}" data-fetched="${Date.now()}">${incidentCard(i)}
    <div class="meta">${t("updated_at")} ${fmtTime(i.updated_unix_ms)}${live}</div>
    <h2>${t("evidence")}</h2><div class="tile">${evidenceChart(e)}
      <div class="meta" id="evidence-numbers" data-attempts="${e.attempts}" data-failures="${e.failures}">${t("attempts")}: ${e.attempts} · ${t("failures")}: ${e.failures.toFixed(0)} · ${t("expected")}: ${e.expected_failures.toFixed(1)} · ${t("significance")}: ${e.significance.toFixed(1)} · ${t("silent")}: ${e.silent_terminals}${dev}</div>
      <div class="meta">${t("evidence_note")}</div></div>
    <h2>${t("top_codes")}</h2><table id="top-codes"><tr><th>${t("scheme")}</th><th>${t("code")}</th><th>${t("class_")}</th><th>${t("count")}</th><th>${t("meaning")}</th></tr>${codes}</table>
    <h2>${t("examples")}</h2><table><tr><th>${labelName("terminal_id")}</th><th>${t("time")}</th><th>${t("scheme")}</th><th>${t("code")}</th></tr>${ex}</table>
    <h2>${t("timeline")}</h2><table id="incident-timeline"><tr><th>${t("time")}</th><th>${t("state")}</th><th>${t("affected")}</th><th>${t("meaning")}</th></tr>${tl}</table></div>`;
}

// ------------------------------------------------------------------------- terminals

let search = { q: "", state: "", label: "", value: "", after: null, back: [] };

function stateClass(s) { return s === "online" ? "ok" : s === "stale" ? "warn" : s === "offline" ? "bad" : ""; }

function terminalsForm() {
  const states = ["", "online", "stale", "offline"].map((s) => `<option value="${s}" ${s === search.state ? "selected" : ""}>${s ? stateName(s) : t("any_state")}</option>`).join("");
  const labels = [""].concat(LABELS).map((l) => `<option value="${l}" ${l === search.label ? "selected" : ""}>${l ? esc(labelName(l)) : t("any_label")}</option>`).join("");
  return `<form id="term-form" class="controls">
      <input type="search" id="q" placeholder="${t("search")}" value="${esc(search.q)}">
      <select id="t-state">${states}</select>
      <select id="t-label">${labels}</select>
      <input type="text" id="t-value" placeholder="${t("value")}" value="${esc(search.value)}">
      <button type="submit" id="t-search">${t("search_btn")}</button></form>
    <div id="term-results"></div>`;
}

async function loadTerminals() {
  const el = $("term-results");
  if (!el) return;
  const p = new URLSearchParams();
  if (search.q) p.set("q", search.q);
  if (search.state) p.set("state", search.state);
  if (search.label && search.value) p.set(search.label, search.value);
  if (search.after) p.set("after", search.after);
  p.set("limit", "50");
  let v;
  try { v = await getJson("/api/v1/terminals?" + p.toString()); } catch (e) { handleError(e, el); return; }
  const body = v.terminals.map((x) => `<tr class="term" data-terminal="${esc(x.terminal_id)}"><td><a href="#/terminal/${encodeURIComponent(x.terminal_id)}">${esc(x.terminal_id)}</a></td>
    <td class="${stateClass(x.state)}">${stateName(x.state)}</td>
    <td>${esc(x.labels?.merchant_id)}</td><td>${esc(x.labels?.store_id)}</td><td>${esc(x.labels?.region)}</td><td>${esc(x.labels?.acquirer)}</td>
    <td>${esc(x.labels?.carrier)}</td><td>${esc(x.labels?.firmware)}</td><td>${fmtTime(x.last_seen_unix_ms)}</td><td>${x.records_received}</td></tr>`).join("");
  el.innerHTML = `<div class="meta" id="t-total">${v.total} ${t("found")}</div>
    <table><tr><th>${labelName("terminal_id")}</th><th>${t("state")}</th>${["merchant_id", "store_id", "region", "acquirer", "carrier", "firmware"].map((k) => `<th>${labelName(k)}</th>`).join("")}<th>${t("last_seen")}</th><th>${t("records")}</th></tr>${body}</table>
    <div class="controls"><button type="button" id="t-prev" ${search.back.length ? "" : "disabled"}>${t("prev")}</button>
    <button type="button" id="t-next" ${v.next ? "" : "disabled"}>${t("next")}</button></div>`;
  $("t-prev").addEventListener("click", () => { search.after = search.back.pop() ?? null; loadTerminals(); });
  $("t-next").addEventListener("click", () => { search.back.push(search.after); search.after = v.next; loadTerminals(); });
}

function renderTerminals() {
  $("view").innerHTML = terminalsForm();
  $("term-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search = { q: $("q").value.trim(), state: $("t-state").value, label: $("t-label").value, value: $("t-value").value.trim(), after: null, back: [] };
    loadTerminals();
  });
  loadTerminals();
}

const STATE_COLORS = { online: "#3fb950", stale: "#d29922", offline: "#f85149", unknown: "#3a4654" };
// The state strip starts at the terminal's first contact (or 24 h ago): nothing before it is
// shown, and the moment between its first Hello and its first record is no outage.
function stateStrip(d) {
  const first = d.first_seen_unix_ms || d.window.from_unix_ms;
  const from = Math.max(d.window.from_unix_ms, first), to = d.window.to_unix_ms, W = 1000, H = 26;
  const hist = d.state_history
    .filter((s) => s.to_unix_ms > from && s.state !== "unknown")
    .map((s) => ({ ...s, from_unix_ms: Math.max(s.from_unix_ms, from) }))
    // Between its first Hello and its first record (seconds) a terminal is connected.
    .map((s) => (s.state === "offline" && s.from_unix_ms <= first + 60000 && s.to_unix_ms - s.from_unix_ms < 60000 ? { ...s, state: "online" } : s));
  const x = (ms) => ((ms - from) / Math.max(1, to - from)) * W;
  const rects = hist.map((s) => `<rect x="${x(s.from_unix_ms).toFixed(1)}" y="0" width="${Math.max(0.5, x(s.to_unix_ms) - x(s.from_unix_ms)).toFixed(1)}" height="${H}" fill="${STATE_COLORS[s.state]}" data-state="${s.state}"><title>${stateName(s.state)}: ${fmtAbs(s.from_unix_ms)} – ${fmtAbs(s.to_unix_ms)}</title></rect>`).join("");
  let ticks = "";
  for (let k = 0; k <= 8; k++) {
    const ms = from + (k * (to - from)) / 8;
    ticks += `<text x="${Math.min(W - 30, x(ms))}" y="${H + 14}" fill="#8b98a5" font-size="11">${esc(fmtClock(ms))}</text>`;
  }
  const legend = ["online", "stale", "offline"].map((s) => `<span data-style="color:${STATE_COLORS[s]}">■</span> ${stateName(s)}`).join(" &nbsp; ");
  const mins = (s) => Math.max(1, Math.round((s.to_unix_ms - s.from_unix_ms) / 60000));
  const gaps = hist.filter((s) => s.state === "offline" || s.state === "stale").slice(-8).reverse()
    .map((s) => `<tr><td class="${stateClass(s.state)}">${stateName(s.state)}</td><td>${fmtTime(s.from_unix_ms)}</td><td>${fmtTime(s.to_unix_ms)}</td><td class="cell">${mins(s)} ${t("minutes")}</td></tr>`).join("");
  return `<div class="tile"><svg id="state-strip" viewBox="0 0 ${W} ${H + 18}" width="100%" height="${H + 18}" preserveAspectRatio="none" role="img" aria-label="${t("state_history")}">${rects}${ticks}</svg>
    <div class="meta">${legend}${d.window.truncated ? " · " + t("truncated") : ""}</div>
    ${gaps ? `<table id="gaps"><tr><th>${t("state")}</th><th>${t("starts")}</th><th>${t("ends")}</th><th></th></tr>${gaps}</table>` : ""}</div>`;
}

async function terminalDetail(id) {
  let d;
  try { d = await getJson(`/api/v1/terminals/${encodeURIComponent(id)}`); } catch (e) {
    if (e instanceof NeedToken) { askToken(); return ""; }
    return `<p><a href="#/terminals">${t("back")}</a></p><div class="empty">${esc(e.message)}</div>`;
  }
  const labels = d.labels ? Object.entries(d.labels).map(([k, v]) => `<tr><th>${esc(labelName(k))}</th><td>${esc(v)}</td></tr>`).join("") : "";
  const health = d.health.map((h) => { const b = h.heartbeat; return `<tr><td>${fmtTime(h.time_unix_ms)}</td><td>${num(b.cpu_percent)}%</td>
    <td>${mb(b.mem_used_bytes)} / ${mb(b.mem_total_bytes)}</td><td>${mb(b.disk_free_bytes)}</td><td>${b.temperature_c == null ? "-" : num(b.temperature_c) + " °C"}</td>
    <td>${b.battery_percent == null ? "-" : num(b.battery_percent, 0) + "%"}</td><td>${b.spool_records}</td></tr>`; }).join("");
  const net = d.network.map((n) => { const b = n.net_quality;
    const eps = b.endpoints.map((p) => `${esc(p.name)}: ${p.error ? `<span class="bad">${esc(p.error)}</span>` : `${num(p.dns_ms, 0)}/${num(p.tcp_connect_ms, 0)} ms`}`).join(", ");
    return `<tr><td>${fmtTime(n.time_unix_ms)}</td><td>${num(b.rtt_ms)} ms</td><td>${num(b.jitter_ms)} ms</td><td>${num(b.loss_percent)}%</td><td>${eps}</td></tr>`; }).join("");
  const o = d.outcomes;
  const classes = Object.entries(o.by_class).map(([c, n]) => `<tr><td><span data-style="color:${CLASS_COLORS[c] || "#8b98a5"}">■</span> ${esc(className(c))}</td><td class="cell">${n}</td></tr>`).join("");
  const errors = d.recent_errors.map((x) => `<tr class="err"><td>${fmtTime(x.time_unix_ms)}</td><td>${esc(x.scheme)}</td><td><code>${esc(x.code)}</code></td>
    <td>${esc(className(x.class))}</td><td class="meaning">${esc(x.meaning[lang] || x.meaning.en || "")}</td></tr>`).join("");
  const none = `<div class="empty">${t("none")}</div>`;
  // Records the collector quarantined (a bad label, a number out of range): shown only when
  // there are any. Their reason comes from the collector, in English.
  let quarantined = "";
  try {
    const q = await getJson(`/api/v1/terminals/${encodeURIComponent(id)}/quarantined?limit=20`);
    if (q.records.length) {
      const rows = q.records.map((r) => `<tr class="quarantined"><td>${fmtTime(r.received_unix_ms)}</td><td>${esc(r.kind)}</td><td><code>${esc(r.field)}</code></td>
        <td>${esc(r.reason)}</td><td><code>${esc(r.body)}</code></td></tr>`).join("");
      quarantined = `<h2>${t("quarantined")}</h2><p class="meta">${t("quarantined_help")}</p>
        <table id="quarantined"><tr><th>${t("received")}</th><th>${t("kind_")}</th><th>${t("field")}</th><th>${t("reason")}</th><th></th></tr>${rows}</table>`;
    }
  } catch (e) { /* the rest of the page still shows */ }
  return `<p><a href="#/terminals">${t("back")}</a></p>
    <div class="tile term-head" id="terminal-detail" data-terminal="${esc(d.terminal_id)}"><span class="tid">${esc(d.terminal_id)}</span>
      <span class="${stateClass(d.state)}">${stateName(d.state)}</span> <span class="meta">${t("first_seen")}: ${fmtTime(d.first_seen_unix_ms)} · ${t("last_seen")}: ${fmtTime(d.last_seen_unix_ms)} · ${t("records")}: ${d.records_received} · ${t("agent_version")} ${esc(d.agent_version)}</span></div>
    <h2>${t("state_history")}</h2>${stateStrip(d)}
    <div class="grid2"><div><h2>${t("labels")}</h2>${labels ? `<table>${labels}</table>` : none}</div>
      <div><h2>${t("outcomes")}</h2><table id="outcomes"><tr><th>${t("attempts")}</th><td class="cell">${o.attempts}</td></tr><tr><th>${t("approved")}</th><td class="cell">${o.approved}</td></tr>${classes}</table></div></div>
    ${quarantined}
    <h2>${t("recent_errors")}</h2>${errors ? `<table id="recent-errors"><tr><th>${t("time")}</th><th>${t("scheme")}</th><th>${t("code")}</th><th>${t("class_")}</th><th>${t("meaning")}</th></tr>${errors}</table>` : none}
    <h2>${t("health")}</h2>${health ? `<table><tr><th>${t("time")}</th><th>${t("cpu")}</th><th>${t("memory")}</th><th>${t("disk")}</th><th>${t("temperature")}</th><th>${t("battery")}</th><th>${t("spool")}</th></tr>${health}</table>` : none}
    <h2>${t("network")}</h2>${net ? `<table><tr><th>${t("time")}</th><th>${t("rtt")}</th><th>${t("jitter")}</th><th>${t("loss")}</th><th>${t("endpoints")}</th></tr>${net}</table>` : none}`;
}

// --------------------------------------------------------------- silences & maintenance

const DURATIONS = [["1h", 3600e3], ["4h", 4 * 3600e3], ["24h", 24 * 3600e3], ["7d", 7 * 24 * 3600e3]];
const durationSelect = (id) => `<select id="${id}">${DURATIONS.map(([n, ms]) => `<option value="${ms}">${n}</option>`).join("")}</select>`;
const splitList = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);

function silencesSkeleton() {
  return `<div id="role-note" class="empty" hidden></div><h2>${t("silences")}</h2><div id="silences-list"></div>
    <form id="silence-form" class="tile form"><b>${t("new_silence")}</b>
      <label>${t("matchers")} <input type="text" id="s-matchers" placeholder="${t("matchers_hint")}" required></label>
      <label>${t("duration")} ${durationSelect("s-duration")}</label>
      <label>${t("author")} <input type="text" id="s-author" value="${esc(localStorage.getItem("storepulse.author") || "")}" required></label>
      <label>${t("comment")} <input type="text" id="s-comment"></label>
      <button type="submit" id="s-create">${t("create")}</button><div id="silence-msg"></div></form>
    <h2>${t("windows")}</h2><div id="windows-list"></div>
    <form id="window-form" class="tile form"><b>${t("new_window")}</b>
      <label>${t("scope")} <input type="text" id="w-scope" placeholder="${t("scope_hint")}" required></label>
      <label>${t("duration")} ${durationSelect("w-duration")}</label>
      <label>${t("announcement")} <input type="text" id="w-announcement"></label>
      <button type="submit" id="w-create">${t("create")}</button><div id="window-msg"></div></form>`;
}

async function loadSilences() {
  const sl = $("silences-list"), wl = $("windows-list");
  if (!sl) return;
  let s, w, me;
  try {
    [s, w, me] = await Promise.all([getJson("/api/v1/alerts/silences"), getJson("/api/v1/alerts/maintenance"), getJson("/api/v1/whoami")]);
  } catch (e) { handleError(e, sl); return; }
  const note = $("role-note");
  if (note) {
    note.hidden = me.can_change;
    note.textContent = me.can_change ? "" : t("read_only_role").replace("{name}", me.token);
  }
  const iso = (x) => fmtTime(Date.parse(x));
  sl.innerHTML = s.silences.length ? `<table id="silences-table"><tr><th>${t("matchers")}</th><th>${t("starts")}</th><th>${t("ends")}</th><th>${t("author")}</th><th>${t("comment")}</th><th></th></tr>
    ${s.silences.map((x) => `<tr data-silence="${esc(x.id)}"><td><code>${esc(x.matchers.join(", "))}</code></td><td>${iso(x.starts_at)}</td><td>${iso(x.ends_at)}</td>
      <td>${esc(x.author)}</td><td>${esc(x.comment)}</td><td><button type="button" class="end" data-kind="silences" data-id="${esc(x.id)}">${t("end")}</button></td></tr>`).join("")}</table>`
    : `<div class="empty" id="no-silences">${t("none_silences")}</div>`;
  wl.innerHTML = w.maintenance.length ? `<table id="windows-table"><tr><th>${t("scope")}</th><th>${t("starts")}</th><th>${t("ends")}</th><th>${t("announcement")}</th><th></th></tr>
    ${w.maintenance.map((x) => `<tr data-window="${esc(x.id)}"><td><code>${esc(Object.entries(x.scope).map(([k, v]) => `${k}=${v}`).join(", "))}</code></td><td>${iso(x.starts_at)}</td>
      <td>${iso(x.ends_at)}</td><td>${esc(x.announcement)}</td><td><button type="button" class="end" data-kind="maintenance" data-id="${esc(x.id)}">${t("end")}</button></td></tr>`).join("")}</table>`
    : `<div class="empty" id="no-windows">${t("none_windows")}</div>`;
  document.querySelectorAll("button.end").forEach((b) => b.addEventListener("click", async () => {
    const msg = b.dataset.kind === "silences" ? $("silence-msg") : $("window-msg");
    try {
      await api("DELETE", `/api/v1/alerts/${b.dataset.kind}/${encodeURIComponent(b.dataset.id)}`);
      msg.innerHTML = `<div class="msg ok">${t("ended")}</div>`;
      loadSilences();
    } catch (e) { handleError(e, msg); }
  }));
}

function renderSilences() {
  $("view").innerHTML = silencesSkeleton();
  $("silence-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("silence-msg");
    const author = $("s-author").value.trim();
    localStorage.setItem("storepulse.author", author);
    const body = { matchers: splitList($("s-matchers").value), ends_at: new Date(Date.now() + Number($("s-duration").value)).toISOString(),
      author, comment: $("s-comment").value.trim() };
    try {
      await api("POST", "/api/v1/alerts/silences", body);
      msg.innerHTML = `<div class="msg ok">${t("created")}</div>`;
      loadSilences();
    } catch (e) { handleError(e, msg); }
  });
  $("window-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("window-msg");
    const scope = {};
    for (const kv of splitList($("w-scope").value)) {
      const i = kv.indexOf("=");
      if (i > 0) scope[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
    }
    const body = { scope, ends_at: new Date(Date.now() + Number($("w-duration").value)).toISOString(), announcement: $("w-announcement").value.trim() };
    try {
      await api("POST", "/api/v1/alerts/maintenance", body);
      msg.innerHTML = `<div class="msg ok">${t("created")}</div>`;
      loadSilences();
    } catch (e) { handleError(e, msg); }
  });
  loadSilences();
}

// ---------------------------------------------------------------------------- routing

// `full`: the route or the language changed (rebuild the page); otherwise a live refresh,
// which only updates pages without forms the user may be typing in.
async function render(full = true) {
  applyStatic();
  document.body.classList.toggle("wall-mode", (location.hash || "").startsWith("#/wall"));
  if ($("token-form")) return;
  const view = $("view");
  const hash = location.hash || "#/";
  if (hash.startsWith("#/incident/")) {
    view.innerHTML = await incidentDetail(hash.slice("#/incident/".length));
  } else if (hash.startsWith("#/terminal/")) {
    if (full) view.innerHTML = await terminalDetail(decodeURIComponent(hash.slice("#/terminal/".length)));
  } else if (hash.startsWith("#/terminals")) {
    if (full) renderTerminals();
  } else if (hash.startsWith("#/silences")) {
    if (full) renderSilences();
  } else if (hash.startsWith("#/wall")) {
    if (full) wallRegions = { at: 0, html: "" };
    await renderWall();
  } else {
    renderOverview(full);
  }
}

$("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("storepulse.lang", lang);
  render(true);
});
$("token-btn").addEventListener("click", () => { $("view").innerHTML = ""; askToken(); });
window.addEventListener("hashchange", () => render(true));

// Live updates: Server-Sent Events from /api/v1/events, read with fetch so the API token can
// travel in a header (EventSource cannot send one). Every event triggers a refresh; if the
// stream fails, poll every 5 s and retry the stream later.
async function listen() {
  try {
    const headers = token ? { authorization: "Bearer " + token } : {};
    const r = await fetch("/api/v1/events", { headers });
    if (!r.ok || !r.body) throw new Error("events: " + r.status);
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (/^event: (update|tick)/m.test(block)) refresh();
      }
    }
  } catch (e) {
    // fall through to the retry below
  }
  setTimeout(listen, 5000);
}
render(true);
refresh();
listen();
setInterval(() => { if ($("conn").className !== "ok") refresh(); }, 5000);
