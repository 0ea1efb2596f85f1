// Live tail: the last 100 matching lines (a search), then GET
// /v1/logs:tail?q= streams newline-delimited JSON records; read with fetch
// and a ReadableStream. Pause keeps reading and holds the new lines back
// until resume. State: /tail?q=
import { h, api, authFetch, errorBox, readJSON, unreachable, info, num, fmtTime, fmtTimeZ, level, hostTag, hostColour, href, msgText } from './lib.js';
import { queryForm } from './search.js';

const KEEP = 5000; // lines kept on the page
const LAST = 100; // lines shown before the first new one

export default function tail(main, ctx) {
  const q = ctx.params.get('q') || '';
  document.title = `Tail ${q || 'everything'} · shiplog`;
  const ac = new AbortController();
  let paused = false, held = [], count = 0, dropped = 0, retry = null;
  // Until the last lines are shown, new ones wait (ids seen are skipped).
  let early = [], seen = new Set();
  const status = h('span', { class: 'status live' }, 'connecting…');
  const pauseBtn = h('button', { type: 'button', class: 'pause' }, 'Pause');
  const lines = h('div', { class: 'tail', role: 'log', 'aria-live': 'polite' });
  const note = h('div', {});
  const form = queryForm(ctx, { q }, '/tail');
  form.querySelector('select').remove();
  form.querySelector('.custom').remove();
  form.querySelector('button[type=submit]').textContent = 'Follow';
  main.append(form, h('div', { class: 'bar' }, pauseBtn, status, h('a', { class: 'btn', href: href('/search', { q, start: '15m' }) }, 'Search the last 15 minutes')), note, lines);

  const setStatus = (text, cls) => { status.textContent = text; status.className = `status ${cls || ''}`; };
  const showStatus = () => setStatus(paused ? `paused · ${num(held.length)} new line${held.length === 1 ? '' : 's'} held back${dropped ? ` (${num(dropped)} older ones let go)` : ''}` : `following ${q || 'every line'} · ${num(count)} line${count === 1 ? '' : 's'} so far`, paused ? 'paused' : 'live');
  pauseBtn.addEventListener('click', () => {
    paused = !paused;
    pauseBtn.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) { append(held); held = []; dropped = 0; }
    showStatus();
  });

  const append = (recs) => {
    if (!recs.length) return;
    const atBottom = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 40;
    const frag = document.createDocumentFragment();
    for (const r of recs) {
      if (seen.has(r.id)) continue;
      seen.add(r.id);
      const el = h('div', { class: 'crow', data: { id: r.id } },
        h('a', { class: 'time', href: `/context/${encodeURIComponent(r.id)}`, title: fmtTimeZ(r.time) }, fmtTime(r.time)),
        h('span', { class: 'svc' }, r.service), hostTag(r.host), level(r.level), msgText(r.message));
      frag.append(hostColour(el, r.host));
    }
    const empty = lines.querySelector('.msg');
    if (empty) empty.remove();
    lines.append(frag);
    while (lines.childElementCount > KEEP) { seen.delete(lines.firstElementChild.dataset.id); lines.firstElementChild.remove(); }
    if (atBottom) lines.scrollTop = lines.scrollHeight;
  };
  const receive = (recs) => {
    if (early) { early.push(...recs); return; }
    count += recs.length;
    if (paused) {
      held.push(...recs);
      if (held.length > KEEP) { dropped += held.length - KEEP; held = held.slice(-KEEP); }
    } else append(recs);
    showStatus();
  };

  async function follow() {
    let resp;
    setStatus('connecting…', '');
    try {
      resp = await authFetch(href('/v1/logs:tail', { q }), { signal: ac.signal, headers: { Accept: 'application/x-ndjson' } });
    } catch (e) {
      if (e.name === 'AbortError') return;
      return lost(unreachable(e));
    }
    if (!resp.ok) {
      try { await readJSON(resp); } catch (e) { note.replaceChildren(errorBox(e)); setStatus('stopped', 'bad'); return; }
    }
    note.replaceChildren();
    if (!lines.childElementCount) lines.append(info(`Waiting for new lines matching ${q || 'anything'}…`));
    showStatus();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        const parts = buf.split('\n');
        buf = parts.pop();
        const recs = [];
        for (const p of parts) {
          if (!p.trim()) continue;
          const obj = JSON.parse(p);
          if (obj.message != null && obj.code != null && !obj.id) { note.replaceChildren(errorBox({ status: 429, message: obj.message })); continue; }
          recs.push(obj);
        }
        if (recs.length) receive(recs);
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      return lost(unreachable(e));
    }
    if (!ac.signal.aborted) lost(unreachable(new Error('the stream ended')));
  }
  function lost(err) {
    note.replaceChildren(errorBox(err));
    setStatus('disconnected: retrying in 3 s', 'bad');
    retry = setTimeout(follow, 3000);
  }
  follow();
  // The last lines that match, oldest first; then what the tail held.
  api('/v1/logs:search', { q, limit: LAST, end: new Date(Date.now() + 1000).toISOString() }, ac.signal).then((r) => {
    const last = (r.records || []).reverse();
    if (last.length) append(last);
    const held0 = early;
    early = null;
    receive(held0.filter((x) => !seen.has(x.id)));
  }, (e) => {
    if (e.name === 'AbortError') return;
    note.replaceChildren(errorBox(e));
    const held0 = early;
    early = null;
    receive(held0);
  });
  return () => { ac.abort(); clearTimeout(retry); };
}
