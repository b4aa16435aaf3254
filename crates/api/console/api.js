// The client of the public /v1 API: the token (kept in sessionStorage for this tab), JSON
// requests, and SSE streams read with fetch (EventSource cannot send Authorization).

const KEY = 'agentyard.token';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An error answer of the API: `{error: {code, message}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}, tok = token.get()) {
  const h = {...extra};
  if (tok) h.Authorization = `Bearer ${tok}`;
  return h;
}

async function fail(resp, stored = true) {
  let code = 'http_error';
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    if (body && body.error) ({code, message} = body.error);
  } catch { /* not JSON: keep the status line */ }
  if (resp.status === 401 && stored) window.dispatchEvent(new CustomEvent('ay:unauthorized'));
  return new ApiError(resp.status, code, message);
}

/** Sends a request (a JSON body when `body` is given); rejects with an ApiError when the API
 * does not answer or refuses it. */
async function send(method, path, body, {accept, tok, signal, extra} = {}) {
  const init = {method, headers: headers({Accept: accept, ...extra}, tok), signal};
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `The API did not answer: ${e.message}`);
  }
  if (!resp.ok) throw await fail(resp, tok === undefined);
  return resp;
}

/** `GET`/`POST` a JSON route; resolves to the parsed body, rejects with an ApiError. */
export async function request(method, path, body, opts = {}) {
  const resp = await send(method, path, body, {accept: 'application/json', tok: opts.token});
  return resp.status === 204 ? null : resp.json();
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body) => request('POST', path, body);

/** Splits an SSE byte stream into `{id, event, data}` (data parsed as JSON). */
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return;
    buf += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const ev = {id: null, event: 'message', data: ''};
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'data') data.push(val);
        else if (field === 'event') ev.event = val;
        else if (field === 'id') ev.id = val;
      }
      if (!data.length) continue;
      try { ev.data = JSON.parse(data.join('\n')); } catch { ev.data = data.join('\n'); }
      yield ev;
    }
  }
}

/**
 * Sends a request whose answer is an event stream and calls `onEvent` for each event until the
 * stream ends; `lastEventId` resumes a stream after that event. Rejects with an ApiError when
 * the API refuses the request.
 */
export async function stream(method, path, body, onEvent, signal, {lastEventId} = {}) {
  const extra = lastEventId ? {'Last-Event-ID': lastEventId} : {};
  const resp = await send(method, path, body, {accept: 'text/event-stream', signal, extra});
  for await (const ev of events(resp.body)) onEvent(ev);
}

/** Every message of a thread, oldest first (following the `after` cursor). */
export async function threadMessages(threadId) {
  const items = [];
  let after = 0;
  for (;;) {
    const page = await get(`/v1/threads/${threadId}/messages?limit=100&after=${after}`);
    items.push(...page.data);
    if (page.next_after == null) return items;
    after = page.next_after;
  }
}
