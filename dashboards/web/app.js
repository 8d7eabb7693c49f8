// storepulse dashboard: a small, dependency-free single-page app over the public HTTP API
// (/api/v1/terminals, /api/v1/incidents). Refreshes every few seconds without reloading.
"use strict";

const I18N = {
  en: {
    subtitle: "payment terminal fleet", nav_overview: "Overview", nav_terminals: "Terminals", updated: "Updated",
    terminals: "Terminals", online: "Online", stale: "Stale", offline: "Offline", active_incidents: "Active incidents",
    incidents_active: "Active incidents", incidents_resolved: "Recently resolved", none_active: "No active incidents.",
    none_resolved: "Nothing resolved recently.", affected: "affected", terminals_l: "terminals", stores_l: "stores",
    merchants_l: "merchants", since: "since", resolved_at: "resolved", remediation: "What to do", evidence: "Evidence",
    top_codes: "Top codes", examples: "Examples", timeline: "Timeline", observed: "observed", expected: "expected",
    failures: "failures", attempts: "attempts", significance: "significance", breakdown: "Online share by label",
    search: "Search terminal, merchant, store, region…", state: "State", last_seen: "Last seen", records: "Records",
    back: "← back", label: "Label", value: "Value", silent: "silent terminals", live: "live", disconnected: "API unreachable",
    token_needed: "This collector requires an API token (read-only is enough).", token: "API token", save: "Save",
    payments_hour: "Payments, last hour", success_rate: "Success rate", failures_by_class: "Failures by class, per minute",
    kind: { terminal_fault: "Terminal fault", terminal_config: "Terminal configuration", store_network: "Store network",
      store_offline: "Store offline", merchant_config: "Merchant configuration", firmware_regression: "Firmware regression",
      carrier_outage: "Carrier outage", regional_outage: "Regional outage", acquirer_outage: "Acquirer outage",
      acquirer_maintenance: "Acquirer maintenance", qr_notification_delay: "QR notification delay", unknown: "Unknown" },
  },
  zh: {
    subtitle: "支付终端集群", nav_overview: "总览", nav_terminals: "终端", updated: "更新于",
    terminals: "终端总数", online: "在线", stale: "迟滞", offline: "离线", active_incidents: "进行中事件",
    incidents_active: "进行中事件", incidents_resolved: "最近已恢复", none_active: "当前没有进行中的事件。",
    none_resolved: "最近没有已恢复的事件。", affected: "受影响", terminals_l: "台终端", stores_l: "家门店",
    merchants_l: "个商户", since: "开始于", resolved_at: "恢复于", remediation: "处置建议", evidence: "证据",
    top_codes: "主要响应码", examples: "示例", timeline: "时间线", observed: "实际", expected: "预期",
    failures: "失败", attempts: "交易", significance: "显著性", breakdown: "按标签统计在线率",
    search: "搜索终端、商户、门店、区域…", state: "状态", last_seen: "最近上报", records: "记录数",
    back: "← 返回", label: "标签", value: "值", silent: "静默终端", live: "实时", disconnected: "无法连接接口",
    token_needed: "该采集端需要 API 令牌（只读令牌即可）。", token: "API 令牌", save: "保存",
    payments_hour: "近一小时交易", success_rate: "成功率", failures_by_class: "每分钟失败交易（按类别）",
    kind: { terminal_fault: "终端故障", terminal_config: "终端配置错误", store_network: "门店网络",
      store_offline: "门店离线", merchant_config: "商户配置错误", firmware_regression: "固件版本缺陷",
      carrier_outage: "运营商故障", regional_outage: "区域故障", acquirer_outage: "收单机构故障",
      acquirer_maintenance: "收单机构维护", qr_notification_delay: "扫码到账通知延迟", unknown: "未知" },
  },
};

// Language: ?lang=zh|en (handy for wall displays), then the last choice, then the browser's.
const langParam = new URLSearchParams(location.search).get("lang");
let lang = ["en", "zh"].includes(langParam) ? langParam
  : localStorage.getItem("storepulse.lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
let data = { terminals: [], active: [], resolved: [], summary: null };

const t = (k) => I18N[lang][k] ?? k;
const kindName = (k) => I18N[lang].kind[k] ?? k;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "-");
const pct = (x) => (x * 100).toFixed(x < 0.01 ? 2 : 1) + "%";

function applyStatic() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
}

// API token (when the collector requires one): kept in this browser only.
let token = localStorage.getItem("storepulse.token") || "";
class NeedToken extends Error {}

async function getJson(path) {
  const headers = { accept: "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  const r = await fetch(path, { headers });
  if (r.status === 401) throw new NeedToken(path);
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function askToken() {
  const view = document.getElementById("view");
  if (document.getElementById("token-form")) return;
  view.innerHTML = `<form id="token-form" class="tile"><p>${t("token_needed")}</p>
    <input type="password" id="token" autocomplete="off" placeholder="${t("token")}"> <button type="submit">${t("save")}</button></form>`;
  document.getElementById("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    localStorage.setItem("storepulse.token", token);
    view.innerHTML = "";
    refresh();
  });
}

async function refresh() {
  try {
    const [terms, active, resolved, summary] = await Promise.all([
      getJson("/api/v1/terminals"),
      getJson("/api/v1/incidents?state=active"),
      getJson("/api/v1/incidents?state=resolved&limit=20"),
      getJson("/api/v1/summary"),
    ]);
    data = { terminals: terms.terminals, active: active.incidents, resolved: resolved.incidents, summary };
    document.getElementById("updated").textContent = new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB");
    document.getElementById("conn").textContent = t("live");
    document.getElementById("conn").className = "ok";
    render();
  } catch (e) {
    if (e instanceof NeedToken) { askToken(); return; }
    document.getElementById("conn").textContent = t("disconnected");
    document.getElementById("conn").className = "bad";
  }
}

function scopeText(i) { return Object.entries(i.scope).map(([k, v]) => `${k}=${v}`).join(", "); }

function incidentCard(i) {
  const rem = (i.remediation[lang] || []).map((r) => `<li>${esc(r)}</li>`).join("");
  const when = i.state === "resolved" ? `${t("resolved_at")} ${fmtTime(i.resolved_unix_ms)}` : `${t("since")} ${fmtTime(i.started_unix_ms)}`;
  return `<div class="incident ${i.state}" data-incident="${i.id}" data-kind="${esc(i.kind)}">
    <div class="head"><a class="inc kind" href="#/incident/${i.id}">${esc(kindName(i.kind))}</a>
      <span class="scope">${esc(scopeText(i))}</span>
      <span class="meta">${t("affected")}: ${i.affected.terminals} ${t("terminals_l")} · ${i.affected.stores} ${t("stores_l")} · ${i.affected.merchants} ${t("merchants_l")} · ${when}</span></div>
    <p class="explanation">${esc(i.explanation[lang])}</p>
    ${rem ? `<div class="meta">${t("remediation")}:</div><ul>${rem}</ul>` : ""}
  </div>`;
}

function counts() {
  const c = { online: 0, stale: 0, offline: 0 };
  for (const x of data.terminals) c[x.state] = (c[x.state] || 0) + 1;
  return c;
}

function breakdown() {
  const keys = ["region", "acquirer", "carrier", "firmware", "model"];
  let html = `<h2>${t("breakdown")}</h2><table class="heat"><tr><th>${t("label")}</th><th>${t("value")}</th><th>${t("terminals")}</th><th>${t("online")}</th><th>${t("offline")}</th></tr>`;
  for (const k of keys) {
    const groups = {};
    for (const x of data.terminals) {
      if (!x.labels) continue;
      const v = x.labels[k];
      const g = (groups[v] ||= { n: 0, online: 0, offline: 0 });
      g.n++; if (x.state === "online") g.online++; if (x.state === "offline") g.offline++;
    }
    for (const [v, g] of Object.entries(groups).sort()) {
      const share = g.n ? g.online / g.n : 0;
      const cls = share > 0.97 ? "ok" : share > 0.9 ? "warn" : "bad";
      html += `<tr><td>${esc(k)}</td><td>${esc(v)}</td><td class="cell">${g.n}</td><td class="cell ${cls}">${pct(share)}</td><td class="cell">${g.offline}</td></tr>`;
    }
  }
  return html + "</table>";
}

function overview() {
  const c = counts();
  return `<section class="tiles">
      <div class="tile"><div class="n" id="n-total">${data.terminals.length}</div><div class="l">${t("terminals")}</div></div>
      <div class="tile"><div class="n ok" id="n-online">${c.online}</div><div class="l">${t("online")}</div></div>
      <div class="tile"><div class="n warn">${c.stale}</div><div class="l">${t("stale")}</div></div>
      <div class="tile"><div class="n bad">${c.offline}</div><div class="l">${t("offline")}</div></div>
      <div class="tile"><div class="n ${data.active.length ? "bad" : "ok"}" id="n-incidents">${data.active.length}</div><div class="l">${t("active_incidents")}</div></div>
      <div class="tile"><div class="n">${data.summary ? data.summary.last_hour.attempts : "-"}</div><div class="l">${t("payments_hour")}</div></div>
      <div class="tile"><div class="n ${successClass()}">${data.summary && data.summary.last_hour.success_rate != null ? pct(data.summary.last_hour.success_rate) : "-"}</div><div class="l">${t("success_rate")}</div></div>
    </section>
    ${failureChart()}
    <h2>${t("incidents_active")}</h2>
    <div id="active">${data.active.length ? data.active.map(incidentCard).join("") : `<div class="empty">${t("none_active")}</div>`}</div>
    <h2>${t("incidents_resolved")}</h2>
    <div id="resolved">${data.resolved.length ? data.resolved.map(incidentCard).join("") : `<div class="empty">${t("none_resolved")}</div>`}</div>
    ${breakdown()}`;
}

function successClass() {
  const r = data.summary && data.summary.last_hour.success_rate;
  return r == null ? "" : r > 0.95 ? "ok" : r > 0.85 ? "warn" : "bad";
}

// Failures by class per minute over the last hour, as stacked bars (cardholder declines are
// shown too: they are normal, and their share tells ops at a glance that nothing else is).
const CLASS_COLORS = { cardholder: "#6e7681", fraud_risk: "#8957e5", merchant_config: "#f85149", terminal_config: "#db6d28",
  terminal_fault: "#d29922", network: "#58a6ff", platform: "#ff7b72", issuer: "#a371f7", settlement: "#3fb950", other: "#8b98a5" };
function failureChart() {
  const mins = (data.summary && data.summary.per_minute) || [];
  if (!mins.length) return "";
  const W = 900, H = 120, bw = Math.max(2, Math.floor(W / 60) - 2);
  const max = Math.max(1, ...mins.map((m) => Object.values(m.failures).reduce((a, b) => a + b, 0)));
  let bars = "";
  mins.slice(-60).forEach((m, i) => {
    let y = H;
    for (const [cls, n] of Object.entries(m.failures)) {
      const h = Math.round((n / max) * (H - 10));
      y -= h;
      bars += `<rect x="${i * (bw + 2)}" y="${y}" width="${bw}" height="${h}" fill="${CLASS_COLORS[cls] || "#8b98a5"}"><title>${esc(cls)}: ${n}</title></rect>`;
    }
  });
  const legend = Object.entries(CLASS_COLORS).map(([c, col]) => `<span style="color:${col}">■</span> ${esc(c)}`).join(" &nbsp; ");
  return `<h2>${t("failures_by_class")}</h2><div class="tile"><svg width="${W}" height="${H}" role="img" aria-label="${t("failures_by_class")}">${bars}</svg><div class="meta">${legend}</div></div>`;
}

function evidenceChart(e) {
  // Observed against expected failures, as two bars.
  const max = Math.max(e.failures, e.expected_failures, 1);
  const w = (x) => Math.max(2, Math.round((x / max) * 300));
  return `<svg width="420" height="60" role="img" aria-label="${t("evidence")}">
    <text x="0" y="18" fill="#8b98a5" font-size="12">${t("observed")}</text><rect x="80" y="6" height="16" width="${w(e.failures)}" fill="#f85149"></rect>
    <text x="${86 + w(e.failures)}" y="18" fill="#e6edf3" font-size="12">${e.failures.toFixed(0)}</text>
    <text x="0" y="46" fill="#8b98a5" font-size="12">${t("expected")}</text><rect x="80" y="34" height="16" width="${w(e.expected_failures)}" fill="#3fb950"></rect>
    <text x="${86 + w(e.expected_failures)}" y="46" fill="#e6edf3" font-size="12">${e.expected_failures.toFixed(1)}</text></svg>`;
}

async function incidentDetail(id) {
  let i;
  try { i = await getJson(`/api/v1/incidents/${encodeURIComponent(id)}`); } catch (e) { return `<div class="empty">${esc(e.message)}</div>`; }
  const e = i.evidence;
  const codes = e.top_codes.map((c) => `<tr><td>${esc(c.scheme)}</td><td>${esc(c.code)}</td><td>${esc(c.class)}</td><td>${c.count}</td><td>${esc(c.meaning[lang] || "")}</td></tr>`).join("");
  const ex = e.examples.map((x) => `<tr><td>${esc(x.terminal_id)}</td><td>${fmtTime(x.time_unix_ms)}</td><td>${esc(x.scheme)}</td><td>${esc(x.code)}</td></tr>`).join("");
  const tl = (i.timeline || []).map((x) => `<tr><td>${fmtTime(x.at_unix_ms)}</td><td>${esc(x.event)}</td><td>${x.affected_terminals}</td><td>${esc(x.explanation[lang])}</td></tr>`).join("");
  return `<p><a href="#/">${t("back")}</a></p>${incidentCard(i)}
    <h2>${t("evidence")}</h2><div class="tile">${evidenceChart(e)}
      <div class="meta">${t("attempts")}: ${e.attempts} · ${t("failures")}: ${e.failures.toFixed(0)} · ${t("expected")}: ${e.expected_failures.toFixed(1)} · ${t("significance")}: ${e.significance.toFixed(1)} · ${t("silent")}: ${e.silent_terminals}</div></div>
    <h2>${t("top_codes")}</h2><table><tr><th>scheme</th><th>code</th><th>class</th><th>n</th><th></th></tr>${codes}</table>
    <h2>${t("examples")}</h2><table>${ex}</table>
    <h2>${t("timeline")}</h2><table>${tl}</table>`;
}

function terminalsView(q) {
  const needle = (q || "").toLowerCase();
  const rows = data.terminals.filter((x) => !needle || JSON.stringify(x).toLowerCase().includes(needle)).slice(0, 500);
  const body = rows.map((x) => `<tr><td>${esc(x.terminal_id)}</td><td class="${x.state === "online" ? "ok" : x.state === "stale" ? "warn" : "bad"}">${t(x.state)}</td>
    <td>${esc(x.labels?.merchant_id)}</td><td>${esc(x.labels?.store_id)}</td><td>${esc(x.labels?.region)}</td><td>${esc(x.labels?.acquirer)}</td>
    <td>${esc(x.labels?.firmware)}</td><td>${fmtTime(x.last_seen_unix_ms)}</td><td>${x.records_received}</td></tr>`).join("");
  return `<input type="search" id="q" placeholder="${t("search")}" value="${esc(q || "")}">
    <table><tr><th>id</th><th>${t("state")}</th><th>merchant</th><th>store</th><th>region</th><th>acquirer</th><th>firmware</th><th>${t("last_seen")}</th><th>${t("records")}</th></tr>${body}</table>`;
}

let searchText = "";
async function render() {
  applyStatic();
  if (document.getElementById("token-form")) return;
  const view = document.getElementById("view");
  const hash = location.hash || "#/";
  if (hash.startsWith("#/incident/")) {
    view.innerHTML = await incidentDetail(hash.slice("#/incident/".length));
  } else if (hash.startsWith("#/terminals")) {
    const had = document.activeElement && document.activeElement.id === "q";
    view.innerHTML = terminalsView(searchText);
    const q = document.getElementById("q");
    q.addEventListener("input", () => { searchText = q.value; render(); });
    if (had) { q.focus(); q.setSelectionRange(q.value.length, q.value.length); }
  } else {
    view.innerHTML = overview();
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("storepulse.lang", lang);
  render();
});
window.addEventListener("hashchange", render);

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
refresh();
listen();
setInterval(() => { if (document.getElementById("conn").className !== "ok") refresh(); }, 5000);
