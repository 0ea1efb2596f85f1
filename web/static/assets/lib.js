// Shared helpers: DOM building, the API client, formatting, query editing.

// h builds an element: h('a', {href, class, onclick, title}, kids...).
// Strings become text nodes; null/false kids are skipped; arrays are flattened.
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'data') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of kids) {
    if (k == null || k === false) continue;
    if (Array.isArray(k)) add(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
// s builds an SVG element.
export function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k === 'class' ? 'class' : k, v);
  }
  add(el, kids);
  return el;
}

// ApiError carries the server's message (its JSON error body) or says that the
// server could not be reached.
export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function unreachable(err) {
  return new ApiError(`Cannot reach the shiplog server at ${location.host} (${err.message || err}). Is it running?`, 0, 'UNREACHABLE');
}

// The bearer token of a server with --auth-file: asked for once, kept for the
// browser session (sessionStorage), sent with every API call.
const TOKEN_KEY = 'shiplog-token';
let asking = null;

function askToken(again) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', placeholder: 'shp_...', required: true });
    const dlg = h('dialog', { class: 'token-dialog' },
      h('form', { method: 'dialog' },
        h('p', {}, again ? 'That token was refused. Enter a token with the query scope:' : 'This shiplog server needs a token. Enter one with the query scope:'),
        input,
        h('menu', {}, h('button', { value: 'cancel', type: 'button', onclick: () => dlg.close('') }, 'Cancel'),
          h('button', { value: 'ok', type: 'submit' }, 'Use token'))));
    dlg.addEventListener('close', () => {
      const tok = dlg.returnValue === 'ok' ? input.value.trim() : '';
      dlg.remove();
      asking = null;
      resolve(tok);
    });
    document.body.append(dlg);
    dlg.showModal();
    input.focus();
  });
  return asking;
}

// authFetch is fetch with the session's token; on 401 it asks for a token and
// tries again.
export async function authFetch(url, opts = {}) {
  for (let tries = 0; ; tries++) {
    const headers = { ...(opts.headers || {}) };
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) headers.Authorization = 'Bearer ' + tok;
    const resp = await fetch(url, { ...opts, headers });
    if (resp.status !== 401 || tries >= 3) return resp;
    const next = await askToken(tries > 0 || !!tok);
    if (!next) return resp;
    sessionStorage.setItem(TOKEN_KEY, next);
  }
}

// api GETs a JSON API path with query parameters (empty ones left out).
export async function api(path, params, signal) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '') qs.set(k, v);
  const url = path + (qs.toString() ? '?' + qs : '');
  let resp;
  try {
    resp = await authFetch(url, { signal, headers: { Accept: 'application/json' } });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw unreachable(e);
  }
  return readJSON(resp);
}

// readJSON turns a response into its JSON, or throws an ApiError with the
// server's own words.
export async function readJSON(resp) {
  let text = '';
  try {
    text = await resp.text();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw unreachable(e);
  }
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    if (body && body.message) throw new ApiError(body.message, resp.status, body.status || body.code);
    if (resp.status >= 502 && resp.status <= 504) throw unreachable(new Error(`${resp.status} ${resp.statusText}`));
    throw new ApiError(`${resp.status} ${resp.statusText}: ${text.slice(0, 200)}`, resp.status);
  }
  return body;
}

// Formatting.
const pad = (n, w = 2) => String(n).padStart(w, '0');

export function fmtDate(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function fmtClock(ms, withMs = true) {
  const d = new Date(ms);
  const c = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withMs ? `${c}.${pad(d.getMilliseconds(), 3)}` : c;
}

// fmtTime: local date and time with milliseconds.
export const fmtTime = (t) => (t ? `${fmtDate(ms(t))} ${fmtClock(ms(t))}` : '');

// ms parses an RFC 3339 time (nanoseconds are cut to milliseconds).
export const ms = (t) => (typeof t === 'number' ? t : Date.parse(t));

// nsOf turns an RFC 3339 time into nanoseconds (BigInt) for exact comparison
// (protojson writes 0, 3, 6 or 9 fraction digits, so strings do not sort).
export function nsOf(t) {
  const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t || '');
  if (!m) return 0n;
  return BigInt(Date.parse(m[1] + m[3])) * 1000000n + (m[2] ? BigInt((m[2] + '000000000').slice(0, 9)) : 0n);
}

export function fmtDuration(sec) {
  if (sec == null || isNaN(sec)) return '';
  if (sec < 1) return `${Math.round(sec * 1000)} ms`;
  if (sec < 60) return `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
  const m = Math.floor(sec / 60);
  if (m < 60) return `${m} min ${Math.round(sec % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

export function ago(t) {
  const sec = (Date.now() - ms(t)) / 1000;
  if (sec < 0) return 'just now';
  return fmtDuration(sec).replace(/ \d+ (s|min|h)$/, '') + ' ago';
}

export const num = (n) => Number(n || 0).toLocaleString('en-US');
export const pct = (x) => `${(100 * (x || 0)).toFixed(x && x < 0.001 ? 3 : 1)}%`;

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

export function level(lv) {
  lv = lv || 'info';
  return h('span', { class: `lv lv-${lv}` }, lv);
}

// Host colours: a hue from a hash of the name, the same on every page.
const hues = new Map();
export function hostHue(host) {
  if (!hues.has(host)) {
    let x = 2166136261;
    for (const c of host || '') x = Math.imul(x ^ c.charCodeAt(0), 16777619);
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
    hues.set(host, ((x ^ (x >>> 16)) >>> 0) % 360);
  }
  return hues.get(host);
}

// spreadHues gives a page's hosts hues far apart (names alone can collide).
export function spreadHues(hosts) {
  const list = [...new Set(hosts)].sort();
  const n = list.length;
  list.forEach((x, i) => hues.set(x, Math.round(n <= 12 ? (200 + (i * 360) / n) % 360 : (200 + i * 137.508) % 360)));
}

export function hostTag(host, href) {
  const el = h(href ? 'a' : 'span', { class: 'host', href, title: host }, host || '—');
  el.style.setProperty('--hue', hostHue(host));
  return el;
}

export function stateBadge(state) {
  return h('span', { class: `badge st-${state}`, title: stateHelp[state] || '' }, state);
}
const stateHelp = {
  live: 'logged recently',
  silent: 'stopped logging without a goodbye (vanished)',
  closed: 'its agent said goodbye',
  passed: 'shiplog run: exit code 0',
  failed: 'shiplog run: non-zero exit code',
  running: 'shiplog run: not finished',
  unknown: 'not run under shiplog run',
};

// Query editing.

// quote writes a value for field:value, quoting it unless it is a plain word.
export function quote(v) {
  v = String(v);
  return /^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

// narrow adds field:value to a query (ANDed), unless it is there already.
export function narrow(q, field, value) {
  const term = `${field}:${quote(value)}`;
  q = (q || '').trim();
  if (!q) return term;
  if (q.split(/\s+/).includes(term)) return q;
  return /(^|\s)(OR|\|\|)(\s|$)/.test(q) ? `(${q}) ${term}` : `${q} ${term}`;
}

// href builds a URL path with query parameters (empty ones left out).
export function href(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '' && v !== false) qs.set(k, v === true ? '1' : v);
  const s = qs.toString();
  return s ? `${path}?${s}` : path;
}

// Messages.

export function errorBox(err) {
  const box = h('div', { class: 'msg error', role: 'alert' });
  if (err && err.status === 0) box.append(h('strong', {}, 'Server unreachable. '), err.message);
  else if (err && err.status === 400) box.append(h('strong', {}, 'Bad query: '), err.message.replace(/^bad query: /, ''));
  else box.append(h('strong', {}, err && err.status ? `Error ${err.status}: ` : 'Error: '), (err && err.message) || String(err));
  return box;
}

export const info = (...kids) => h('div', { class: 'msg' }, ...kids);

// recordDetails: every field and attribute of a record, with links.
export function recordDetails(r, extra) {
  const attrs = Object.entries(r.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const rows = [
    ['time', r.time],
    ['id', r.id],
    r.trace_id && ['trace_id', r.trace_id],
    r.span_id && ['span_id', r.span_id],
    ...attrs,
  ].filter(Boolean);
  return h('div', { class: 'details' },
    h('pre', { class: 'fullmsg' }, r.message),
    h('table', { class: 'attrs' }, rows.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))),
    h('div', { class: 'links' },
      h('a', { href: `/context/${encodeURIComponent(r.id)}` }, 'Context'),
      h('a', { href: `/context/${encodeURIComponent(r.id)}?cross=1` }, 'Context across hosts'),
      r.build_id && h('a', { href: href(`/builds/${encodeURIComponent(r.build_id)}`, { line: r.id }) }, `Build ${r.build_id}`),
      r.deploy_id && h('a', { href: href(`/deploys/${encodeURIComponent(r.deploy_id)}`, { line: r.id }) }, `Deploy ${r.deploy_id}`),
      extra));
}

// debounce returns fn delayed until calls stop for ms.
export function debounce(fn, wait) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), wait); };
}
