// The workflows page. Three views, one module:
//   #/workflows               templates, the organization's definitions, and the executions
//   #/workflows?def=<id>      one definition or template: its steps, a start form generated
//                             from its `inputs` JSON Schema, and its executions
//   #/workflows/<execution>   an execution: its DAG drawn in SVG and updated live from the
//                             execution's event stream, cancel, retry, approvals answered here
// `status=<s>` in the address filters the executions list.

import {get, post, stream} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';

const STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled'];
const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

export function render(main, {id, signal}) {
  if (id) return executionPage(main, id, signal);
  const def = params().get('def');
  return def ? definitionPage(main, def) : listPage(main);
}

function params() {
  return new URLSearchParams(location.hash.split('?')[1] || '');
}

/** Keeps the page's query in the address without a navigation. */
function setParams(pairs) {
  const q = new URLSearchParams(pairs.filter(([, v]) => v));
  history.replaceState(null, '', `#/workflows${q.size ? `?${q}` : ''}`);
}

// ----- The list: templates, definitions, executions -----

function listPage(main) {
  document.title = 'Workflows · agentyard';
  const templates = h('div', {}, loading('Loading templates…'));
  const defs = h('div', {}, loading('Loading definitions…'));
  const execs = h('div');
  fill(main,
    h('h1', {}, 'Workflows'),
    h('section', {'aria-labelledby': 'h-templates'},
      h('h2', {id: 'h-templates'}, 'Templates'), templates),
    h('section', {'aria-labelledby': 'h-defs'},
      h('h2', {id: 'h-defs'}, 'Definitions'), defs),
    h('section', {'aria-labelledby': 'h-execs'},
      h('h2', {id: 'h-execs'}, 'Executions'), execs));
  workflowCards(templates, '/v1/workflows/templates', 'No templates.');
  workflowCards(defs, '/v1/workflows',
    'No definitions yet: add one with POST /v1/workflows (see the README).');
  executionList(execs, null);
}

async function workflowCards(box, path, empty) {
  try {
    const {data} = await get(path);
    if (!data.length) return fill(box, h('p', {class: 'muted'}, empty));
    fill(box, h('ul', {class: 'wf-cards'}, data.map((w) => {
      const steps = (w.definition.steps || []).length;
      const href = `#/workflows?def=${encodeURIComponent(w.id)}`;
      return h('li', {class: 'card wf-card', 'data-workflow': w.id},
        h('h3', {}, h('a', {href}, w.name || w.id)),
        h('p', {class: 'small'}, h('code', {}, w.id),
          w.source === 'org' ? ` · version ${w.version}` : ' · template',
          ` · ${steps} step${steps === 1 ? '' : 's'}`),
        w.description ? h('p', {}, w.description) : null,
        h('a', {class: 'button', href, 'aria-label': `Start ${w.name || w.id}`}, 'Start…'));
    })));
  } catch (err) {
    fill(box, errorBox(err));
  }
}

/** The executions, newest first, filtered by status (and by workflow on a definition's page). */
function executionList(box, workflowId) {
  const p = params();
  const status = h('select', {id: 'exec-status', name: 'status'}, h('option', {value: ''}, 'Any'),
    STATUSES.map((s) => h('option', {value: s, selected: p.get('status') === s}, s)));
  const results = h('div', {'aria-live': 'polite'});
  let cursor = null;
  const form = h('form', {class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    load(false);
  }},
    h('label', {for: 'exec-status'}, 'Status'), status,
    h('button', {type: 'submit'}, 'Filter'));
  fill(box, form, results);

  async function load(more) {
    const q = new URLSearchParams({limit: '25'});
    if (status.value) q.set('status', status.value);
    if (workflowId) q.set('workflow_id', workflowId);
    if (more && cursor) q.set('cursor', cursor);
    setParams([['def', workflowId], ['status', status.value]]);
    if (!more) fill(results, loading('Loading executions…'));
    try {
      const page = await get(`/v1/workflows/executions?${q}`);
      cursor = page.next_cursor;
      let body = results.querySelector('tbody');
      if (!more) {
        if (!page.data.length) return fill(results, h('p', {class: 'muted'}, 'No executions match.'));
        body = h('tbody');
        fill(results, h('table', {class: 'runs executions'},
          h('caption', {class: 'visually-hidden'}, 'Executions, newest first'),
          h('thead', {}, h('tr', {}, ['Execution', 'Workflow', 'Status', 'Steps', 'Created']
            .map((c) => h('th', {scope: 'col'}, c)))),
          body));
      }
      results.querySelector('.more')?.remove();
      for (const e of page.data) {
        const done = e.steps.filter((s) => s.status === 'completed').length;
        body.append(h('tr', {'data-execution': e.id},
          h('td', {}, h('a', {href: `#/workflows/${e.id}`}, e.id.slice(-8))),
          h('td', {}, e.workflow_id, e.version ? ` v${e.version}` : ''),
          h('td', {}, h('span', {class: `badge ${e.status}`}, e.status)),
          h('td', {}, `${done}/${e.steps.length} completed`),
          h('td', {}, when(e.created_at))));
      }
      if (cursor) {
        results.append(h('button', {type: 'button', class: 'more', onclick: () => load(true)},
          'More executions'));
      }
    } catch (err) {
      fill(results, errorBox(err));
    }
  }
  load(false);
}

// ----- A definition: its steps, the start form, its executions -----

async function definitionPage(main, id) {
  document.title = `Workflow ${id} · agentyard`;
  const back = h('p', {}, h('a', {href: '#/workflows'}, '← Workflows'));
  fill(main, back, loading('Loading the workflow…'));
  let w;
  try {
    w = await get(`/v1/workflows/${encodeURIComponent(id)}`);
  } catch (err) {
    return fill(main, back, errorBox(err));
  }
  document.title = `${w.name || w.id} · agentyard`;
  // The definition's steps drawn like an execution's, without states.
  const steps = (w.definition.steps || []).map((s) => ({
    id: s.id, name: s.name, depends_on: s.depends_on || [], status: 'pending',
    kind: ['agent', 'tool', 'approval', 'wait'].find((k) => s[k]) || 'step',
  }));
  const execs = h('div');
  fill(main, back,
    h('h1', {}, w.name || w.id),
    w.description ? h('p', {}, w.description) : null,
    h('dl', {class: 'summary'},
      h('dt', {}, 'Id'), h('dd', {}, w.id),
      h('dt', {}, 'Source'), h('dd', {}, w.source === 'org' ? `definition, version ${w.version}` : 'template')),
    h('section', {'aria-labelledby': 'h-start'},
      h('h2', {id: 'h-start'}, 'Start'), startForm(w)),
    h('section', {'aria-labelledby': 'h-steps'},
      h('h2', {id: 'h-steps'}, 'Steps'), dag(steps, null).wrap),
    h('section', {'aria-labelledby': 'h-execs'},
      h('h2', {id: 'h-execs'}, 'Executions'), execs));
  executionList(execs, w.id);
}

/**
 * A form generated from the workflow's `inputs` JSON Schema: one labelled field per property
 * (text, email, number, yes/no, a choice for an enum, JSON for objects and arrays), required
 * ones marked. The browser does not validate: the API checks the inputs against the schema and
 * its 422 message is shown as it is.
 */
function startForm(w) {
  const schema = w.definition.inputs || {};
  const required = new Set(schema.required || []);
  // Required fields first (the API keeps properties in name order).
  const props = Object.entries(schema.properties || {})
    .sort(([a], [b]) => Number(required.has(b)) - Number(required.has(a)));
  const fields = props.map(([name, prop], i) => inputField(name, prop || {}, required.has(name), i));
  const status = h('div', {'aria-live': 'polite'});
  const button = h('button', {type: 'submit'}, 'Start the workflow');
  const form = h('form', {class: 'wf-start card', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const inputs = {};
    for (const f of fields) {
      const v = f.value();
      if (v instanceof Error) return fill(status, errorBox(v));
      if (v !== undefined) inputs[f.name] = v;
    }
    button.disabled = true;
    fill(status, loading('Starting…'));
    try {
      // A template starts through its own route (the body is its inputs); a definition of the
      // organization through its executions.
      const exec = w.source === 'template'
        ? await post(`/v1/workflows/start/${encodeURIComponent(w.id)}`, inputs)
        : await post(`/v1/workflows/${encodeURIComponent(w.id)}/executions`, {inputs});
      location.hash = `#/workflows/${exec.id}`;
    } catch (err) {
      fill(status, errorBox(err));
      button.disabled = false;
    }
  }},
    fields.length ? fields.map((f) => f.row) : h('p', {class: 'muted'}, 'This workflow takes no inputs.'),
    h('div', {class: 'row'}, button), status);
  return form;
}

/** One field for a property of the inputs schema: `{name, row, value()}`; value() is undefined
 * for an empty optional field, or an Error for JSON that does not parse. */
function inputField(name, prop, isRequired, i) {
  const id = `in-${i}`;
  const hint = prop.description ? h('span', {class: 'small', id: `${id}-hint`}, prop.description) : null;
  const common = {id, name, 'aria-required': isRequired ? 'true' : null,
    'aria-describedby': hint ? `${id}-hint` : null};
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== 'null') : prop.type;
  let control;
  let value;
  if (Array.isArray(prop.enum)) {
    control = h('select', common,
      isRequired ? null : h('option', {value: ''}, '—'),
      prop.enum.map((v, j) => h('option', {value: String(j), selected: v === prop.default}, String(v))));
    value = () => (control.value === '' ? undefined : prop.enum[Number(control.value)]);
  } else if (type === 'boolean') {
    control = h('input', {...common, type: 'checkbox', checked: prop.default === true});
    value = () => control.checked;
  } else if (type === 'number' || type === 'integer') {
    control = h('input', {...common, type: 'number', step: type === 'integer' ? '1' : 'any',
      min: prop.minimum, max: prop.maximum, value: prop.default});
    value = () => (control.value === '' ? undefined : Number(control.value));
  } else if (type === 'object' || type === 'array') {
    control = h('textarea', {...common, rows: 3, class: 'mono'},
      prop.default === undefined ? '' : JSON.stringify(prop.default));
    value = () => {
      if (!control.value.trim()) return undefined;
      try { return JSON.parse(control.value); } catch (e) { return new Error(`${name}: not JSON (${e.message})`); }
    };
  } else {
    const kind = prop.format === 'email' ? 'email' : prop.format === 'uri' ? 'url' : 'text';
    control = h('input', {...common, type: kind, value: prop.default});
    value = () => (control.value === '' ? undefined : control.value);
  }
  const label = h('label', {for: id}, prop.title || name,
    isRequired ? h('span', {class: 'req'}, ' (required)') : null);
  const row = type === 'boolean' && !Array.isArray(prop.enum)
    ? h('div', {class: 'field check'}, control, label, hint)
    : h('div', {class: 'field'}, label, control, hint);
  return {name, row, value};
}

// ----- An execution: the DAG, live -----

async function executionPage(main, id, signal) {
  document.title = `Execution ${id.slice(-8)} · agentyard`;
  const back = h('p', {}, h('a', {href: '#/workflows'}, '← Workflows'));
  fill(main, back, loading('Loading the execution…'));
  let exec;
  try {
    exec = await get(`/v1/workflows/executions/${id}`);
  } catch (err) {
    return fill(main, back, errorBox(err));
  }
  const summary = h('div');
  const data = h('section', {'aria-label': 'Inputs and output'});
  const actionErrors = h('div');
  const cancel = h('button', {type: 'button', class: 'secondary', onclick: () =>
    act('cancel', cancel)}, 'Cancel execution');
  const retry = h('button', {type: 'button', onclick: () => act('retry', retry)}, 'Retry');
  const approvals = h('section', {class: 'approvals', 'aria-label': 'Approvals waiting for you'});
  const live = h('p', {class: 'small', role: 'status'});
  const detail = h('section', {class: 'step-detail card', id: 'step-detail', 'aria-live': 'polite',
    'aria-label': 'The selected step'}, h('p', {class: 'muted'}, 'Select a step to see its output.'));
  const graph = dag(exec.steps, select);
  let selected = null;
  let lastSeq = 0;
  let waitingKey = null;
  let dataKey = null;

  fill(main, back,
    h('h1', {}, `Execution of ${exec.workflow_id}`),
    summary,
    h('div', {class: 'row wf-actions'}, cancel, retry, live),
    actionErrors,
    approvals,
    h('section', {'aria-labelledby': 'h-dag'},
      h('h2', {id: 'h-dag'}, 'Steps'),
      h('p', {class: 'small'}, 'Each step with its state; select one (click, or Tab and Enter) for its output.'),
      graph.wrap),
    detail,
    data);
  show();
  follow();

  /** Shows the current state: the summary, the buttons, the approvals, the nodes, the detail. */
  function show() {
    fill(summary, executionSummary(exec));
    // Rebuilt only when the output changes, so a section opened to read stays open.
    const output = JSON.stringify(exec.output ?? null);
    if (output !== dataKey) {
      dataKey = output;
      fill(data, executionData(exec));
    }
    cancel.hidden = TERMINAL.has(exec.status);
    retry.hidden = exec.status !== 'failed';
    graph.wrap.dataset.status = exec.status;
    for (const s of exec.steps) graph.update(s);
    // The approval forms are rebuilt only when which steps wait changes, so a comment being
    // typed is not lost to an unrelated update.
    const waiting = exec.steps.filter((s) => s.status === 'waiting' && s.kind === 'approval');
    const key = waiting.map((s) => s.id).join(',');
    if (key !== waitingKey) {
      waitingKey = key;
      fill(approvals, waiting.map((s) => approvalForm(s)));
    }
    if (selected) showStep(selected);
  }

  function select(stepId) {
    selected = stepId;
    graph.select(stepId);
    showStep(stepId);
  }

  function showStep(stepId) {
    const s = exec.steps.find((x) => x.id === stepId);
    if (s) fill(detail, stepDetail(s));
  }

  /** Reads the execution's events (replayed from after `lastSeq`, then live) until it ends. */
  async function follow() {
    live.textContent = 'Following the execution…';
    try {
      await stream('GET', `/v1/workflows/executions/${id}/events?after=${lastSeq}`, undefined, (ev) => {
        if (ev.id) lastSeq = Math.max(lastSeq, Number(ev.id));
        graph.wrap.dataset.seq = String(lastSeq);
        const d = ev.data || {};
        if (ev.event.startsWith('workflow.step.') && d.step) {
          const i = exec.steps.findIndex((s) => s.id === d.step.id);
          if (i >= 0) exec.steps[i] = d.step;
        } else if (ev.event.startsWith('workflow.execution.')) {
          exec.status = d.status;
          exec.output = d.output;
          exec.error = d.error;
        }
        show();
      }, signal);
      // The stream ends with the execution: the stored execution has its final timings.
      if (!signal.aborted) {
        exec = await get(`/v1/workflows/executions/${id}`);
        show();
        live.textContent = TERMINAL.has(exec.status) ? `The execution ${exec.status}.` : '';
      }
    } catch (err) {
      if (!signal.aborted) {
        live.textContent = '';
        actionErrors.append(errorBox(err));
      }
    }
  }

  async function act(what, button) {
    button.disabled = true;
    actionErrors.replaceChildren();
    try {
      exec = await post(`/v1/workflows/executions/${id}/${what}`);
      show();
      // A retried execution runs again: follow its new events (the old stream has ended).
      if (what === 'retry') follow();
    } catch (err) {
      actionErrors.append(errorBox(err));
    } finally {
      button.disabled = false;
    }
  }

  /** What an approval step asks, answered here (`POST .../input`). */
  function approvalForm(step) {
    const cid = `comment-${step.id}`;
    const comment = h('textarea', {id: cid, name: 'comment', rows: 2});
    const errors = h('div');
    const form = h('form', {class: 'input card', 'data-step': step.id,
      'aria-label': `Approval: ${step.name || step.id}`, onsubmit: (e) => e.preventDefault()});
    const answer = async (action) => {
      for (const b of form.querySelectorAll('button')) b.disabled = true;
      errors.replaceChildren();
      const body = {step_id: step.id, action};
      if (comment.value.trim()) body.comment = comment.value.trim();
      try {
        exec = await post(`/v1/workflows/executions/${id}/input`, body);
        show();
      } catch (err) {
        errors.append(errorBox(err));
        for (const b of form.querySelectorAll('button')) b.disabled = false;
      }
    };
    return fill(form,
      h('h2', {}, `Approval: ${step.name || step.id}`),
      h('p', {class: 'ask'}, (step.request && step.request.message) || 'Approve this step?'),
      step.wake_at ? h('p', {class: 'small'}, `Without an answer by ${when(step.wake_at)} it times out.`) : null,
      h('label', {for: cid}, 'Comment (optional)'), comment,
      h('div', {class: 'row'},
        h('button', {type: 'button', onclick: () => answer('approve')}, 'Approve'),
        h('button', {type: 'button', class: 'secondary', onclick: () => answer('deny')}, 'Deny')),
      errors);
  }
}

function executionSummary(e) {
  const rows = [
    ['Status', h('span', {class: `badge ${e.status}`, id: 'exec-status-badge'}, e.status)],
    ['Workflow', h('a', {href: `#/workflows?def=${encodeURIComponent(e.workflow_id)}`},
      e.workflow_id), e.version ? ` version ${e.version}` : ' (template)'],
    ['Id', e.id],
    ['Trigger', e.trigger && e.trigger.kind],
    ['Created', when(e.created_at)],
    ['Started', when(e.started_at)],
    ['Completed', e.completed_at ? `${when(e.completed_at)} (${duration(e.started_at, e.completed_at)})` : '—'],
  ];
  return [
    h('dl', {class: 'summary'}, rows.map(([k, ...v]) => [h('dt', {}, k), h('dd', {}, v)])),
    e.error ? errorBox(`${e.error.step ? `${e.error.step}: ` : ''}${e.error.code}: ${e.error.message}`) : null,
  ];
}

/** The execution's inputs and output (the leaf steps' outputs), folded: they can be long. */
function executionData(e) {
  return [
    h('details', {class: 'wf-data'}, h('summary', {}, 'Inputs'), h('pre', {}, JSON.stringify(e.inputs, null, 2))),
    e.output ? h('details', {class: 'wf-data'}, h('summary', {}, 'Output'),
      h('pre', {class: 'exec-output'}, JSON.stringify(e.output, null, 2))) : null,
  ];
}

/** A step's state, timings, run, error and output (a text output as it is, else JSON). */
function stepDetail(s) {
  const rows = [
    ['Id', s.id],
    ['Kind', s.kind],
    ['Status', h('span', {class: `badge ${s.status}`}, s.status)],
    ['Attempts', String(s.attempt)],
    ['Started', when(s.started_at)],
    ['Completed', when(s.completed_at)],
  ];
  if (s.started_at && s.completed_at) rows.push(['Took', duration(s.started_at, s.completed_at)]);
  if (s.wake_at && !TERMINAL.has(s.status)) rows.push(['Acts at', when(s.wake_at)]);
  if (s.skip_reason) rows.push(['Skipped', s.skip_reason === 'condition' ? 'its condition was false' : 'an earlier step failed']);
  if (s.run_id) rows.push(['Run', h('a', {href: `#/runs/${s.run_id}`}, s.run_id)]);
  if (s.request) rows.push(['Asks', s.request.message || JSON.stringify(s.request)]);
  const out = s.output === null || s.output === undefined ? null
    : typeof s.output === 'string' ? s.output : JSON.stringify(s.output, null, 2);
  return [
    h('h2', {}, `Step ${s.name || s.id}`),
    h('dl', {class: 'summary'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    s.error ? errorBox(`${s.error.code}: ${s.error.message}`) : null,
    h('h3', {}, 'Output'),
    out === null ? h('p', {class: 'muted'}, 'No output yet.') : h('pre', {class: 'output'}, out),
  ];
}

/** "85 ms", "1.2 s", "3 min 4 s" between two timestamps. */
function duration(from, to) {
  if (!from || !to) return '';
  const ms = new Date(to) - new Date(from);
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** A node's timing line: how long it took, or what it is doing. */
function timing(s) {
  if (s.started_at && s.completed_at) return duration(s.started_at, s.completed_at);
  if (s.status === 'waiting') return 'waits for you';
  if (s.status === 'retrying' && s.wake_at) return `retry ${new Date(s.wake_at).toLocaleTimeString()}`;
  if (s.started_at) return `since ${new Date(s.started_at).toLocaleTimeString()}`;
  return s.skip_reason ? `(${s.skip_reason})` : '';
}

// ----- The DAG drawing -----

const NS = 'http://www.w3.org/2000/svg';
const NODE_W = 220;
const NODE_H = 64;
const GAP_X = 24;
const GAP_Y = 44;
const PAD = 8;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

/** Cuts a label to what fits a node. */
function clip(text, max = 26) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * The steps as a layered graph: a step's row is its dependency depth (0 without dependencies,
 * else one more than its deepest dependency), steps of a row side by side in definition order,
 * an arrow from each dependency to its dependent. Each node is a focusable button whose class
 * is its state; `onSelect(stepId)` is called on click, Enter or Space (null: not selectable).
 * Returns `{wrap, update(step), select(stepId)}`; the wrapper scrolls sideways on a narrow
 * screen rather than shrinking the text.
 */
function dag(steps, onSelect) {
  const depth = new Map();
  const byId = new Map(steps.map((s) => [s.id, s]));
  const depthOf = (s, seen = new Set()) => {
    if (depth.has(s.id)) return depth.get(s.id);
    if (seen.has(s.id)) return 0; // a cycle cannot be defined; be safe anyway
    seen.add(s.id);
    const deps = (s.depends_on || []).map((d) => byId.get(d)).filter(Boolean);
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(s.id, d);
    return d;
  };
  const rows = [];
  for (const s of steps) (rows[depthOf(s)] ||= []).push(s);
  const widest = Math.max(1, ...rows.map((r) => (r ? r.length : 0)));
  const width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X;
  const height = PAD * 2 + rows.length * NODE_H + Math.max(0, rows.length - 1) * GAP_Y;
  const pos = new Map();
  rows.forEach((row, r) => {
    const rowW = row.length * NODE_W + (row.length - 1) * GAP_X;
    row.forEach((s, i) => pos.set(s.id, {
      x: (width - rowW) / 2 + i * (NODE_W + GAP_X),
      y: PAD + r * (NODE_H + GAP_Y),
    }));
  });

  const edges = [];
  for (const s of steps) {
    for (const d of s.depends_on || []) {
      const a = pos.get(d);
      const b = pos.get(s.id);
      if (!a || !b) continue;
      const x1 = a.x + NODE_W / 2; const y1 = a.y + NODE_H;
      const x2 = b.x + NODE_W / 2; const y2 = b.y - 2;
      const my = (y1 + y2) / 2;
      edges.push(svg('path', {class: 'edge', 'data-from': d, 'data-to': s.id,
        d: `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`, 'marker-end': 'url(#dag-arrow)'}));
    }
  }

  const nodes = new Map();
  const items = steps.map((s) => {
    const {x, y} = pos.get(s.id);
    const name = svg('text', {class: 'name', x: x + 10, y: y + 20});
    const state = svg('text', {class: 'state', x: x + 10, y: y + 38});
    const time = svg('text', {class: 'time', x: x + 10, y: y + 55});
    const title = svg('title');
    const g = svg('g', {class: 'node pending', 'data-step': s.id},
      title, svg('rect', {x, y, width: NODE_W, height: NODE_H, rx: 6}), name, state, time);
    if (onSelect) {
      g.setAttribute('tabindex', '0');
      g.setAttribute('role', 'button');
      g.setAttribute('aria-controls', 'step-detail');
      g.setAttribute('aria-pressed', 'false');
      g.addEventListener('click', () => onSelect(s.id));
      g.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          onSelect(s.id);
        }
      });
    }
    nodes.set(s.id, {g, name, state, time, title});
    return g;
  });

  const drawing = svg('svg', {class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`,
    role: 'group', 'aria-label': 'The workflow\'s steps; arrows go from a step to those that depend on it'},
  svg('defs', {}, svg('marker', {id: 'dag-arrow', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse'},
  svg('path', {class: 'arrow', d: 'M0,0 L10,5 L0,10 z'}))),
  edges, items);
  const wrap = h('div', {class: 'dag-wrap'});
  wrap.append(drawing);

  function update(s) {
    const n = nodes.get(s.id);
    if (!n) return;
    const label = s.name || s.id;
    n.g.setAttribute('class', `node ${s.status}${n.g.classList.contains('selected') ? ' selected' : ''}`);
    n.g.dataset.status = s.status;
    n.name.textContent = clip(label);
    n.state.textContent = `${s.kind} · ${s.status}${s.attempt > 1 ? ` · try ${s.attempt}` : ''}`;
    n.time.textContent = timing(s);
    n.title.textContent = `${label} (${s.id})`;
    if (onSelect) n.g.setAttribute('aria-label', `${label}: ${s.status}${timing(s) ? `, ${timing(s)}` : ''}`);
  }
  function select(id) {
    for (const [sid, n] of nodes) {
      n.g.classList.toggle('selected', sid === id);
      if (onSelect) n.g.setAttribute('aria-pressed', String(sid === id));
    }
  }
  for (const s of steps) update(s);
  return {wrap, update, select};
}
