// Drives the web console in the system Chromium (playwright-core, no browser download) against
// a running stack (tests/console/browser.mjs). Run by tests/tests/e2e/console/mod.rs, which
// passes:
//   AY_CONSOLE_URL   the API's /console address
//   AY_TOKEN         a valid token
//   AY_BAD_TOKEN_MESSAGE  what the API answers to a bad token
//   AY_FAILED_RUN    the id of a failed run (for the status filter)
//   AY_TASK_AGENT    an agent with the task tools (delete_task waits for approval)
//   AY_SHOTS         where to write the screenshots (console-*.png)
// It prints one JSON line, `RESULT {...}`, for the Rust test to check against the API.
import {assert, fits, run, shot, url} from './browser.mjs';

await run('chat', async ({page, problems}) => {
  // Login: a bad token shows the API's message, a good one opens the chat.
  await page.goto(url);
  const tokenField = page.getByLabel('API token');
  await tokenField.fill('ay_not-a-real-token');
  await tokenField.press('Enter');
  const error = page.locator('.login .error');
  await error.waitFor();
  assert.equal(await error.textContent(), process.env.AY_BAD_TOKEN_MESSAGE);
  await shot(page, 'login-error');
  assert.equal(await page.getByRole('button', {name: 'Log out'}).isVisible(), false);
  // The bad token answered 401 above; those do not count as page problems.
  problems.length = 0;
  await tokenField.fill(process.env.AY_TOKEN);
  await page.getByRole('button', {name: 'Log in'}).click();
  await page.getByLabel('Message').waitFor();
  await page.locator('#agent option', {hasText: '(default)'}).waitFor({state: 'attached'});

  // Chat: record every change of the answer's text, send with the keyboard, wait for the end.
  await page.evaluate(() => {
    window.__deltas = 0;
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.target.closest?.('.msg.assistant .content') || r.target.parentElement?.closest('.msg.assistant .content')) window.__deltas += 1;
      }
    }).observe(document.querySelector('.conversation'), {childList: true, subtree: true, characterData: true});
  });
  const message = page.getByLabel('Message');
  await message.fill('What integrations are active?');
  await message.press('Enter');
  const answer = page.locator('.msg.assistant').last();
  const tool = answer.locator('.tool[data-tool="get_active_integrations"]');
  await tool.locator('.tool-result').waitFor();
  await answer.locator('a', {hasText: 'Run details'}).waitFor();
  assert.equal(await answer.locator('.error').count(), 0, await answer.textContent());
  const toolState = await tool.locator('.tool-state').textContent();
  assert.match(toolState, /^done/);
  const toolResult = await tool.locator('.tool-result').textContent();
  // The tool call shows before the answer that used it.
  const toolFirst = await answer.evaluate((el) =>
    el.querySelector('.tool').compareDocumentPosition(el.querySelector('.content')) & Node.DOCUMENT_POSITION_FOLLOWING);
  assert.ok(toolFirst, 'the tool call shows above the answer');
  const text = await answer.locator('.content').textContent();
  const deltas = await page.evaluate(() => window.__deltas);
  assert.ok(deltas > 1, `the answer arrived in ${deltas} piece(s), not token by token`);
  const threadId = decodeURIComponent(new URL(page.url()).hash.split('/')[2] || '');
  assert.ok(threadId, `the address names the new thread: ${page.url()}`);
  await page.locator(`.threads a[href="#/chat/${threadId}"]`).waitFor();
  await shot(page, 'chat');
  // A reload keeps the session (the token is in sessionStorage) and shows the stored thread.
  await page.reload();
  await page.locator('.msg.user', {hasText: 'What integrations are active?'}).waitFor();
  assert.deepEqual(await page.locator('.msg.assistant .content').allTextContents(), [text]);
  // The chat run's page: its tool call in the timeline and in the invocations, and its usage.
  await page.getByRole('link', {name: 'Run details'}).click();
  await page.locator('.event[data-event="run.completed"]').waitFor();
  const chatEvents = await page.locator('.event .kind').allTextContents();
  for (const e of ['run.queued', 'tool_call.created', 'tool_call.completed', 'message.delta']) {
    assert.ok(chatEvents.includes(e), `${e} missing from ${chatEvents}`);
  }
  assert.deepEqual(await page.locator('details.tool .tool-name').allTextContents(), ['get_active_integrations']);
  await page.locator('.summary dt', {hasText: 'Usage'}).waitFor();
  await shot(page, 'run-tools');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'chat-375');
  await page.setViewportSize({width: 1280, height: 800});

  // Approvals answered in place: a delete waits for the human; approved, the run goes on. A
  // second one is cancelled from the page instead, and its task stays.
  const waiting = async (input, agent = process.env.AY_TASK_AGENT) => {
    await page.getByRole('link', {name: 'Chat', exact: true}).click();
    await page.getByRole('link', {name: 'New chat'}).click();
    await page.locator('#agent option', {hasText: '(default)'}).waitFor({state: 'attached'});
    await page.locator('#agent').selectOption(agent);
    await message.fill(input);
    await message.press('Enter');
    const bubble = page.locator('.msg.assistant').last();
    await bubble.locator('form.input').waitFor();
    return bubble;
  };
  let bubble = await waiting('call delete_task {"title": "old errand"}');
  assert.match(await bubble.locator('form.input pre').textContent(), /delete_task/);
  await shot(page, 'chat-approval');
  await bubble.getByRole('button', {name: 'Approve'}).click();
  await bubble.locator('a', {hasText: 'Run details'}).waitFor();
  assert.equal(await bubble.locator('form.input').count(), 0, 'the answered form is gone');
  assert.match(await bubble.locator('.content').textContent(), /old errand/);
  // An elicitation: the form asks for the missing description, and the answer resumes the run.
  bubble = await waiting('create a ticket titled Printer on fire without a description', '');
  await bubble.locator('form.input').getByLabel(/description/i).fill('Smoke from tray 2');
  await shot(page, 'chat-elicitation');
  await bubble.locator('form.input').getByRole('button', {name: 'Send'}).click();
  await bubble.locator('a', {hasText: 'Run details'}).waitFor();
  assert.equal(await bubble.locator('.error').count(), 0, await bubble.textContent());
  bubble = await waiting('call delete_task {"title": "keep me"}');
  await page.getByRole('button', {name: 'Cancel run'}).click();
  await bubble.locator('.error').waitFor();
  const cancelled = await bubble.locator('.error').textContent();
  await bubble.locator('a', {hasText: 'Run details'}).waitFor();
  assert.equal(await page.getByRole('button', {name: 'Cancel run'}).isVisible(), false);

  // A reload mid-answer: the page resumes the run's stream after the last event it had seen
  // (Last-Event-ID), and the answer ends whole, nothing lost and nothing doubled.
  const resumes = [];
  page.on('request', (r) => {
    if (/^\/v1\/runs\/[^/]+\/events$/.test(new URL(r.url()).pathname)) {
      resumes.push(r.headers()['last-event-id'] ?? null);
    }
  });
  await page.getByRole('link', {name: 'Chat', exact: true}).click();
  await page.getByRole('link', {name: 'New chat'}).click();
  await page.locator('#agent option', {hasText: '(default)'}).waitFor({state: 'attached'});
  await message.fill('slow count to thirty');
  await message.press('Enter');
  await page.locator('.msg.assistant .content', {hasText: 'three'}).waitFor();
  const partial = await page.locator('.msg.assistant .content').last().textContent();
  await page.reload();
  bubble = page.locator('.msg.assistant').last();
  await bubble.locator('a', {hasText: 'Run details'}).waitFor();
  const slowText = await bubble.locator('.content').textContent();
  assert.ok(slowText.startsWith(partial), `"${slowText}" does not go on from "${partial}"`);
  assert.equal(resumes.length, 1, `event streams opened: ${JSON.stringify(resumes)}`);
  assert.match(String(resumes[0]), /^[0-9]+$/, 'the resumed stream sent Last-Event-ID');
  const slowThread = decodeURIComponent(new URL(page.url()).hash.split('/')[2] || '');
  await shot(page, 'chat-resumed');

  // Runs: the failed run is found by the status filter; its page shows its events and error.
  await page.getByRole('link', {name: 'Runs', exact: true}).click();
  await page.getByLabel('Status').selectOption('failed');
  await page.getByRole('button', {name: 'Filter'}).click();
  const failed = process.env.AY_FAILED_RUN;
  const row = page.locator(`table.runs a[href="#/runs/${failed}"]`);
  await row.waitFor();
  const statuses = await page.locator('table.runs .badge').allTextContents();
  assert.ok(statuses.length > 0 && statuses.every((s) => s === 'failed'), `statuses: ${statuses}`);
  await shot(page, 'runs');
  // The time filter: nothing from tomorrow on; from an hour ago, the failed run again.
  const local = (ms) => page.evaluate((ms) => {
    const d = new Date(Date.now() + ms);
    d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
    return d.toISOString().slice(0, 16);
  }, ms);
  await page.getByLabel('From').fill(await local(86_400_000));
  await page.getByRole('button', {name: 'Filter'}).click();
  await page.getByText('No runs match.').waitFor();
  assert.match(page.url(), /since=/, 'the address keeps the time filter');
  await page.getByLabel('From').fill(await local(-3_600_000));
  await page.getByRole('button', {name: 'Filter'}).click();
  await row.waitFor();
  await row.click();
  await page.locator('.event[data-event="run.failed"]').waitFor();
  const events = await page.locator('.event .kind').allTextContents();
  assert.equal(events[0], 'run.queued', `events: ${events}`);
  const runError = await page.locator('main > .error').textContent();
  const summary = await page.locator('.summary dt').allTextContents();
  assert.deepEqual(summary.slice(0, 2), ['Status', 'Thread'], `summary: ${summary}`);
  assert.equal(await page.locator('.summary dd .badge').textContent(), 'failed');
  await page.locator('.msg.user').waitFor();
  await shot(page, 'run');
  await page.setViewportSize({width: 375, height: 800});
  await fits(page);
  await shot(page, 'run-375');

  return {threadId, text, toolResult, deltas, events, runError, cancelled,
    slowThread, slowText, lastEventId: resumes[0]};
});
