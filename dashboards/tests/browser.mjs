// Browser test of the dashboard in headless Chromium (Debian's /usr/bin/chromium), driven by
// playwright-core. Usage: node browser.mjs BASE_URL OUT_DIR EXPECTED_KIND
// Checks: an incident of EXPECTED_KIND appears on the overview without a reload; its detail page
// shows its explanation; the language switch turns the page into Chinese and back. Saves
// screenshots in OUT_DIR. Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const [base, out, kind] = process.argv.slice(2);
if (!base || !out || !kind) {
  console.error("usage: node browser.mjs BASE_URL OUT_DIR EXPECTED_KIND");
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
  await page.waitForSelector("#n-total");
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
  await page.waitForSelector("svg[role=img]");
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
  console.log(`ok: ${kind} incident shown without reload, detail and language switch checked; screenshots in ${out}`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error("dashboard browser test failed: " + (failed.stack || failed));
  process.exit(1);
}
