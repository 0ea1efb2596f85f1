// Context: the lines before and after one line on its host, the line itself
// highlighted; with cross=1, other hosts' lines around the same moment too.
// State: /context/{id}?n=&cross=1
import { h, api, errorBox, info, fmtTime, level, hostTag, hostHue, spreadHues, href, quote, ms, nsOf, recordDetails } from './lib.js';
import { iso } from './search.js';

export default function context(main, ctx) {
  const id = ctx.arg;
  const cross = ctx.params.get('cross') === '1';
  const n = Math.min(Math.max(parseInt(ctx.params.get('n'), 10) || 25, 1), 1000);
  document.title = 'Context · shiplog';
  const ac = new AbortController();
  const state = (o) => href(`/context/${encodeURIComponent(id)}`, { n: (o.n ?? n) === 25 ? '' : o.n ?? n, cross: o.cross ?? cross });
  const head = h('section', { class: 'summary' }, h('h1', {}, 'Context'));
  const crossBox = h('input', { type: 'checkbox', checked: cross, onchange: () => ctx.go(state({ cross: crossBox.checked })) });
  const sizeSel = h('select', { 'aria-label': 'lines each side', onchange: () => ctx.go(state({ n: +sizeSel.value })) },
    [10, 25, 100, 500].map((v) => h('option', { value: v, selected: v === n }, `${v} lines each side`)));
  const bar = h('div', { class: 'bar' }, h('label', { class: 'check' }, crossBox, ' other hosts within ±5 s'), sizeSel);
  const body = h('div', { class: 'ctxlines' }, info('Loading…'));
  main.append(head, bar, body);

  api(`/v1/logs/${encodeURIComponent(id)}:context`, { before: n, after: n, cross: cross ? 'true' : '', cross_limit: cross ? 500 : '' }, ac.signal).then((r) => {
    const t = r.record;
    document.title = `Context: ${t.message.slice(0, 60)} · shiplog`;
    head.replaceChildren(h('h1', {}, 'Context of a line from ', hostTag(t.host), ` (${t.service})`),
      h('div', { class: 'links' },
        t.build_id && h('a', { href: href(`/builds/${encodeURIComponent(t.build_id)}`, { line: t.id }) }, `Build ${t.build_id} at this line`),
        t.deploy_id && h('a', { href: href(`/deploys/${encodeURIComponent(t.deploy_id)}`, { line: t.id }) }, `Deploy ${t.deploy_id} at this line`),
        h('a', { href: href('/search', { q: `host:${quote(t.host)}`, start: iso(ms(t.time) - 3e5), end: iso(ms(t.time) + 3e5) }) }, 'Search this host ±5 min'),
        h('a', { href: href('/search', { start: iso(ms(t.time) - 6e4), end: iso(ms(t.time) + 6e4) }) }, 'Everything ±1 min')));
    const all = [...(r.before || []), t, ...(r.after || []), ...(r.cross || []).map((x) => ({ ...x, cross: true }))];
    for (const x of all) x.ns = nsOf(x.time);
    all.sort((a, b) => (a.ns < b.ns ? -1 : a.ns > b.ns ? 1 : 0));
    if (cross) spreadHues(all.map((x) => x.host));
    const rows = all.map((x) => {
      const el = h('div', { class: 'crow' + (x.id === t.id ? ' target' : '') + (x.cross ? ' cross' : ''), data: { id: x.id } },
        h('a', { class: 'time', href: `/context/${encodeURIComponent(x.id)}${cross ? '?cross=1' : ''}`, title: `${x.time}: the context of this line`, data: { t: x.time } }, fmtTime(x.time)),
        hostTag(x.host), level(x.level), h('span', { class: 'msgtext' }, x.message));
      el.style.setProperty('--hue', hostHue(x.host));
      return el;
    });
    body.replaceChildren(...rows);
    if (!r.before || !r.before.length) body.prepend(info('No earlier lines on this host.'));
    if (!r.after || !r.after.length) body.append(info('No later lines on this host.'));
    if (cross && !(r.cross || []).length) body.append(info('No other host logged within 5 seconds.'));
    body.append(recordDetails(t));
    const target = body.querySelector('.target');
    if (target) target.scrollIntoView({ block: 'center' });
  }, (e) => {
    if (e.name === 'AbortError') return;
    body.replaceChildren(e.status === 404 ? info(`No line with id ${id}: it may have aged out of retention.`) : errorBox(e));
  });
  return () => ac.abort();
}
