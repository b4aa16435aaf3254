// Drives the console's Tools page in the system Chromium (playwright-core, no browser download)
// against a running `agentyard dev` stack. Run by tests/tests/e2e/console/tools.rs, which passes:
//   AY_CONSOLE_URL      the API's /console address
//   AY_TOKEN            the dev token (also a bearer token of the dev's built-in tool server)
//   AY_MCP_URL          the built-in tool server's streamable HTTP endpoint, to register
//   AY_DEAD_URL         an address where no server listens
//   AY_BAD_URL_MESSAGE  what the API answers to a registration with the URL "not a url"
//   AY_SHOTS            where to write the screenshots (console-tools*.png)
// It prints one JSON line, `RESULT {...}`, for the Rust test to check against the API.
import {assert, fits, run, shot, url} from './browser.mjs';

await run('tools', async ({page, problems}) => {
  await page.goto(url);
  await page.getByLabel('API token').fill(process.env.AY_TOKEN);
  await page.getByRole('button', {name: 'Log in'}).click();
  await page.getByLabel('Message').waitFor();
  await page.getByRole('link', {name: 'Tools', exact: true}).click();
  await page.getByRole('heading', {name: 'MCP servers'}).waitFor();
  const register = page.locator('form.register');
  const said = register.locator('[aria-live]');

  // A bad URL: the API's own message, and nothing registered.
  await page.getByLabel('Name').fill('broken');
  await page.getByLabel('URL').fill('not a url');
  await page.getByRole('button', {name: 'Register'}).click();
  await said.locator('.error').waitFor();
  const badUrl = await said.locator('.error').textContent();
  assert.equal(badUrl, process.env.AY_BAD_URL_MESSAGE);
  // That refusal (a 422) is logged by the browser; it is the one expected problem.
  assert.equal(problems.length, 1, `${problems}`);
  assert.match(problems[0], /422/);
  problems.length = 0;

  // A server nobody answers at: registered, and the page says why its tools are missing.
  await page.getByLabel('Name').fill('dead');
  await page.getByLabel('URL').fill(process.env.AY_DEAD_URL);
  await page.getByRole('button', {name: 'Register'}).click();
  await said.locator('.error').waitFor();
  await said.getByRole('link', {name: 'dead'}).waitFor();
  const deadError = await said.locator('.error').textContent();
  assert.match(deadError, /unreachable/);
  await page.locator('.server[data-server="dead"] .badge', {hasText: 'error'}).waitFor();

  // The dev's built-in tool server, with a bearer token: registered with its tools, all by
  // keyboard.
  await page.getByLabel('Name').fill('yard');
  await page.getByLabel('URL').fill(process.env.AY_MCP_URL);
  await page.getByLabel('Bearer token (optional)').fill(process.env.AY_TOKEN);
  await page.getByLabel('Bearer token (optional)').press('Enter');
  await said.locator('.notice', {hasText: 'Registered yard with'}).waitFor();
  const yard = page.locator('.server[data-server="yard"]');
  await yard.waitFor();
  const badge = await yard.locator('.badge').textContent();
  assert.match(badge, /^\d+ tools$/);
  await shot(page, 'tools');

  // Its page: its tools with their descriptions and input schemas.
  await yard.getByRole('link', {name: 'yard'}).click();
  await page.getByRole('heading', {name: 'yard', level: 1}).waitFor();
  const serverId = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  const tool = page.locator('.tool-def[data-tool="get_active_integrations"]');
  await tool.waitFor();
  assert.ok((await tool.locator('.tool-desc').textContent()).length > 10, 'the tool has its description');
  const tools = await page.locator('.tool-def .tool-name').allTextContents();
  assert.equal(`${tools.length} tools`, badge);
  // A tool opened (by keyboard) shows its parameters and its input schema.
  const withParams = page.locator('.tool-def', {has: page.locator('.params')}).first();
  await withParams.locator('summary').focus();
  await page.keyboard.press('Enter');
  await withParams.locator('pre.schema').waitFor();
  const schema = JSON.parse(await withParams.locator('pre.schema').textContent());
  assert.equal(schema.type, 'object');
  const params = await withParams.locator('.params dt code').allTextContents();
  assert.deepEqual(params, Object.keys(schema.properties));
  await shot(page, 'tools-server');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await page.setViewportSize({width: 1280, height: 800});

  // Refresh: the API lists its tools again.
  const refreshed = page.waitForResponse((r) => r.url().endsWith(`/v1/mcp-servers/${serverId}/refresh`));
  await page.getByRole('button', {name: 'Refresh tools'}).click();
  const refresh = await (await refreshed).json();
  await page.locator('.notice', {hasText: 'Refreshed at'}).waitFor();
  assert.equal(refresh.tools.length, tools.length);

  // Delete, with a confirmation, by keyboard: Escape backs out, "Yes, delete" deletes.
  const del = page.getByRole('button', {name: 'Delete…'});
  await del.focus();
  await page.keyboard.press('Enter');
  const confirm = page.locator('#confirm-delete');
  await confirm.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Keep it');
  await page.keyboard.press('Escape');
  await confirm.waitFor({state: 'hidden'});
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Delete…');
  await page.keyboard.press('Enter');
  await page.keyboard.press('Shift+Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Yes, delete');
  await page.keyboard.press('Enter');
  await page.locator('.notice', {hasText: 'Deleted the server yard.'}).waitFor();
  await page.locator('.server[data-server="dead"]').waitFor();
  assert.equal(await page.locator('.server[data-server="yard"]').count(), 0);

  // The audit log: every call at first (more than one tool), a page of 50, then the next
  // pages by "More calls" (by keyboard), until the API says there are no more.
  const calls = page.locator('.calls .call');
  await calls.first().waitFor();
  const allTools = new Set(await calls.evaluateAll((els) => els.map((e) => e.dataset.tool)));
  assert.ok(allTools.size > 1, `the unfiltered log has several tools: ${[...allTools]}`);
  assert.equal(await calls.count(), 50, 'a first page of 50');
  const more = page.getByRole('button', {name: 'More calls'});
  await more.waitFor();
  await shot(page, 'tools-more');
  let pages = 1;
  while (await more.count()) {
    const shown = await calls.count();
    await more.focus();
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => document.querySelectorAll('.calls .call').length > n, shown);
    pages += 1;
    // The focus goes on to the first call of the new page.
    const focused = await page.evaluate(() => document.activeElement.closest('.call')?.dataset.id);
    assert.equal(focused, await calls.nth(shown).getAttribute('data-id'));
  }
  const pagedIds = await calls.evaluateAll((els) => els.map((e) => e.dataset.id));
  assert.equal(new Set(pagedIds).size, pagedIds.length, 'no call shown twice');
  assert.match(await page.locator('.calls-count').textContent(), new RegExp(`^${pagedIds.length} calls, newest first$`));

  // By outcome: the failed calls only, each shown as an error.
  await page.getByLabel('Outcome').selectOption('error');
  await page.getByRole('button', {name: 'Filter'}).click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('.calls .call')];
    return rows.length && rows.every((r) => r.querySelector('.badge').textContent === 'error');
  });
  assert.match(page.url(), /#\/tools\?outcome=error$/);
  const errorIds = await calls.evaluateAll((els) => els.map((e) => e.dataset.id));
  await page.getByLabel('Outcome').selectOption('');

  // By tool and server: one tool of the built-in server.
  await page.getByLabel('Tool', {exact: true}).fill('get_active_integrations');
  await page.getByLabel('Server', {exact: true}).fill('builtin');
  await page.getByRole('button', {name: 'Filter'}).click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('.calls .call')];
    return rows.length && rows.every((r) => r.dataset.tool === 'get_active_integrations');
  });
  assert.match(page.url(), /#\/tools\?tool=get_active_integrations&server=builtin$/);
  const filtered = await calls.count();
  // Open the newest: its arguments, result and duration, and its run.
  const first = calls.first();
  await first.locator('summary').focus();
  await page.keyboard.press('Enter');
  const args = JSON.parse(await first.locator('.call-args').textContent());
  const result = await first.locator('.call-result').textContent();
  const duration = await first.locator('dt:text-is("Duration") + dd').textContent();
  assert.match(duration, /^\d+ ms$/);
  const runLink = first.locator('dd a[href^="#/runs/"]');
  const runId = (await runLink.getAttribute('href')).split('/')[2];
  await shot(page, 'tools-audit');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'tools-375');
  await page.setViewportSize({width: 1280, height: 800});
  await runLink.click();
  await page.getByRole('heading', {name: `Run ${runId}`}).waitFor();
  // Back, the filter is still there (kept in the address).
  await page.goBack();
  await page.locator('.calls .call').first().waitFor();
  assert.equal(await page.getByLabel('Tool', {exact: true}).inputValue(), 'get_active_integrations');
  assert.equal(await page.getByLabel('Server', {exact: true}).inputValue(), 'builtin');

  return {serverId, tools, refreshedAt: refresh.tools_refreshed_at,
    deadError, pages, pagedIds, errorIds, filtered, args, result, duration, runId};
});
