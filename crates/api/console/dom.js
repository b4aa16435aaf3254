// Building DOM nodes. Text always goes in as text (never parsed as HTML), so nothing the API
// returns can inject markup.

/** `h('p', {class: 'x'}, 'text', node)`: an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An error box with the API's message. */
export function errorBox(err) {
  return h('p', {class: 'error', role: 'alert'}, err && err.message ? err.message : String(err));
}

/** A loading line for a region being fetched. */
export function loading(what = 'Loading…') {
  return h('p', {class: 'loading', role: 'status'}, what);
}

/** A timestamp as local time, short. */
export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : '—';
}
