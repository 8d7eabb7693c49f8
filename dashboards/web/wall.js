// storepulse dashboard: the wall view for the ops room (#/wall, `?lang=zh` for a Chinese wall):
// the open incidents, a tile per region with its online share and last hour's failure rate,
// and the last hour's failures per minute; large type, updated live. Uses app.js's helpers.
"use strict";

let wallRegions = { at: 0, html: "" };

// One tile per region: online share (terminals API) and failure rate over the last hour
// (breakdown API). Refetched at most every 30 s.
async function loadWallRegions() {
  if (Date.now() - wallRegions.at < 30_000 && wallRegions.html) return wallRegions.html;
  const now = Date.now();
  const b = await getJson(`/api/v1/breakdown?by=region&from=${now - 3600e3}&to=${now}&limit=100`);
  const regions = b.values.map((v) => v.value).sort();
  const counts = await Promise.all(regions.map(async (r) => {
    const q = encodeURIComponent(r);
    const [all, on] = await Promise.all([getJson(`/api/v1/terminals?region=${q}&limit=1`), getJson(`/api/v1/terminals?region=${q}&state=online&limit=1`)]);
    return [r, all.total, on.total];
  }));
  const rate = Object.fromEntries(b.values.map((v) => [v.value, v]));
  wallRegions.html = counts.map(([r, total, online]) => {
    const v = rate[r];
    const share = total ? online / total : 0;
    const fr = v && v.attempts ? v.failure_rate : 0;
    const cls = fr >= 0.1 || share < 0.8 ? "bad" : fr >= 0.03 || share < 0.95 ? "warn" : "ok";
    return `<div class="region ${cls}" data-region="${esc(r)}"><div class="rname">${esc(r)}</div>
      <div class="rnum"><span>${pct(share)}</span> <small>${t("online_share")} (${online}/${total})</small></div>
      <div class="rnum"><span>${v && v.attempts ? pct(fr) : "-"}</span> <small>${t("failure_rate")} (${v ? v.failures : 0}/${v ? v.attempts : 0})</small></div></div>`;
  }).join("");
  wallRegions.at = Date.now();
  return wallRegions.html;
}

function wallIncident(i) {
  return `<div class="wall-inc sev-${esc(i.severity || "none")}" data-incident="${i.id}" data-kind="${esc(i.kind)}">
    ${i.severity ? `<span class="badge sev-${esc(i.severity)}">${esc(sevName(i.severity))}</span>` : ""}
    <span class="wk">${esc(kindName(i.kind))}</span> <span class="ws">${esc(scopeText(i.scope))}</span>
    <span class="wt">${t("failing_since")} <time datetime="${new Date(i.started_unix_ms).toISOString()}">${esc(fmtClock(i.started_unix_ms))} ${esc(zoneOffset(i.started_unix_ms))}</time> · ${esc(ago(i.started_unix_ms))} · ${i.affected.terminals} ${t("terminals_l")}</span></div>`;
}

async function renderWall() {
  const view = $("view");
  if (!$("wall")) {
    view.innerHTML = `<div id="wall"><div class="wall-head" id="wall-head"></div><div id="wall-incidents"></div>
      <h2>${t("wall_regions")}</h2><div class="regions" id="wall-regions"></div><div id="wall-chart"></div></div>`;
  }
  const s = data.summary;
  const active = data.active.slice().sort(byUrgency);
  $("wall-head").innerHTML = `<div class="big ${active.length ? "bad" : "ok"}" id="wall-count">${active.length ? `${active.length} ${t("active_incidents")}` : t("wall_ok")}</div>
    <div class="big ${successClass()}">${s && s.last_hour.success_rate != null ? pct(s.last_hour.success_rate) : "-"} <small>${t("success_rate")}</small></div>
    <div class="big">${s ? s.last_hour.attempts : "-"} <small>${t("payments_hour")}</small></div>
    <div class="big">${s ? `${s.terminals.online}/${s.terminals.total}` : "-"} <small>${stateName("online")}</small></div>`;
  $("wall-incidents").innerHTML = active.map(wallIncident).join("");
  $("wall-chart").innerHTML = failureChart("wall-failure-chart", 300);
  try { $("wall-regions").innerHTML = await loadWallRegions(); } catch (e) { handleError(e, $("wall-regions")); }
}
