// Browser test of the dashboard in headless Chromium (Debian's /usr/bin/chromium), driven by
// playwright-core.
// Usage: node browser.mjs BASE_URL OUT_DIR EXPECTED_KIND READ_TOKEN ADMIN_TOKEN FAULTY_MERCHANT [COLLECTOR_ZONE]
// COLLECTOR_ZONE: the collector's `http.time_zone`; the browser then runs in another zone
// (America/Sao_Paulo) and every time must show in the collector's.
// Checks: the dashboard asks for a token and works with a read-only one; an incident of
// EXPECTED_KIND appears on the overview without a reload; its detail page shows its
// explanation; the language switch turns the page into Chinese and back; the heat table shows a
// non-zero failure rate for FAULTY_MERCHANT; the terminal search filters by label and opens a
// terminal's detail (state strip, outcomes, recent errors with meanings); a read-only token is
// refused a silence with a clear message, an admin token creates one and ends it. Saves
// screenshots in OUT_DIR. Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, out, kind, readToken, adminToken, merchant, collectorZone] = process.argv.slice(2);
const BROWSER_ZONE = "America/Sao_Paulo";
const ZONE = collectorZone || BROWSER_ZONE;
if (!base || !out || !kind || !readToken || !adminToken || !merchant) {
  console.error("usage: node browser.mjs BASE_URL OUT_DIR EXPECTED_KIND READ_TOKEN ADMIN_TOKEN FAULTY_MERCHANT");
  process.exit(2);
}
mkdirSync(out, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, locale: "en-GB", timezoneId: BROWSER_ZONE });
  let navigations = 0;
  page.on("framenavigated", (f) => { if (f === page.mainFrame()) navigations++; });
  await page.goto(base + "/?lang=en");
  // The collector requires a token: the dashboard asks for one. A read-only token is enough.
  await page.waitForSelector("#token-form", { timeout: 15_000 });
  await page.screenshot({ path: `${out}/0-token-prompt.png`, fullPage: true });
  await page.fill("#token", readToken);
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#n-total");
  await page.waitForFunction(() => document.getElementById("n-total").textContent.trim() !== "-", null, { timeout: 15_000 });
  await page.screenshot({ path: `${out}/1-overview-before.png`, fullPage: true });
  const navBefore = navigations;

  // The incident appears while the page stays loaded (the dashboard refreshes itself).
  const card = page.locator(`#active .incident[data-kind="${kind}"]`).first();
  await card.waitFor({ timeout: 120_000 });
  if (navigations !== navBefore) throw new Error("the page navigated/reloaded while waiting for the incident");
  await page.screenshot({ path: `${out}/2-overview-incident.png`, fullPage: true });
  const overviewText = await card.locator(".explanation").innerText();
  if (!overviewText.trim()) throw new Error("incident card without explanation");

  // Its detail page shows the explanation and the evidence.
  await card.locator("a.kind").click();
  // The evidence chart is only on the detail page (the overview has another chart).
  await page.waitForSelector('svg[role=img][aria-label="Evidence"]');
  const detail = await page.locator("#view").innerText();
  if (!detail.includes(overviewText.trim().slice(0, 40))) throw new Error("detail page lacks the explanation");
  if (!/evidence/i.test(detail) || !/timeline/i.test(detail)) throw new Error("detail page lacks evidence or timeline");
  await page.screenshot({ path: `${out}/3-incident-detail.png`, fullPage: true });

  // Issue 19 item 4: while the incident is open its page follows the API without a reload: it
  // is fetched again on the live events, and the evidence shown is the API's latest.
  {
    const navDetail = navigations;
    const incId = await page.$eval("#incident-detail", (e) => e.dataset.incident);
    const apiEvidence = () => page.evaluate(async (id) => {
      const r = await fetch(`/api/v1/incidents/${id}`, { headers: { authorization: "Bearer " + localStorage.getItem("storepulse.token") } });
      const v = await r.json();
      return { state: v.state, attempts: v.evidence.attempts, failures: v.evidence.failures };
    }, incId);
    const shown = () => page.$eval("#evidence-numbers", (e) => ({ attempts: Number(e.dataset.attempts), failures: Number(e.dataset.failures) }));
    const first = await shown();
    const fetched0 = await page.$eval("#incident-detail", (e) => Number(e.dataset.fetched));
    await page.waitForFunction((f) => Number(document.getElementById("incident-detail")?.dataset.fetched) > f, fetched0, { timeout: 20_000 });
    // The scenario's payments end within seconds, so detection's evidence may not move while
    // the page is watched: the API's answer is served with more payments and failures (the
    // real body otherwise), and the page must show them on its own.
    const api = await apiEvidence();
    await page.route(`**/api/v1/incidents/${incId}`, async (route) => {
      const r = await route.fetch();
      const v = await r.json();
      v.evidence.attempts += 1000; v.evidence.failures += 7;
      await route.fulfill({ response: r, json: v });
    });
    const want = [api.attempts + 1000, api.failures + 7];
    await page.waitForFunction(([a, f]) => {
      const e = document.getElementById("evidence-numbers");
      return e && Number(e.dataset.attempts) >= a && Number(e.dataset.failures) >= f
        && e.textContent.includes(e.dataset.attempts);
    }, want, { timeout: 20_000 }).catch(async () => {
      throw new Error(`evidence frozen: page shows ${JSON.stringify(await shown())}, API now ${JSON.stringify(want)}`);
    });
    await page.unroute(`**/api/v1/incidents/${incId}`);
    console.log(`live evidence: ${JSON.stringify(first)} -> ${JSON.stringify(want)} without a reload`);
    if (navigations !== navDetail) throw new Error("the incident page reloaded");
    if (api.state === "active" && !(await page.locator("#incident-detail .live-note").count())) throw new Error("no live note on an open incident");
  }

  // The language switch.
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "zh-CN");
  await page.waitForFunction(() => document.body.innerText.includes("证据"), null, { timeout: 10_000 }).catch(() => {});
  const zh = await page.locator("body").innerText();
  if (!zh.includes("证据") || !zh.includes("时间线")) throw new Error("Chinese labels missing after the switch");
  await page.screenshot({ path: `${out}/4-incident-detail-zh.png`, fullPage: true });
  await page.goto(base + "/#/");
  await page.waitForSelector("#n-total");
  await page.waitForFunction(() => document.body.innerText.includes("进行中事件"), null, { timeout: 10_000 }).catch(() => {});
  const zhOverview = await page.locator("body").innerText();
  if (!zhOverview.includes("进行中事件")) throw new Error("overview not in Chinese after the switch persisted");
  await page.screenshot({ path: `${out}/5-overview-zh.png`, fullPage: true });
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "en");

  // The heat table: the faulty merchant's row has a non-zero failure rate.
  await page.selectOption("#heat-by", "merchant_id");
  const row = `#heat-table[data-by="merchant_id"] tr[data-value="${merchant}"]`;
  await page.waitForSelector(row, { timeout: 30_000 });
  const rates = await page.$$eval(`${row} td[data-rate]`, (tds) => tds.map((td) => Number(td.dataset.rate || 0)));
  if (!rates.some((r) => r > 0)) throw new Error(`heat table: no non-zero failure rate for ${merchant}: ${rates}`);
  await page.screenshot({ path: `${out}/6-heat-table.png`, fullPage: true });
  await page.selectOption("#heat-by", "region");
  await page.waitForSelector('#heat-table[data-by="region"]', { timeout: 15_000 });

  // Terminal search by label, then a terminal's detail with its recent errors and meanings.
  await page.click('nav a[href="#/terminals"]');
  await page.waitForSelector("#term-form");
  await page.selectOption("#t-label", "merchant_id");
  await page.fill("#t-value", merchant);
  await page.click("#t-search");
  await page.waitForFunction((m) => {
    const rows = [...document.querySelectorAll("tr.term")];
    return rows.length > 0 && rows.every((r) => r.children[2].textContent === m);
  }, merchant, { timeout: 15_000 });
  await page.screenshot({ path: `${out}/7-terminal-search.png`, fullPage: true });
  const ids = await page.$$eval("tr.term", (rows) => rows.map((r) => r.dataset.terminal));
  let withErrors = null;
  for (const id of ids.slice(0, 8)) {
    await page.click(`tr.term[data-terminal="${id}"] a`);
    await page.waitForSelector("#terminal-detail");
    await page.waitForSelector("#state-strip rect");
    if (await page.locator("#recent-errors tr.err").count() > 0) { withErrors = id; break; }
    await page.goBack();
    await page.waitForSelector("tr.term");
  }
  if (!withErrors) throw new Error(`no terminal of ${merchant} shows recent errors`);
  const meaning = await page.locator("#recent-errors tr.err td.meaning").first().innerText();
  if (!meaning.trim()) throw new Error("recent error without a meaning");
  const detailText = await page.locator("#view").innerText();
  if (!/state since first contact/i.test(detailText) || !/payments by class/i.test(detailText)) throw new Error("terminal detail lacks state history or outcomes");
  await page.screenshot({ path: `${out}/8-terminal-detail.png`, fullPage: true });

  // Silences: the read-only token is refused with a clear message...
  const fillSilence = async () => {
    await page.fill("#s-matchers", `merchant=${merchant}`);
    await page.fill("#s-author", "browser-test");
    await page.fill("#s-comment", "merchant is fixing its record at the acquirer");
    await page.click("#s-create");
  };
  await page.click('nav a[href="#/silences"]');
  await page.waitForSelector("#silence-form");
  // The page knows the role up front (GET /api/v1/whoami), before anything is refused.
  await page.waitForSelector("#role-note:not([hidden])", { timeout: 10_000 });
  if (!/read-only token/i.test(await page.locator("#role-note").innerText())) throw new Error("read-only role not shown");
  await fillSilence();
  await page.waitForSelector("#silence-msg #forbidden", { timeout: 10_000 });
  if (!/admin token/.test(await page.locator("#forbidden").innerText())) throw new Error("403 message unclear");
  await page.screenshot({ path: `${out}/9-silence-forbidden.png`, fullPage: true });
  // ...an admin token creates it and ends it.
  await page.click("#token-btn");
  await page.waitForSelector("#token-form");
  await page.fill("#token", adminToken);
  await page.click("#token-form button[type=submit]");
  await page.waitForSelector("#silence-form");
  await fillSilence();
  // Typed with the old short name, kept in the canonical one (merchant_id).
  const created = page.locator("#silences-table tr[data-silence]", { hasText: `merchant_id=${merchant}` });
  await created.first().waitFor({ timeout: 10_000 });
  await page.screenshot({ path: `${out}/10-silence-created.png`, fullPage: true });
  await created.first().locator("button.end").click();
  await page.waitForSelector("#no-silences", { timeout: 10_000 });
  if (await page.locator("#role-note").isVisible()) throw new Error("admin still shown as read-only");
  await page.screenshot({ path: `${out}/11-silence-ended.png`, fullPage: true });
  // A maintenance window: announced, listed, ended.
  await page.fill("#w-scope", "acquirer=ACQ-A");
  await page.fill("#w-announcement", "browser test: acquirer upgrade");
  await page.click("#w-create");
  const win = page.locator("#windows-table tr[data-window]", { hasText: "browser test: acquirer upgrade" });
  await win.first().waitFor({ timeout: 10_000 });
  await page.screenshot({ path: `${out}/12-maintenance-created.png`, fullPage: true });
  await win.first().locator("button.end").click();
  await win.first().waitFor({ state: "detached", timeout: 10_000 });
  // ---- Issue 19: severity/filters, wall view, breakdown, times, complete Chinese, terminal page.
  const incidentId = await page.evaluate(async (k) => {
    const r = await fetch("/api/v1/incidents?state=active", { headers: { authorization: "Bearer " + localStorage.getItem("storepulse.token") } });
    const v = await r.json();
    return (v.incidents.find((i) => i.kind === k) || {}).id;
  }, kind);
  if (incidentId == null) throw new Error("the incident is gone from the API");
  const stamp = /\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d/;
  // Times as the dashboard must show them, computed here from the API's milliseconds in the
  // expected zone (the collector's when configured), independently of app.js.
  const inZone = (ms) => {
    const o = {};
    for (const p of new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "shortOffset" }).formatToParts(new Date(ms))) o[p.type] = p.value;
    const off = o.timeZoneName.replace("GMT", "UTC").replace(/^UTC$/, "UTC+0");
    return { full: `${o.year}-${o.month}-${o.day} ${o.hour}:${o.minute}:${o.second} ${off}`, clock: `${o.hour}:${o.minute} ${off}` };
  };
  const incidentNow = () => page.evaluate(async (id) => {
    const r = await fetch(`/api/v1/incidents/${id}`, { headers: { authorization: "Bearer " + localStorage.getItem("storepulse.token") } });
    return r.json();
  }, incidentId);
  // The catalogue check: a Chinese page shows no English string from the catalogue (codes, ids
  // and label values are not in the catalogue, so they may appear).
  const englishLeft = () => page.evaluate(() => {
    const out = [];
    const walk = (v) => { if (typeof v === "string") out.push(v); else if (v && typeof v === "object") Object.values(v).forEach(walk); };
    walk(I18N.en);
    const zh = new Set(); const walkZh = (v) => { if (typeof v === "string") zh.add(v); else if (v && typeof v === "object") Object.values(v).forEach(walkZh); };
    walkZh(I18N.zh);
    const text = document.body.innerText;
    const hits = [];
    for (const en of out) {
      if (zh.has(en)) continue; // the same in both languages (e.g. a placeholder example)
      for (const piece of en.split(/\{[a-z]+\}/)) {
        const p = piece.trim().replace(/^[^A-Za-z]+|[^A-Za-z.)]+$/g, "");
        if (!/[a-z]{2}/.test(p) || p.length < 3) continue;
        const re = new RegExp("(^|[^A-Za-z])" + p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "($|[^A-Za-z])");
        if (re.test(text)) hits.push(p);
      }
    }
    return [...new Set(hits)];
  });
  const shots = [];
  for (const l of ["en", "zh"]) {
    // Overview: severity-ordered cards with times (zone, how long ago), filters, chart axes.
    await page.goto(`${base}/?lang=${l}#/`);
    await page.waitForSelector(`#active .incident[data-kind="${kind}"]`, { timeout: 30_000 });
    await page.waitForSelector("#failure-chart text.axis");
    const cardText = await page.locator(`#active .incident[data-kind="${kind}"]`).first().innerText();
    if (!stamp.test(cardText)) throw new Error(`${l}: card time without date, time and zone: ${cardText}`);
    if (!(await page.locator(`#active .incident[data-kind="${kind}"] .ago`).count())) throw new Error(`${l}: no relative time`);
    // Item 1: every card names its severity, in the page's language.
    const badges = await page.$$eval("#active .incident", (c) => c.map((x) => [x.dataset.severity, x.querySelector(".badge[data-severity]")?.textContent ?? ""]));
    const sevNames = await page.evaluate((lg) => I18N[lg].sev, l);
    for (const [sv, txt] of badges) if (!sv || txt !== sevNames[sv]) throw new Error(`${l}: card severity ${sv} shown as "${txt}"`);
    // Items 2 and 3: "failing since" is the onset (started), "detected" the opening, both in
    // the zone; the footer names the zone.
    const inc = await incidentNow();
    const ourCard = page.locator(`#active .incident[data-incident="${incidentId}"]`);
    const sinceText = await ourCard.locator(".since").innerText();
    const detectedText = await ourCard.locator(".detected").innerText();
    if (!sinceText.includes(inZone(inc.started_unix_ms).full)) throw new Error(`${l}: "since" is not the onset in ${ZONE}: ${sinceText} (want ${inZone(inc.started_unix_ms).full})`);
    if (!detectedText.includes(inZone(inc.opened_unix_ms).full)) throw new Error(`${l}: "detected" is not the opening in ${ZONE}: ${detectedText}`);
    if (inc.started_unix_ms > inc.opened_unix_ms) throw new Error(`onset ${inc.started_unix_ms} after opening ${inc.opened_unix_ms}`);
    const zoneText = await page.locator("#zone").innerText();
    if (!zoneText.includes(ZONE)) throw new Error(`${l}: footer does not name the zone ${ZONE}: ${zoneText}`);
    await page.selectOption("#f-kind", kind);
    const kinds = await page.$$eval("#active .incident", (c) => c.map((x) => x.dataset.kind));
    if (!kinds.length || kinds.some((k) => k !== kind)) throw new Error(`${l}: kind filter shows ${kinds}`);
    await page.selectOption("#f-kind", "");
    const sevs = await page.$$eval("#active .incident", (c) => c.map((x) => x.dataset.severity));
    const rank = { critical: 0, major: 1, minor: 2, info: 3, "": 4 };
    if (sevs.some((x, i) => i > 0 && rank[sevs[i - 1]] > rank[x])) throw new Error(`${l}: cards not by severity: ${sevs}`);
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh overview shows English: ${left.join(" | ")}`); }
    await page.screenshot({ path: `${out}/${l}-1-overview.png`, fullPage: true });
    shots.push(`${l}-1-overview.png`);

    // Breakdown: newest bucket first, window choice, sticky header, counts on hover, worst first.
    await page.selectOption("#heat-by", "merchant_id");
    await page.waitForSelector('#heat-table[data-by="merchant_id"]');
    const buckets = await page.$$eval("#heat-table thead th.col", (th) => th.map((x) => Number(x.dataset.bucket)));
    if (buckets.some((b, i) => i > 0 && buckets[i - 1] < b)) throw new Error(`${l}: buckets not newest first`);
    const sticky = await page.$eval("#heat-table thead th", (th) => getComputedStyle(th).position);
    if (sticky !== "sticky") throw new Error(`${l}: header not sticky (${sticky})`);
    const rates = await page.$$eval("#heat-table tbody tr td.tot", (td) => td.map((x) => parseFloat(x.textContent)));
    if (rates.some((r, i) => i > 0 && rates[i - 1] < r)) throw new Error(`${l}: rows not worst first: ${rates}`);
    const hover = await page.$eval("#heat-table tbody td.cell[data-attempts]:not([data-attempts='0'])", (td) => td.title);
    if (!/\d+ \/ .*\d+/.test(hover)) throw new Error(`${l}: cell title without counts: ${hover}`);
    for (const h of ["6", "24", "1"]) {
      await page.selectOption("#heat-range", h);
      await page.waitForSelector(`#heat-table[data-range="${h}"]`, { timeout: 15_000 });
      const from = Number(await page.$eval("#heat-table", (x) => x.dataset.from));
      if (!(from >= Date.now() - Number(h) * 3600e3 - 3600e3)) throw new Error(`${l}: window ${h} h starts at ${from}`);
    }
    await page.locator("#breakdown").scrollIntoViewIfNeeded();
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh breakdown shows English: ${left.join(" | ")}`); }
    await page.locator("#heat").screenshot({ path: `${out}/${l}-2-breakdown.png` });
    shots.push(`${l}-2-breakdown.png`);
    await page.selectOption("#heat-by", "region");

    // An incident: times with zone, translated tables, evidence chart with axis and unit.
    await page.goto(`${base}/?lang=${l}#/incident/${incidentId}`);
    await page.waitForSelector("#evidence-chart text.axis");
    if (!stamp.test(await page.locator("#incident-detail").innerText())) throw new Error(`${l}: incident times without zone`);
    {
      const inc = await incidentNow();
      const sevNames = await page.evaluate((lg) => I18N[lg].sev, l);
      const badge = await page.locator("#incident-detail .badge[data-severity]").first().innerText();
      if (badge !== sevNames[inc.severity]) throw new Error(`${l}: incident page severity "${badge}", want ${sevNames[inc.severity]}`);
      const since = await page.locator("#incident-detail .since").innerText();
      if (!since.includes(inZone(inc.started_unix_ms).full)) throw new Error(`${l}: incident page "since" is not the onset in ${ZONE}: ${since}`);
    }
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh incident shows English: ${left.join(" | ")}`); }
    await page.screenshot({ path: `${out}/${l}-3-incident.png`, fullPage: true });
    shots.push(`${l}-3-incident.png`);

    // The wall view: open incidents, region tiles, the last hour's failures.
    await page.goto(`${base}/?lang=${l}#/wall`);
    await page.waitForSelector(`#wall .wall-inc[data-kind="${kind}"]`, { timeout: 30_000 });
    await page.waitForSelector("#wall-regions .region", { timeout: 30_000 });
    await page.waitForSelector("#wall-failure-chart");
    const big = await page.$eval("#wall .wall-inc", (e) => parseFloat(getComputedStyle(e).fontSize));
    if (big < 24) throw new Error(`${l}: wall text too small (${big}px)`);
    {
      const inc = await incidentNow();
      const wt = await page.locator(`#wall .wall-inc[data-incident="${incidentId}"] .wt`).innerText();
      if (!wt.includes(inZone(inc.started_unix_ms).clock)) throw new Error(`${l}: wall time is not the onset in ${ZONE}: ${wt} (want ${inZone(inc.started_unix_ms).clock})`);
      if (!(await page.locator(`#wall .wall-inc[data-incident="${incidentId}"] .badge`).count())) throw new Error(`${l}: wall incident without severity`);
    }
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh wall shows English: ${left.join(" | ")}`); }
    await page.setViewportSize({ width: 1920, height: 1080 });
    await page.screenshot({ path: `${out}/${l}-4-wall.png` });
    await page.setViewportSize({ width: 1400, height: 1000 });
    shots.push(`${l}-4-wall.png`);

    // A terminal: history from first contact (nothing before it, no zero-minute outage).
    await page.goto(`${base}/?lang=${l}#/terminal/${encodeURIComponent(withErrors)}`);
    await page.waitForSelector("#state-strip rect");
    const states = await page.$$eval("#state-strip rect", (r) => r.map((x) => x.dataset.state));
    if (states.includes("unknown")) throw new Error(`${l}: strip shows time before first contact`);
    const gapText = (await page.locator("#gaps").count()) ? await page.locator("#gaps").innerText() : "";
    if (/(^|\s)0 (min|分钟)/.test(gapText)) throw new Error(`${l}: zero-minute outage listed: ${gapText}`);
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh terminal shows English: ${left.join(" | ")}`); }
    await page.screenshot({ path: `${out}/${l}-5-terminal.png`, fullPage: true });
    shots.push(`${l}-5-terminal.png`);

    // Item 1: a merged incident says which wider incident it went into. The scenario has no
    // merge, so the API's own answer for the incident is served as a resolved one merged into
    // another (the page's rendering is what is checked).
    const wider = Number(incidentId) + 1000;
    await page.route(`**/api/v1/incidents/${incidentId}`, async (route) => {
      const r = await route.fetch();
      const v = await r.json();
      v.state = "resolved"; v.resolved_unix_ms = v.updated_unix_ms; v.merged_into = wider;
      await route.fulfill({ response: r, json: v });
    });
    await page.goto(`${base}/?lang=${l}#/incident/${incidentId}`);
    await page.waitForSelector("#incident-detail .merged");
    const mergedText = await page.locator("#incident-detail .merged").innerText();
    const mergedWant = await page.evaluate((lg) => I18N[lg].merged_into, l);
    if (!mergedText.includes(mergedWant) || !mergedText.includes(`#${wider}`)) throw new Error(`${l}: merged incident shows "${mergedText}"`);
    if ((await page.locator(`#incident-detail .merged a[href="#/incident/${wider}"]`).count()) !== 1) throw new Error(`${l}: no link to the wider incident`);
    if (await page.locator("#incident-detail .live-note").count()) throw new Error(`${l}: a resolved incident says its evidence is live`);
    if (l === "zh") { const left = await englishLeft(); if (left.length) throw new Error(`zh merged incident shows English: ${left.join(" | ")}`); }
    await page.screenshot({ path: `${out}/${l}-6-merged-incident.png`, fullPage: true });
    shots.push(`${l}-6-merged-incident.png`);
    await page.unroute(`**/api/v1/incidents/${incidentId}`);
  }
  console.log(`issue 19 pages ok: ${shots.join(", ")}`);
  console.log(`ok: token prompt, ${kind} incident shown without reload, detail, language switch, heat table, terminal search and detail, role shown, silence refused/created/ended, maintenance window created/ended; screenshots in ${out}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error("dashboard browser test failed: " + (failed.stack || failed));
  process.exit(1);
}
