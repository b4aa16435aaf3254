// Drives the console's workflows page in the system Chromium against a running `agentyard dev`.
// Run by tests/tests/e2e/console/workflows.rs, which passes:
//   AY_CONSOLE_URL, AY_TOKEN, AY_SHOTS, AY_TEST_NPM_DIR  as for console.test.mjs
//   AY_INVALID_MESSAGE  what the API answers to customer_onboarding with a bad email
// and has defined `gate` (an approval, then a task; inputs who/count/urgent), `long` (a 5 min
// wait) and `flaky` (a lookup of an unknown customer, which fails).
// It prints one JSON line, `RESULT {...}`, for the Rust test to check against the API.
import {assert, fits, refused, run, shot, url} from './browser.mjs';

// A customer that does not exist yet (onboarding refuses a known email).
const email = process.env.AY_EMAIL || 'ada.lovelace@example.com';
const executionId = (page) => decodeURIComponent(new URL(page.url()).hash.split('/')[2] || '');

await run('workflows', async ({page, problems}) => {
  await page.goto(url);
  await page.getByLabel('API token').fill(process.env.AY_TOKEN);
  await page.getByRole('button', {name: 'Log in'}).click();
  await page.getByRole('link', {name: 'Workflows', exact: true}).click();

  // The list: the three templates and the definitions the test made.
  await page.locator('.wf-card[data-workflow="customer_onboarding"]').waitFor();
  for (const id of ['revenue_analysis', 'customer_support', 'gate', 'long', 'flaky']) {
    await page.locator(`.wf-card[data-workflow="${id}"]`).waitFor();
  }

  // A template's start form, generated from its inputs schema.
  await page.getByRole('link', {name: 'Start Customer onboarding'}).click();
  const name = page.getByLabel('name');
  await name.waitFor();
  assert.equal(await name.getAttribute('aria-required'), 'true');
  assert.equal(await page.getByLabel('email').getAttribute('type'), 'email');
  assert.equal(await page.getByLabel('company').getAttribute('aria-required'), null);
  const plans = await page.getByLabel('plan').locator('option').allTextContents();
  assert.deepEqual(plans, ['—', 'free', 'pro', 'enterprise']);
  // The definition's steps drawn before it runs.
  assert.equal(await page.locator('.dag .node').count(), 5);
  // Invalid inputs: the API's 422, as it is.
  await name.fill('Ada Lovelace');
  await page.getByLabel('email').fill('not-an-email');
  await page.getByRole('button', {name: 'Start the workflow'}).click();
  const invalid = await page.locator('.wf-start .error').textContent();
  assert.equal(invalid, process.env.AY_INVALID_MESSAGE);
  await page.getByLabel('email').fill(email);
  await page.getByLabel('plan').selectOption({label: 'enterprise'});
  await page.getByRole('button', {name: 'Start the workflow'}).click();

  // Its execution, watched to the end in the DAG.
  await page.locator('.dag-wrap[data-status="completed"]').waitFor();
  const onboarding = executionId(page);
  assert.ok(onboarding, page.url());
  await page.locator('.dag-wrap .node').first().waitFor();
  const seq = Number(await page.locator('.dag-wrap').getAttribute('data-seq'));
  assert.ok(seq > 0, 'the page read the execution\'s events');
  const nodes = page.locator('.dag .node');
  const steps = {};
  for (let i = 0; i < await nodes.count(); i += 1) {
    const n = nodes.nth(i);
    steps[await n.getAttribute('data-step')] = await n.getAttribute('data-status');
  }
  assert.deepEqual(Object.values(steps), Array(5).fill('completed'), JSON.stringify(steps));
  assert.equal(await page.locator('#exec-status-badge').textContent(), 'completed');
  assert.equal(await page.locator('.dag .edge').count(), 4);
  // A step's output, opened with the keyboard.
  const record = page.locator('.dag .node[data-step="create_record"]');
  await record.focus();
  await page.keyboard.press('Enter');
  assert.equal(await record.getAttribute('aria-pressed'), 'true');
  const recordOutput = JSON.parse(await page.locator('.step-detail pre.output').textContent());
  assert.equal(recordOutput.email, email);
  await page.locator('.dag .node[data-step="welcome_content"]').click();
  await page.locator('.step-detail h2', {hasText: 'Write the welcome message'}).waitFor();
  const welcome = await page.locator('.step-detail pre.output').textContent();
  await shot(page, 'workflow-dag');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'workflow-375');
  await page.setViewportSize({width: 1280, height: 800});

  // An approval answered in place; the form's integer and yes/no fields go with the inputs.
  const startDefinition = async (id, fill = async () => {}) => {
    await page.getByRole('link', {name: 'Workflows', exact: true}).click();
    await page.locator(`.wf-card[data-workflow="${id}"] a.button`).click();
    await page.getByRole('button', {name: 'Start the workflow'}).waitFor();
    await fill();
    const before = page.url();
    await page.getByRole('button', {name: 'Start the workflow'}).click();
    await page.waitForURL((u) => u.toString() !== before && /#\/workflows\/[^?]/.test(u.hash));
    await page.locator('.dag .node').first().waitFor();
    return executionId(page);
  };
  const gate = await startDefinition('gate', async () => {
    await page.getByLabel('who').fill('Ada');
    await page.getByLabel('count').fill('3');
    await page.getByLabel('urgent').check();
  });
  const approval = page.locator('.approvals form[data-step="ok"]');
  await approval.waitFor();
  assert.equal(await approval.locator('.ask').textContent(), 'Send the offer to Ada?');
  assert.equal(await page.locator('.dag .node[data-step="ok"]').getAttribute('data-status'), 'waiting');
  await approval.getByLabel('Comment (optional)').fill('ship it');
  await approval.getByRole('button', {name: 'Approve'}).click();
  await page.locator('.dag-wrap[data-status="completed"]').waitFor();
  assert.equal(await page.locator('.approvals form').count(), 0, 'the answered form is gone');
  await page.locator('.dag .node[data-step="send"]').click();
  const sent = JSON.parse(await page.locator('.step-detail pre.output').textContent());

  // Cancelled from the page while it waits.
  const long = await startDefinition('long');
  await page.locator('.dag .node[data-step="pause"][data-status="running"]').waitFor();
  await page.getByRole('button', {name: 'Cancel execution'}).click();
  await page.locator('.dag-wrap[data-status="cancelled"]').waitFor();
  await page.locator('.dag .node[data-step="after"][data-status="cancelled"]').waitFor();
  assert.equal(await page.getByRole('button', {name: 'Cancel execution'}).isVisible(), false);

  // A failed execution retried from the page: its failed step runs again (a new run).
  const flaky = await startDefinition('flaky');
  await page.locator('.dag-wrap[data-status="failed"]').waitFor();
  const failedError = await page.locator('main > div > .error').first().textContent();
  const lookup = page.locator('.dag .node[data-step="lookup"]');
  await lookup.click();
  const runLink = page.locator('.step-detail a[href^="#/runs/"]');
  const firstRun = await runLink.textContent();
  await page.getByRole('button', {name: 'Retry'}).click();
  // The new attempt's run shows once the step runs again, and it fails again.
  await page.locator('.step-detail a[href^="#/runs/"]', {hasNotText: firstRun}).waitFor();
  await page.locator('.dag-wrap[data-status="failed"]').waitFor();
  const secondRun = await runLink.textContent();

  // The executions list, filtered by status.
  await page.getByRole('link', {name: 'Workflows', exact: true}).click();
  await page.locator(`tr[data-execution="${long}"]`).waitFor();
  await shot(page, 'workflows');
  await page.getByLabel('Status').selectOption('cancelled');
  await page.getByRole('button', {name: 'Filter'}).click();
  await page.locator(`tr[data-execution="${onboarding}"]`).waitFor({state: 'detached'});
  await page.locator(`tr[data-execution="${long}"]`).waitFor();
  const listed = await page.locator('tr[data-execution] .badge').allTextContents();
  assert.ok(listed.every((s) => s === 'cancelled'), `statuses: ${listed}`);
  assert.match(page.url(), /status=cancelled/);
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);

  // The refused start (a 422 the browser logs) was meant to be refused.
  refused(problems, 422);
  return {onboarding, steps, recordOutput, welcome, invalid, gate, sent,
    long, flaky, failedError, firstRun, secondRun};
});
