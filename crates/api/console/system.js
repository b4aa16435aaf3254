// The system page: the health report, the workers of each role and the queues, the open and
// resolved alerts (resolved from here), availability and performance trends as charts; and one
// alert's page (`#/system/<alert id>`) with its webhook deliveries. Both refresh themselves
// every few seconds while open.
//
// Operators (platform:admin) see the platform. Other tokens see what the API lets them: the
// organization's health report, alerts and run trends; a section the token may not read shows
// the API's refusal and the rest of the page still works.

import {get, post} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';
import {barChart, lineChart, num} from './chart.js';

const EVERY_MS = 5000;
const WINDOWS = ['1h', '24h', '7d'];
// The points' width per window: about a hundred points each (the API's default is 1m / 1h).
const STEPS = {'1h': '1m', '24h': '15m', '7d': '3h'};
// What GET /v1/system/performance-trends accepts; the last group needs platform:admin.
const METRICS = [
  ['Runs and tools', [
    ['run.latency_ms', 'Run latency'],
    ['run.ttft_ms', 'Time to first token'],
    ['run.queue_wait_ms', 'Queue wait'],
    ['tool.latency_ms', 'Tool call latency'],
    ['run.tokens_input', 'Input tokens per run'],
    ['run.tokens_output', 'Output tokens per run'],
    ['run.cost_usd', 'Cost per run'],
  ]],
  ['Platform (operators)', [
    ['instances.up', 'Instances up'],
    ['queue.pending', 'Jobs pending'],
    ['queue.oldest_pending_seconds', 'Oldest pending job'],
    ['dead_letters', 'Dead letters'],
    ['probe.latency_ms', 'Probe latency'],
    ['host.cpu_pct', 'Host CPU'],
    ['host.mem_pct', 'Host memory'],
    ['host.disk_pct', 'Host disk'],
    ['host.net_rx_bytes_per_s', 'Network in'],
    ['host.net_tx_bytes_per_s', 'Network out'],
  ]],
];

export function render(main, {id, signal}) {
  return id ? alertPage(main, id, signal) : overview(main, signal);
}

/**
 * Calls `tick` now and again `EVERY_MS` after each one ends, until `signal` aborts; while
 * `live()` is false the timer skips. Returns `now()`, which refreshes at once (after a running
 * tick, never two at a time).
 */
function poll(signal, tick, live = () => true) {
  let timer = null;
  let busy = false;
  let again = false;
  async function run() {
    clearTimeout(timer);
    if (signal.aborted) return;
    if (busy) { again = true; return; }
    busy = true;
    try { await tick(); } finally { busy = false; }
    if (signal.aborted) return;
    if (again) { again = false; run(); return; }
    const later = () => { if (live()) run(); else timer = setTimeout(later, EVERY_MS); };
    timer = setTimeout(later, EVERY_MS);
  }
  signal.addEventListener('abort', () => clearTimeout(timer));
  run();
  return run;
}

// The last answer each region drew, so an unchanged answer leaves the region (and the focus
// in it) alone.
const drawn = new WeakMap();

/**
 * Redraws `region` with `draw(data)` unless it already shows this `data`. Open <details> stay
 * open and the focused control (by its `data-key`) keeps the focus across a redraw.
 */
function update(region, data, draw) {
  const json = JSON.stringify(data);
  if (drawn.get(region) === json) return;
  drawn.set(region, json);
  const open = [...region.querySelectorAll('details')].map((d) => d.open);
  const active = document.activeElement;
  const key = region.contains(active) ? active.dataset.key : undefined;
  fill(region, draw(data));
  region.querySelectorAll('details').forEach((d, i) => { if (open[i]) d.open = true; });
  if (key) region.querySelector(`[data-key="${CSS.escape(key)}"]`)?.focus();
}

/** Fetches `path` into `region`: drawn by `draw`, or the API's error in its place. */
async function load(region, path, draw) {
  try {
    const data = await get(path);
    update(region, data, draw);
    return data;
  } catch (err) {
    update(region, {error: err.message}, () => errorBox(err));
    return null;
  }
}

/** A section of the page: a card with a heading, optional controls, and its body. */
function section(key, title, body, ...controls) {
  return h('section', {class: `card sys-section sys-section-${key}`, 'aria-labelledby': `h-${key}`},
    h('h2', {id: `h-${key}`}, title), controls, body);
}

/** A table in a box that scrolls sideways on a narrow screen rather than widening the page. */
function table(caption, heads, rows) {
  return h('div', {class: 'sys-scroll'}, h('table', {class: 'sys-table'},
    h('caption', {class: 'visually-hidden'}, caption),
    h('thead', {}, h('tr', {}, heads.map((c) => h('th', {scope: 'col'}, c)))),
    h('tbody', {}, rows)));
}

const badge = (text) => h('span', {class: `badge ${text}`}, text);
const ms = (v) => (v == null ? '—' : `${num(v)} ms`);
const pct = (v) => (v == null ? '—' : `${num(v)} %`);
// A time of today as its time only (the tables stay narrow), an older one with its date.
const short = (ts) => (new Date(ts).toDateString() === new Date().toDateString()
  ? new Date(ts).toLocaleTimeString() : when(ts));
const ago = (secs) => (secs == null ? '—' : secs < 120 ? `${num(secs)} s` : `${num(secs / 60)} min`);

function overview(main, signal) {
  document.title = 'System · agentyard';
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const windowSel = h('select', {id: 'sys-window', name: 'window'},
    WINDOWS.map((w) => h('option', {value: w, selected: params.get('window') === w}, w)));
  const metricSel = h('select', {id: 'sys-metric', name: 'metric'},
    METRICS.map(([group, list]) => h('optgroup', {label: group},
      list.map(([m, label]) => h('option', {value: m, selected: params.get('metric') === m}, label)))));
  const auto = h('input', {id: 'sys-auto', type: 'checkbox', checked: true});
  const updated = h('span', {class: 'muted'});
  const overall = h('span', {});
  const health = h('div', {}, loading('Loading the health report…'));
  const workers = h('div', {}, loading('Loading the workers…'));
  const queues = h('div', {}, loading('Loading the queues…'));
  const open = h('div', {class: 'alerts-open', 'aria-live': 'polite'}, loading('Loading alerts…'));
  const resolved = h('div', {class: 'alerts-resolved'}, loading('Loading alerts…'));
  const said = h('p', {class: 'sys-said', role: 'status'});
  const availability = h('div', {}, loading('Loading availability…'));
  const trend = h('div', {}, loading('Loading the trend…'));

  // The window and metric are kept in the address, like the runs page's filters.
  const remember = () => {
    const q = new URLSearchParams({window: windowSel.value, metric: metricSel.value});
    history.replaceState(null, '', `#/system?${q}`);
  };
  const refresh = poll(signal, tick, () => auto.checked);
  windowSel.addEventListener('change', () => { remember(); refresh(); });
  metricSel.addEventListener('change', () => { remember(); refresh(); });

  fill(main, h('div', {class: 'system'},
    h('h1', {}, 'System'),
    h('div', {class: 'filters sys-controls'},
      overall,
      h('label', {for: 'sys-window'}, 'Window'), windowSel,
      h('span', {class: 'row'}, auto, h('label', {for: 'sys-auto'}, `Refresh every ${EVERY_MS / 1000} s`)),
      h('button', {type: 'button', class: 'secondary', onclick: () => refresh()}, 'Refresh now'),
      updated),
    h('div', {class: 'sys-grid'},
      section('health', 'Health report', health),
      section('alerts', 'Alerts', h('div', {},
        h('h3', {}, 'Open'), open, said, h('h3', {}, 'Recently resolved'), resolved)),
      section('workers', 'Workers', workers),
      section('queues', 'Queues', queues),
      section('availability', 'Availability', availability),
      section('trends', 'Performance trends', trend,
        h('div', {class: 'row'}, h('label', {for: 'sys-metric'}, 'Metric'), metricSel)))));

  async function tick() {
    const w = windowSel.value;
    const metric = metricSel.value;
    const t = new URLSearchParams({metric, window: w, step: STEPS[w]});
    const [report] = await Promise.all([
      load(health, '/v1/system/health-report', drawHealth),
      // Workers and queues come from the status (operators only): one request, two sections.
      get('/v1/system/status').then((s) => {
        update(workers, {roles: s.roles, instances: s.instances}, drawWorkers);
        update(queues, {queues: s.queues, dead: s.dead_letters}, drawQueues);
      }, (err) => {
        for (const r of [workers, queues]) update(r, {error: err.message}, () => errorBox(err));
      }),
      load(open, '/v1/system/alerts?status=open',
        (list) => alertList(list, 'No open alerts.', resolve)),
      load(resolved, '/v1/system/alerts?status=resolved&limit=20',
        (list) => alertList(list, 'No resolved alerts.', resolve)),
      load(availability, `/v1/system/availability?window=${w}`, drawAvailability),
      load(trend, `/v1/system/performance-trends?${t}`, drawTrend),
    ]);
    if (report) fill(overall, h('span', {class: 'sys-overall'}, `${report.scope === 'platform' ? 'Platform' : 'Organization'}: `, badge(report.status)));
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  async function resolve(alert, button) {
    button.disabled = true;
    button.textContent = 'Resolving…';
    try {
      await post(`/v1/system/alerts/${alert.id}/resolve`);
      fill(said, `Resolved ${alert.rule} on ${alert.subject}.`);
    } catch (err) {
      fill(said, errorBox(err));
      button.disabled = false;
      button.textContent = 'Resolve';
    }
    await refresh();
  }
}

function drawHealth(r) {
  const f = r.last_hour;
  const byStatus = Object.entries(f.runs).map(([s, n]) => `${s} ${n}`).join(', ');
  const lat = (l) => (l.count ? `p50 ${ms(l.p50)} · p95 ${ms(l.p95)} · max ${ms(l.max)}` : '—');
  const figures = [
    ['Runs', h('span', {class: 'sys-runs'}, `${f.runs_total}${byStatus ? ` (${byStatus})` : ''}`)],
    ['Run latency', lat(f.run_latency_ms)],
    ['Time to first token', lat(f.time_to_first_token_ms)],
    ['Queue wait', lat(f.queue_wait_ms)],
    ['Tool calls', `${f.tool_calls} (${f.tool_errors} errors, ${num(f.tool_error_rate_pct)} %)`],
    ['Tokens', `${f.input_tokens} in · ${f.output_tokens} out`],
    ['Cost', `$${Number(f.cost_usd).toFixed(4)}`],
  ];
  return [
    h('p', {}, `${r.scope === 'platform' ? 'The platform' : 'Your organization'} is `,
      badge(r.status), ` · checked ${when(r.checked_at)}`),
    table('Dependencies and probes', ['Probe', 'Status', 'Latency', 'Since', 'Error'],
      r.dependencies.map((p) => h('tr', {'data-probe': p.name},
        h('td', {}, p.name), h('td', {}, badge(p.status)), h('td', {}, ms(p.latency_ms)),
        h('td', {}, short(p.status_since)), h('td', {class: 'sys-wrap'}, p.error || '')))),
    h('h3', {}, 'Last hour'),
    h('dl', {class: 'summary sys-figures'}, figures.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    r.hosts ? [h('h3', {}, 'Hosts'), r.hosts.length
      ? table('Hosts, latest figures', ['Host', 'CPU', 'Memory', 'Disk'],
        r.hosts.map((x) => h('tr', {}, h('td', {}, x.host), h('td', {}, pct(x.cpu_pct)),
          h('td', {}, pct(x.mem_pct)), h('td', {}, pct(x.disk_pct)))))
      : h('p', {class: 'muted'}, 'No host reported in the last five minutes.')] : null,
  ];
}

function drawWorkers({roles, instances}) {
  const names = Object.keys(roles);
  if (!names.length) return h('p', {class: 'muted'}, 'No process has sent a heartbeat yet (is a monitor running?).');
  return [
    table('Processes per role', ['Role', 'Up', 'Down (last hour)'],
      names.map((role) => h('tr', {'data-role': role, class: roles[role].up ? '' : 'sys-down'},
        h('td', {}, role), h('td', {class: 'up'}, roles[role].up),
        h('td', {class: 'down'}, roles[role].down)))),
    h('details', {class: 'sys-instances'}, h('summary', {}, `Instances (${instances.length})`),
      table('Instances by their heartbeats', ['Role', 'Host / PID', 'Status', 'Last heartbeat', 'Jobs'],
        instances.map((i) => h('tr', {},
          h('td', {}, i.role), h('td', {}, `${i.host} / ${i.pid}`), h('td', {}, badge(i.status)),
          h('td', {}, short(i.last_seen)),
          h('td', {}, i.capacity == null ? '—' : `${i.in_flight ?? 0} of ${i.capacity}`))))),
  ];
}

function drawQueues({queues, dead}) {
  return [
    queues.length ? table('Job queues', ['Consumer', 'Pending', 'In progress', 'Redelivered', 'Oldest job'],
      queues.map((q) => h('tr', {'data-consumer': q.consumer},
        h('td', {}, q.consumer), h('td', {}, q.pending), h('td', {}, q.ack_pending),
        h('td', {}, q.redelivered), h('td', {}, ago(q.oldest_job_age_s)))))
      : h('p', {class: 'muted'}, 'No queue.'),
    h('p', {class: dead ? 'error' : 'muted'}, `Dead letters: ${dead}`),
  ];
}

/** Alerts as cards (readable on a phone); an open one has its Resolve button. */
function alertList(list, none, resolve) {
  if (!list.length) return h('p', {class: 'muted'}, none);
  return h('ul', {class: 'sys-alerts'}, list.map((a) => h('li', {class: `sys-alert ${a.severity}`,
    'data-id': a.id, 'data-subject': a.subject},
    h('p', {class: 'row'}, badge(a.severity), h('a', {href: `#/system/${a.id}`}, a.subject),
      h('span', {class: 'muted'}, a.rule)),
    h('p', {class: 'sys-wrap'}, a.message),
    h('p', {class: 'small'}, `Opened ${when(a.opened_at)}`,
      a.status === 'resolved'
        ? [` · resolved ${when(a.resolved_at)} by `, h('span', {class: 'resolved-by'}, a.resolved_by)]
        : ''),
    a.status === 'open' ? h('button', {type: 'button', 'data-key': `resolve-${a.id}`,
      'aria-label': `Resolve ${a.rule} on ${a.subject}`,
      onclick: (e) => resolve(a, e.currentTarget)}, 'Resolve') : null)));
}

function drawAvailability(a) {
  const bars = (m) => Object.entries(m).map(([name, r]) => ({name, value: r.availability_pct}));
  const outages = Object.entries({...a.roles, ...a.dependencies}).filter(([, r]) => r.outages);
  return [
    barChart({label: `Roles up, last ${a.window}`, unit: '%', bars: bars(a.roles)}),
    barChart({label: `Dependencies answering, last ${a.window}`, unit: '%', bars: bars(a.dependencies)}),
    h('p', {class: 'muted'}, outages.length
      ? `Outages: ${outages.map(([n, r]) => `${n} ${r.outages}`).join(', ')}.`
      : 'No outage in this window.'),
  ];
}

function unitOf(metric) {
  if (metric.endsWith('_ms')) return 'ms';
  if (metric.endsWith('_pct')) return '%';
  if (metric.endsWith('bytes_per_s')) return 'B/s';
  if (metric.endsWith('_seconds')) return 's';
  if (metric.endsWith('_usd')) return 'USD';
  return '';
}

function drawTrend(t) {
  const label = METRICS.flatMap(([, l]) => l).find(([m]) => m === t.metric)?.[1] || t.metric;
  const pts = (field) => t.points.map((p) => ({t: p.at, v: p[field] ?? null}));
  // Latencies have percentiles; other series their mean and highest value per step.
  const latency = t.metric.endsWith('_ms') && t.metric !== 'probe.latency_ms';
  const series = latency
    ? [{name: 'p50', points: pts('p50')}, {name: 'p95', points: pts('p95')}]
    : [{name: 'mean', points: pts('avg')}, {name: 'max', points: pts('max')}];
  const seen = t.points.reduce((n, p) => n + p.count, 0);
  const step = t.step_secs >= 3600 ? `${t.step_secs / 3600} h` : `${t.step_secs / 60} min`;
  return [
    lineChart({label: `${label}, last ${t.window}`, unit: unitOf(t.metric), series}),
    h('p', {class: 'muted sys-observed'}, `One point per ${step}; ${seen} observation${seen === 1 ? '' : 's'}.`),
  ];
}

/** One alert: what opened it, who resolved it, and each webhook delivery. */
function alertPage(main, id, signal) {
  document.title = 'Alert · agentyard';
  const body = h('div', {}, loading('Loading the alert…'));
  const said = h('p', {class: 'sys-said', role: 'status'});
  fill(main, h('div', {class: 'system'},
    h('p', {}, h('a', {href: '#/system'}, '← System')),
    h('h1', {}, 'Alert'), body, said));
  const refresh = poll(signal, () => load(body, `/v1/system/alerts/${id}`, draw));

  function draw(a) {
    const rows = [
      ['Status', badge(a.status)],
      ['Severity', badge(a.severity)],
      ['Rule', a.rule],
      ['Subject', a.subject],
      ['Message', a.message],
      ['Value', `${num(a.value)} (threshold ${num(a.threshold)})`],
      ['Opened', when(a.opened_at)],
      ['Resolved', a.resolved_at ? `${when(a.resolved_at)} by ${a.resolved_by}` : '—'],
    ];
    return [
      h('h2', {class: 'sys-alert-title'}, `${a.rule} on ${a.subject}`),
      h('dl', {class: 'summary'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
      a.status === 'open' ? h('p', {}, h('button', {type: 'button', 'data-key': 'resolve',
        onclick: (e) => resolve(e.currentTarget)}, 'Resolve')) : null,
      h('h2', {}, 'Webhook deliveries'),
      a.deliveries.length
        ? table('Webhook deliveries', ['Event', 'URL', 'Status', 'Attempts', 'Last answer', 'Delivered'],
          a.deliveries.map((d) => h('tr', {},
            h('td', {}, d.event), h('td', {class: 'sys-wrap'}, d.url), h('td', {}, badge(d.status)),
            h('td', {}, d.attempts),
            h('td', {class: 'sys-wrap'}, d.last_error || (d.last_status == null ? '—' : d.last_status)),
            h('td', {}, when(d.delivered_at)))))
        : h('p', {class: 'muted'}, 'No webhook deliveries (none configured, or not shown to this token).'),
    ];
  }

  async function resolve(button) {
    button.disabled = true;
    button.textContent = 'Resolving…';
    try {
      await post(`/v1/system/alerts/${id}/resolve`);
      fill(said, 'Resolved.');
    } catch (err) {
      fill(said, errorBox(err));
      button.disabled = false;
      button.textContent = 'Resolve';
    }
    await refresh();
  }
}
