// The agents page: the org's agents with their status, and a form to create one from an agent
// type. One agent's page: its effective configuration as a form where each field says whether
// it is the type's default or the org's own (config-source); save (a PATCH of the changed
// fields), reset, activate and deactivate; its tools; its stats and performance as charts.

import {get, post, request} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';
import {barChart, lineChart, num} from './chart.js';

// The configuration form, in the API's field order (the tools have their own section). The
// hints repeat the API's limits for the reader; the form does not check them itself
// (`novalidate`), so a bad value gets the API's own message.
const FIELDS = [
  {key: 'name', label: 'Name', type: 'text'},
  {key: 'description', label: 'Description', type: 'area', rows: 2},
  {key: 'model', label: 'Model alias', type: 'text', hint: 'A model alias of agents.yaml, e.g. primary or fast.'},
  {key: 'temperature', label: 'Temperature', type: 'number', step: '0.05', hint: '0 to 2. Empty: the type\'s default.'},
  {key: 'max_tokens', label: 'Most tokens per answer', type: 'number', step: '1', hint: '1 to 32768. Empty: the type\'s default.'},
  {key: 'timeout_seconds', label: 'Model timeout (seconds)', type: 'number', step: '1', hint: '1 to 600. Empty: the type\'s default.'},
  {key: 'max_steps', label: 'Most model turns per run', type: 'number', step: '1', hint: '1 to 50. Empty: the type\'s default.'},
  {key: 'response_style', label: 'Response style', type: 'select',
    options: ['concise', 'detailed', 'friendly', 'formal', 'technical']},
  {key: 'tool_choice', label: 'Tool choice', type: 'select', options: ['auto', 'required', 'none']},
  {key: 'capabilities', label: 'Capabilities', type: 'list', hint: 'Comma-separated; delegation picks an agent by these.'},
  {key: 'system_prompt', label: 'System prompt', type: 'area', rows: 10},
];

export function render(main, {id, signal}) {
  return id ? agentPage(main, id, signal) : listPage(main, signal);
}

// ---- The list ---------------------------------------------------------------------------

async function listPage(main, signal) {
  document.title = 'Agents · agentyard';
  const list = h('div', {'aria-live': 'polite'}, loading('Loading agents…'));
  fill(main, h('h1', {}, 'Agents'), list, createForm());
  let page;
  try {
    page = await get('/v1/agents');
  } catch (err) {
    return fill(list, errorBox(err));
  }
  if (signal.aborted) return;
  fill(list, h('table', {class: 'agents'},
    h('caption', {class: 'visually-hidden'}, 'The organization\'s agents'),
    h('thead', {}, h('tr', {}, ['Agent', 'Type', 'Status', 'Model', 'Configuration', 'Updated']
      .map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, page.data.map((a) => {
      const custom = Object.keys(a.overrides || {}).length;
      return h('tr', {'data-agent': a.id},
        h('td', {}, h('a', {href: `#/agents/${a.id}`}, a.name)),
        h('td', {}, a.agent_type),
        h('td', {}, statusBadge(a), a.is_default ? h('span', {class: 'badge'}, 'default') : null),
        h('td', {}, a.configuration.model),
        h('td', {}, custom ? `${custom} custom field${custom > 1 ? 's' : ''}` : 'type defaults'),
        h('td', {}, when(a.updated_at)));
    }))));
}

function statusBadge(agent) {
  return h('span', {class: `badge ${agent.is_active ? 'active' : 'inactive'}`},
    agent.is_active ? 'active' : 'inactive');
}

/** A new agent from an agent type (an org has at most one agent of each type). */
function createForm() {
  const type = h('select', {id: 'agent-type', name: 'agent_type', required: true});
  const name = h('input', {id: 'agent-name', name: 'name', type: 'text', autocomplete: 'off'});
  const status = h('div', {'aria-live': 'polite'});
  const button = h('button', {type: 'submit', disabled: true}, 'Create agent');
  get('/v1/agent-types').then((types) => {
    for (const t of types.data) {
      type.append(h('option', {value: t.agent_type}, `${t.defaults.name} (${t.agent_type})`));
    }
    button.disabled = false;
  }).catch((err) => fill(status, errorBox(err)));

  return h('section', {'aria-labelledby': 'h-new-agent'},
    h('h2', {id: 'h-new-agent'}, 'New agent'),
    h('form', {class: 'card new-agent', onsubmit: async (e) => {
      e.preventDefault();
      button.disabled = true;
      fill(status, loading('Creating the agent…'));
      const body = {agent_type: type.value};
      if (name.value.trim()) body.name = name.value.trim();
      try {
        const agent = await post('/v1/agents', body);
        location.hash = `#/agents/${agent.id}`;
      } catch (err) {
        fill(status, errorBox(err));
        button.disabled = false;
      }
    }},
      h('label', {for: 'agent-type'}, 'Agent type'), type,
      h('label', {for: 'agent-name'}, 'Name (optional; default: the type\'s name)'), name,
      h('div', {}, button),
      status));
}

// ---- One agent --------------------------------------------------------------------------

async function agentPage(main, id, signal) {
  document.title = 'Agent · agentyard';
  const back = h('p', {}, h('a', {href: '#/agents'}, '← Agents'));
  fill(main, back, loading('Loading the agent…'));
  let agent;
  try {
    agent = await get(`/v1/agents/${id}`);
  } catch (err) {
    return fill(main, back, errorBox(err));
  }
  if (signal.aborted) return;

  const header = h('div', {});
  // Outside the header, which each action redraws, so its message stays.
  const actionStatus = h('div', {'aria-live': 'polite'});
  const config = h('div', {}, loading('Loading the configuration…'));
  const tools = h('div', {}, loading('Loading tools…'));
  const stats = h('div', {}, loading('Loading stats…'));
  const perf = h('div', {}, loading('Loading performance…'));
  const period = h('select', {id: 'stats-period', name: 'period'},
    h('option', {value: 'day'}, 'Last 24 hours'), h('option', {value: 'hour'}, 'Last hour'));
  period.addEventListener('change', () => loadStats());
  fill(main, back, header, actionStatus,
    h('section', {'aria-labelledby': 'h-config'}, h('h2', {id: 'h-config'}, 'Configuration'), config),
    h('section', {'aria-labelledby': 'h-tools'}, h('h2', {id: 'h-tools'}, 'Tools'), tools),
    h('section', {'aria-labelledby': 'h-stats'}, h('h2', {id: 'h-stats'}, 'Stats'),
      h('div', {class: 'filters'}, h('label', {for: 'stats-period'}, 'Period'), period), stats),
    h('section', {'aria-labelledby': 'h-perf'},
      h('h2', {id: 'h-perf'}, 'Performance, hour by hour'), perf));

  // What changes the agent (save, reset, activate) answers with the agent: redraw from it,
  // with a note under the form when there is one.
  function show(a, note) {
    agent = a;
    document.title = `${a.name} · agentyard`;
    fill(header, h('h1', {}, a.name), summary(a, id, show, actionStatus));
    // A saved form says so itself; an earlier action's note would be stale.
    if (note) actionStatus.replaceChildren();
    loadConfig(note);
    // A reset can change the tools too.
    get(`/v1/agents/${id}/tools`).then((t) => fill(tools, toolsView(t)))
      .catch((err) => fill(tools, errorBox(err)));
  }

  async function loadConfig(note) {
    try {
      const [effective, sources] = await Promise.all([
        get(`/v1/agents/${id}/configuration`), get(`/v1/agents/${id}/config-source`)]);
      if (!signal.aborted) fill(config, configForm(agent, effective, sources, show, note));
    } catch (err) {
      fill(config, errorBox(err));
    }
  }

  async function loadStats() {
    fill(stats, loading('Loading stats…'));
    try {
      const s = await get(`/v1/agents/${id}/stats?period=${period.value}`);
      if (!signal.aborted) fill(stats, statsView(s));
    } catch (err) {
      fill(stats, errorBox(err));
    }
  }

  show(agent);
  loadStats();
  get(`/v1/agents/${id}/performance`).then((p) => fill(perf, perfView(p)))
    .catch((err) => fill(perf, errorBox(err)));
}

/** The agent's facts, its readiness (asked of the workers) and the activate/deactivate and
 * reset buttons; `show` redraws the page from the agent the API answers. */
function summary(agent, id, show, status) {
  const ready = h('div', {class: 'loading'}, 'Asking the workers…');
  get(`/v1/agents/${id}/status`).then((s) => {
    const why = s.model_problem || (s.workers ? '' : 'no agent worker answered');
    ready.className = '';
    fill(ready, s.ready ? 'yes' : 'no', ` · model ${s.model}`,
      s.model_name ? ` (${s.model_name})` : '', ` · ${s.workers} worker${s.workers === 1 ? '' : 's'}`,
      why ? ` · ${why}` : '');
  }).catch((err) => fill(ready, errorBox(err)));

  // Each action answers with the agent; a refusal shows the API's message.
  const act = (label, path, done) => h('button', {type: 'button', class: 'secondary',
    'data-action': path, onclick: async (e) => {
      const button = e.currentTarget; // (null once the handler awaits)
      button.disabled = true;
      fill(status, loading(`${label}…`));
      try {
        show(await post(`/v1/agents/${id}/${path}`));
        fill(status, h('p', {class: 'agent-note', role: 'status'}, done));
        // The buttons were redrawn: keep the keyboard on the same action (or the first).
        const again = document.querySelector(`.agent-actions [data-action="${path}"]`);
        (again || document.querySelector('.agent-actions button'))?.focus();
      } catch (err) {
        button.disabled = false;
        fill(status, errorBox(err));
      }
    }}, label);

  return [
    h('dl', {class: 'summary'},
      h('dt', {}, 'Status'), h('dd', {}, statusBadge(agent),
        agent.is_default ? [' ', h('span', {class: 'badge'}, 'default agent')] : null),
      h('dt', {}, 'Type'), h('dd', {}, agent.agent_type),
      h('dt', {}, 'Ready'), h('dd', {}, ready),
      h('dt', {}, 'Id'), h('dd', {}, agent.id),
      h('dt', {}, 'Updated'), h('dd', {}, when(agent.updated_at))),
    h('div', {class: 'row agent-actions'},
      agent.is_active
        ? act('Deactivate', 'deactivate', 'Deactivated: new runs for this agent are refused.')
        : act('Activate', 'activate', 'Activated: the agent takes runs again.'),
      act('Reset configuration', 'reset-config', 'Reset: every field is back to the type\'s default.')),
  ];
}

// ---- The configuration form -------------------------------------------------------------

/** The value a field shows: numbers without f32 noise (0.30000001 → 0.3), lists joined. */
function shown(field, value) {
  if (value === null || value === undefined) return '';
  if (field.type === 'number') return String(Number(Number(value).toPrecision(6)));
  if (field.type === 'list') return value.join(', ');
  return String(value);
}

/** The JSON a field's text stands for (an empty number: null, i.e. back to the default). */
function parsed(field, text) {
  if (field.type === 'number') return text.trim() === '' ? null : Number(text);
  if (field.type === 'list') return text.split(',').map((s) => s.trim()).filter(Boolean);
  return text;
}

function control(field, value) {
  const id = `cfg-${field.key}`;
  const attrs = {id, name: field.key, 'data-initial': value};
  if (field.hint) attrs['aria-describedby'] = `${id}-hint`;
  if (field.type === 'area') return h('textarea', {...attrs, rows: field.rows}, value);
  if (field.type === 'select') {
    return h('select', attrs, field.options.map((o) =>
      h('option', {value: o, selected: o === value}, o)));
  }
  return h('input', {...attrs, value, autocomplete: 'off',
    type: field.type === 'number' ? 'number' : 'text', step: field.step,
    inputmode: field.type === 'number' ? 'decimal' : null});
}

/**
 * The effective configuration as a form; each label says `custom` or `default` (from
 * config-source). Save sends only the fields changed since the form was drawn; `show(agent,
 * note)` redraws the page from the agent the API answers.
 */
function configForm(agent, effective, sources, show, note) {
  const status = h('div', {id: 'cfg-status', 'aria-live': 'polite'}, note || null);
  const controls = new Map();
  const rows = FIELDS.map((f) => {
    const source = sources[f.key]?.source || 'default';
    const el = control(f, shown(f, effective[f.key]));
    controls.set(f.key, el);
    return h('div', {class: `field ${f.type === 'area' ? 'wide' : ''}`, 'data-field': f.key,
      'data-source': source},
      h('label', {for: el.id}, f.label, ' ', h('span', {class: `cfg-source ${source}`}, source)),
      el,
      f.hint ? h('span', {id: `${el.id}-hint`, class: 'small'}, f.hint) : null);
  });
  const save = h('button', {type: 'submit'}, 'Save');

  const form = h('form', {class: 'card config', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const configuration = {};
    let name;
    for (const f of FIELDS) {
      const el = controls.get(f.key);
      el.removeAttribute('aria-invalid');
      if (el.value === el.dataset.initial) continue;
      if (f.key === 'name') name = el.value;
      else configuration[f.key] = parsed(f, el.value);
    }
    if (name === undefined && !Object.keys(configuration).length) {
      return fill(status, h('p', {class: 'muted', role: 'status'}, 'Nothing changed.'));
    }
    // The agent's name is top-level; the rest is a JSON merge patch on its overrides.
    const body = {};
    if (name !== undefined) body.name = name;
    if (Object.keys(configuration).length) body.configuration = configuration;
    save.disabled = true;
    fill(status, loading('Saving…'));
    try {
      // show() redraws this form, with the note on the new one.
      show(await request('PATCH', `/v1/agents/${agent.id}`, body),
        h('p', {class: 'agent-note', role: 'status'}, 'Saved.'));
    } catch (err) {
      save.disabled = false;
      fill(status, errorBox(err));
      markInvalid(err, controls);
    }
  }},
    h('div', {class: 'fields'}, rows),
    h('div', {class: 'row'}, save, h('span', {class: 'small'},
      `${Object.values(sources).filter((s) => s.source === 'custom').length} custom field(s); ` +
      'the others are the type\'s defaults.')),
    status,
    h('details', {}, h('summary', {}, 'Stored overrides (JSON merge patch)'),
      h('pre', {class: 'overrides'}, JSON.stringify(agent.overrides, null, 2))));
  return form;
}

/** Marks the fields a 422 names (`configuration.<field>: …`, or the name) and focuses the
 * first, which points at the message. */
function markInvalid(err, controls) {
  const bad = FIELDS.filter((f) => (f.key === 'name' ? err.code === 'invalid_name'
    : err.message.includes(`configuration.${f.key}`)));
  for (const f of bad) {
    const el = controls.get(f.key);
    el.setAttribute('aria-invalid', 'true');
    el.setAttribute('aria-errormessage', 'cfg-status');
  }
  if (bad.length) controls.get(bad[0].key).focus();
}

// ---- Tools, stats, performance ----------------------------------------------------------

function toolsView(t) {
  if (!t.tools_enabled.length) return h('p', {class: 'muted'}, 'No tools: the model only writes.');
  const approval = new Set(t.tools_require_approval);
  return [
    h('ul', {class: 'agent-tools'}, t.tools_enabled.map((name) =>
      h('li', {}, h('span', {class: 'tool-name'}, name),
        approval.has(name) ? h('span', {class: 'badge approval'}, 'needs approval') : null))),
    h('p', {class: 'small'}, `${t.tools_enabled.length} of the ${t.available.length} built-in `,
      'tools (and any of the org\'s MCP servers\' tools) are enabled; ',
      h('a', {href: '#/tools'}, 'MCP servers and the tool log'), '.'),
  ];
}

const ms = (v) => (v == null ? '—' : `${num(v)} ms`);

function statsView(s) {
  const figures = [
    ['Runs', s.runs], ['Successful', s.successful_runs], ['Failed', s.failed_runs],
    ['Messages', s.messages], ['Tool calls', s.tools_called],
    ['Mean response', ms(s.avg_response_ms)], ['p95 response', ms(s.p95_response_ms)],
    ['Tokens', s.total_tokens], ['Cost', `$${Number(s.cost_usd).toFixed(4)}`],
  ];
  return [
    h('dl', {class: 'agent-figures'}, figures.map(([k, v]) =>
      h('div', {'data-figure': k}, h('dt', {}, k), h('dd', {}, typeof v === 'number' ? num(v) : v)))),
    h('p', {class: 'small'}, `Runs created since ${when(s.since)}.`),
    barChart({label: 'Runs by outcome', bars: [
      {name: 'completed', value: s.completed}, {name: 'failed', value: s.failed},
      {name: 'cancelled', value: s.cancelled}, {name: 'still active', value: s.active}]}),
  ];
}

function perfView(p) {
  const hours = p.hours;
  const series = (name, key) => ({name, points: hours.map((b) => ({t: b.hour, v: b[key]}))});
  const rate = p.success_rate == null ? 'no ended runs yet'
    : `${num(p.success_rate * 100)}% of ${p.totals.completed + p.totals.failed + p.totals.cancelled} ended runs`;
  return [
    h('p', {class: 'success-rate'}, h('strong', {}, 'Success rate: '), rate),
    h('div', {class: 'agent-charts'},
      lineChart({label: 'Runs per hour', series: [series('completed', 'completed'),
        series('failed', 'failed')]}),
      lineChart({label: 'Response time per hour', unit: 'ms',
        series: [series('mean', 'avg_response_ms'), series('p95', 'p95_response_ms')]}),
      lineChart({label: 'Tokens per hour', series: [series('prompt', 'prompt_tokens'),
        series('completion', 'completion_tokens')]})),
  ];
}
