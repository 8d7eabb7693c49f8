// Browser test of the dashboard in headless Chromium (Debian's /usr/bin/chromium), driven by
// playwright-core.
// Usage: node browser.mjs BASE_URL OUT_DIR EXPECTED_KIND READ_TOKEN ADMIN_TOKEN FAULTY_MERCHANT
// Checks: the dashboard asks for a token and works with a read-only one; an incident of
// EXPECTED_KIND appears on the overview without a reload; its detail page shows its
// explanation; the language switch turns the page into Chinese and back; the heat table shows a
// non-zero failure rate for FAULTY_MERCHANT; the terminal search filters by label and opens a
// terminal's detail (state strip, outcomes, recent errors with meanings); a read-only token is
// refused a silence with a clear message, an admin token creates one and ends it. Saves
// screenshots in OUT_DIR. Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, out, kind, readToken, adminToken, merchant] = process.argv.slice(2);
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
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, locale: "en-GB" });
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
  if (!/state, last 24 h/i.test(detailText) || !/payments by class/i.test(detailText)) throw new Error("terminal detail lacks state history or outcomes");
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
  const created = page.locator("#silences-table tr[data-silence]", { hasText: `merchant=${merchant}` });
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
