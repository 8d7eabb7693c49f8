// storepulse dashboard: a small, dependency-free single-page app over the public HTTP API
// (/api/v1/summary, /api/v1/incidents, /api/v1/breakdown, /api/v1/terminals,
// /api/v1/alerts/...). Refreshes itself on the live event stream without reloading.
"use strict";

const I18N = {
  en: {
    subtitle: "payment terminal fleet", nav_overview: "Overview", nav_terminals: "Terminals", nav_silences: "Silences & maintenance",
    updated: "Updated", change_token: "Token",
    terminals: "Terminals", online: "Online", stale: "Stale", offline: "Offline", unknown: "Unknown", active_incidents: "Active incidents",
    incidents_active: "Active incidents", incidents_resolved: "Recently resolved", none_active: "No active incidents.",
    none_resolved: "Nothing resolved recently.", affected: "affected", terminals_l: "terminals", stores_l: "stores",
    merchants_l: "merchants", since: "since", resolved_at: "resolved", remediation: "What to do", evidence: "Evidence",
    top_codes: "Top codes", examples: "Examples", timeline: "Timeline", observed: "observed", expected: "expected",
    failures: "failures", attempts: "attempts", significance: "significance",
    device: "device", usual: "usual",
    search: "Terminal id contains…", state: "State", last_seen: "Last seen", records: "Records",
    back: "← back", label: "Label", value: "Value", silent: "silent terminals", live: "live", disconnected: "API unreachable",
    token_needed: "This collector requires an API token (read-only is enough to watch; admin to change silences and maintenance).",
    token: "API token", save: "Save",
    payments_hour: "Payments, last hour", success_rate: "Success rate", failures_by_class: "Failures by class, per minute",
    heat_title: "Failure rate by label", heat_by: "Label", heat_range: "Range", last_6h: "last 6 h", last_24h: "last 24 h",
    heat_note: "Cells: failures (alertable classes) / payments in the bucket. Declines by cardholders are not failures.",
    no_data: "No payments in this range.", failure_rate: "Failure rate", declines: "Declines", total: "Total",
    any_state: "any state", any_label: "any label", search_btn: "Search", prev: "← Previous", next: "Next →", found: "terminals found",
    labels: "Labels", state_history: "State, last 24 h", health: "Recent health", network: "Network quality",
    outcomes: "Payments by class, last 24 h", recent_errors: "Recent errors", meaning: "Meaning", time: "Time", code: "Code",
    class_: "Class", cpu: "CPU", memory: "Memory", disk: "Disk free", temperature: "Temp.", battery: "Battery", spool: "Spool",
    rtt: "RTT", jitter: "Jitter", loss: "Loss", endpoints: "Endpoints", approved: "Approved", none: "None.",
    silences: "Active silences", windows: "Maintenance windows", new_silence: "New silence", new_window: "New maintenance window",
    matchers: "Matchers", matchers_hint: "e.g. merchant=M0002, kind=merchant_config", scope: "Scope",
    scope_hint: "e.g. acquirer=ACQ-A", duration: "Duration", comment: "Comment", author: "Author", announcement: "Announcement",
    create: "Create", end: "End", none_silences: "No active silences.", none_windows: "No active maintenance windows.",
    starts: "Starts", ends: "Ends", created: "Created.", ended: "Ended.",
    forbidden: "This token may only read: creating or ending silences and maintenance windows needs an admin token.",
    read_only_role: "Read-only token \u201c{name}\u201d: you can watch, but changes below need an admin token.",
    truncated: "History cut at the newest 20,000 records.",
    kind: { terminal_fault: "Terminal fault", terminal_config: "Terminal configuration", store_network: "Store network",
      store_offline: "Store offline", merchant_config: "Merchant configuration", firmware_regression: "Firmware regression",
      carrier_outage: "Carrier outage", regional_outage: "Regional outage", acquirer_outage: "Acquirer outage",
      acquirer_maintenance: "Acquirer maintenance", qr_notification_delay: "QR notification delay", unknown: "Unknown" },
  },
  zh: {
    subtitle: "支付终端集群", nav_overview: "总览", nav_terminals: "终端", nav_silences: "静默与维护",
    updated: "更新于", change_token: "令牌",
    terminals: "终端总数", online: "在线", stale: "迟滞", offline: "离线", unknown: "未知", active_incidents: "进行中事件",
    incidents_active: "进行中事件", incidents_resolved: "最近已恢复", none_active: "当前没有进行中的事件。",
    none_resolved: "最近没有已恢复的事件。", affected: "受影响", terminals_l: "台终端", stores_l: "家门店",
    merchants_l: "个商户", since: "开始于", resolved_at: "恢复于", remediation: "处置建议", evidence: "证据",
    top_codes: "主要响应码", examples: "示例", timeline: "时间线", observed: "实际", expected: "预期",
    failures: "失败", attempts: "交易", significance: "显著性",
    device: "设备", usual: "平时",
    search: "终端编号包含…", state: "状态", last_seen: "最近上报", records: "记录数",
    back: "← 返回", label: "标签", value: "值", silent: "静默终端", live: "实时", disconnected: "无法连接接口",
    token_needed: "该采集端需要 API 令牌（查看只需只读令牌；修改静默和维护窗口需要管理员令牌）。",
    token: "API 令牌", save: "保存",
    payments_hour: "近一小时交易", success_rate: "成功率", failures_by_class: "每分钟失败交易（按类别）",
    heat_title: "按标签统计失败率", heat_by: "标签", heat_range: "时间范围", last_6h: "最近 6 小时", last_24h: "最近 24 小时",
    heat_note: "单元格：该时段失败交易（可告警类别）÷ 交易笔数。持卡人原因的拒绝不计为失败。",
    no_data: "该时间范围内没有交易。", failure_rate: "失败率", declines: "拒绝", total: "合计",
    any_state: "全部状态", any_label: "全部标签", search_btn: "查询", prev: "← 上一页", next: "下一页 →", found: "台终端符合条件",
    labels: "标签", state_history: "近 24 小时状态", health: "近期主机状态", network: "网络质量",
    outcomes: "近 24 小时交易（按类别）", recent_errors: "最近错误", meaning: "含义", time: "时间", code: "响应码",
    class_: "类别", cpu: "CPU", memory: "内存", disk: "剩余磁盘", temperature: "温度", battery: "电量", spool: "待发记录",
    rtt: "往返时延", jitter: "抖动", loss: "丢包", endpoints: "探测端点", approved: "成功", none: "无。",
    silences: "生效中的静默", windows: "维护窗口", new_silence: "新建静默", new_window: "新建维护窗口",
    matchers: "匹配条件", matchers_hint: "例如 merchant=M0002, kind=merchant_config", scope: "范围",
    scope_hint: "例如 acquirer=ACQ-A", duration: "时长", comment: "备注", author: "操作人", announcement: "公告",
    create: "创建", end: "结束", none_silences: "当前没有生效的静默。", none_windows: "当前没有维护窗口。",
    starts: "开始", ends: "结束", created: "已创建。", ended: "已结束。",
    forbidden: "该令牌只读：创建或结束静默和维护窗口需要管理员令牌。",
    read_only_role: "当前为只读令牌\u201c{name}\u201d：可以查看，以下更改需要管理员令牌。",
    truncated: "历史仅包含最新的 20,000 条记录。",
    kind: { terminal_fault: "终端故障", terminal_config: "终端配置错误", store_network: "门店网络",
      store_offline: "门店离线", merchant_config: "商户配置错误", firmware_regression: "固件版本缺陷",
      carrier_outage: "运营商故障", regional_outage: "区域故障", acquirer_outage: "收单机构故障",
      acquirer_maintenance: "收单机构维护", qr_notification_delay: "扫码到账通知延迟", unknown: "未知" },
  },
};

const LABELS = ["merchant_id", "store_id", "region", "city", "acquirer", "qr_channel", "carrier", "link", "model", "firmware", "app_version"];
const HEAT_LABELS = ["region", "acquirer", "carrier", "firmware", "model", "merchant_id", "store_id", "city", "qr_channel"];

// Language: ?lang=zh|en (handy for wall displays), then the last choice, then the browser's.
const langParam = new URLSearchParams(location.search).get("lang");
let lang = ["en", "zh"].includes(langParam) ? langParam
  : localStorage.getItem("storepulse.lang") || ((navigator.language || "en").startsWith("zh") ? "zh" : "en");
let data = { active: [], resolved: [], summary: null };

const t = (k) => I18N[lang][k] ?? k;
const kindName = (k) => I18N[lang].kind[k] ?? k;
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const locale = () => (lang === "zh" ? "zh-CN" : "en-GB");
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString(locale()) : "-");
const fmtClock = (ms) => new Date(ms).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit" });
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
    const [active, resolved, summary] = await Promise.all([
      getJson("/api/v1/incidents?state=active"),
      getJson("/api/v1/incidents?state=resolved&limit=20"),
      getJson("/api/v1/summary"),
    ]);
    data = { active: active.incidents, resolved: resolved.incidents, summary };
    $("updated").textContent = new Date().toLocaleTimeString(locale());
    $("conn").textContent = t("live");
    $("conn").className = "ok";
    render(false);
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

function successClass() {
  const r = data.summary && data.summary.last_hour.success_rate;
  return r == null ? "" : r > 0.95 ? "ok" : r > 0.85 ? "warn" : "bad";
}

function tiles() {
  const s = data.summary;
  const c = s ? s.terminals : { total: "-", online: "-", stale: "-", offline: "-" };
  return `<div class="tile"><div class="n" id="n-total">${c.total}</div><div class="l">${t("terminals")}</div></div>
      <div class="tile"><div class="n ok" id="n-online">${c.online}</div><div class="l">${t("online")}</div></div>
      <div class="tile"><div class="n warn">${c.stale}</div><div class="l">${t("stale")}</div></div>
      <div class="tile"><div class="n bad">${c.offline}</div><div class="l">${t("offline")}</div></div>
      <div class="tile"><div class="n ${data.active.length ? "bad" : "ok"}" id="n-incidents">${data.active.length}</div><div class="l">${t("active_incidents")}</div></div>
      <div class="tile"><div class="n">${s ? s.last_hour.attempts : "-"}</div><div class="l">${t("payments_hour")}</div></div>
      <div class="tile"><div class="n ${successClass()}">${s && s.last_hour.success_rate != null ? pct(s.last_hour.success_rate) : "-"}</div><div class="l">${t("success_rate")}</div></div>`;
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
  return `<h2>${t("failures_by_class")}</h2><div class="tile chart"><svg viewBox="0 0 ${W} ${H}" width="100%" height="${H}" preserveAspectRatio="none" role="img" aria-label="${t("failures_by_class")}">${bars}</svg><div class="meta">${legend}</div></div>`;
}

// The heat table: rows = label values, columns = time buckets, cell = failure rate.
let heat = { by: "region", range: 6, html: "" };

function heatColor(rate, attempts) {
  if (!attempts) return "";
  // 0 → calm; 20 % and above → full alarm red.
  const a = Math.min(1, rate / 0.2);
  return `background:rgba(248,81,73,${(0.1 + 0.85 * a).toFixed(2)})`;
}

function heatTable(b) {
  if (!b.values.length) return `<div class="empty">${t("no_data")}</div>`;
  const step = Math.max(1, Math.ceil(b.buckets.length / 12));
  const head = b.buckets.map((ms, i) => `<th class="col">${i % step === 0 ? esc(fmtClock(ms)) : ""}</th>`).join("");
  const rows = b.values.map((v) => {
    const cells = b.buckets.map((ms, i) => {
      const n = v.series.attempts[i], f = v.series.failures[i];
      const rate = n ? f / n : 0;
      const title = `${v.value} ${fmtClock(ms)}: ${f}/${n} ${t("failures")}, ${v.series.declines[i]} ${t("declines")}`;
      return `<td class="cell" data-rate="${n ? rate.toFixed(4) : ""}" data-attempts="${n}" style="${heatColor(rate, n)}" title="${esc(title)}">${n ? (rate * 100).toFixed(rate > 0 && rate < 0.1 ? 1 : 0) : ""}</td>`;
    }).join("");
    return `<tr data-value="${esc(v.value)}"><th class="rowh">${esc(v.value)}</th>
      <td class="cell tot" style="${heatColor(v.failure_rate, v.attempts)}">${pct(v.failure_rate)}</td>
      <td class="cell">${v.failures}/${v.attempts}</td><td class="cell">${v.declines}</td>${cells}</tr>`;
  }).join("");
  return `<div class="scroll"><table class="heat" id="heat-table" data-by="${esc(b.by)}"><tr><th>${t("value")}</th><th>${t("failure_rate")}</th><th>${t("failures")}/${t("attempts")}</th><th>${t("declines")}</th>${head}</tr>${rows}</table></div>
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
  const opts = HEAT_LABELS.map((l) => `<option value="${l}" ${l === heat.by ? "selected" : ""}>${esc(l)}</option>`).join("");
  return `<div id="ov"><section class="tiles" id="tiles"></section><div id="chart"></div>
    <h2>${t("incidents_active")}</h2><div id="active"></div>
    <h2>${t("heat_title")}</h2>
    <div class="controls"><label>${t("heat_by")} <select id="heat-by">${opts}</select></label>
      <label>${t("heat_range")} <select id="heat-range"><option value="6" ${heat.range === 6 ? "selected" : ""}>${t("last_6h")}</option>
      <option value="24" ${heat.range === 24 ? "selected" : ""}>${t("last_24h")}</option></select></label></div>
    <div id="heat">${heat.html}</div>
    <h2>${t("incidents_resolved")}</h2><div id="resolved"></div></div>`;
}

function renderOverview(full) {
  const view = $("view");
  if (full || !$("ov")) {
    view.innerHTML = overviewSkeleton();
    $("heat-by").addEventListener("change", (ev) => { heat.by = ev.target.value; heat.html = ""; $("heat").innerHTML = ""; loadHeat(); });
    $("heat-range").addEventListener("change", (ev) => { heat.range = Number(ev.target.value); loadHeat(); });
  }
  $("tiles").innerHTML = tiles();
  $("chart").innerHTML = failureChart();
  $("active").innerHTML = data.active.length ? data.active.map(incidentCard).join("") : `<div class="empty">${t("none_active")}</div>`;
  $("resolved").innerHTML = data.resolved.length ? data.resolved.map(incidentCard).join("") : `<div class="empty">${t("none_resolved")}</div>`;
  loadHeat();
}

// ---------------------------------------------------------------------- incident detail

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
  const ex = e.examples.map((x) => `<tr><td><a href="#/terminal/${encodeURIComponent(x.terminal_id)}">${esc(x.terminal_id)}</a></td><td>${fmtTime(x.time_unix_ms)}</td><td>${esc(x.scheme)}</td><td>${esc(x.code)}</td></tr>`).join("");
  const tl = (i.timeline || []).map((x) => `<tr><td>${fmtTime(x.at_unix_ms)}</td><td>${esc(x.event)}</td><td>${x.affected_terminals}</td><td>${esc(x.explanation[lang])}</td></tr>`).join("");
  return `<p><a href="#/">${t("back")}</a></p>${incidentCard(i)}
    <h2>${t("evidence")}</h2><div class="tile">${evidenceChart(e)}
      <div class="meta">${t("attempts")}: ${e.attempts} · ${t("failures")}: ${e.failures.toFixed(0)} · ${t("expected")}: ${e.expected_failures.toFixed(1)} · ${t("significance")}: ${e.significance.toFixed(1)} · ${t("silent")}: ${e.silent_terminals}${e.device ? ` · ${t("device")}: ${num(e.device.temperature_c.now, 0)} °C (${t("usual")} ${num(e.device.temperature_c.baseline, 0)}), CPU ${num(e.device.cpu_percent.now, 0)}% (${t("usual")} ${num(e.device.cpu_percent.baseline, 0)}%)` : ""}</div></div>
    <h2>${t("top_codes")}</h2><table><tr><th>scheme</th><th>code</th><th>class</th><th>n</th><th></th></tr>${codes}</table>
    <h2>${t("examples")}</h2><table>${ex}</table>
    <h2>${t("timeline")}</h2><table>${tl}</table>`;
}

// ------------------------------------------------------------------------- terminals

let search = { q: "", state: "", label: "", value: "", after: null, back: [] };

function stateClass(s) { return s === "online" ? "ok" : s === "stale" ? "warn" : s === "offline" ? "bad" : ""; }

function terminalsForm() {
  const states = ["", "online", "stale", "offline"].map((s) => `<option value="${s}" ${s === search.state ? "selected" : ""}>${s ? t(s) : t("any_state")}</option>`).join("");
  const labels = [""].concat(LABELS).map((l) => `<option value="${l}" ${l === search.label ? "selected" : ""}>${l ? esc(l) : t("any_label")}</option>`).join("");
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
    <td class="${stateClass(x.state)}">${t(x.state)}</td>
    <td>${esc(x.labels?.merchant_id)}</td><td>${esc(x.labels?.store_id)}</td><td>${esc(x.labels?.region)}</td><td>${esc(x.labels?.acquirer)}</td>
    <td>${esc(x.labels?.carrier)}</td><td>${esc(x.labels?.firmware)}</td><td>${fmtTime(x.last_seen_unix_ms)}</td><td>${x.records_received}</td></tr>`).join("");
  el.innerHTML = `<div class="meta" id="t-total">${v.total} ${t("found")}</div>
    <table><tr><th>id</th><th>${t("state")}</th><th>merchant</th><th>store</th><th>region</th><th>acquirer</th><th>carrier</th><th>firmware</th><th>${t("last_seen")}</th><th>${t("records")}</th></tr>${body}</table>
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
function stateStrip(d) {
  const from = d.window.from_unix_ms, to = d.window.to_unix_ms, W = 1000, H = 26;
  const x = (ms) => ((ms - from) / (to - from)) * W;
  const rects = d.state_history.map((s) => `<rect x="${x(s.from_unix_ms).toFixed(1)}" y="0" width="${Math.max(0.5, x(s.to_unix_ms) - x(s.from_unix_ms)).toFixed(1)}" height="${H}" fill="${STATE_COLORS[s.state]}" data-state="${s.state}"><title>${t(s.state)}: ${fmtTime(s.from_unix_ms)} – ${fmtTime(s.to_unix_ms)}</title></rect>`).join("");
  let ticks = "";
  for (let h = 0; h <= 24; h += 3) {
    const ms = from + h * 3600e3;
    ticks += `<text x="${Math.min(W - 30, x(ms))}" y="${H + 14}" fill="#8b98a5" font-size="11">${esc(fmtClock(ms))}</text>`;
  }
  const legend = ["online", "stale", "offline", "unknown"].map((s) => `<span style="color:${STATE_COLORS[s]}">■</span> ${t(s)}`).join(" &nbsp; ");
  const mins = (s) => Math.round((s.to_unix_ms - s.from_unix_ms) / 60000);
  const gaps = d.state_history.filter((s) => s.state === "offline" || s.state === "stale").slice(-8).reverse()
    .map((s) => `<tr><td class="${stateClass(s.state)}">${t(s.state)}</td><td>${fmtTime(s.from_unix_ms)}</td><td>${fmtTime(s.to_unix_ms)}</td><td class="cell">${mins(s)} min</td></tr>`).join("");
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
  const labels = d.labels ? Object.entries(d.labels).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("") : "";
  const health = d.health.map((h) => { const b = h.heartbeat; return `<tr><td>${fmtTime(h.time_unix_ms)}</td><td>${num(b.cpu_percent)}%</td>
    <td>${mb(b.mem_used_bytes)} / ${mb(b.mem_total_bytes)}</td><td>${mb(b.disk_free_bytes)}</td><td>${b.temperature_c == null ? "-" : num(b.temperature_c) + " °C"}</td>
    <td>${b.battery_percent == null ? "-" : num(b.battery_percent, 0) + "%"}</td><td>${b.spool_records}</td></tr>`; }).join("");
  const net = d.network.map((n) => { const b = n.net_quality;
    const eps = b.endpoints.map((p) => `${esc(p.name)}: ${p.error ? `<span class="bad">${esc(p.error)}</span>` : `${num(p.dns_ms, 0)}/${num(p.tcp_connect_ms, 0)} ms`}`).join(", ");
    return `<tr><td>${fmtTime(n.time_unix_ms)}</td><td>${num(b.rtt_ms)} ms</td><td>${num(b.jitter_ms)} ms</td><td>${num(b.loss_percent)}%</td><td>${eps}</td></tr>`; }).join("");
  const o = d.outcomes;
  const classes = Object.entries(o.by_class).map(([c, n]) => `<tr><td><span style="color:${CLASS_COLORS[c] || "#8b98a5"}">■</span> ${esc(c)}</td><td class="cell">${n}</td></tr>`).join("");
  const errors = d.recent_errors.map((x) => `<tr class="err"><td>${fmtTime(x.time_unix_ms)}</td><td>${esc(x.scheme)}</td><td><code>${esc(x.code)}</code></td>
    <td>${esc(x.class)}</td><td class="meaning">${esc(x.meaning[lang] || x.meaning.en || "")}</td></tr>`).join("");
  const none = `<div class="empty">${t("none")}</div>`;
  return `<p><a href="#/terminals">${t("back")}</a></p>
    <div class="tile term-head" id="terminal-detail" data-terminal="${esc(d.terminal_id)}"><span class="tid">${esc(d.terminal_id)}</span>
      <span class="${stateClass(d.state)}">${t(d.state)}</span> <span class="meta">${t("last_seen")}: ${fmtTime(d.last_seen_unix_ms)} · ${t("records")}: ${d.records_received} · agent ${esc(d.agent_version)}</span></div>
    <h2>${t("state_history")}</h2>${stateStrip(d)}
    <div class="grid2"><div><h2>${t("labels")}</h2>${labels ? `<table>${labels}</table>` : none}</div>
      <div><h2>${t("outcomes")}</h2><table id="outcomes"><tr><th>${t("attempts")}</th><td class="cell">${o.attempts}</td></tr><tr><th>${t("approved")}</th><td class="cell">${o.approved}</td></tr>${classes}</table></div></div>
    <h2>${t("recent_errors")}</h2>${errors ? `<table id="recent-errors"><tr><th>${t("time")}</th><th>scheme</th><th>${t("code")}</th><th>${t("class_")}</th><th>${t("meaning")}</th></tr>${errors}</table>` : none}
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
