// Hosts: every host ever seen, live or gone, each one click from its lines.
// State: /hosts?filter=&state=
// /v1/hosts answers a page at a time (by service, then host): the view loads
// up to MAX_HOSTS of them, and more on demand.
import { h, api, errorBox, info, num, fmtTime, fmtTimeZ, fmtDuration, ago, ms, hostTag, stateBadge, quote, href, debounce, groupPath, badParams } from './lib.js';
import { iso } from './search.js';

const PAGE = 1000;
const MAX_HOSTS = 10000;

export default function hosts(main, ctx) {
  document.title = 'Hosts · shiplog';
  const ac = new AbortController();
  let filter = ctx.params.get('filter') || '';
  let st = ctx.params.get('state') || '';
  if (!['', 'live', 'silent', 'closed'].includes(st)) {
    main.append(h('h1', {}, 'Hosts'));
    badParams(main, `state=${st}: want live, silent or closed.`, h('a', { href: href('/hosts', { filter }) }, 'Every host'));
    return null;
  }
  const box = h('input', { type: 'search', class: 'q', value: filter, placeholder: 'filter hosts by name, service, build or deploy', 'aria-label': 'filter hosts', data: { query: '' } });
  const sel = h('select', { 'aria-label': 'state' }, [['', 'any state'], ['live', 'live'], ['silent', 'silent (vanished)'], ['closed', 'closed']]
    .map(([v, l]) => h('option', { value: v, selected: v === st }, l)));
  const count = h('span', { class: 'count' });
  const body = h('div', {}, info('Loading…'));
  const more = h('div', {});
  main.append(h('h1', {}, 'Hosts'), h('form', { class: 'bar', onsubmit: (e) => e.preventDefault() }, box, sel, count), body, more);
  let all = [];
  let total = 0, states = {}, next = '';

  const draw = () => {
    ctx.replace(href('/hosts', { filter, state: st }));
    const words = filter.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = all.filter((x) => (!st || x.state === st) &&
      words.every((w) => [x.host, x.service, x.build_id, x.deploy_id, ...(x.build_ids || []), ...(x.deploy_ids || [])].some((v) => (v || '').toLowerCase().includes(w))));
    const counts = { live: 0, silent: 0, closed: 0, ...states };
    count.replaceChildren(`${num(shown.length)} of ${num(total)} · ${num(counts.live)} live, ${num(counts.silent)} silent, ${num(counts.closed)} closed`);
    more.replaceChildren(...(next ? [info(`Showing the first ${num(all.length)} hosts by service and host name. `),
      h('button', { type: 'button', onclick: () => load(MAX_HOSTS) }, 'Load more')] : []));
    if (!all.length) { body.replaceChildren(info('No hosts yet: every host that sends a line shows up here.')); return; }
    if (!shown.length) { body.replaceChildren(info('No host matches the filter.')); return; }
    body.replaceChildren(h('div', { class: 'tablewrap' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['host', 'service', 'state', 'first line', 'last line', 'lifetime', 'lines', 'errors', 'build', 'deploy'].map((c) => h('th', { class: /lines|errors/.test(c) ? 'r' : '' }, c)))),
      h('tbody', {}, shown.map((x) => {
        const lv = x.levels || {};
        const errs = (lv.error || 0) + (lv.fatal || 0);
        // Its lines over its whole life, whatever the age: as easy for a
        // vanished host as for a live one.
        const lines = href('/search', { q: `host:${quote(x.host)}`, start: iso(ms(x.first_seen) - 1000), end: iso(ms(x.last_seen) + 1000) });
        return h('tr', { data: { state: x.state } },
          h('td', {}, hostTag(x.host, lines)),
          h('td', {}, x.service),
          h('td', {}, stateBadge(x.state)),
          h('td', { title: fmtTimeZ(x.first_seen) }, fmtTime(x.first_seen)),
          h('td', { title: fmtTimeZ(x.last_seen) }, ago(x.last_seen)),
          h('td', {}, fmtDuration((ms(x.last_seen) - ms(x.first_seen)) / 1000)),
          h('td', { class: 'r' }, num(x.lines)),
          h('td', { class: 'r' + (errs ? ' bad' : '') }, errs ? h('a', { href: href('/search', { q: `host:${quote(x.host)} (level:error OR level:fatal)` }) }, num(errs)) : '0'),
          h('td', {}, x.build_id && h('a', { href: groupPath('build', x.build_id) }, x.build_id)),
          h('td', {}, x.deploy_id && h('a', { href: groupPath('deploy', x.deploy_id) }, x.deploy_id)));
      })))));
  };
  box.addEventListener('input', debounce(() => { filter = box.value.trim(); draw(); }, 120));
  sel.addEventListener('change', () => { st = sel.value; draw(); });

  // load reads up to n more hosts, a page at a time (one load at a time).
  let busy = false;
  const load = async (n) => {
    if (busy) return;
    busy = true;
    try {
      for (let got = 0; got < n; ) {
        const r = await api('/v1/hosts', { limit: PAGE, cursor: next }, ac.signal);
        const page = r.hosts || [];
        all = all.concat(page);
        got += page.length;
        total = r.total != null ? r.total : all.length;
        states = r.state_counts || {};
        next = r.next_cursor || '';
        if (!next || !page.length) break;
      }
      all.sort((a, b) => ms(b.last_seen) - ms(a.last_seen));
      draw();
    } catch (e) {
      if (e.name !== 'AbortError') body.replaceChildren(errorBox(e));
    } finally {
      busy = false;
    }
  };
  load(MAX_HOSTS);
  return () => ac.abort();
}
