// Drives the console's Agents page in the system Chromium (playwright-core, no browser download)
// against a running `agentyard dev` stack. Run by tests/tests/e2e/console/agents.rs, which passes:
//   AY_CONSOLE_URL     the API's /console address
//   AY_TOKEN           the dev token
//   AY_AGENT           the agent to edit (it has a few ended runs, for the charts)
//   AY_RUNS            how many runs that agent has
//   AY_INVALID_MESSAGE what the API answers to temperature 5 (the page must show it as it is)
//   AY_NEW_TYPE        an agent type the org has no agent of yet, created from the page
//   AY_SHOTS           where to write the screenshots (console-agents*.png, console-agent*.png)
// It prints one JSON line, `RESULT {...}`, for the Rust test to check against the API.
import {assert, fits, refused, run, shot, url} from './browser.mjs';

const agentId = process.env.AY_AGENT;

await run('agents', async ({page, problems}) => {
  await page.goto(url);
  await page.getByLabel('API token').fill(process.env.AY_TOKEN);
  await page.getByRole('button', {name: 'Log in'}).click();
  await page.getByRole('link', {name: 'Agents', exact: true}).click();

  // The list: the agent, active, with its type's defaults.
  const row = page.locator(`table.agents tr[data-agent="${agentId}"]`);
  await row.waitFor();
  assert.equal(await row.locator('.badge.active').textContent(), 'active');
  assert.equal(await row.locator('td').nth(4).textContent(), 'type defaults');
  await page.locator('#agent-type option').first().waitFor({state: 'attached'});
  await shot(page, 'agents');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await page.setViewportSize({width: 1280, height: 800});

  // A new agent from a type: the page opens it.
  await page.getByLabel('Agent type').selectOption(process.env.AY_NEW_TYPE);
  await page.getByLabel(/^Name/).fill('Numbers desk');
  await page.getByRole('button', {name: 'Create agent'}).click();
  await page.getByRole('heading', {name: 'Numbers desk', level: 1}).waitFor();
  const newAgent = decodeURIComponent(new URL(page.url()).hash.split('/')[2]);
  // The same type again: the API refuses (one agent per type) and the page says why.
  await page.getByRole('link', {name: '← Agents'}).click();
  await page.getByLabel('Agent type').selectOption(process.env.AY_NEW_TYPE);
  await page.getByRole('button', {name: 'Create agent'}).click();
  const exists = await page.locator('.new-agent .error').textContent();
  assert.match(exists, /already has/);
  refused(problems, 409);

  // One agent: its effective configuration, every field the type's default.
  await row.getByRole('link').click();
  const form = page.locator('form.config');
  await form.waitFor();
  const source = (field) => form.locator(`[data-field="${field}"]`).getAttribute('data-source');
  const temperature = page.getByLabel(/^Temperature/);
  const prompt = page.getByLabel(/^System prompt/);
  assert.equal(await source('temperature'), 'default');
  assert.equal(await source('system_prompt'), 'default');
  const defaults = {temperature: await temperature.inputValue(), prompt: await prompt.inputValue()};
  assert.ok(defaults.prompt.length > 20, 'the system prompt is shown');

  // Edit two fields and save: both show as custom, with the saved values.
  await temperature.fill('0.7');
  await prompt.fill('You are terse. Answer in one sentence.');
  await page.getByRole('button', {name: 'Save'}).click();
  await form.locator('.agent-note', {hasText: 'Saved.'}).waitFor();
  assert.equal(await source('temperature'), 'custom');
  assert.equal(await source('system_prompt'), 'custom');
  assert.equal(await source('max_steps'), 'default');
  const saved = {temperature: await temperature.inputValue(), prompt: await prompt.inputValue()};
  assert.deepEqual(saved, {temperature: '0.7', prompt: 'You are terse. Answer in one sentence.'});

  // The charts, from the runs the Rust side made.
  await page.locator('.agent-figures [data-figure="Runs"] dd', {hasText: process.env.AY_RUNS}).waitFor();
  await page.locator('.success-rate').waitFor();
  const charts = await page.locator('figure.chart svg').count();
  assert.ok(charts >= 4, `${charts} charts drawn`);
  // Drawn, not just framed: the outcome bars and the hours' points.
  const marks = await page.evaluate(() => ({
    bars: document.querySelectorAll('figure.chart svg rect.bar').length,
    dots: document.querySelectorAll('figure.chart svg circle.dot').length}));
  assert.ok(marks.bars >= 1 && marks.dots >= 1, `chart marks: ${JSON.stringify(marks)}`);
  const successRate = await page.locator('.success-rate').textContent();
  await shot(page, 'agent');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'agent-375');
  await page.setViewportSize({width: 1280, height: 800});

  // Reset: every field back to the type's default value.
  await page.getByRole('button', {name: 'Reset configuration'}).click();
  await page.locator('.agent-note', {hasText: 'Reset'}).waitFor();
  await form.locator('[data-field="temperature"][data-source="default"]').waitFor();
  assert.equal(await source('system_prompt'), 'default');
  assert.deepEqual({temperature: await temperature.inputValue(), prompt: await prompt.inputValue()}, defaults);

  // A bad value: the API's 422 message next to the form, the field marked; nothing changes.
  await temperature.fill('5');
  await page.getByRole('button', {name: 'Save'}).click();
  const invalid = form.locator('#cfg-status .error');
  await invalid.waitFor();
  assert.equal(await invalid.textContent(), process.env.AY_INVALID_MESSAGE);
  assert.equal(await temperature.getAttribute('aria-invalid'), 'true');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'cfg-temperature');
  assert.equal(await source('temperature'), 'default');
  await shot(page, 'agent-invalid');
  refused(problems, 422);

  // Deactivate, then activate again, with the keyboard.
  await page.getByRole('button', {name: 'Deactivate'}).focus();
  await page.keyboard.press('Enter');
  await page.locator('.summary .badge.inactive').waitFor();
  await page.getByRole('button', {name: 'Activate'}).press('Enter');
  await page.locator('.summary .badge.active').waitFor();
  await page.getByRole('button', {name: 'Deactivate'}).waitFor();

  return {newAgent, saved, defaults, successRate, charts};
});
