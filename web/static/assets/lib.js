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

// Preferences kept in the browser (localStorage): the time zone of every
// time shown ("utc" or "local") and whether long lines wrap.
export const prefs = {
  get(k, d) { try { return localStorage.getItem('shiplog-' + k) || d; } catch { return d; } },
  set(k, v) { try { localStorage.setItem('shiplog-' + k, v); } catch { /* private mode */ } },
};
export const utc = () => prefs.get('tz', 'local') === 'utc';

// zoneName: "UTC", or the browser's zone as an offset (UTC+01:00).
export function zoneName(msec = Date.now()) {
  if (utc()) return 'UTC';
  const off = -new Date(msec).getTimezoneOffset();
  return `UTC${off < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
}

// Formatting: one 24-hour format everywhere, in the chosen zone.
const pad = (n, w = 2) => String(n).padStart(w, '0');
const parts = (msec) => {
  const d = new Date(msec);
  return utc() ? [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getFullYear(), d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
};

export function fmtDate(msec) {
  const [y, mo, d] = parts(msec);
  return `${y}-${pad(mo + 1)}-${pad(d)}`;
}

export function fmtClock(msec, withMs = true) {
  const [, , , hh, mm, ss, mss] = parts(msec);
  const c = `${pad(hh)}:${pad(mm)}:${pad(ss)}`;
  return withMs ? `${c}.${pad(mss, 3)}` : c;
}

// fmtTime: date and time with milliseconds; fmtTimeZ adds the zone.
export const fmtTime = (t) => (t ? `${fmtDate(ms(t))} ${fmtClock(ms(t))}` : '');
export const fmtTimeZ = (t) => (t ? `${fmtTime(t)} ${zoneName(ms(t))}` : '');

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

// Readable colours: text in a colour keeps a contrast of at least 4.5:1
// (WCAG AA) with every background a line can have (plain, hovered,
// selected, highlighted), light and dark. fit moves an sRGB colour's
// lightness until it does; the answers are kept.
const lin = (c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
const lum = ([r, g, b]) => 0.2126 * lin(r / 255) + 0.7152 * lin(g / 255) + 0.0722 * lin(b / 255);
const LIGHT_BG = 0.793; // #ffe58f, the lightest background of a line (target)
const DARK_BG = 0.0646; // #5a4500, the darkest (target, dark)
function hsl2rgb(hh, ss, ll) {
  const k = (n) => (n + hh / 30) % 12, a = ss * Math.min(ll, 1 - ll);
  return [0, 8, 4].map((n) => Math.round(255 * (ll - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1)))));
}
function rgb2hsl([r, g, b]) {
  r /= 255; g /= 255; b /= 255;
  const mx = Math.max(r, g, b), mn = Math.min(r, g, b), l = (mx + mn) / 2, d = mx - mn;
  if (!d) return [0, 0, l];
  const sat = d / (1 - Math.abs(2 * l - 1));
  const hue = mx === r ? ((g - b) / d + 6) % 6 : mx === g ? (b - r) / d + 2 : (r - g) / d + 4;
  return [hue * 60, sat, l];
}
const fitted = new Map();
export function fit(rgb) {
  const key = rgb.join(',');
  if (fitted.has(key)) return fitted.get(key);
  const [hh, ss, l0] = rgb2hsl(rgb);
  const find = (ok, dir) => { let l = l0; for (let i = 0; i < 100 && !ok(lum(hsl2rgb(hh, ss, l))); i++) l += dir * 0.01; return hsl2rgb(hh, ss, Math.max(0, Math.min(1, l))); };
  const css = (c) => `rgb(${c.join(' ')})`;
  const out = [css(find((y) => (LIGHT_BG + 0.05) / (y + 0.05) >= 4.6, -1)), css(find((y) => (y + 0.05) / (DARK_BG + 0.05) >= 4.6, 1))];
  fitted.set(key, out);
  return out;
}

// hostColour sets el's host colour (--hc light, --hcd dark, --hue for borders).
export function hostColour(el, host) {
  const hue = hostHue(host);
  const [l, d] = fit(hsl2rgb(hue, 0.7, 0.45));
  el.style.setProperty('--hue', hue);
  el.style.setProperty('--hc', l);
  el.style.setProperty('--hcd', d);
  return el;
}

export function hostTag(host, href) {
  return hostColour(h(href ? 'a' : 'span', { class: 'host', href, title: host }, host || '—'), host);
}

// ANSI colours: messages keep their escape sequences as sent; rendering
// turns SGR codes (16, 256 and 24-bit colours, bold, dim, italic,
// underline, inverse) into styled spans and drops every other sequence.
const BASE16 = [[0, 0, 0], [205, 49, 49], [13, 188, 121], [229, 229, 16], [36, 114, 200], [188, 63, 188], [17, 168, 205], [229, 229, 229],
  [102, 102, 102], [241, 76, 76], [35, 209, 139], [245, 245, 67], [59, 142, 234], [214, 112, 214], [41, 184, 219], [255, 255, 255]];
function c256(n) {
  if (n < 16) return BASE16[n];
  if (n < 232) { const v = [0, 95, 135, 175, 215, 255]; n -= 16; return [v[Math.floor(n / 36)], v[Math.floor(n / 6) % 6], v[n % 6]]; }
  const g = 8 + (n - 232) * 10;
  return [g, g, g];
}
const ESC = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])/g;

// sgr applies one SGR sequence's parameters to state st.
function sgr(st, params) {
  const p = params === '' ? [0] : params.split(/[;:]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === 0) Object.assign(st, { fg: null, bg: null, b: false, d: false, i: false, u: false, inv: false });
    else if (c === 1) st.b = true;
    else if (c === 2) st.d = true;
    else if (c === 3) st.i = true;
    else if (c === 4) st.u = true;
    else if (c === 7) st.inv = true;
    else if (c === 22) st.b = st.d = false;
    else if (c === 23) st.i = false;
    else if (c === 24) st.u = false;
    else if (c === 27) st.inv = false;
    else if (c >= 30 && c <= 37) st.fg = BASE16[c - 30];
    else if (c >= 90 && c <= 97) st.fg = BASE16[c - 82];
    else if (c >= 40 && c <= 47) st.bg = BASE16[c - 40];
    else if (c >= 100 && c <= 107) st.bg = BASE16[c - 92];
    else if (c === 39) st.fg = null;
    else if (c === 49) st.bg = null;
    else if ((c === 38 || c === 48) && p[i + 1] === 5) { st[c === 38 ? 'fg' : 'bg'] = c256(p[i + 2] & 255); i += 2; }
    else if ((c === 38 || c === 48) && p[i + 1] === 2) { st[c === 38 ? 'fg' : 'bg'] = [p[i + 2] & 255, p[i + 3] & 255, p[i + 4] & 255]; i += 4; }
  }
}

function styled(st, text) {
  if (!st.fg && !st.bg && !st.b && !st.d && !st.i && !st.u && !st.inv) return text;
  const el = h('span', { class: ['ansi', st.b && 'ab', st.d && 'ad', st.i && 'ai', st.u && 'au'].filter(Boolean).join(' ') }, text);
  let fg = st.fg, bg = st.bg;
  if (st.inv) [fg, bg] = [bg || [128, 128, 128], fg || [128, 128, 128]];
  if (fg) { const [l, d] = fit(fg); el.classList.add('afg'); el.style.setProperty('--ac', l); el.style.setProperty('--acd', d); }
  if (bg) { el.classList.add('abg'); el.style.setProperty('--abg', `rgb(${bg.join(' ')})`); }
  return el;
}

// ansi returns text's nodes: plain text, or spans where SGR codes style it.
export function ansi(text) {
  text = text == null ? '' : String(text);
  if (!text.includes('\x1b')) return [text];
  const out = [], st = {};
  let last = 0;
  for (const m of text.matchAll(ESC)) {
    if (m.index > last) out.push(styled(st, text.slice(last, m.index)));
    if (m[2] === 'm') sgr(st, m[1]);
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(styled(st, text.slice(last)));
  return out;
}

// stripAnsi: the text without escape sequences (for copying).
export const stripAnsi = (text) => String(text || '').replace(ESC, '');

// msgText: a line's message as shown in lists (colours rendered,
// whitespace kept; cut or wrapped as the wrap preference says).
export const msgText = (text) => h('span', { class: 'msgtext' }, ansi(text));

// selecting reports whether the user is selecting text (a click that ends
// a selection must not open or close a line's details).
export function selecting() {
  const sel = window.getSelection();
  return !!sel && !sel.isCollapsed && sel.toString().trim() !== '';
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
  lost: 'shiplog run: no end reported and no line for --silent-after (killed?)',
  unknown: 'not run under shiplog run',
};

// Query editing.

// quote writes a value for field:value, quoting it unless it is a plain word.
export function quote(v) {
  v = String(v);
  return /^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

// narrow adds field:value (or -field:value with neg) to a query (ANDed),
// unless it is there already; the opposite term goes.
export function narrow(q, field, value, neg) {
  const term = `${field}:${quote(value)}`, want = neg ? '-' + term : term, other = neg ? term : '-' + term;
  q = (q || '').trim().split(/\s+/).filter((x) => x !== other).join(' ');
  if (!q) return want;
  if (q.split(/\s+/).includes(want)) return q;
  return /(^|\s)(OR|\|\|)(\s|$)/.test(q) ? `(${q}) ${want}` : `${q} ${want}`;
}

// groupPath is the page of a build or deploy (kind "build" or "deploy");
// groupAPI its API path. Ids "." and ".." cannot be path segments (browsers
// and servers resolve them), so those travel as ?id= (page) and
// ?build_id= / ?deploy_id= (API).
const dots = (id) => id === '.' || id === '..';
export const groupPath = (kind, id) => (dots(id) ? `/${kind}s/?id=${encodeURIComponent(id)}` : `/${kind}s/${encodeURIComponent(id)}`);
export const groupAPI = (kind, id) => (dots(id) ? `/v1/${kind}?${kind}_id=${encodeURIComponent(id)}` : `/v1/${kind}s/${encodeURIComponent(id)}`);

// checkRange reads a URL's start and end: an error in words, or ''.
export function checkRange(start, end, resolve) {
  const r = resolve(start, end);
  if (start && isNaN(r.start)) return `start=${start} is not a time: use RFC 3339 (2026-01-02T15:04:05Z), seconds since 1970, or a duration back from now such as 15m or 24h.`;
  if (end && isNaN(r.end)) return `end=${end} is not a time: use RFC 3339 (2026-01-02T15:04:05Z), seconds since 1970, a duration back from now such as 15m, or now.`;
  if (start && r.start >= r.end) return `start=${start} is not before end=${end || 'now'}.`;
  return '';
}

// badParams shows what is wrong with a page's URL, with a way out.
export function badParams(main, what, way) {
  main.append(h('div', { class: 'msg error', role: 'alert' }, h('strong', {}, 'Bad URL parameter: '), what, ' ', way || h('a', { href: location.pathname }, 'Start without them')));
}

// href builds a URL path with query parameters (empty ones left out).
export function href(path, params) {
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== '' && v !== false) qs.set(k, v === true ? '1' : v);
  const s = qs.toString();
  return s ? `${path}${path.includes('?') ? '&' : '?'}${s}` : path;
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

// copy puts text on the clipboard and says so on the button.
export async function copy(btn, text) {
  let ok = false;
  try { await navigator.clipboard.writeText(text); ok = true; } catch {
    const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
  }
  const was = btn.dataset.label || btn.textContent;
  btn.dataset.label = was;
  btn.textContent = ok ? 'Copied' : 'Copy failed';
  setTimeout(() => { btn.textContent = was; }, 1500);
}

export const permalink = (r) => `${location.origin}/context/${encodeURIComponent(r.id)}`;

// recordDetails: every field and attribute of a record, each value with
// include and exclude actions (refine(field, value, neg) gives their
// links; default: a search with the term), and links and copy buttons.
export function recordDetails(r, extra, refine) {
  refine = refine || ((f, v, neg) => href('/search', { q: narrow('', f, v, neg) }));
  const attrs = Object.entries(r.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const labels = [['service', r.service], ['host', r.host], ['level', r.level || 'info'], ['build_id', r.build_id], ['deploy_id', r.deploy_id],
    ['trace_id', r.trace_id], ['span_id', r.span_id]].filter(([, v]) => v);
  const acts = (k, v) => h('span', { class: 'acts' },
    h('a', { href: refine(k, v, false), title: `include ${k}:${v}`, 'aria-label': `include ${k}=${v}` }, '+'),
    h('a', { href: refine(k, v, true), title: `exclude ${k}:${v}`, 'aria-label': `exclude ${k}=${v}` }, '−'));
  const row = (k, v, act) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v, act ? acts(k, v) : ''));
  const cp = (label, text) => { const b = h('button', { type: 'button', class: 'linkish' }, label); b.addEventListener('click', () => copy(b, text())); return b; };
  return h('div', { class: 'details' },
    h('pre', { class: 'fullmsg' }, ansi(r.message)),
    h('table', { class: 'attrs' }, h('tbody', {},
      row('time', h('time', { datetime: r.time, title: r.time }, fmtTimeZ(r.time))),
      row('id', r.id),
      labels.map(([k, v]) => row(k, v, true)),
      attrs.map(([k, v]) => row(k, v, true)))),
    h('div', { class: 'links' },
      h('a', { href: `/context/${encodeURIComponent(r.id)}` }, 'Context'),
      h('a', { href: `/context/${encodeURIComponent(r.id)}?cross=1` }, 'Context across hosts'),
      r.build_id && h('a', { href: href(groupPath('build', r.build_id), { line: r.id }) }, `Build ${r.build_id}`),
      r.deploy_id && h('a', { href: href(groupPath('deploy', r.deploy_id), { line: r.id }) }, `Deploy ${r.deploy_id}`),
      cp('Copy link', () => permalink(r)),
      cp('Copy text', () => stripAnsi(r.message)),
      extra));
}

// debounce returns fn delayed until calls stop for ms.
export function debounce(fn, wait) {
  let t;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), wait); };
}
