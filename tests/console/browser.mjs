// What every console browser test shares: the system Chromium through playwright-core (no
// browser download), tabs whose console errors and script errors are collected (a CSP
// violation shows up there: the console must have none), screenshots, the 375 px check, and
// the `RESULT {...}` line the Rust side reads. The Rust side (tests/tests/e2e/console/) passes:
//   AY_TEST_NPM_DIR  where playwright-core is installed
//   AY_CONSOLE_URL   the API's /console address
//   AY_SHOTS         where to write the screenshots (console-<name>.png)
import {createRequire} from 'node:module';
import path from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(path.join(process.env.AY_TEST_NPM_DIR, 'node_modules', 'x.js'));
const {chromium} = require('playwright-core');

export {assert};
export const url = process.env.AY_CONSOLE_URL;

/** Readable at 375 px: nothing wider than the screen. */
export async function fits(page) {
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 375, `the page is ${wide} px wide at 375 px at ${page.url()}`);
}

/** A full-page screenshot, `console-<name>.png`. */
export function shot(page, name) {
  return page.screenshot({path: path.join(process.env.AY_SHOTS, `console-${name}.png`), fullPage: true});
}

/** Drops the console lines of requests the test had refused on purpose (`status of 422`, ...);
 * fails unless there was at least one. */
export function refused(problems, status) {
  const before = problems.length;
  const kept = problems.filter((p) => !p.includes(`status of ${status} `));
  assert.ok(kept.length < before, `no refused request (${status}) in ${JSON.stringify(problems)}`);
  problems.splice(0, problems.length, ...kept);
}

/**
 * Runs `test({page, tab, problems})` in a fresh browser: `page` is a first tab, `tab()` opens
 * another (its own sessionStorage). The test returns its result, printed as `RESULT <json>`
 * once it passed with no problem left; when it fails, the last tab's screenshot is
 * `console-<name>-failure.png` and the problems are printed.
 */
export async function run(name, test, {width = 1280, height = 800, timeout = 60_000} = {}) {
  const browser = await chromium.launch({executablePath: '/usr/bin/chromium', args: ['--no-sandbox']});
  const problems = [];
  let last = null;
  const tab = async () => {
    const page = await browser.newPage({viewport: {width, height}});
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.setDefaultTimeout(timeout);
    last = page;
    return page;
  };
  try {
    const result = await test({page: await tab(), tab, problems});
    assert.deepEqual(problems, []);
    console.log(`RESULT ${JSON.stringify(result)}`);
  } catch (err) {
    // What the page showed and said when it went wrong.
    if (last) await shot(last, `${name}-failure`).catch(() => {});
    console.error(`page problems: ${JSON.stringify(problems)}\nat ${last?.url()}`);
    throw err;
  } finally {
    await browser.close();
  }
}
