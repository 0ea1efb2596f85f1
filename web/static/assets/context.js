// Context: the lines before and after one line on its host, the line itself
// highlighted; with cross=1, the lines of the other hosts of its deploy (or
// build, or service: scope=) just before and after it within a window,
// merged in time order, paged both ways, saying what is left out.
// State: /context/{id}?n=&cross=1&scope=&window=
import { h, api, errorBox, info, num, fmtTime, fmtTimeZ, level, hostTag, hostColour, spreadHues, href, quote, ms, nsOf, recordDetails, msgText, groupPath, badParams } from './lib.js';
import { iso } from './search.js';

const SCOPES = ['', 'deploy', 'build', 'service', 'all'];
const WINDOWS = ['5s', '1m', '10m', '1h'];

export default function context(main, ctx) {
  const id = ctx.arg;
  const p = ctx.params;
  const cross = p.get('cross') === '1';
  const n = Math.min(Math.max(parseInt(p.get('n'), 10) || 25, 1), 1000);
  const scope = p.get('scope') || '';
  const win = p.get('window') || '5s';
  document.title = 'Context · shiplog';
  if (!SCOPES.includes(scope) || !WINDOWS.includes(win)) {
    badParams(main, !SCOPES.includes(scope) ? `scope=${scope}: want deploy, build, service or all.` : `window=${win}: want one of ${WINDOWS.join(', ')}.`,
      h('a', { href: `/context/${encodeURIComponent(id)}${cross ? '?cross=1' : ''}` }, 'Open the context without it'));
    return null;
  }
  const ac = new AbortController();
  const state = (o) => href(`/context/${encodeURIComponent(id)}`, { n: (o.n ?? n) === 25 ? '' : o.n ?? n, cross: o.cross ?? cross,
    scope: (o.cross ?? cross) ? o.scope ?? scope : '', window: (o.cross ?? cross) && (o.window ?? win) !== '5s' ? o.window ?? win : '' });
  const head = h('section', { class: 'summary' }, h('h1', {}, 'Context'));
  const crossBox = h('input', { type: 'checkbox', checked: cross, onchange: () => ctx.go(state({ cross: crossBox.checked })) });
  const sizeSel = h('select', { 'aria-label': 'lines each side', onchange: () => ctx.go(state({ n: +sizeSel.value })) },
    [10, 25, 100, 500].map((v) => h('option', { value: v, selected: v === n }, `${v} lines each side`)));
  const scopeSel = h('select', { 'aria-label': 'other hosts of', hidden: !cross, onchange: () => ctx.go(state({ scope: scopeSel.value })) },
    SCOPES.map((v) => h('option', { value: v, selected: v === scope }, v ? (v === 'all' ? 'of every service' : `of the same ${v}`) : 'of the same deploy/build')));
  const winSel = h('select', { 'aria-label': 'window', hidden: !cross, onchange: () => ctx.go(state({ window: winSel.value })) },
    WINDOWS.map((v) => h('option', { value: v, selected: v === win }, `within ±${v}`)));
  const bar = h('div', { class: 'bar' }, h('label', { class: 'check' }, crossBox, ' other hosts'), scopeSel, winSel, sizeSel);
  const body = h('div', { class: 'ctxlines' }, info('Loading…'));
  main.append(head, bar, body);

  api(`/v1/logs/${encodeURIComponent(id)}:context`, { before: n, after: n, cross: cross ? 'true' : '', cross_limit: cross ? 2 * n : '',
    cross_before: cross ? n : '', cross_after: cross ? n : '', scope, window: cross ? win : '' }, ac.signal).then((r) => {
    const t = r.record;
    document.title = `Context: ${t.message.slice(0, 60)} · shiplog`;
    head.replaceChildren(h('h1', {}, 'Context of a line from ', hostTag(t.host), ` (${t.service})`),
      h('div', { class: 'links' },
        t.build_id && h('a', { href: href(groupPath('build', t.build_id), { line: t.id }) }, `Build ${t.build_id} at this line`),
        t.deploy_id && h('a', { href: href(groupPath('deploy', t.deploy_id), { line: t.id }) }, `Deploy ${t.deploy_id} at this line`),
        h('a', { href: href('/search', { q: `host:${quote(t.host)}`, start: iso(ms(t.time) - 3e5), end: iso(ms(t.time) + 3e5) }) }, 'Search this host ±5 min'),
        h('a', { href: href('/search', { start: iso(ms(t.time) - 6e4), end: iso(ms(t.time) + 6e4) }) }, 'Everything ±1 min')));
    const shown = new Map();
    const add = (recs, isCross) => { for (const x of recs || []) if (!shown.has(x.id)) shown.set(x.id, { ...x, cross: isCross && x.host !== t.host, ns: nsOf(x.time) }); };
    add([t, ...(r.before || []), ...(r.after || [])], false);
    add(r.cross, true);
    const omitted = { before: r.cross_omitted_before || 0, after: r.cross_omitted_after || 0 };
    const cursors = { before: r.cross_before_cursor, after: r.cross_after_cursor };
    const draw = () => {
      const all = [...shown.values()].sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
      if (cross) spreadHues(all.map((x) => x.host));
      const rows = all.map((x) => hostColour(h('div', { class: 'crow' + (x.id === t.id ? ' target' : '') + (x.cross ? ' cross' : ''), data: { id: x.id } },
        h('a', { class: 'time', href: `/context/${encodeURIComponent(x.id)}${cross ? '?cross=1' : ''}`, title: `${fmtTimeZ(x.time)}: the context of this line`, data: { t: x.time } }, fmtTime(x.time)),
        hostTag(x.host), h('span', { class: 'svc', title: x.service }, x.service),
        h('span', { class: 'bld', title: x.build_id || x.deploy_id || '' }, x.build_id || x.deploy_id || ''),
        level(x.level), msgText(x.message)), x.host));
      body.replaceChildren(...rows);
      if (!r.before || !r.before.length) body.prepend(info('No earlier lines on this host.'));
      if (!r.after || !r.after.length) body.append(info('No later lines on this host.'));
      if (cross) {
        const others = all.filter((x) => x.cross).length;
        const what = `${r.scope === 'all' ? 'any service' : `this ${r.scope}`} within ±${win}`;
        if (!others && !omitted.before && !omitted.after) body.append(info(`No other host of ${what} logged around this line.`));
        body.prepend(more('before', what));
        body.append(more('after', what));
      }
      body.append(recordDetails(t));
    };
    // more: how many lines of other hosts are left out on one side, and a
    // button to read the next page of them.
    const more = (side, what) => {
      if (!omitted[side]) return h('div', { class: 'msg omitted', data: { side } }, `Every line of other hosts of ${what} ${side} this one is shown.`);
      const btn = h('button', { type: 'button' }, `Load ${Math.min(n, omitted[side])} ${side === 'before' ? 'earlier' : 'later'}`);
      btn.addEventListener('click', async () => {
        btn.disabled = true;
        try {
          const res = await api('/v1/logs:search', { q: r.cross_query, start: r.window_start, end: r.window_end, order: side === 'before' ? 'desc' : 'asc', limit: n, cursor: cursors[side] }, ac.signal);
          const recs = res.records || [];
          const fresh = recs.filter((x) => !shown.has(x.id) && x.host !== t.host).length;
          add(recs, true);
          omitted[side] = res.next_cursor ? Math.max(0, omitted[side] - fresh) : 0;
          if (recs.length) cursors[side] = res.next_cursor || cursors[side];
          draw();
        } catch (e) { if (e.name !== 'AbortError') btn.after(errorBox(e)); }
      });
      return h('div', { class: 'msg omitted', data: { side } }, h('strong', {}, `${num(omitted[side])} ${side === 'before' ? 'earlier' : 'later'} line${omitted[side] === 1 ? '' : 's'} of other hosts`), ` of ${what} not shown. `, btn);
    };
    draw();
    const target = body.querySelector('.target');
    if (target) target.scrollIntoView({ block: 'center' });
  }, (e) => {
    if (e.name === 'AbortError') return;
    body.replaceChildren(e.status === 404 ? info(`No line with id ${id}: it may have aged out of retention.`) : errorBox(e));
  });
  return () => ac.abort();
}
