// Search: query box, time range, histogram (drag to zoom), results newest
// first with more on scroll. State: /search?q=&start=&end=.
import { h, s, api, authFetch, readJSON, errorBox, info, num, fmtTime, fmtTimeZ, fmtClock, fmtDate, ms, level, hostTag, narrow, href, recordDetails, quote, msgText, selecting, checkRange, badParams, utc, zoneName } from './lib.js';

export const PRESETS = [['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'],
  ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['', 'All time']];
const UNIT = { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 };

// durationMs parses 15m, 24h, 7d ... (else NaN).
export function durationMs(v) {
  const m = /^(\d+(?:\.\d+)?)([smhdw])$/.exec(v || '');
  return m ? parseFloat(m[1]) * UNIT[m[2]] : NaN;
}

// resolve turns the URL's start/end into absolute milliseconds (NaN: open).
export function resolve(start, end, now = Date.now()) {
  const t = (v) => (!v ? NaN : v === 'now' ? now : !isNaN(durationMs(v)) ? now - durationMs(v) : /^\d+(\.\d+)?$/.test(v) ? parseFloat(v) * 1e3 : Date.parse(v));
  return { start: t(start), end: end ? t(end) : now };
}

export const iso = (msec) => new Date(msec).toISOString();

function rangeLabel(start, end) {
  const p = PRESETS.find(([v]) => v === (start || '') && !end);
  if (p) return p[1].toLowerCase();
  const r = resolve(start, end);
  return `${fmtTime(r.start)} to ${end ? fmtTimeZ(r.end) : `now (${zoneName()})`}`;
}

// The custom range's inputs show times in the chosen zone.
const zoneOff = (msec) => (utc() ? 0 : new Date(msec).getTimezoneOffset() * 6e4);
// They are text in the one 24-hour format (a datetime-local input follows
// the browser's locale, 12-hour in some).
const localInput = (msec) => (isNaN(msec) ? '' : new Date(msec - zoneOff(msec)).toISOString().slice(0, 19).replace('T', ' '));
const fromInput = (v) => { const t = Date.parse(v.trim().replace(' ', 'T') + 'Z'); return isNaN(t) ? NaN : t + zoneOff(t); };
const TIME_RE = '\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?';
const timeBox = (name, value) => h('input', { type: 'text', name, value, pattern: TIME_RE, inputmode: 'numeric', size: 19, placeholder: 'YYYY-MM-DD HH:MM:SS',
  title: `YYYY-MM-DD HH:MM:SS, 24-hour, in ${zoneName()}`, 'aria-label': `${name} (${zoneName()})` });

// queryForm: the query box with its time range; submitting opens the search.
export function queryForm(ctx, { q, start, end }, action = '/search') {
  const custom = !!end || (!!start && isNaN(durationMs(start)) && start !== 'now');
  const box = h('input', { type: 'search', name: 'q', class: 'q', value: q || '', placeholder: 'level:error service:api "connection refused" -host:web-1', 'aria-label': 'query', autocomplete: 'off', spellcheck: 'false', data: { query: '' } });
  const sel = h('select', { name: 'range', 'aria-label': 'time range' },
    PRESETS.map(([v, label]) => h('option', { value: v, selected: !custom && (start || '') === v }, label)),
    h('option', { value: 'custom', selected: custom }, 'Custom range…'));
  const r = resolve(start, end);
  const from = timeBox('from', localInput(custom ? r.start : Date.now() - 36e5));
  const to = timeBox('to', localInput(custom && end ? r.end : Date.now()));
  const customBox = h('span', { class: 'custom', hidden: !custom }, from, ' to ', to, h('span', { class: 'muted' }, zoneName()));
  const showCustom = (on) => { customBox.hidden = !on; from.disabled = to.disabled = !on; };
  showCustom(custom);
  sel.addEventListener('change', () => { showCustom(sel.value === 'custom'); if (sel.value !== 'custom') form.requestSubmit(); });
  const form = h('form', { class: 'bar', role: 'search' }, box, sel, customBox, h('button', { type: 'submit' }, 'Search'),
    action === '/search' && h('a', { class: 'btn', href: '#', onclick: (e) => { e.preventDefault(); ctx.go(href('/tail', { q: box.value.trim() })); } }, 'Live tail'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    let st = sel.value, en = '';
    if (st === 'custom') {
      const a = fromInput(from.value), b = fromInput(to.value);
      st = isNaN(a) ? '1h' : iso(a);
      en = isNaN(b) ? '' : iso(b);
    }
    ctx.go(href(action, { q: box.value.trim(), start: st, end: en }));
  });
  return form;
}

export default function search(main, ctx) {
  const p = ctx.params;
  const q = p.get('q') || '';
  const start = p.has('start') ? p.get('start') : '';
  const end = p.get('end') || '';
  document.title = `${q || 'everything'} · shiplog`;
  const bad = checkRange(start, end, resolve);
  if (bad) {
    main.append(queryForm(ctx, { q, start: '1h', end: '' }));
    badParams(main, bad, h('a', { href: href('/search', { q, start: '1h' }) }, 'Search the last hour'));
    return null;
  }
  const ac = new AbortController();
  const hist = h('div', { class: 'hist', hidden: true });
  const status = h('div', { class: 'status' }, 'Searching…');
  const results = h('div', { class: 'results', role: 'list', 'aria-label': 'matching lines' });
  const more = h('div', { class: 'more' });
  const side = h('aside', { class: 'fields', 'aria-label': 'fields of the matching lines' });
  main.append(queryForm(ctx, { q, start, end }), h('div', { class: 'searchgrid' }, side, h('div', { class: 'resultscol' }, hist, status, results, more)));
  const form = main.querySelector('form');
  if (!q && !p.has('start')) form.querySelector('[data-query]').focus();

  const now = Date.now();
  const r = resolve(start, end, now);
  const range = { start: isNaN(r.start) ? '' : iso(r.start), end: end ? iso(r.end) : '' };
  status.after(exports(q, range));
  let cursor = '';
  let shown = 0;
  let loading = false;

  const link = (field, value, neg) => href('/search', { q: narrow(q, field, value, neg), start, end });
  const row = (rec) => {
    const el = h('div', { class: 'rec', role: 'listitem', tabindex: '0', data: { id: rec.id } },
      h('span', { class: 'time', title: fmtTimeZ(rec.time) }, fmtTime(rec.time)),
      level(rec.level),
      h('a', { class: 'facet svc', href: link('service', rec.service), title: `narrow to service:${rec.service}` }, rec.service || '—'),
      hostTag(rec.host, link('host', rec.host)),
      msgText(rec.message),
      h('span', { class: 'tags' },
        rec.build_id && h('a', { class: 'facet', href: link('build_id', rec.build_id), title: 'narrow to this build' }, rec.build_id),
        rec.deploy_id && h('a', { class: 'facet', href: link('deploy_id', rec.deploy_id), title: 'narrow to this deploy' }, rec.deploy_id)));
    const toggle = (e) => {
      if (e.target.closest('a')) return;
      if (e.type === 'keydown' && e.key !== 'Enter') return;
      if (e.type === 'click' && selecting()) return;
      const open = el.nextSibling && el.nextSibling.classList && el.nextSibling.classList.contains('details');
      if (open) { el.nextSibling.remove(); el.classList.remove('open'); } else {
        el.classList.add('open');
        el.after(recordDetails(rec, h('a', { href: href('/search', { q: `host:${quote(rec.host)}`, start: iso(ms(rec.time) - 6e4), end: iso(ms(rec.time) + 6e4) }) }, 'This host ±1 min'), link));
      }
    };
    el.addEventListener('click', toggle);
    el.addEventListener('keydown', toggle);
    return el;
  };
  results.addEventListener('keydown', (e) => moveFocus(e, results, '.rec'));

  async function page() {
    if (loading) return;
    loading = true;
    more.replaceChildren(info('Loading…'));
    try {
      const res = await api('/v1/logs:search', { q, ...range, limit: shown ? 200 : 100, cursor }, ac.signal);
      const recs = res.records || [];
      results.append(...recs.map(row));
      shown += recs.length;
      cursor = res.next_cursor || '';
      more.replaceChildren(cursor ? h('button', { type: 'button', onclick: page }, 'More') :
        shown ? info(`End of results: ${num(shown)} line${shown === 1 ? '' : 's'}.`) : '');
      // The observer only speaks when "more" comes into view: if it is
      // still in view after this page (a short page, or a scroll while this
      // one loaded), read on.
      if (cursor && more.getBoundingClientRect().top < innerHeight + 600) setTimeout(() => { if (!ac.signal.aborted) page().catch(() => {}); }, 0);
      if (!shown) {
        results.replaceChildren(info(h('strong', {}, 'No lines match '), h('code', {}, q || 'everything'), ` in ${rangeLabel(start, end)}. `,
          start ? h('a', { href: href('/search', { q }) }, 'Search all time') : 'Is anything sending lines?'));
      }
      return recs;
    } catch (e) {
      if (e.name === 'AbortError') return [];
      more.replaceChildren();
      if (!shown) { hist.hidden = true; status.replaceChildren(); results.replaceChildren(errorBox(e)); } else more.append(errorBox(e));
      throw e;
    } finally {
      loading = false;
    }
  }

  fieldSidebar(side, { q, ...range }, link, ac.signal);

  const io = new IntersectionObserver((es) => { if (es.some((x) => x.isIntersecting) && cursor && !loading) page().catch(() => {}); }, { rootMargin: '600px' });
  io.observe(more);

  (async () => {
    let first;
    try { first = await page(); } catch { return; }
    if (ac.signal.aborted) return;
    // The histogram needs a closed range: "all time" runs from the oldest match.
    let hs = r.start, he = r.end;
    if (!first.length) { status.replaceChildren(); return; }
    if (isNaN(hs)) {
      try {
        const old = await api('/v1/logs:search', { q, order: 'asc', limit: 1 }, ac.signal);
        hs = ms(old.records[0].time);
        he = Math.max(ms(first[0].time) + 1, now);
      } catch (e) { return; }
    }
    if (he - hs < 1000) { hs -= 500; he += 500; }
    // The server picks about 60 buckets, with a step of at most a week.
    const step = (he - hs) / 60 > 6048e5 ? `${Math.ceil((he - hs) / 6e4)}s` : '';
    const errQ = q ? `(${q}) AND (level:error OR level:fatal)` : 'level:error OR level:fatal';
    try {
      const [all, errs] = await Promise.all([
        api('/v1/logs:histogram', { q, start: iso(hs), end: iso(he), step }, ac.signal),
        api('/v1/logs:histogram', { q: errQ, start: iso(hs), end: iso(he), step }, ac.signal).catch(() => null)]);
      const total = all.total || 0;
      const errTotal = errs ? errs.total || 0 : 0;
      status.replaceChildren(h('span', {}, h('strong', {}, num(total)), ` matching line${total === 1 ? '' : 's'} in ${rangeLabel(start, end)}`,
        errTotal ? [', ', h('a', { class: 'bad', href: href('/search', { q: errQ, start, end }) }, `${num(errTotal)} error${errTotal === 1 ? '' : 's'}`)] : '',
        ' · drag on the chart to zoom'));
      drawHistogram(hist, all.buckets || [], errs ? errs.buckets || [] : [], hs, he, (a, b) => ctx.go(href('/search', { q, start: iso(a), end: iso(b) })));
    } catch (e) {
      if (e.name !== 'AbortError') status.replaceChildren(errorBox(e));
    }
  })();

  return () => { ac.abort(); io.disconnect(); };
}

// fieldSidebar fills the field sidebar: each field's distinct values and
// its top ones with exact counts (GET /v1/logs:facets), each one click from
// narrowing the query to it (link(field, value)) or away from it.
export function fieldSidebar(side, params, link, signal) {
  api('/v1/logs:facets', { ...params, limit: 5 }, signal).then((f) => {
    const fields = (f.fields || []).filter((x) => (x.values || []).length);
    if (!fields.length) return;
    side.append(h('details', { open: matchMedia('(min-width: 1000px)').matches },
      h('summary', {}, h('strong', {}, 'Fields'), h('span', { class: 'muted' }, ` · top values of ${num(f.total)} lines`)),
      fields.map((x) => h('section', { class: 'field', data: { field: x.name } },
        h('h3', {}, x.name, h('span', { class: 'muted' }, ` ${num(x.distinct)}${x.capped ? '+' : ''} value${x.distinct === 1 ? '' : 's'}`)),
        h('ul', {}, x.values.map((v) => h('li', {},
          h('a', { class: 'fv', href: link(x.name, v.value), title: `${x.name}:${v.value}` }, v.value === '' ? '(empty)' : v.value),
          h('span', { class: 'fc' }, num(v.count)),
          h('a', { class: 'fx', href: link(x.name, v.value, true), title: `exclude ${x.name}:${v.value}`, 'aria-label': `exclude ${x.name}=${v.value}` }, '−'))))))));
  }, () => { /* no sidebar: the results still show */ });
}

// exports: links to download every match of the query, as JSON lines or CSV.
function exports(q, range) {
  const exp = (format, label) => h('a', { class: 'btn', href: href('/v1/logs:export', { q, start: range.start, end: range.end, format }), download: '', onclick: (e) => download(e, format) }, label);
  return h('div', { class: 'bar exports' }, h('span', { class: 'k' }, 'Download every match:'), exp('jsonl', 'JSON lines'), exp('csv', 'CSV'));
}

// download: a plain link streams the export to a file; with a token (a
// server with --auth-file) the browser cannot send it on a link, so the
// export is fetched with it and saved from memory.
async function download(e, format) {
  if (!sessionStorage.getItem('shiplog-token')) return;
  e.preventDefault();
  const resp = await authFetch(e.currentTarget.href);
  if (!resp.ok) { e.currentTarget.after(errorBox(await readJSON(resp).catch((x) => x))); return; }
  const url = URL.createObjectURL(await resp.blob());
  const a = h('a', { href: url, download: `shiplog-export.${format}` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// moveFocus moves the focus between a list's rows (sel) with ↑/↓ or k/j.
export function moveFocus(e, box, sel) {
  const dir = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 }[e.key];
  if (!dir || e.ctrlKey || e.metaKey || e.altKey || !e.target.matches(sel)) return;
  const rows = [...box.querySelectorAll(sel)];
  const next = rows[rows.indexOf(e.target) + dir];
  if (next) { e.preventDefault(); next.focus(); }
}

// drawHistogram draws bars of counts (errors over them in red) over
// [start, end); dragging selects a range and calls zoom(a, b).
export function drawHistogram(box, buckets, errBuckets, start, end, zoom) {
  box.hidden = false;
  const W = Math.max(box.clientWidth || 0, 300), H = 110, L = 44, R = 8, T = 8, B = 20;
  const pw = W - L - R, ph = H - T - B;
  const x = (t) => L + ((t - start) / (end - start)) * pw;
  const tAt = (px) => start + ((px - L) / pw) * (end - start);
  const times = buckets.map((b) => ms(b.time));
  const step = times.length > 1 ? times[1] - times[0] : end - start;
  const max = Math.max(1, ...buckets.map((b) => b.count || 0));
  const y = (c) => T + ph - (c / max) * ph;
  const errAt = new Map(errBuckets.map((b) => [ms(b.time), b.count || 0]));
  const bars = [];
  buckets.forEach((b, i) => {
    const x0 = Math.max(x(times[i]), L), x1 = Math.min(x(times[i] + step), L + pw);
    if (x1 <= x0) return;
    const w = Math.max(1, x1 - x0 - (x1 - x0 > 4 ? 1 : 0));
    const c = b.count || 0, ec = errAt.get(times[i]) || 0;
    const tip = `${num(c)} line${c === 1 ? '' : 's'}${ec ? `, ${num(ec)} errors` : ''}\n${fmtTime(times[i])} – ${fmtClock(times[i] + step)}`;
    if (c) bars.push(s('rect', { class: 'hb', x: x0, y: y(c), width: w, height: T + ph - y(c) }, s('title', {}, tip)));
    if (ec) bars.push(s('rect', { class: 'hb err', x: x0, y: y(ec), width: w, height: T + ph - y(ec) }, s('title', {}, tip)));
  });
  // Ticks at a round interval, about one per 110 px.
  const span = end - start;
  const steps = [1e3, 5e3, 1e4, 3e4, 6e4, 3e5, 6e5, 18e5, 36e5, 108e5, 216e5, 432e5, 864e5, 6048e5, 2592e6];
  const tickStep = steps.find((v) => span / v <= pw / 110) || 2592e6;
  const offset = utc() ? 0 : new Date(start).getTimezoneOffset() * 6e4;
  const ticks = [];
  for (let t = Math.ceil((start - offset) / tickStep) * tickStep + offset; t < end; t += tickStep) {
    const label = tickStep >= 864e5 || (span > 864e5 && fmtClock(t, false) === '00:00:00') ? fmtDate(t).slice(5) : fmtClock(t, false).slice(0, tickStep < 6e4 ? 8 : 5);
    ticks.push(s('line', { class: 'tick', x1: x(t), x2: x(t), y1: T + ph, y2: T + ph + 4 }), s('text', { class: 'axis', x: x(t), y: H - 5, 'text-anchor': 'middle' }, label));
  }
  const sel = s('rect', { class: 'sel', x: 0, y: T, width: 0, height: ph, visibility: 'hidden' });
  const hit = s('rect', { class: 'hit', x: L, y: T, width: pw, height: ph });
  const svg = s('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `histogram: ${buckets.length} buckets, at most ${max} lines` },
    s('line', { class: 'base', x1: L, x2: L + pw, y1: T + ph, y2: T + ph }),
    s('text', { class: 'axis', x: L - 6, y: T + 9, 'text-anchor': 'end' }, num(max)),
    s('text', { class: 'axis', x: L - 6, y: T + ph, 'text-anchor': 'end' }, '0'),
    ...ticks, ...bars, hit, sel);
  let sx = null;
  const px = (e) => Math.min(Math.max(e.clientX - svg.getBoundingClientRect().left, L), L + pw);
  svg.addEventListener('pointerdown', (e) => { sx = px(e); svg.setPointerCapture(e.pointerId); e.preventDefault(); });
  svg.addEventListener('pointermove', (e) => {
    if (sx == null) return;
    const cx = px(e);
    sel.setAttribute('x', Math.min(sx, cx));
    sel.setAttribute('width', Math.abs(cx - sx));
    sel.setAttribute('visibility', 'visible');
  });
  svg.addEventListener('pointerup', (e) => {
    if (sx == null) return;
    const cx = px(e), a = Math.min(sx, cx), b = Math.max(sx, cx);
    sx = null;
    sel.setAttribute('visibility', 'hidden');
    if (b - a >= 4) return zoom(Math.floor(tAt(a)), Math.ceil(tAt(b)));
    // A click zooms into the bucket under the pointer.
    const i = times.findIndex((t) => t <= tAt(cx) && tAt(cx) < t + step);
    if (i >= 0 && buckets[i].count) zoom(Math.max(times[i], start), Math.min(times[i] + step, end));
  });
  box.replaceChildren(svg);
}
