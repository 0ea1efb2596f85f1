// Build and deploy pages: the summary, and every line in time order across
// hosts (a colour per host) in a virtualised list.
// A running build or deploy is followed: its summary and lines refresh until
// it ends. Rows: ↑/↓ or j/k move, Enter opens a line's details.
// State: /builds/{id}?filter=&line=  /deploys/{id}?filter=&line=
import { h, s, api, errorBox, info, num, pct, fmtTime, fmtTimeZ, fmtClock, fmtDuration, ms, level, hostTag, hostColour, spreadHues, stateBadge, quote, href, narrow, recordDetails, msgText, groupPath, groupAPI } from './lib.js';
import { LineSource, LogList } from './vlist.js';

export default function group(main, ctx) {
  const kind = ctx.name === 'builds' ? 'build' : 'deploy';
  const id = ctx.arg;
  const field = `${kind}_id`;
  const path = groupPath(kind, id);
  const FOLLOW = 2000; // ms between looks at a running build or deploy
  let filter = ctx.params.get('filter') || '';
  let line = ctx.params.get('line') || '';
  const baseQ = `${field}:${quote(id)}`;
  const q = filter ? `${baseQ} AND (${filter})` : baseQ;
  document.title = `${kind === 'build' ? 'Build' : 'Deploy'} ${id} · shiplog`;
  const ac = new AbortController();
  const state = () => href(path, { filter, line });

  const summary = h('section', { class: 'summary' }, h('h1', {}, `${kind === 'build' ? 'Build' : 'Deploy'} `, h('span', { class: 'id' }, id)));
  const note = h('div', { class: 'note' });
  const count = h('span', { class: 'count' });
  const detail = h('div', { class: 'detail', hidden: true });
  const box = h('input', { type: 'search', class: 'q', value: filter, placeholder: 'filter these lines: level:warn, host:…, words…', 'aria-label': 'filter', data: { query: '' } });
  const firstErr = h('button', { type: 'button', title: 'the earliest error or fatal line' }, 'Jump to first error');
  const bar = h('form', { class: 'bar' }, box,
    h('button', { type: 'submit' }, 'Filter'),
    filter && h('button', { type: 'button', onclick: () => ctx.go(href(path, {})) }, 'Clear'),
    firstErr,
    h('button', { type: 'button', title: 'first line', onclick: () => list.scrollTo(0) }, 'Top'),
    h('button', { type: 'button', title: 'last line', onclick: () => list.scrollTo(source.total - 1) }, 'End'),
    h('a', { class: 'btn', href: href('/search', { q }) }, 'Search'),
    h('a', { class: 'btn', href: href('/tail', { q }) }, 'Tail'),
    count);
  bar.addEventListener('submit', (e) => { e.preventDefault(); ctx.go(href(path, { filter: box.value.trim() })); });
  main.append(summary, bar, note, detail);

  const refine = (f, v, neg) => href(path, { filter: narrow(filter, f, v, neg) });
  const showDetail = (rec, i) => {
    if (!rec) return;
    line = rec.id;
    ctx.replace(state());
    detail.hidden = false;
    detail.replaceChildren(h('button', { type: 'button', class: 'close', title: 'close', 'aria-label': 'close the details', onclick: () => { detail.hidden = true; list.el.focus(); } }, '×'),
      h('div', { class: 'dhead' }, fmtTimeZ(rec.time), ' ', hostTag(rec.host), ' ', rec.service, ' ', level(rec.level)), recordDetails(rec, null, refine));
    // The panel takes room from the list: keep the line in view.
    if (i != null) requestAnimationFrame(() => list.reveal(i));
  };
  const source = new LineSource({
    q, signal: ac.signal,
    onChange: () => { list.render(); updateCount(); },
    onError: (e) => note.replaceChildren(errorBox(e)),
  });
  const row = (rec) => {
    const el = h('div', {},
      h('a', { class: 'ctx', href: `/context/${encodeURIComponent(rec.id)}`, title: 'context: the lines around this one', 'aria-label': 'context' }, '⤷'),
      h('span', { class: 'time', title: fmtTimeZ(rec.time) }, fmtClock(ms(rec.time))),
      hostTag(rec.host),
      level(rec.level),
      msgText(rec.message));
    return hostColour(el, rec.host);
  };
  const list = new LogList(source, row, { onSelect: showDetail });
  main.append(list.el);
  const updateCount = () => count.replaceChildren(source.known ? `${num(source.total)} line${source.total === 1 ? '' : 's'}${filter ? ' match the filter' : ''}` : 'loading…');
  list.render();

  const jump = async (rec) => {
    const i = await source.locate(rec);
    list.selected = rec.id;
    list.cur = i;
    showDetail(rec);
    list.scrollTo(i);
    requestAnimationFrame(() => list.reveal(i));
  };
  firstErr.addEventListener('click', async () => {
    note.replaceChildren();
    try {
      const r = await api('/v1/logs:search', { q: `(${q}) AND (level:error OR level:fatal)`, order: 'asc', limit: 1 }, ac.signal);
      if (!r.records || !r.records.length) { note.replaceChildren(info(`No error lines in this ${kind}${filter ? ' that match the filter' : ''}.`)); return; }
      await jump(r.records[0]);
    } catch (e) { if (e.name !== 'AbortError') note.replaceChildren(errorBox(e)); }
  });

  let timer = null;
  const load = () => api(groupAPI(kind, id), {}, ac.signal);
  const hostLives = (g) => lifeOf(kind, id, g, ac.signal);
  const redraw = (n, lives) => {
    summary.replaceChildren(summary.firstChild);
    renderSummary(summary, kind, n, lives, filter, path);
    const errs = ((n.levels && n.levels.error) || 0) + ((n.levels && n.levels.fatal) || 0);
    firstErr.disabled = !errs && !filter;
  };
  // follow looks again while the build or deploy runs: new lines join the
  // list (which stays at the end if it was there), the summary refreshes,
  // and following stops when it ends.
  const follow = (g) => {
    if (!live(kind, g)) return;
    timer = setTimeout(async () => {
      let n;
      try { n = await load(); } catch (e) { if (e.name !== 'AbortError') timer = setTimeout(() => follow(g), FOLLOW); return; }
      const atEnd = list.el.scrollTop + list.el.clientHeight >= list.el.scrollHeight - 30;
      redraw(n, await hostLives(n));
      if (n.lines !== g.lines || n.last_time !== g.last_time) {
        spreadHues(n.hosts || []);
        await source.setBounds(n.first_time, n.last_time, filter ? null : n.lines).catch(() => {});
        note.replaceChildren();
        if (atEnd) list.scrollTo(source.total - 1);
      }
      follow(n);
    }, FOLLOW);
  };

  (async () => {
    let g;
    try {
      g = await load();
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (e.status === 404) {
        summary.append(info(`The server has no lines with ${field} ${id}.`, ' ', h('a', { href: href('/search', { q: baseQ }) }, 'Search for it')));
        list.el.remove(); bar.remove();
      } else summary.append(errorBox(e));
      return;
    }
    // Each host its own colour, and a column wide enough for their names.
    spreadHues(g.hosts || []);
    const longest = Math.max(6, ...(g.hosts || []).map((x) => x.length));
    list.el.style.setProperty('--hostw', `${Math.min(longest + 1, 32)}ch`);
    for (const n of list.nodes.values()) n.remove();
    list.nodes.clear();
    list.render();
    redraw(g, await hostLives(g));
    if (!g.lines) { note.replaceChildren(info(`No lines in this ${kind} yet.`)); }
    try {
      await source.setBounds(g.first_time, g.last_time, filter ? null : g.lines);
      updateCount();
      if (source.known && !source.total) note.replaceChildren(info(filter ? `No lines of this ${kind} match the filter.` : `No lines in this ${kind}.`));
      if (line) {
        const r = await api('/v1/logs:search', { q: `(${q}) AND id:${quote(line)}`, limit: 1 }, ac.signal);
        if (r.records && r.records.length) await jump(r.records[0]);
        else note.replaceChildren(info(`The line ${line} is not in this ${kind}${filter ? ' or does not match the filter' : ''}.`));
      }
    } catch (e) {
      if (e.name !== 'AbortError') note.replaceChildren(errorBox(e));
    }
    follow(g);
  })();

  return () => { ac.abort(); clearTimeout(timer); list.destroy(); };
}

// live: whether a build or deploy is still going (a run running, a host live).
const live = (kind, g) => g.status === 'running' || (kind === 'deploy' && (g.host_lives || []).some((x) => x.state === 'live'));

// lifeOf: the hosts of a build (from /v1/hosts) or deploy, with their states.
async function lifeOf(kind, id, g, signal) {
  if (kind !== 'build') return g.host_lives || [];
  try { return (await api('/v1/hosts', { build_id: id, limit: 10000 }, signal)).hosts || []; } catch { return []; }
}

function renderSummary(el, kind, g, lives, filter, path) {
  const lv = g.levels || {};
  const errs = (lv.error || 0) + (lv.fatal || 0);
  const facts = [];
  const fact = (k, ...v) => facts.push(h('div', { class: 'fact' }, h('span', { class: 'k' }, k), h('span', { class: 'v' }, ...v)));
  if (g.status && !(kind === 'deploy' && g.status === 'unknown')) fact('status', stateBadge(g.status));
  const runs = g.runs || [];
  if (kind === 'build' && (g.status === 'passed' || g.status === 'failed')) {
    const failing = runs.filter((r) => r.status === 'failed');
    fact('exit code', h('span', { class: g.exit_code ? 'bad' : '' }, String(g.exit_code || 0)),
      failing.length ? h('span', { class: 'muted' }, `(${failing.map((r) => `${r.host}: ${r.exit_code}`).join(', ')})`) : '');
  }
  if (g.duration_seconds && runs.length) fact('duration', fmtDuration(g.duration_seconds));
  fact('first line', fmtTimeZ(g.first_time));
  fact('last line', fmtTimeZ(g.last_time));
  fact('lines', num(g.lines), errs ? [' · ', h('a', { class: 'bad', href: href(path, { filter: 'level:error OR level:fatal' }) }, `${num(errs)} error${errs === 1 ? '' : 's'}`)] : '',
    lv.warn ? [' · ', h('a', { class: 'warn', href: href(path, { filter: 'level:warn' }) }, `${num(lv.warn)} warn`)] : '');
  fact('services', ...(g.services || []).map((x) => h('a', { class: 'facet', href: href('/search', { q: `${kind}_id:${quote(g[`${kind}_id`])} service:${quote(x)}` }) }, x)));
  const others = kind === 'build' ? g.deploy_ids : g.build_ids;
  if (others && others.length) fact(kind === 'build' ? 'deploys' : 'builds', ...others.map((x) => h('a', { class: 'facet', href: groupPath(kind === 'build' ? 'deploy' : 'build', x) }, x)));
  el.append(h('div', { class: 'facts' }, facts));
  if (kind === 'deploy') el.append(errorRates(g));

  // Hosts: every one, live or vanished, one click from its own lines here.
  // A host's state here: closed once its run of this build has ended
  // (whatever it does next), else its state as a host.
  const byHost = new Map(lives.map((x) => [x.host, x]));
  const runOf = new Map(runs.map((r) => [r.host, r]));
  const hostLines = g.host_lines || {};
  const hostEls = (g.hosts || []).slice().sort().map((name) => {
    const life = byHost.get(name), run = runOf.get(name);
    const st = run && (run.status === 'passed' || run.status === 'failed') ? 'closed' : run && run.status === 'lost' ? 'lost' : life && life.state;
    const f = `host:${quote(name)}`;
    const on = filter === f;
    const lines = hostLines[name] || 0;
    return h('span', { class: 'hostchip' + (on ? ' on' : '') },
      hostTag(name, href(path, { filter: on ? '' : narrow('', 'host', name) })),
      st && stateBadge(st),
      h('span', { class: 'muted' }, ` ${num(lines)} line${lines === 1 ? '' : 's'}`));
  });
  el.append(h('div', { class: 'hosts' }, h('span', { class: 'k' }, `${(g.hosts || []).length} host${(g.hosts || []).length === 1 ? '' : 's'}`), hostEls));
  if (kind === 'deploy' && lives.length) el.append(h('div', { class: 'tablewrap' }, timeline(lives, el.clientWidth)));
  if (runs.length) {
    const done = (r) => r.status === 'passed' || r.status === 'failed';
    el.append(h('div', { class: 'tablewrap' }, h('table', { class: 'grid runs' }, h('thead', {}, h('tr', {}, ['run on', 'command', 'status', 'exit code', 'duration'].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, runs.map((r) => h('tr', { data: { host: r.host } }, h('td', {}, hostTag(r.host)), h('td', {}, h('code', {}, (r.command || []).join(' '))),
        h('td', {}, stateBadge(r.status)), h('td', { class: r.exit_code ? 'bad' : '' }, done(r) ? String(r.exit_code || 0) : ''),
        h('td', {}, done(r) && r.duration_seconds ? fmtDuration(r.duration_seconds) : '')))))));
  }
}

function errorRates(d) {
  const max = Math.max(d.error_rate || 0, d.previous_error_rate || 0, 0.0001);
  const bar = (label, rate, link, bad) => h('div', { class: 'rate' }, h('span', { class: 'k' }, label),
    h('span', { class: 'track' }, (() => { const b = h('span', { class: 'fill' + (bad ? ' bad' : '') }); b.style.width = `${(100 * (rate || 0)) / max}%`; return b; })()),
    h('span', { class: 'v' }, pct(rate), link ? [' ', link] : ''));
  if (!d.previous_deploy_id) return h('div', { class: 'rates' }, bar('error rate', d.error_rate), h('div', { class: 'muted' }, 'No earlier deploy of this service to compare with.'));
  const ratio = d.previous_error_rate ? d.error_rate / d.previous_error_rate : d.error_rate ? Infinity : 1;
  const worse = ratio > 1.5 && d.error_rate > 0.001;
  const verdict = !isFinite(ratio) ? 'errors where the previous deploy had none' : ratio > 1.05 ? `${ratio.toFixed(1)}× the previous deploy's` : ratio < 0.95 ? `${(1 / ratio).toFixed(1)}× lower than the previous deploy's` : 'about the same as the previous deploy\'s';
  return h('div', { class: 'rates' },
    bar('error rate', d.error_rate, null, worse),
    bar('previous', d.previous_error_rate, h('a', { href: groupPath('deploy', d.previous_deploy_id) }, d.previous_deploy_id)),
    h('div', { class: worse ? 'bad' : 'muted' }, `Error rate ${verdict}.`));
}

// timeline draws each host's life (first to last line) over the deploy.
function timeline(lives, width) {
  const now = Date.now();
  const ends = (x) => (x.state === 'live' ? Math.max(ms(x.last_seen), now) : ms(x.last_seen));
  const t0 = Math.min(...lives.map((x) => ms(x.first_seen))), t1 = Math.max(...lives.map(ends), t0 + 1000);
  const rowH = 18, L = 150, W = Math.max(width || 0, 340), R = 10, pw = W - L - R;
  const x = (t) => L + ((t - t0) / (t1 - t0)) * pw;
  const sorted = lives.slice().sort((a, b) => ms(a.first_seen) - ms(b.first_seen) || a.host.localeCompare(b.host));
  const H = sorted.length * rowH + 22;
  const rows = sorted.map((life, i) => {
    const y = i * rowH + 3;
    const a = x(ms(life.first_seen)), b = Math.max(x(ends(life)), a + 3);
    const link = s('a', { href: href('/search', { q: `host:${quote(life.host)}`, start: new Date(ms(life.first_seen) - 1000).toISOString(), end: new Date(ms(life.last_seen) + 1000).toISOString() }) },
      s('text', { class: 'label', x: L - 8, y: y + 11, 'text-anchor': 'end' }, life.host.length > 20 ? life.host.slice(0, 19) + '…' : life.host));
    return s('g', {}, link,
      s('rect', { class: `life st-${life.state}`, x: a, y, width: b - a, height: rowH - 6, rx: 2 },
        s('title', {}, `${life.host}: ${life.state}, ${fmtTimeZ(life.first_seen)} to ${fmtTimeZ(life.last_seen)}, ${num(life.lines)} lines in all`)));
  });
  return h('div', { class: 'timeline' },
    s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'group', 'aria-label': 'host lifetimes' },
      ...rows,
      s('text', { class: 'axis', x: L, y: H - 4 }, fmtTimeZ(t0)),
      s('text', { class: 'axis', x: W - R, y: H - 4, 'text-anchor': 'end' }, fmtTime(t1))),
    h('div', { class: 'legend' }, ['live', 'silent', 'closed'].map((st) => h('span', {}, h('i', { class: `sw st-${st}` }), st))));
}
