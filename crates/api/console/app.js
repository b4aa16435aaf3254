// The shell: the login page, the navigation and the hash router: `#/<page>` and
// `#/<page>/<id>` for chat, runs, agents, tools, workflows and system. Each page module exports `render(main, {id, signal})`; `signal` aborts
// when another page renders, to close the page's open streams.

import {get, token} from './api.js';
import {errorBox, fill, h} from './dom.js';
import * as chat from './chat.js';
import * as runs from './runs.js';
import * as agents from './agents.js';
import * as tools from './tools.js';
import * as workflows from './workflows.js';
import * as system from './system.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');

const pages = {chat, runs, agents, tools, workflows, system};
let page = null;

function login() {
  nav.hidden = true;
  document.title = 'Log in · agentyard';
  const input = h('input', {id: 'token', name: 'token', type: 'password', required: true,
    autocomplete: 'off', spellcheck: 'false'});
  const status = h('div', {'aria-live': 'polite'});
  const button = h('button', {type: 'submit'}, 'Log in');
  const form = h('form', {class: 'card login', onsubmit: async (e) => {
    e.preventDefault();
    const tok = input.value.trim();
    button.disabled = true;
    fill(status, h('p', {class: 'loading', role: 'status'}, 'Checking the token…'));
    try {
      // Any /v1 read proves the token; the agents are what every page needs first. A 403
      // still proves it (an operator's token may hold no org scope): its pages say what it
      // cannot read.
      await get('/v1/agents', {token: tok}).catch((err) => {
        if (err.status !== 403) throw err;
      });
      token.set(tok);
      go('#/chat');
    } catch (err) {
      fill(status, errorBox(err));
      input.focus();
    } finally {
      button.disabled = false;
    }
  }},
    h('h1', {}, 'Log in'),
    h('p', {}, 'Paste an API token (agentyard dev prints one). It stays in this tab only.'),
    h('label', {for: 'token'}, 'API token'),
    input,
    button,
    status);
  fill(main, form);
  input.focus();
}

/** Opens `hash`; a change of the hash routes by itself, the same hash again does not. */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  page?.abort();
  page = new AbortController();
  if (!token.get()) return login();
  nav.hidden = false;
  const [, name = 'chat', id] = location.hash.replace(/^#/, '').split('?')[0].split('/');
  const mod = pages[name] || chat;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  mod.render(main, {id: id ? decodeURIComponent(id) : null, signal: page.signal});
  main.focus({preventScroll: true});
}

document.getElementById('logout').addEventListener('click', () => {
  token.clear();
  go('#/login');
});
window.addEventListener('ay:unauthorized', () => { token.clear(); route(); });
window.addEventListener('hashchange', route);
route();
