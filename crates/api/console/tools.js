// The tools page: the org's MCP servers (register, refresh, delete, their tools) and the tool
// audit log with its filters. `#/tools` is the list and the log, `#/tools/<server id>` one
// server with its tools.

import {get, post, request} from './api.js';
import {errorBox, fill, h, loading, when} from './dom.js';

// Calls of the audit log per page; "More calls" asks for the next page (the API's cursor).
const PAGE = 50;

// The audit log's outcome filter: the API's values and what the page calls them.
const OUTCOMES = [['', 'Any'], ['ok', 'OK'], ['error', 'Error'], ['pending', 'Not finished']];

// A line for the list page to show after the server page navigated to it (a deletion).
let notice = null;

export function render(main, {id}) {
  // One wrapper, so that this page's styles (console.css, "Tools page") stay its own.
  const root = h('div', {class: 'tools-page'});
  fill(main, root);
  return id ? serverPage(root, id) : listPage(root);
}

function listPage(root) {
  document.title = 'Tools · agentyard';
  const servers = h('div', {'aria-live': 'polite'});
  const said = h('div', {'aria-live': 'polite'}, notice ? h('p', {class: 'notice', role: 'status'}, notice) : null);
  notice = null;
  fill(root,
    h('h1', {}, 'Tools'),
    said,
    h('section', {'aria-labelledby': 'h-servers'},
      h('h2', {id: 'h-servers'}, 'MCP servers'), servers, registerForm(() => loadServers(servers))),
    h('section', {'aria-labelledby': 'h-audit'},
      h('h2', {id: 'h-audit'}, 'Tool audit log'), auditLog()));
  loadServers(servers);
}

async function loadServers(region) {
  fill(region, loading('Loading servers…'));
  try {
    const {data} = await get('/v1/mcp-servers');
    if (!data.length) return fill(region, h('p', {class: 'muted'}, 'No MCP servers yet: register one below.'));
    fill(region, h('ul', {class: 'servers'}, data.map(serverItem)));
  } catch (err) {
    fill(region, errorBox(err));
  }
}

/** One server of the list: its name (a link for the org's own), where it is, its state. */
function serverItem(s) {
  const tools = Array.isArray(s.tools) ? s.tools : [];
  return h('li', {class: 'server card', 'data-server': s.name},
    h('div', {class: 'row'},
      s.id ? h('a', {class: 'server-name', href: `#/tools/${s.id}`}, s.name)
        : h('span', {class: 'server-name'}, s.name),
      state(s),
      h('span', {class: 'muted'}, s.source === 'operator' ? `the operator's · ${s.transport}` : "the org's")),
    s.url ? h('p', {class: 'server-url small'}, s.url) : null,
    s.last_error ? h('p', {class: 'error'}, s.last_error) : null,
    // The operator's servers have no page of their own: their tools show here.
    !s.id && tools.length ? h('details', {}, h('summary', {}, `${tools.length} tools`), toolList(tools)) : null);
}

/** A server's state as a badge: its tool count when listing worked, else "error". */
function state(s) {
  if (s.last_error) return h('span', {class: 'badge failed'}, 'error');
  if (!s.tools_refreshed_at) return h('span', {class: 'badge'}, 'not listed');
  const n = Array.isArray(s.tools) ? s.tools.length : 0;
  return h('span', {class: 'badge completed'}, `${n} tool${n === 1 ? '' : 's'}`);
}

/** The registration form: name, URL, optional bearer token. The API's refusal shows as it is;
 * a server registered but not reachable shows its `last_error`. */
function registerForm(reload) {
  const name = h('input', {id: 'srv-name', name: 'name', required: true, autocomplete: 'off',
    spellcheck: 'false', pattern: '[a-z0-9_\\-]{1,32}', 'aria-describedby': 'srv-name-help'});
  const url = h('input', {id: 'srv-url', name: 'url', type: 'url', required: true,
    autocomplete: 'off', placeholder: 'https://example.com/mcp'});
  const bearer = h('input', {id: 'srv-token', name: 'bearer_token', type: 'password',
    autocomplete: 'off', 'aria-describedby': 'srv-token-help'});
  const button = h('button', {type: 'submit'}, 'Register');
  const status = h('div', {'aria-live': 'polite'});
  // The browser's own checks would hide the API's messages (a bad URL, a bad name): the API
  // decides, so the form does not validate itself.
  const form = h('form', {class: 'card register', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const body = {name: name.value.trim(), url: url.value.trim()};
    if (bearer.value) body.bearer_token = bearer.value;
    button.disabled = true;
    fill(status, loading('Registering and listing its tools…'));
    try {
      const s = await post('/v1/mcp-servers', body);
      const link = h('a', {href: `#/tools/${s.id}`}, s.name);
      fill(status, s.last_error
        ? h('div', {}, h('p', {role: 'status'}, 'Registered ', link, ', but its tools could not be listed:'),
          h('p', {class: 'error', role: 'alert'}, s.last_error))
        : h('p', {class: 'notice', role: 'status'}, 'Registered ', link, ` with ${s.tools.length} tools.`));
      form.reset();
      reload();
    } catch (err) {
      fill(status, errorBox(err));
    } finally {
      button.disabled = false;
    }
  }},
    h('h3', {}, 'Register a server'),
    h('div', {class: 'field'}, h('label', {for: 'srv-name'}, 'Name'), name,
      h('span', {id: 'srv-name-help', class: 'small'}, 'a-z, 0-9, - and _; its tools reach models as name__tool')),
    h('div', {class: 'field'}, h('label', {for: 'srv-url'}, 'URL'), url),
    h('div', {class: 'field'}, h('label', {for: 'srv-token'}, 'Bearer token (optional)'), bearer,
      h('span', {id: 'srv-token-help', class: 'small'}, 'Sent to the server; stored sealed, never shown again')),
    h('div', {}, button),
    status);
  return form;
}

async function serverPage(root, id) {
  document.title = 'MCP server · agentyard';
  const back = h('p', {}, h('a', {href: '#/tools'}, '← Tools'));
  fill(root, back, loading('Loading the server…'));
  let server;
  try {
    server = await get(`/v1/mcp-servers/${encodeURIComponent(id)}`);
  } catch (err) {
    return fill(root, back, errorBox(err));
  }
  document.title = `${server.name} · MCP server · agentyard`;
  const details = h('div', {});
  const tools = h('div', {'aria-live': 'polite'});
  const status = h('div', {'aria-live': 'polite'});
  const refresh = h('button', {type: 'button', onclick: async () => {
    refresh.disabled = true;
    fill(status, loading('Listing its tools again…'));
    try {
      server = await post(`/v1/mcp-servers/${id}/refresh`, {});
      show();
      fill(status, server.last_error ? null
        : h('p', {class: 'notice', role: 'status'}, `Refreshed at ${when(server.tools_refreshed_at)}.`));
      loadTools();
    } catch (err) {
      fill(status, errorBox(err));
    } finally {
      refresh.disabled = false;
    }
  }}, 'Refresh tools');
  const del = h('button', {type: 'button', class: 'danger', 'aria-expanded': 'false',
    'aria-controls': 'confirm-delete', onclick: () => confirming(true)}, 'Delete…');
  const keep = h('button', {type: 'button', class: 'secondary', onclick: () => confirming(false)}, 'Keep it');
  const yes = h('button', {type: 'button', class: 'danger', onclick: async () => {
    yes.disabled = true;
    fill(status, loading('Deleting…'));
    try {
      await request('DELETE', `/v1/mcp-servers/${id}`);
      notice = `Deleted the server ${server.name}.`;
      location.hash = '#/tools';
    } catch (err) {
      fill(status, errorBox(err));
      yes.disabled = false;
    }
  }}, 'Yes, delete');
  const confirm = h('div', {id: 'confirm-delete', class: 'confirm', role: 'group',
    'aria-labelledby': 'confirm-q', hidden: true, onkeydown: (e) => {
      if (e.key === 'Escape') confirming(false);
    }},
    h('p', {id: 'confirm-q'}, `Delete ${server.name}? Its tools stop reaching models at once.`),
    h('div', {class: 'row'}, yes, keep));

  /** Shows or hides the confirmation, moving the focus so a keyboard user follows it. */
  function confirming(open) {
    confirm.hidden = !open;
    del.setAttribute('aria-expanded', String(open));
    (open ? keep : del).focus();
  }

  function show() {
    fill(details, h('h1', {}, server.name), h('dl', {class: 'summary'},
      [['State', state(server)],
        ['URL', server.url],
        ['Bearer token', server.has_token ? 'set' : 'none'],
        ['Tools listed', when(server.tools_refreshed_at)],
        ['Registered', when(server.created_at)]]
        .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    server.last_error ? h('p', {class: 'error', role: 'alert'}, server.last_error) : null);
  }

  async function loadTools() {
    fill(tools, loading('Loading its tools…'));
    try {
      const list = await get(`/v1/mcp-servers/${id}/tools`);
      fill(tools, list.length ? toolList(list) : h('p', {class: 'muted'}, 'No tools listed.'));
    } catch (err) {
      fill(tools, errorBox(err));
    }
  }

  show();
  fill(root, back, details,
    h('div', {class: 'row actions'}, refresh, del), confirm, status,
    h('section', {'aria-labelledby': 'h-tools'}, h('h2', {id: 'h-tools'}, 'Tools'), tools));
  loadTools();
}

/** Tools as listed by a server: each its name and description, opened its parameters and its
 * input schema as JSON. */
function toolList(tools) {
  return h('ul', {class: 'tool-list'}, tools.map((t) => {
    const schema = t.input_schema || t.inputSchema || {};
    const props = Object.entries(schema.properties || {});
    const required = new Set(schema.required || []);
    return h('li', {class: 'tool-def', 'data-tool': t.name}, h('details', {},
      h('summary', {}, h('span', {class: 'tool-name'}, t.name),
        t.description ? h('span', {class: 'tool-desc'}, t.description) : null),
      props.length ? h('dl', {class: 'params'}, props.map(([p, s]) => [
        h('dt', {}, h('code', {}, p), ' ', h('span', {class: 'muted'},
          [typeName(s), required.has(p) ? 'required' : 'optional'].join(', '))),
        h('dd', {}, s.description || '')]))
        : h('p', {class: 'muted'}, 'No parameters.'),
      h('h4', {}, 'Input schema'), h('pre', {class: 'schema'}, JSON.stringify(schema, null, 2))));
  }));
}

function typeName(s) {
  if (Array.isArray(s.type)) return s.type.join(' | ');
  return s.type || (s.enum ? 'enum' : 'any');
}

/** The audit log: filtered by tool, server, outcome, user and time (what the API accepts),
 * newest first, a page at a time. */
function auditLog() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const tool = h('input', {id: 'f-tool', name: 'tool', list: 'f-tools', autocomplete: 'off',
    spellcheck: 'false', value: params.get('tool') || ''});
  const toolNames = h('datalist', {id: 'f-tools'});
  const server = h('input', {id: 'f-server', name: 'server', list: 'f-servers', autocomplete: 'off',
    spellcheck: 'false', value: params.get('server') || ''});
  const serverNames = h('datalist', {id: 'f-servers'}, h('option', {value: 'builtin'}));
  const outcome = h('select', {id: 'f-outcome', name: 'outcome'}, OUTCOMES.map(([value, label]) =>
    h('option', {value, selected: params.get('outcome') === value}, label)));
  const user = h('select', {id: 'f-user', name: 'user'}, h('option', {value: ''}, 'Anyone'));
  const since = h('input', {id: 'f-since', name: 'since', type: 'datetime-local',
    value: params.get('since') || ''});
  const until = h('input', {id: 'f-until', name: 'until', type: 'datetime-local',
    value: params.get('until') || ''});
  const results = h('div', {'aria-live': 'polite'});
  // Each new filtering counts one: a page that arrives for an older one is dropped.
  let generation = 0;

  const form = h('form', {class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    load();
  }},
    // Each label with its control, so that they wrap together on a narrow screen.
    [['Tool', tool, toolNames], ['Server', server, serverNames], ['Outcome', outcome],
      ['User', user], ['Since', since], ['Until', until]].map(([text, control, list]) =>
      h('span', {class: 'filter'}, h('label', {for: control.id}, text), control, list)),
    h('button', {type: 'submit'}, 'Filter'));

  // The users come from an admin route: without it the filter stays at "Anyone".
  get('/v1/users').then(({data}) => {
    for (const u of data) {
      user.append(h('option', {value: u.id, selected: params.get('user') === u.id},
        u.name || u.email || u.external_id || u.id));
    }
  }).catch(() => { user.disabled = true; });
  // Server names to pick from; a deleted server's calls stay findable by typing its name.
  get('/v1/mcp-servers').then(({data}) => suggest(serverNames, data.map((s) => s.name)))
    .catch(() => {});

  /** The filters as the API's query (`q`) and as the page's address (`f`). */
  function filters() {
    const q = new URLSearchParams({limit: String(PAGE)});
    const f = new URLSearchParams();
    for (const [name, input] of [['tool', tool], ['server', server]]) {
      if (input.value.trim()) { q.set(name, input.value.trim()); f.set(name, input.value.trim()); }
    }
    if (outcome.value) { q.set('outcome', outcome.value); f.set('outcome', outcome.value); }
    if (user.value) { q.set('user_id', user.value); f.set('user', user.value); }
    // The pickers give local times; the API wants RFC 3339.
    for (const [name, input] of [['since', since], ['until', until]]) {
      if (input.value) { q.set(name, new Date(input.value).toISOString()); f.set(name, input.value); }
    }
    return {q, f};
  }

  /** The first page for the current filters. */
  async function load() {
    const mine = ++generation;
    const {q, f} = filters();
    // Keep the filter in the address without reloading the page.
    history.replaceState(null, '', `#/tools${f.size ? `?${f}` : ''}`);
    fill(results, loading('Loading tool calls…'));
    try {
      const page = await get(`/v1/tool-invocations?${q}`);
      if (mine !== generation) return;
      if (!page.data.length) return fill(results, h('p', {class: 'muted'}, 'No tool calls match.'));
      const count = h('p', {class: 'muted calls-count'});
      const list = h('ul', {class: 'calls'});
      fill(results, count, list);
      show(page, q, count, list);
    } catch (err) {
      if (mine === generation) fill(results, errorBox(err));
    }
  }

  /** Appends a page's calls, and a "More calls" button when the API says more follow. */
  function show(page, q, count, list) {
    const items = page.data.map(callItem);
    list.append(...items);
    suggest(toolNames, page.data.map((c) => c.tool));
    suggest(serverNames, page.data.map((c) => c.server));
    const n = list.children.length;
    count.textContent = `${n} call${n === 1 ? '' : 's'}, newest first${page.next_cursor ? '; more follow' : ''}`;
    if (!page.next_cursor) return;
    const mine = generation;
    const status = h('div', {});
    const more = h('button', {type: 'button', class: 'more secondary', onclick: async () => {
      more.disabled = true;
      fill(status, loading('Loading more calls…'));
      try {
        q.set('cursor', page.next_cursor);
        const next = await get(`/v1/tool-invocations?${q}`);
        if (mine !== generation) return;
        more.remove();
        status.remove();
        show(next, q, count, list);
        // The button is gone: a keyboard user goes on from the first new call.
        list.children[list.children.length - next.data.length]?.querySelector('summary')?.focus();
      } catch (err) {
        fill(status, errorBox(err));
        more.disabled = false;
      }
    }}, 'More calls');
    results.append(more, status);
  }

  load();
  return [form, results];
}

/** Adds the names a datalist does not offer yet. */
function suggest(datalist, names) {
  for (const n of new Set(names)) {
    if (![...datalist.options].some((o) => o.value === n)) datalist.append(h('option', {value: n}));
  }
}

/** One call of the log: a summary line, and when opened its arguments, result and run. */
function callItem(c) {
  const failed = c.is_error || c.error;
  const outcome = c.status !== 'completed' ? c.status : failed ? 'error' : 'ok';
  return h('li', {class: 'call', 'data-tool': c.tool, 'data-id': c.id}, h('details', {class: `tool${failed ? ' failed' : ''}`},
    h('summary', {},
      h('span', {class: 'tool-name'}, c.tool), ' ',
      h('span', {class: `badge ${failed ? 'failed' : c.status}`}, outcome), ' ',
      h('span', {class: 'muted'}, [c.server, c.duration_ms == null ? null : `${c.duration_ms} ms`,
        when(c.created_at)].filter(Boolean).join(' · '))),
    h('dl', {class: 'summary'}, [
      ['Run', c.run_id ? h('a', {href: `#/runs/${c.run_id}`}, c.run_id) : `none (an MCP client's call, token ${c.token_id || '—'})`],
      ['Server', c.server],
      ['Status', c.status],
      ['Duration', c.duration_ms == null ? '—' : `${c.duration_ms} ms`],
      ['Attempt', String(c.attempt)],
      ['Started', when(c.started_at)],
      ['Completed', when(c.completed_at)],
    ].map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    h('h3', {}, 'Arguments'), h('pre', {class: 'call-args'}, JSON.stringify(c.arguments, null, 2)),
    h('h3', {}, failed ? 'Error' : 'Result'),
    h('pre', {class: 'call-result'}, c.error ?? c.result ?? '—')));
}
