// Alerts: firing and pending alerts, rules and history when the server has
// alerting (--rules); otherwise a page saying it is not set up. The page
// looks again every REFRESH ms.
import { h, api, errorBox, info, fmtTime, fmtTimeZ, ago, stateBadge } from './lib.js';

const REFRESH = 10000;

export default function alerts(main) {
  document.title = 'Alerts · shiplog';
  const ac = new AbortController();
  const body = h('div', {}, info('Loading…'));
  const when = h('p', { class: 'muted status' });
  main.append(h('h1', {}, 'Alerts'), when, body);
  let timer = null;
  const load = () => Promise.all([
    api('/v1/alerts', {}, ac.signal),
    api('/v1/alerts/rules', {}, ac.signal).catch(() => null),
    api('/v1/alerts/history', { limit: 100 }, ac.signal).catch(() => null),
  ]).then(([now, rules, hist]) => {
    const list = (now && now.alerts) || [];
    const firing = list.filter((a) => a.state === 'firing');
    const pending = list.filter((a) => a.state !== 'firing');
    body.replaceChildren(
      rules && rules.last_reload_error ? errorBox({ message: `The last reload of ${rules.file || 'the rules file'} failed: ${rules.last_reload_error}` }) : '',
      section(`Firing (${firing.length})`, firing, alertRow, ['state', 'alert', 'labels', 'value', 'since', 'lines'], 'Nothing is firing.'),
      section(`Pending (${pending.length})`, pending, alertRow, ['state', 'alert', 'labels', 'value', 'since', 'lines'], 'Nothing is pending.'),
      section(`Rules${rules && rules.file ? ` from ${rules.file}` : ''}`, (rules && rules.rules) || [], ruleRow, ['state', 'rule', 'query', 'condition', 'for', 'last evaluation'], 'No rules are loaded.'),
      section('History', (hist && hist.transitions) || [], transitionRow, ['time', 'alert', 'change', 'labels', 'value', 'lines'], 'No transitions yet.'));
    when.textContent = `Updated ${fmtTimeZ(Date.now())}; refreshes every ${REFRESH / 1000} s.`;
    timer = setTimeout(load, REFRESH);
  }, (e) => {
    if (e.name === 'AbortError') return;
    if (e.status === 404 || e.status === 501) {
      body.replaceChildren(info(h('strong', {}, 'Alerting is not configured on this server. '), 'Start ', h('code', {}, 'shiplog server'), ' with ', h('code', {}, '--rules FILE'), ' to alert on log queries and metrics.'));
      return;
    }
    body.replaceChildren(errorBox(e));
    timer = setTimeout(load, REFRESH);
  });
  load();
  return () => { ac.abort(); clearTimeout(timer); };
}

function section(title, rows, row, cols, empty) {
  return h('section', { class: 'panel' }, h('h2', {}, title), rows.length
    ? h('div', { class: 'tablewrap' }, h('table', { class: 'grid' }, h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))), h('tbody', {}, rows.map(row))))
    : info(empty));
}

const labels = (m) => h('span', { class: 'labels' }, Object.entries(m || {}).sort().map(([k, v]) => h('code', { class: 'label' }, `${k}=${v}`)));
const value = (v) => (v == null ? '' : typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : String(v));
const links = (l) => h('span', { class: 'links' }, l && l.logs && h('a', { href: l.logs }, 'lines'), l && l.build && h('a', { href: l.build }, 'build'), l && l.deploy && h('a', { href: l.deploy }, 'deploy'));
const name = (x) => h('span', {}, h('strong', {}, x.rule || x.name), x.group ? h('span', { class: 'muted' }, ` (${x.group})`) : '');

function alertRow(a) {
  const since = a.state === 'firing' && a.fired_at ? a.fired_at : a.active_at;
  return h('tr', {}, h('td', {}, stateBadge(a.state)), h('td', { title: Object.values(a.annotations || {}).join('\n') }, name(a)),
    h('td', {}, labels(a.labels)), h('td', {}, value(a.value)), h('td', { title: fmtTime(since) }, since ? ago(since) : ''), h('td', {}, links(a.links)));
}

function ruleRow(r) {
  return h('tr', {}, h('td', {}, stateBadge(r.state || 'inactive'), r.health === 'err' ? h('span', { class: 'bad', title: r.last_error || '' }, ' error') : ''),
    h('td', {}, name(r)), h('td', {}, h('code', {}, r.query)),
    h('td', {}, [r.threshold, r.window && `over ${r.window}`].filter(Boolean).join(' ')), h('td', {}, r.for || ''),
    h('td', { title: r.last_error || fmtTime(r.last_evaluation) }, r.last_evaluation ? ago(r.last_evaluation) : 'not yet'));
}

function transitionRow(t) {
  return h('tr', {}, h('td', { title: fmtTimeZ(t.time) }, fmtTime(t.time)), h('td', {}, name(t)), h('td', {}, `${t.from || '—'} → `, stateBadge(t.to)),
    h('td', {}, labels(t.labels)), h('td', {}, value(t.value)), h('td', {}, links(t.links)));
}
