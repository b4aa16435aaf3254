// The chat page: the user's threads, an agent to talk to, and a conversation whose answer
// streams in token by token, with the tool calls shown where they happen.

import {get, post, stream, threadMessages} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';

export async function render(main, {id, signal}) {
  document.title = 'Chat · agentyard';
  const threads = h('ul', {class: 'threads'});
  const agent = h('select', {id: 'agent', name: 'agent'});
  const log = h('ol', {class: 'conversation', 'aria-live': 'polite', 'aria-label': 'Conversation'});
  const input = h('textarea', {id: 'message', name: 'message', rows: 3, required: true});
  const send = h('button', {type: 'submit'}, 'Send');
  const cancel = h('button', {type: 'button', class: 'secondary', hidden: true}, 'Cancel run');
  const status = h('div', {class: 'chat-status'});
  let threadId = id;

  const form = h('form', {class: 'composer', onsubmit: (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || send.disabled) return;
    input.value = '';
    converse(text);
  }},
    h('label', {for: 'message'}, 'Message'),
    input,
    h('div', {class: 'row'}, send, cancel, status));
  // Enter sends, Shift+Enter makes a new line.
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });

  fill(main, h('div', {class: 'chat'},
    h('aside', {class: 'sidebar', 'aria-label': 'Threads'},
      h('a', {class: 'button', href: '#/chat'}, 'New chat'),
      h('h2', {}, 'Threads'),
      threads),
    h('section', {class: 'thread', 'aria-label': 'Chat'},
      h('div', {class: 'row'}, h('label', {for: 'agent'}, 'Agent'), agent),
      log,
      form)));

  loadThreads(threads, threadId);
  loadAgents(agent);
  // A reload mid-answer: the stored messages, then the answer still coming, resumed.
  if (threadId) loadMessages(log, threadId).then((ok) => ok && resume(threadId));
  input.focus();

  function converse(text) {
    log.append(h('li', {class: 'msg user'}, h('span', {class: 'who'}, 'You'), h('p', {}, text)));
    const body = {input: text, stream: true};
    if (agent.value) body.agent_id = agent.value;
    const path = threadId ? `/v1/threads/${threadId}/runs` : '/v1/runs';
    follow(null, '', (onEvent) => stream('POST', path, body, onEvent, signal));
  }

  /** Resumes the thread's newest run when it has not ended, from the last event this tab saw
   * (`Last-Event-ID`), or from its first when this tab saw none. */
  async function resume(thread) {
    let run;
    try {
      run = (await get(`/v1/runs?thread_id=${thread}&limit=1`)).data[0];
    } catch (err) {
      return log.append(h('li', {}, errorBox(err)));
    }
    if (!run || !ACTIVE.includes(run.status) || signal.aborted) return;
    const seen = progress.get(run.id);
    await follow(run, seen ? seen.text : '', (onEvent) => stream('GET',
      `/v1/runs/${run.id}/events`, undefined, onEvent, signal,
      seen ? {lastEventId: seen.id} : {}));
  }

  /**
   * Shows one answer as its events arrive from `open(onEvent)` (a new run's POST stream, or the
   * event stream of `run` when resumed), with its tool calls above the text. What this tab has
   * seen of it is saved as it goes, so a reload resumes where it was.
   */
  async function follow(run, text, open) {
    let runId = run ? run.id : null;
    send.disabled = true;
    fill(status, h('span', {class: 'loading', role: 'status'}, 'Answering…'));
    const answer = h('p', {class: 'content'}, text);
    const bubble = h('li', {class: 'msg assistant streaming'},
      h('span', {class: 'who'}, 'Assistant'), answer);
    log.append(bubble);
    // Screen readers announce the answer once it is whole, not every token.
    log.setAttribute('aria-busy', 'true');
    const tools = new Map();
    if (run) {
      cancel.hidden = false;
      await showTools(runId, bubble, answer, tools);
      // It asked before the reload: the question is not in the events still to come.
      if (run.status === 'requires_input') bubble.insertBefore(inputForm(run), answer);
    }
    cancel.onclick = async () => {
      if (!runId) return;
      cancel.disabled = true;
      try {
        await post(`/v1/runs/${runId}/cancel`);
      } catch (err) {
        bubble.append(errorBox(err));
      } finally {
        cancel.disabled = false;
      }
    };
    try {
      // Leaving the page stops reading; the run goes on and its page shows how it ended.
      await open((ev) => {
        const d = ev.data;
        switch (ev.event) {
          case 'run.queued':
            runId = d.run.id;
            cancel.hidden = false;
            if (!threadId) {
              threadId = d.run.thread_id;
              // Not a navigation: the page stays as it is, the address names the thread.
              history.replaceState(null, '', `#/chat/${threadId}`);
              loadThreads(threads, threadId);
            }
            break;
          case 'message.delta':
            answer.append(d.content);
            answer.scrollIntoView({block: 'nearest'});
            break;
          case 'message.reset':
            answer.replaceChildren();
            break;
          case 'tool_call.created': {
            const box = toolBox(d);
            tools.set(d.id, box);
            bubble.insertBefore(box, answer);
            break;
          }
          case 'tool_call.completed':
            finishTool(tools.get(d.id), d, runId);
            break;
          case 'run.failed':
          case 'run.expired':
          case 'run.cancelled':
            bubble.append(errorBox(d.run.error || {message: `The run ended: ${d.run.status}.`}));
            break;
          case 'run.requires_input':
            bubble.insertBefore(inputForm(d.run), answer);
            break;
          case 'run.input_received':
            for (const f of bubble.querySelectorAll('form.input')) f.remove();
            break;
          default:
        }
        if (runId && ev.id) progress.save(runId, ev.id, answer.textContent);
      }, signal);
      if (runId) progress.drop(runId);
    } catch (err) {
      if (!signal.aborted) bubble.append(errorBox(err));
    } finally {
      bubble.classList.remove('streaming');
      log.removeAttribute('aria-busy');
      if (runId) bubble.append(h('a', {class: 'small', href: `#/runs/${runId}`}, 'Run details'));
      status.replaceChildren();
      cancel.hidden = true;
      send.disabled = false;
      if (!signal.aborted) input.focus();
    }
  }
}

/** A run that has not ended: its answer may still come. */
const ACTIVE = ['queued', 'in_progress', 'requires_input'];

/** What this tab has seen of each running answer (its last event id and its text so far), in
 * sessionStorage, so a reload resumes the stream with `Last-Event-ID` instead of replaying. */
const progress = {
  key: (runId) => `agentyard.run.${runId}`,
  get(runId) {
    try { return JSON.parse(sessionStorage.getItem(this.key(runId))); } catch { return null; }
  },
  save(runId, id, text) { sessionStorage.setItem(this.key(runId), JSON.stringify({id, text})); },
  drop(runId) { sessionStorage.removeItem(this.key(runId)); },
};

/** The tool calls a resumed run made before the reload, from its stored invocations. */
async function showTools(runId, bubble, answer, tools) {
  try {
    const page = await get(`/v1/runs/${runId}/tool-invocations`);
    for (const inv of page.data) {
      const box = toolBox({id: inv.id, name: inv.tool, arguments: inv.arguments});
      tools.set(inv.id, box);
      bubble.insertBefore(box, answer);
      if (inv.status === 'completed') {
        finishTool(box, {id: inv.id, is_error: inv.is_error, duration_ms: inv.duration_ms}, runId);
      }
    }
  } catch (err) {
    bubble.append(errorBox(err));
  }
}

/**
 * What a waiting run asks, as a form answered in place (`POST /v1/runs/{id}/input`): approve or
 * deny a tool call; or the values an elicitation asks for (one field per property of its
 * schema: text, number, yes/no, or a choice), accepted, declined or cancelled. The run's stream
 * goes on once it is answered.
 */
function inputForm(run) {
  const need = run.required_input;
  const errors = h('div');
  const form = h('form', {class: 'input', 'aria-label': 'The run waits for you'});
  const answer = async (action, content) => {
    for (const b of form.querySelectorAll('button')) b.disabled = true;
    errors.replaceChildren();
    try {
      await post(`/v1/runs/${run.id}/input`, content === undefined ? {action} : {action, content});
    } catch (err) {
      errors.append(errorBox(err));
      for (const b of form.querySelectorAll('button')) b.disabled = false;
    }
  };
  const button = (label, action, values) => h('button', {type: 'button', onclick: () =>
    answer(action, values ? values() : undefined)}, label);
  if (need.kind === 'tool_approval') {
    fill(form, h('p', {}, need.message),
      h('pre', {}, `${need.tool} ${JSON.stringify(need.arguments, null, 2)}`),
      h('div', {class: 'row'}, button('Approve', 'approve'), button('Deny', 'deny')), errors);
    return form;
  }
  const props = (need.requested_schema && need.requested_schema.properties) || {};
  const fields = Object.entries(props).map(([name, schema], i) => {
    const id = `input-${run.id}-${i}`;
    const label = h('label', {for: id}, schema.title || name);
    let control;
    if (Array.isArray(schema.enum)) {
      control = h('select', {id, name}, schema.enum.map((v) => h('option', {value: v}, v)));
    } else if (schema.type === 'boolean') {
      control = h('input', {id, name, type: 'checkbox'});
    } else {
      const numeric = schema.type === 'number' || schema.type === 'integer';
      control = h('input', {id, name, type: numeric ? 'number' : 'text'});
    }
    return {name, schema, control, row: h('div', {class: 'field'}, label, control)};
  });
  const values = () => Object.fromEntries(fields.map(({name, schema, control}) => {
    if (schema.type === 'boolean') return [name, control.checked];
    if (schema.type === 'number' || schema.type === 'integer') return [name, Number(control.value)];
    return [name, control.value];
  }));
  fill(form, h('p', {}, need.message), fields.map((f) => f.row),
    h('div', {class: 'row'}, button('Send', 'accept', values), button('Decline', 'decline'),
      button('Cancel', 'cancel')), errors);
  return form;
}

function toolBox(call) {
  return h('details', {class: 'tool', open: true, 'data-tool': call.name},
    h('summary', {}, h('span', {class: 'tool-name'}, call.name), ' ',
      h('span', {class: 'tool-state'}, 'running…')),
    h('h3', {}, 'Arguments'),
    h('pre', {}, JSON.stringify(call.arguments, null, 2)));
}

async function finishTool(box, done, runId) {
  if (!box) return;
  const state = box.querySelector('.tool-state');
  const ms = done.duration_ms == null ? '' : ` in ${done.duration_ms} ms`;
  state.textContent = done.is_error ? `failed${ms}` : `done${ms}`;
  if (done.is_error) box.classList.add('failed');
  // The event does not carry the result: the invocation does.
  try {
    const list = await get(`/v1/runs/${runId}/tool-invocations`);
    const inv = (list.data || []).find((i) => i.id === done.id);
    if (inv) {
      box.append(h('h3', {}, inv.is_error ? 'Error' : 'Result'),
        h('pre', {class: 'tool-result'}, inv.result ?? inv.error ?? ''));
    }
  } catch (err) {
    box.append(errorBox(err));
  }
}

async function loadThreads(list, current) {
  fill(list, h('li', {}, loading()));
  try {
    const page = await get('/v1/threads?limit=50');
    if (!page.data.length) return fill(list, h('li', {class: 'muted'}, 'No threads yet.'));
    fill(list, page.data.map((t) => h('li', {},
      h('a', {href: `#/chat/${t.id}`, 'aria-current': t.id === current ? 'page' : null},
        t.metadata && t.metadata.title ? t.metadata.title : when(t.created_at)))));
  } catch (err) {
    fill(list, h('li', {}, errorBox(err)));
  }
}

async function loadAgents(select) {
  fill(select, h('option', {value: ''}, 'Loading agents…'));
  select.disabled = true;
  try {
    const page = await get('/v1/agents');
    const active = page.data.filter((a) => a.is_active);
    fill(select, h('option', {value: ''}, 'Default agent'),
      active.map((a) => h('option', {value: a.id},
        `${a.name}${a.is_default ? ' (default)' : ''}`)));
  } catch (err) {
    fill(select, h('option', {value: ''}, `Default agent (${err.message})`));
  } finally {
    select.disabled = false;
  }
}

async function loadMessages(log, threadId) {
  fill(log, h('li', {}, loading('Loading messages…')));
  try {
    const items = await threadMessages(threadId);
    fill(log, items.filter((m) => m.role === 'user' || (m.role === 'assistant' && m.content))
      .map((m) => h('li', {class: `msg ${m.role}`},
        h('span', {class: 'who'}, m.role === 'user' ? 'You' : 'Assistant'),
        h('p', {class: 'content'}, m.content),
        m.role === 'assistant' && m.run_id
          ? h('a', {class: 'small', href: `#/runs/${m.run_id}`}, 'Run details') : null)));
    return true;
  } catch (err) {
    fill(log, h('li', {}, errorBox(err)));
    return false;
  }
}
