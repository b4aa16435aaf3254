// Drives the console's System page in the system Chromium (playwright-core, no browser
// download) against the separate-roles stack of tests/tests/e2e/console/system.rs, which passes:
//   AY_CONSOLE_URL        the API's /console address
//   AY_TOKEN              an operator's token (platform:admin and the organization's scopes)
//   AY_READY_FILE         written once the page is open and shows no alert: the Rust side then
//                         kills the agent worker
//   AY_PROBES             the probes of the health report, comma-separated, sorted
//   AY_ORG_TOKEN          an organization admin's token (no platform:admin)
//   AY_FORBIDDEN_MESSAGE  what the API answers that token for GET /v1/system/status
//   AY_SHOTS              where to write the screenshots (console-system*.png)
// It prints one JSON line, `RESULT {...}`, for the Rust test to check against the API.
import fs from 'node:fs';

import {assert, fits, refused, run, shot, url} from './browser.mjs';

/** `page` (a fresh tab: its own sessionStorage) logged in with `token`, on the System page. */
async function open(page, token) {
  await page.goto(url);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', {name: 'Log in'}).click();
  await page.getByLabel('Message').waitFor();
  await page.getByRole('link', {name: 'System', exact: true}).click();
  await page.getByRole('heading', {name: 'System', level: 1}).waitFor();
  return page;
}

await run('system', async ({page: first, tab, problems}) => {
  let page = first;
  // The operator's view: every probe up, each role with its worker, no alert yet.
  await open(page, process.env.AY_TOKEN);
  const health = page.locator('.sys-section-health');
  await health.locator('tr[data-probe]').first().waitFor();
  const probes = (await health.locator('tr[data-probe]').evaluateAll((rows) =>
    rows.map((r) => r.dataset.probe))).sort();
  assert.deepEqual(probes, process.env.AY_PROBES.split(','));
  assert.deepEqual([...new Set(await health.locator('tr[data-probe] .badge').allTextContents())], ['up']);
  const agentUp = page.locator('.sys-section-workers tr[data-role="agent"] td.up');
  assert.equal(await agentUp.textContent(), '1');
  await page.locator('.sys-section-queues tr[data-consumer="agent-normal"]').waitFor();
  await page.locator('.alerts-open', {hasText: 'No open alerts.'}).waitFor();
  // Availability and the trend are drawn (their numbers are in the charts' tables).
  const roleRows = page.locator('.sys-section-availability figure').first().locator('table.numbers tbody tr');
  assert.ok(await roleRows.count() >= 4, 'availability per role');
  await page.locator('.sys-section-trends figcaption', {hasText: 'Run latency, last 1h'}).waitFor();
  const runs = await health.locator('.sys-runs').textContent();
  const observed = await page.locator('.sys-observed').textContent();
  assert.equal(await page.getByLabel('Refresh every 5 s').isChecked(), true);
  await shot(page, 'system');
  fs.writeFileSync(process.env.AY_READY_FILE, 'ready');

  // The agent worker is killed now: the page, refreshing itself, shows its role down and the
  // alert (no reload here).
  const row = page.locator('.alerts-open li[data-subject="role:agent"]');
  await row.waitFor({timeout: 90_000});
  const alertId = await row.getAttribute('data-id');
  assert.match(await row.textContent(), /service_unavailable/);
  await page.waitForFunction(() =>
    document.querySelector('.sys-section-workers tr[data-role="agent"] td.up')?.textContent === '0');
  const agentUpShown = await agentUp.textContent();
  // The overall badge is drawn once every request of a refresh has answered, and the health
  // report is a request of its own: it may show the worker down a refresh after the list.
  await page.waitForFunction(() =>
    document.querySelector('.sys-overall .badge')?.textContent === 'degraded');

  // Its page: what opened it, and no webhook deliveries (none configured).
  await row.getByRole('link', {name: 'role:agent'}).click();
  await page.locator('.sys-alert-title', {hasText: 'service_unavailable on role:agent'}).waitFor();
  assert.equal(new URL(page.url()).hash, `#/system/${alertId}`);
  await page.locator('.summary dd .badge', {hasText: 'open'}).waitFor();
  await page.getByText('No webhook deliveries').waitFor();
  await shot(page, 'system-alert');
  await page.getByRole('link', {name: '← System'}).click();

  // Resolved from the list with the keyboard: it moves to the resolved ones.
  const resolve = page.getByRole('button', {name: 'Resolve service_unavailable on role:agent'});
  await resolve.focus();
  await page.keyboard.press('Enter');
  const done = page.locator(`.alerts-resolved li[data-id="${alertId}"] .resolved-by`);
  await done.waitFor();
  const resolvedBy = await done.textContent();
  await page.locator('[role="status"]', {hasText: 'Resolved service_unavailable on role:agent.'}).waitFor();
  // A refresh already running when it was resolved may draw the open list as it was before;
  // the refresh that follows the resolve draws it without the alert.
  await page.locator(`.alerts-open li[data-id="${alertId}"]`).waitFor({state: 'detached'});
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'system-375');
  assert.deepEqual(problems, []);

  // An organization's admin: its organization's health report and alerts; the operators'
  // sections show the API's refusal (the browser logs each 403 as a failed load; nothing else
  // may show up).
  page = await tab();
  await open(page, process.env.AY_ORG_TOKEN);
  const forbidden = process.env.AY_FORBIDDEN_MESSAGE;
  for (const s of ['workers', 'queues', 'availability']) {
    await page.locator(`.sys-section-${s} .error`, {hasText: forbidden}).waitFor();
  }
  await page.locator('.sys-section-health tr[data-probe="postgres"]').waitFor();
  const orgScope = (await page.locator('.sys-overall').textContent()).split(':')[0];
  await page.locator('.alerts-open', {hasText: 'No open alerts.'}).waitFor();
  await page.locator('.sys-section-trends figcaption', {hasText: 'Run latency'}).waitFor();
  await shot(page, 'system-org');
  refused(problems, 403);
  return {alertId, resolvedBy, agentUp: agentUpShown, orgScope, runs, observed};
});
