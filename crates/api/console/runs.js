// The runs page: the organization's runs filtered by status, agent and creation time, and one
// run's page with its events as a timeline, its messages, tool invocations, usage and error.

import {get, stream, threadMessages} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';

const STATUSES = ['queued', 'in_progress', 'requires_input', 'completed', 'failed', 'cancelled',
  'expired'];

export function render(main, {id, signal}) {
  return id ? runPage(main, id, signal) : listPage(main);
}

function listPage(main) {
  document.title = 'Runs · agentyard';
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const status = h('select', {id: 'status', name: 'status'}, h('option', {value: ''}, 'Any'),
    STATUSES.map((s) => h('option', {value: s, selected: params.get('status') === s}, s)));
  const agent = h('select', {id: 'agent', name: 'agent'}, h('option', {value: ''}, 'Any'));
  // Times are entered in local time and sent as RFC 3339 (the address keeps them as entered).
  const since = h('input', {id: 'since', name: 'since', type: 'datetime-local',
    value: params.get('since') || ''});
  const until = h('input', {id: 'until', name: 'until', type: 'datetime-local',
    value: params.get('until') || ''});
  const results = h('div', {'aria-live': 'polite'});
  let cursor = null;

  const form = h('form', {class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    cursor = null;
    load(false);
  }},
    h('label', {for: 'status'}, 'Status'), status,
    h('label', {for: 'agent'}, 'Agent'), agent,
    h('label', {for: 'since'}, 'From'), since,
    h('label', {for: 'until'}, 'To'), until,
    h('button', {type: 'submit'}, 'Filter'));
  fill(main, h('h1', {}, 'Runs'), form, results);

  const agents = new Map();
  get('/v1/agents').then((page) => {
    for (const a of page.data) {
      agents.set(a.id, a.name);
      agent.append(h('option', {value: a.id, selected: params.get('agent') === a.id}, a.name));
    }
  }).catch((err) => form.append(errorBox(err)));

  async function load(more) {
    const q = new URLSearchParams({limit: '25'});
    if (status.value) q.set('status', status.value);
    if (agent.value) q.set('agent_id', agent.value);
    if (since.value) q.set('since', new Date(since.value).toISOString());
    if (until.value) q.set('until', new Date(until.value).toISOString());
    if (more && cursor) q.set('cursor', cursor);
    // Keep the filter in the address without reloading the page.
    const f = new URLSearchParams();
    if (status.value) f.set('status', status.value);
    if (agent.value) f.set('agent', agent.value);
    if (since.value) f.set('since', since.value);
    if (until.value) f.set('until', until.value);
    history.replaceState(null, '', `#/runs${f.size ? `?${f}` : ''}`);
    if (!more) fill(results, loading('Loading runs…'));
    try {
      const page = await get(`/v1/runs?${q}`);
      cursor = page.next_cursor;
      let body = results.querySelector('tbody');
      if (!more) {
        if (!page.data.length) return fill(results, h('p', {class: 'muted'}, 'No runs match.'));
        body = h('tbody');
        fill(results, h('table', {class: 'runs'},
          h('caption', {class: 'visually-hidden'}, 'Runs, newest first'),
          h('thead', {}, h('tr', {}, ['Run', 'Status', 'Agent', 'Input', 'Created']
            .map((c) => h('th', {scope: 'col'}, c)))),
          body));
      }
      results.querySelector('.more')?.remove();
      for (const r of page.data) {
        body.append(h('tr', {},
          h('td', {}, h('a', {href: `#/runs/${r.id}`}, r.id.slice(-8))),
          h('td', {}, h('span', {class: `badge ${r.status}`}, r.status)),
          h('td', {}, agents.get(r.agent_id) || r.agent_id || '—'),
          h('td', {class: 'clip'}, r.input),
          h('td', {}, when(r.created_at))));
      }
      if (cursor) {
        results.append(h('button', {type: 'button', class: 'more', onclick: () => load(true)},
          'More runs'));
      }
    } catch (err) {
      fill(results, errorBox(err));
    }
  }
  load(false);
}

async function runPage(main, id, signal) {
  document.title = `Run ${id.slice(-8)} · agentyard`;
  fill(main, loading('Loading the run…'));
  let run;
  try {
    run = await get(`/v1/runs/${id}`);
  } catch (err) {
    return fill(main, h('p', {}, h('a', {href: '#/runs'}, '← Runs')), errorBox(err));
  }
  const timeline = h('ol', {class: 'timeline', 'aria-live': 'polite'});
  const messages = h('div', {});
  const tools = h('div', {});
  fill(main,
    h('p', {}, h('a', {href: '#/runs'}, '← Runs')),
    h('h1', {}, `Run ${run.id}`),
    summary(run),
    h('section', {'aria-labelledby': 'h-events'}, h('h2', {id: 'h-events'}, 'Events'), timeline),
    h('section', {'aria-labelledby': 'h-msgs'}, h('h2', {id: 'h-msgs'}, 'Messages'), messages),
    h('section', {'aria-labelledby': 'h-tools'},
      h('h2', {id: 'h-tools'}, 'Tool invocations'), tools));

  fill(timeline, h('li', {}, loading('Loading events…')));
  let first = true;
  // The stream replays the run's events and ends after its terminal one.
  stream('GET', `/v1/runs/${id}/events`, undefined, (ev) => {
    if (first) { timeline.replaceChildren(); first = false; }
    timeline.append(eventItem(ev));
  }, signal).then(() => {
    if (first) fill(timeline, h('li', {class: 'muted'}, 'No events are kept for this run.'));
  }).catch((err) => {
    if (!signal.aborted) timeline.append(h('li', {}, errorBox(err)));
  });

  fill(messages, loading('Loading messages…'));
  threadMessages(run.thread_id).then((all) => {
    const mine = all.filter((m) => m.run_id === run.id);
    fill(messages, mine.length ? h('ol', {class: 'conversation'}, mine.map((m) =>
      h('li', {class: `msg ${m.role}`}, h('span', {class: 'who'}, m.role),
        h('p', {class: 'content'}, m.content || '(tool calls only)'))))
      : h('p', {class: 'muted'}, 'No messages.'));
  }).catch((err) => fill(messages, errorBox(err)));

  fill(tools, loading('Loading tool invocations…'));
  get(`/v1/runs/${id}/tool-invocations`).then((page) => {
    fill(tools, page.data.length ? page.data.map((t) => h('details', {class: 'tool'},
      h('summary', {}, h('span', {class: 'tool-name'}, t.tool), ` · ${t.server} · ${t.status}`,
        t.duration_ms == null ? '' : ` · ${t.duration_ms} ms`, t.is_error ? ' · error' : ''),
      h('h3', {}, 'Arguments'), h('pre', {}, JSON.stringify(t.arguments, null, 2)),
      h('h3', {}, t.is_error ? 'Error' : 'Result'), h('pre', {}, t.result ?? t.error ?? '—')))
      : h('p', {class: 'muted'}, 'No tool calls.'));
  }).catch((err) => fill(tools, errorBox(err)));
}

function summary(run) {
  const rows = [
    ['Status', h('span', {class: `badge ${run.status}`}, run.status)],
    ['Thread', h('a', {href: `#/chat/${run.thread_id}`}, run.thread_id)],
    ['Agent', agentName(run.agent_id)],
    ['Created', when(run.created_at)],
    ['Started', when(run.started_at)],
    ['Completed', when(run.completed_at)],
    ['Input', run.input],
    ['Output', run.output ? run.output.content : '—'],
  ];
  if (run.usage) {
    const u = run.usage;
    rows.push(['Usage', `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ` +
      `${u.total_tokens} tokens${u.estimated ? ' (estimated)' : ''} · ${u.model}` +
      (u.cost_usd == null ? '' : ` · $${Number(u.cost_usd).toFixed(6)}`)]);
  }
  const dl = h('dl', {class: 'summary'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  return [dl, run.error ? errorBox(`${run.error.code}: ${run.error.message}`) : null];
}

/** The agent's name, filled in when it arrives (its id until then, or if it is gone). */
function agentName(id) {
  const el = h('span', {}, id || '—');
  if (id) get(`/v1/agents/${id}`).then((a) => { el.textContent = a.name; }).catch(() => {});
  return el;
}

function eventItem(ev) {
  const d = ev.data || {};
  let detail = '';
  if (ev.event === 'message.delta') detail = JSON.stringify(d.content);
  else if (ev.event.startsWith('tool_call.')) {
    detail = ev.event === 'tool_call.created'
      ? `${d.name} ${JSON.stringify(d.arguments)}`
      : `${d.name}${d.is_error ? ' failed' : ''}${d.duration_ms == null ? '' : ` in ${d.duration_ms} ms`}`;
  } else if (d.run) detail = d.run.status;
  return h('li', {class: 'event', 'data-event': ev.event},
    h('span', {class: 'seq'}, ev.id ? `#${ev.id}` : ''), ' ',
    h('span', {class: 'kind'}, ev.event), ' ', h('span', {class: 'detail'}, detail));
}
