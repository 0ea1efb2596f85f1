// The app shell: routes a URL to its view, keeps links inside the page, and
// binds the keyboard. Each view is a module loaded when first needed; it
// renders into <main> and returns a function that stops it (aborts requests,
// closes streams).
import { h, prefs, zoneName } from './lib.js';

const views = [
  [/^\/$/, 'home', () => import('./home.js')],
  [/^\/search$/, 'search', () => import('./search.js')],
  [/^\/builds\/(.*)$/, 'builds', () => import('./build.js')],
  [/^\/deploys\/(.*)$/, 'deploys', () => import('./build.js')],
  [/^\/context\/(.+)$/, 'context', () => import('./context.js')],
  [/^\/hosts$/, 'hosts', () => import('./hosts.js')],
  [/^\/tail$/, 'tail', () => import('./tail.js')],
  [/^\/alerts$/, 'alerts', () => import('./alerts.js')],
];

const main = document.getElementById('main');
let stop = null;
let seq = 0;

async function route() {
  const my = ++seq;
  if (stop) { try { stop(); } catch { /* ignore */ } stop = null; }
  const path = location.pathname;
  let found = null;
  for (const [re, name, load] of views) {
    const m = path.match(re);
    if (m) {
      let arg;
      try { arg = m[1] ? decodeURIComponent(m[1]) : new URLSearchParams(location.search).get('id'); } catch { arg = null; }
      found = { name, load, arg };
      break;
    }
  }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', !!found && a.dataset.nav === found.name);
  if (found && found.arg == null && /^(builds|deploys)$/.test(found.name)) found = null;
  if (!found) {
    document.title = 'Not found · shiplog';
    main.replaceChildren(h('div', { class: 'msg' }, h('strong', {}, 'No such page: '), path, ' — ', h('a', { href: '/' }, 'start again')));
    return;
  }
  let mod;
  try {
    mod = await found.load();
  } catch (e) {
    main.replaceChildren(h('div', { class: 'msg error' }, `Cannot load the page's code (${e.message}). Is the server reachable?`));
    return;
  }
  if (my !== seq) return;
  main.replaceChildren();
  main.className = `view-${found.name}`;
  const params = new URLSearchParams(location.search);
  stop = mod.default(main, { name: found.name, arg: found.arg, params, go, replace }) || null;
}

// go navigates to url inside the app (a new history entry).
export function go(url) {
  history.pushState(null, '', url);
  route();
}

// replace records a view's new state in the URL without re-rendering.
export function replace(url) {
  history.replaceState(null, '', url);
}

window.addEventListener('popstate', route);

// The header's switches: the time zone of every time shown (UTC or the
// browser's), and wrapping long lines; both remembered in this browser.
const zoneBtn = document.querySelector('button.zone');
const wrapBtn = document.querySelector('button.wrap');
function showPrefs() {
  const wrap = prefs.get('wrap', '') === '1';
  document.documentElement.classList.toggle('wrap', wrap);
  wrapBtn.setAttribute('aria-pressed', String(wrap));
  zoneBtn.textContent = zoneName();
  zoneBtn.title = prefs.get('tz', 'local') === 'utc' ? 'times in UTC: switch to this browser\'s time zone' : 'times in this browser\'s time zone: switch to UTC';
}
zoneBtn.addEventListener('click', () => { prefs.set('tz', prefs.get('tz', 'local') === 'utc' ? 'local' : 'utc'); showPrefs(); route(); });
wrapBtn.addEventListener('click', () => { prefs.set('wrap', prefs.get('wrap', '') === '1' ? '0' : '1'); showPrefs(); window.dispatchEvent(new Event('shiplog-wrap')); });
showPrefs();

// Links to our own pages stay in the app.
document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = e.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/') || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  if (url.href !== location.href) go(url.pathname + url.search + url.hash);
});

// "/" focuses the query box (or the page's filter box).
let slash = 0;
document.addEventListener('keydown', (e) => {
  if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
  const box = document.querySelector('[data-query]');
  if (box) { e.preventDefault(); box.focus(); box.select(); slash = Date.now(); }
});
// Some input paths still deliver the "/" as text to the box just focused.
document.addEventListener('beforeinput', (e) => {
  if (e.data === '/' && Date.now() - slash < 200) { e.preventDefault(); slash = 0; }
}, true);

route();
