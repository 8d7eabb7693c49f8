// Hostile labels and codes in a real browser (issue 16 §8): headless Chromium (Debian's), driven
// by playwright-core, against a collector whose terminal TERMINAL declared markup as its labels
// (city, region, ...) and reported markup as payment codes. The dashboard must show them as
// text and run none of them: no dialog, no `window.__pwned`, and no Content-Security-Policy
// violation at all (an injected handler would be one; so would the dashboard's own code if it
// needed inline script or style). Visits the overview with the heat table by city, the terminal
// search, the terminal's page and the wall view.
// Usage: node hostile.mjs BASE_URL TERMINAL MARKER
// MARKER: a piece of the hostile text that must be visible as text on the terminal's page.
// Exits non-zero with a message on the first failed check.
import { chromium } from "playwright-core";

const [base, terminal, marker] = process.argv.slice(2);
if (!base || !terminal || !marker) {
  console.error("usage: node hostile.mjs BASE_URL TERMINAL MARKER");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, locale: "en-GB" });
  const problems = [];
  page.on("dialog", async (d) => { problems.push(`dialog: ${d.message()}`); await d.dismiss(); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) problems.push(`console: ${m.text()}`); });
  await page.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
  });
  const check = async (where) => {
    // Give handlers (onload, onerror) a moment to fire if anything was injected.
    await page.waitForTimeout(300);
    const pwned = await page.evaluate(() => window.__pwned);
    const violations = await page.evaluate(() => window.__violations);
    if (pwned !== undefined) problems.push(`${where}: hostile markup executed (window.__pwned = ${pwned})`);
    for (const v of violations) problems.push(`${where}: CSP violation ${v}`);
    if (problems.length) throw new Error(problems.join("\n"));
  };

  const res = await page.goto(`${base}/?lang=en#/`);
  const csp = res.headers()["content-security-policy"] || "";
  if (!csp.includes("script-src 'self'") || !csp.includes("frame-ancestors 'none'")) throw new Error(`dashboard CSP: ${csp}`);
  await page.waitForSelector("#heat-by");
  await page.selectOption("#heat-by", "city");
  await page.waitForSelector("#heat td.cell", { timeout: 30_000 });
  await check("overview (heat table by city)");

  await page.goto(`${base}/?lang=en#/terminals`);
  await page.waitForSelector(`tr.term[data-terminal="${terminal}"]`, { timeout: 15_000 });
  await check("terminal search");

  await page.goto(`${base}/?lang=en#/terminal/${encodeURIComponent(terminal)}`);
  await page.waitForSelector("#terminal-detail");
  await page.waitForSelector("#recent-errors tr.err", { timeout: 15_000 });
  const text = await page.locator("#view").innerText();
  if (!text.includes(marker)) throw new Error(`the hostile text is not shown as text on the terminal page (looked for ${marker})`);
  await page.waitForSelector("#quarantined tr.quarantined", { timeout: 15_000 });
  const q = await page.locator("#quarantined").innerText();
  if (!q.includes("route") || !q.includes("<img src=x")) throw new Error(`quarantined record not shown as text: ${q}`);
  const codes = await page.locator("#recent-errors code").allInnerTexts();
  if (!codes.some((c) => c.includes("<"))) throw new Error(`hostile codes not shown as text: ${codes.join(" | ")}`);
  await check("terminal page");

  await page.goto(`${base}/?lang=zh#/wall`);
  await page.waitForSelector("#wall-regions .region", { timeout: 15_000 });
  await check("wall view");
  console.log(`ok: hostile labels and codes shown as text on the overview, search, terminal page and wall; nothing executed; no CSP violation`);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(`FAILED: ${failed.message}`);
  process.exit(1);
}
