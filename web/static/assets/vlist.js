// A virtualised list of log lines: only the rows on screen (and a few around
// them) are in the DOM, and lines are fetched in pages around what is shown.
import { api, h, nsOf, selecting } from './lib.js';

const FIRST = 100; // the first page: enough for a screen, fast to answer
const PAGE = 5000; // the largest page
const GAP = 2500; // extend a page run this far before starting a new one

// LineSource holds the lines matching q in time order, by index. Pages are
// read by runs ("segments") of asc searches; a run can start anywhere: its
// first index is the number of matching lines before its start time (a
// histogram total), so a jump to the end or to a line far down needs no
// reading of everything before it.
export class LineSource {
  constructor({ q, signal, onChange, onError }) {
    Object.assign(this, { q, signal, onChange, onError });
    this.rows = [];
    this.total = 0; // grows as pages arrive until setBounds says
    this.known = false;
    this.segs = [{ next: 0, start: '', cursor: '', done: false }];
    this.counts = [];
    this.want = [0, 0];
    this.running = false;
    this.fetched = false;
  }

  // setBounds gives the first and last time of the lines and their number
  // (null: counted here).
  async setBounds(first, last, total) {
    this.first = first;
    this.firstMs = Date.parse(first);
    this.lastMs = Date.parse(last) + 1;
    this.step = `${Math.ceil((this.lastMs - this.firstMs) / 1000) + 2}s`;
    if (total == null) total = await this.count(new Date(this.lastMs).toISOString());
    if (!this.segs[0].done || this.segs[0].next < total) this.total = Math.max(total, this.segs[0].done ? 0 : this.segs[0].next);
    this.known = true;
    this.onChange();
    this.pump();
  }

  get(i) { return this.rows[i]; }

  need(a, b) {
    this.want = [a, b];
    this.pump();
  }

  // count: how many matching lines are older than t.
  async count(t) {
    if (nsOf(t) <= nsOf(this.first)) return 0;
    const r = await api('/v1/logs:histogram', { q: this.q, start: this.first, end: t, step: this.step }, this.signal);
    return r.total || 0;
  }

  async extend(seg, n) {
    const r = await api('/v1/logs:search', { q: this.q, order: 'asc', start: seg.start, limit: n, cursor: seg.cursor }, this.signal);
    for (const rec of r.records || []) this.rows[seg.next++] = rec;
    seg.cursor = r.next_cursor || '';
    this.fetched = true;
    if (!seg.cursor) {
      seg.done = true;
      this.total = seg.next; // the true end
    } else if (seg.next > this.total) {
      this.total = seg.next;
    } else if (this.rows[seg.next]) {
      seg.done = true; // ran into a later run
    }
  }

  // anchor starts a run a little before index m.
  async anchor(m) {
    const target = Math.max(0, m - 200);
    let lo = { t: this.firstMs, c: 0 }, hi = { t: this.lastMs, c: this.total };
    for (const k of this.counts) {
      if (k.c <= m && k.t > lo.t) lo = k;
      if (k.c > m && k.t < hi.t) hi = k;
    }
    for (let i = 0; i < 24 && hi.t - lo.t > 1 && !(lo.c <= m && lo.c >= m - GAP); i++) {
      const f = Math.min(0.95, Math.max(0.05, (target - lo.c) / Math.max(1, hi.c - lo.c)));
      const t = Math.min(hi.t - 1, Math.max(lo.t + 1, Math.round(lo.t + f * (hi.t - lo.t))));
      const c = await this.count(new Date(t).toISOString());
      const k = { t, c };
      this.counts.push(k);
      if (c <= m) lo = k; else hi = k;
    }
    const seg = { next: lo.c, start: lo.c ? new Date(lo.t).toISOString() : '', cursor: '', done: false };
    this.segs.push(seg);
    return seg;
  }

  async pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (let guard = 0; guard < 500; guard++) {
        const [a, b] = this.want;
        const hi = Math.min(b, Math.max(this.total - 1, this.known ? -1 : b));
        let m = -1;
        for (let i = Math.max(0, a); i <= hi; i++) if (!this.rows[i]) { m = i; break; }
        let seg;
        if (m < 0) {
          // At the end of what we know: read on in case more lines came.
          seg = hi === this.total - 1 && b >= hi && this.segs.find((x) => !x.done && x.next === this.total);
          if (!seg || seg.followed === this.total) break;
          seg.followed = this.total;
        } else {
          seg = this.segs.find((x) => !x.done && x.next <= m && m - x.next <= GAP);
          if (!seg) {
            if (!this.known) break; // a jump before the bounds are known: wait for them
            seg = await this.anchor(m);
          }
        }
        const n = this.fetched ? Math.min(PAGE, Math.max(1000, hi - seg.next + 500)) : FIRST;
        await this.extend(seg, n);
        this.onChange();
      }
    } catch (e) {
      if (e.name !== 'AbortError') this.onError(e);
    } finally {
      this.running = false;
    }
  }

  // locate finds a record's index, reading the lines around it.
  async locate(rec) {
    for (let i = 0; i < this.rows.length; i++) if (this.rows[i] && this.rows[i].id === rec.id) return i;
    const c = await this.count(rec.time);
    const seg = { next: c, start: rec.time, cursor: '', done: false };
    this.segs.push(seg);
    await this.extend(seg, 300);
    this.onChange();
    for (let j = c; j < seg.next; j++) if (this.rows[j].id === rec.id) return j;
    return c;
  }
}

// LogList shows a LineSource's rows in a scrolling box, drawing only the
// visible ones. renderRow(rec, i) returns a row element. On a narrow
// screen a row takes two lines (the message gets the second, whole).
// Keys: ↑/↓ or k/j move the current line, PageUp/PageDown a screen,
// Home/End, Enter opens it (onSelect).
const NARROW = '(max-width: 640px)';
export class LogList {
  constructor(source, renderRow, { onSelect } = {}) {
    Object.assign(this, { source, renderRow, onSelect });
    this.nodes = new Map();
    this.selected = null;
    this.cur = -1;
    this.spacer = h('div', { class: 'vspace' });
    this.el = h('div', { class: 'vlist', tabindex: '0', role: 'log', 'aria-label': 'lines: ↑ ↓ to move, Enter for details' }, this.spacer);
    this.mq = matchMedia(NARROW);
    this.layout = () => {
      this.rh = this.mq.matches ? 38 : 20;
      this.el.classList.toggle('narrow', this.mq.matches);
      this.setWrap(this.wrap);
    };
    this.rh = this.mq.matches ? 38 : 20;
    this.el.classList.toggle('narrow', this.mq.matches);
    this.mq.addEventListener('change', this.layout);
    this.wrap = document.documentElement.classList.contains('wrap');
    this.hts = new Map();
    this.onWrap = () => this.setWrap(document.documentElement.classList.contains('wrap'));
    window.addEventListener('shiplog-wrap', this.onWrap);
    this.el.addEventListener('keydown', (e) => this.key(e));
    let queued = false;
    this.el.addEventListener('scroll', () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; this.render(); });
    }, { passive: true });
    this.el.addEventListener('click', (e) => {
      if (e.target.closest('a') || selecting()) return;
      const row = e.target.closest('.vrow');
      const rec = row && this.source.get(+row.dataset.i);
      if (rec) { this.cur = +row.dataset.i; this.select(rec.id, this.cur); }
    });
    this.ro = new ResizeObserver(() => this.render());
    this.ro.observe(this.el);
  }

  select(id, i) {
    this.selected = id;
    for (const n of this.nodes.values()) n.classList.toggle('sel', n.dataset.id === id);
    if (this.onSelect && i != null) this.onSelect(this.source.get(i), i);
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target !== this.el) return;
    const page = Math.max(1, Math.floor(this.el.clientHeight / this.rh) - 1);
    const step = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1, PageDown: page, PageUp: -page }[e.key];
    const total = this.source.total;
    if (e.key === 'Enter') {
      const rec = this.source.get(this.cur);
      if (rec) { e.preventDefault(); this.select(rec.id, this.cur); }
      return;
    }
    let to;
    if (step) to = this.cur < 0 ? this.at(this.el.scrollTop) : this.cur + step;
    else if (e.key === 'Home') to = 0;
    else if (e.key === 'End') to = total - 1;
    else return;
    e.preventDefault();
    this.cur = Math.max(0, Math.min(total - 1, to));
    const rec = this.source.get(this.cur);
    this.selected = rec ? rec.id : null;
    this.reveal(this.cur);
    this.render();
  }

  // Row geometry. Unwrapped, every row is rh high. Wrapped (the header's
  // switch), rows are as high as their text: heights are measured as rows
  // are drawn (rh until then) and offsets summed when they change.
  setWrap(on) {
    this.wrap = on;
    this.hts = new Map();
    this.offs = null;
    for (const n of this.nodes.values()) n.remove();
    this.nodes.clear();
    if (this.cur >= 0) this.scrollTo(this.cur); else this.render();
  }

  offsets() {
    const total = this.source.total;
    if (!this.offs || this.offs.length !== total + 1) {
      const o = new Float64Array(total + 1);
      for (let i = 0; i < total; i++) o[i + 1] = o[i] + (this.hts.get(i) || this.rh);
      this.offs = o;
    }
    return this.offs;
  }

  top(i) { return this.wrap ? this.offsets()[Math.max(0, Math.min(i, this.source.total))] : i * this.rh; }

  height(i) { return this.wrap ? this.hts.get(i) || this.rh : this.rh; }

  // at is the index of the row at y.
  at(y) {
    if (!this.wrap) return Math.floor(y / this.rh);
    const o = this.offsets();
    let lo = 0, hi = Math.max(0, o.length - 2);
    while (lo < hi) { const m = (lo + hi + 1) >> 1; if (o[m] <= y) lo = m; else hi = m - 1; }
    return lo;
  }

  // reveal scrolls just enough for row i to be in view.
  reveal(i) {
    const top = this.top(i), ht = this.height(i), box = this.el;
    if (top < box.scrollTop) box.scrollTop = top;
    else if (top + ht > box.scrollTop + box.clientHeight) box.scrollTop = top + ht - box.clientHeight;
    this.render();
  }

  scrollTo(i) {
    this.el.scrollTop = Math.max(0, this.top(i) - this.el.clientHeight / 2 + this.height(i) / 2);
    this.render();
  }

  render() {
    const total = this.source.total;
    this.spacer.style.height = `${this.top(total)}px`;
    const top = this.el.scrollTop, height = this.el.clientHeight || 600;
    const a = this.at(top), b = Math.min(total - 1, this.at(top + height));
    const lo = Math.max(0, a - 20), hi = Math.min(total - 1, b + 20);
    for (const [i, n] of this.nodes) if (i < lo || i > hi) { n.remove(); this.nodes.delete(i); }
    for (let i = lo; i <= hi; i++) {
      const rec = this.source.get(i);
      let n = this.nodes.get(i);
      if (n && (n.dataset.id || '') === (rec ? rec.id : '')) {
        n.classList.toggle('sel', !!rec && rec.id === this.selected);
        n.classList.toggle('cur', i === this.cur);
        if (this.wrap) n.style.top = `${this.top(i)}px`;
        continue;
      }
      const fresh = rec ? this.renderRow(rec, i) : h('div', { class: 'loading' }, '…');
      fresh.classList.add('vrow');
      fresh.dataset.i = i;
      if (rec) fresh.dataset.id = rec.id;
      fresh.style.top = `${this.top(i)}px`;
      fresh.classList.toggle('sel', !!rec && rec.id === this.selected);
      fresh.classList.toggle('cur', i === this.cur);
      if (n) n.replaceWith(fresh); else this.spacer.append(fresh);
      this.nodes.set(i, fresh);
    }
    if (this.wrap) this.measure();
    this.source.need(a, b + 40);
  }

  // measure records the drawn rows' heights; when one changed, the rows
  // below move (drawn again at the next frame).
  measure() {
    let changed = false;
    for (const [i, n] of this.nodes) {
      if (!n.dataset.id) continue;
      const ht = n.offsetHeight;
      if (ht && ht !== (this.hts.get(i) || this.rh)) { this.hts.set(i, ht); changed = true; }
    }
    if (!changed) return;
    this.offs = null;
    if (!this.remeasure) this.remeasure = requestAnimationFrame(() => { this.remeasure = 0; this.render(); });
  }

  destroy() {
    this.ro.disconnect();
    this.mq.removeEventListener('change', this.layout);
    window.removeEventListener('shiplog-wrap', this.onWrap);
    cancelAnimationFrame(this.remeasure);
  }
}
