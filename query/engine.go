package query

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/binary"
	"iter"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Store is what the engine needs of the store.
type Store interface {
	// Candidates yields the chunks that may hold matches a day at a time,
	// in the query's order (see store.Store.Candidates); an error ends the
	// sequence.
	Candidates(ctx context.Context, tr model.TimeRange, c *store.Cond, asc bool) iter.Seq2[[]store.ChunkRef, error]
	Load(ctx context.Context, r store.ChunkRef, text bool) (*store.Lines, error)
	LoadText(ctx context.Context, l *store.Lines) error
}

// Options bound the engine's work.
type Options struct {
	MaxLimit   int // largest page of a search
	MaxBuckets int // most buckets of a histogram
	Workers    int // chunks decoded in parallel
	// MaxGroups bounds the groups one stats answer tracks (before Limit
	// cuts them), and the distinct values of one facet field.
	MaxGroups int
	// MaxCells bounds a stats answer's memory: groups times (buckets +
	// aggregates) it may hold.
	MaxCells int
}

// DefaultOptions returns the engine's defaults.
func DefaultOptions() Options {
	return Options{MaxLimit: 10000, MaxBuckets: 11000, Workers: 2, MaxGroups: 100000, MaxCells: 8 << 20}
}

// Engine evaluates queries over a store.
type Engine struct {
	st   Store
	opts Options
}

// New returns an engine over st.
func New(st Store, opts Options) *Engine {
	d := DefaultOptions()
	if opts.MaxLimit <= 0 {
		opts.MaxLimit = d.MaxLimit
	}
	if opts.MaxBuckets <= 0 {
		opts.MaxBuckets = d.MaxBuckets
	}
	if opts.Workers <= 0 {
		opts.Workers = d.Workers
	}
	if opts.MaxGroups <= 0 {
		opts.MaxGroups = d.MaxGroups
	}
	if opts.MaxCells <= 0 {
		opts.MaxCells = d.MaxCells
	}
	return &Engine{st: st, opts: opts}
}

// SearchParams describe one page of a search.
type SearchParams struct {
	Query  *Query
	Range  model.TimeRange
	Limit  int    // default 100
	Cursor string // a previous page's NextCursor
	Asc    bool   // oldest first; default newest first
}

// SearchResult is one page.
type SearchResult struct {
	Records    []model.Record
	NextCursor string // empty when no match is left
	Coverage   Coverage
}

// position is a record's place in the total order (time, then id).
type position struct {
	t  int64
	id model.ID
}

func (a position) less(b position) bool { return a.compare(b) < 0 }

// compare orders positions by time, then id.
func (a position) compare(b position) int {
	if a.t != b.t {
		return cmp.Compare(a.t, b.t)
	}
	return a.id.Compare(b.id)
}

func encodeCursor(p position) string {
	b := make([]byte, 0, 32)
	b = binary.AppendVarint(b, p.t)
	b = binary.AppendUvarint(b, p.id.Stream)
	b = binary.AppendUvarint(b, uint64(p.id.Day))
	b = binary.AppendUvarint(b, uint64(p.id.Line))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return position{}, badf("cursor %q is not one this server gave out", s)
	}
	var p position
	var k int
	bad := func() (position, error) { return position{}, badf("cursor %q is not one this server gave out", s) }
	if p.t, k = binary.Varint(b); k <= 0 {
		return bad()
	}
	b = b[k:]
	var v uint64
	if p.id.Stream, k = binary.Uvarint(b); k <= 0 {
		return bad()
	}
	b = b[k:]
	if v, k = binary.Uvarint(b); k <= 0 || v > 1<<32-1 {
		return bad()
	}
	p.id.Day = uint32(v)
	b = b[k:]
	if v, k = binary.Uvarint(b); k <= 0 || v > 1<<32-1 || k != len(b) {
		return bad()
	}
	p.id.Line = uint32(v)
	return p, nil
}

// hit is a matching line: its record when the chunk's text was loaded (with
// strings copied, so the chunk can be freed), else where to find it.
type hit struct {
	pos   position
	rec   *model.Record
	lines *store.Lines
	i     int
}

// hitHeap keeps the best `limit` hits; its root is the worst kept.
type hitHeap struct {
	h   []hit
	asc bool
}

func (h *hitHeap) Len() int { return len(h.h) }

// Less puts the worst hit at the root: the newest when ascending, the oldest
// when descending.
func (h *hitHeap) Less(i, j int) bool {
	if h.asc {
		return h.h[j].pos.less(h.h[i].pos)
	}
	return h.h[i].pos.less(h.h[j].pos)
}
func (h *hitHeap) Swap(i, j int) { h.h[i], h.h[j] = h.h[j], h.h[i] }
func (h *hitHeap) Push(x any)    { h.h = append(h.h, x.(hit)) }
func (h *hitHeap) Pop() any {
	x := h.h[len(h.h)-1]
	h.h = h.h[:len(h.h)-1]
	return x
}

// better reports whether p comes before q in the requested order.
func better(p, q position, asc bool) bool {
	if asc {
		return p.less(q)
	}
	return q.less(p)
}

// Search returns one page of matching records in time order, newest first
// unless Asc. Chunks are visited in the order of their time bounds and the
// search stops once no remaining chunk can beat the page it holds.
func (e *Engine) Search(ctx context.Context, p SearchParams) (*SearchResult, error) {
	limit := p.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > e.opts.MaxLimit {
		return nil, badf("limit %d is above the maximum of %d", limit, e.opts.MaxLimit)
	}
	q := p.Query
	if q == nil {
		q, _ = Parse("")
	}
	q = e.resolve(q, p.Range)
	var cur *position
	if p.Cursor != "" {
		c, err := decodeCursor(p.Cursor)
		if err != nil {
			return nil, err
		}
		cur = &c
	}
	tr := p.Range
	if cur != nil {
		// Narrow the range to what can still come after the cursor.
		if p.Asc {
			tr.Start = max(tr.Start, cur.t)
		} else {
			tr.End = min(tr.End, cur.t+1)
		}
	}
	if tr.Start >= tr.End {
		return &SearchResult{}, nil
	}
	s := &searchScan{q: q, tr: tr, cur: cur, asc: p.Asc, limit: limit, h: &hitHeap{asc: p.Asc}, done: ctx.Done()}
	// The store yields candidates day by day in the query's order: a page
	// that fills on the newest day of a month-long range reads neither the
	// other days' indexes nor their chunks.
	for refs, err := range e.st.Candidates(ctx, tr, q.cond, p.Asc) {
		if err != nil {
			return nil, err
		}
		if s.h.h == nil {
			s.h.h = make([]hit, 0, s.room(refs))
		}
		if err := e.scanRefs(ctx, s, refs); err != nil {
			return nil, err
		}
		// Every chunk of the days still to come lies beyond this day.
		d := refs[0].Meta.Day
		if s.full() && (p.Asc && s.beyond(model.DayStart(d+1), math.MaxInt64) || !p.Asc && s.beyond(math.MinInt64, model.DayStart(d)-1)) {
			break
		}
	}
	return e.page(ctx, s.h.h, p.Asc, limit)
}

// lookahead is how many chunks a worker may have loaded ahead of the one
// being scanned: with one, a chunk slower than its neighbours held up the
// loads after it and left a core idle.
const lookahead = 4

// scanRefs scans one day's candidate chunks in the query's order until no
// chunk left can beat the heap's worst hit. Up to Workers chunks are loaded
// (and their lines prefiltered) at once, up to lookahead x Workers ahead of
// the oldest, whose lines this goroutine matches. The loads run on Workers
// goroutines kept for the day (a goroutine a chunk grew its stack anew for
// every chunk's zstd decoding: 3% of a rare-word search).
func (e *Engine) scanRefs(ctx context.Context, s *searchScan, refs []store.ChunkRef) error {
	type loaded struct {
		l     *store.Lines
		marks []bool
		keep  bool // its text loaded for the page: kept, not copied
		err   error
		done  chan struct{}
	}
	// Loads still waiting for a worker when the scan ends (the page full, an
	// error) are dropped, not done.
	lctx, cancel := context.WithCancel(ctx)
	// At most lookahead x Workers + 1 loads are launched and not yet
	// waited for: the queue never blocks.
	jobs := make(chan func(), lookahead*e.opts.Workers+1)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		close(jobs)
		wg.Wait()
	}()
	for range min(e.opts.Workers, len(refs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	pending := make([]*loaded, 0, len(refs))
	// launch starts loading the next chunk, unless the full heap shows that
	// neither it nor any after it can enter the page.
	launch := func() bool {
		r := refs[len(pending)]
		if s.full() && s.beyond(r.Meta.MinT, r.Meta.MaxT) {
			return false
		}
		x := &loaded{done: make(chan struct{}), keep: s.eager(r)}
		pending = append(pending, x)
		jobs <- func() {
			defer close(x.done)
			if x.err = lctx.Err(); x.err != nil {
				return
			}
			if x.keep {
				x.l, x.err = e.st.Load(lctx, r, true)
				return
			}
			if x.l, x.err = e.loadMatching(lctx, r, s.q); x.err == nil && !r.All && s.q.text {
				x.marks = candidateLines(x.l, s.q.need)
			}
		}
		return true
	}
	more := true
	for i := 0; i < len(refs); i++ {
		for more && len(pending) < len(refs) && len(pending) <= i+lookahead*e.opts.Workers {
			more = launch()
		}
		if i >= len(pending) {
			break
		}
		x := pending[i]
		<-x.done
		pending[i] = nil
		if x.err != nil {
			return x.err
		}
		if s.full() && s.beyond(refs[i].Meta.MinT, refs[i].Meta.MaxT) {
			break
		}
		if err := s.scan(ctx, refs[i], x.l, x.marks, x.keep); err != nil {
			return err
		}
		if x.l.Msgs != nil && !refs[i].InMemory() && !x.keep {
			// scan copied what it kept of a sealed chunk's text.
			x.l.Release()
		}
		x.l = nil
	}
	return nil
}

// WordLoader is what the engine asks of a store that can load a chunk for a
// word every match holds, decompressing only the parts of its messages
// that may hold it (store.Store does). Lines it leaves out are marked in
// Lines.Skipped, and the prefilter (candidateLines) never marks them.
type WordLoader interface {
	LoadWord(ctx context.Context, r store.ChunkRef, word string) (*store.Lines, error)
}

// loadMatching loads a candidate chunk for q: with its text when q needs it,
// then only the message blocks that may hold q's required token when the
// chunk is judged line by line against it.
func (e *Engine) loadMatching(ctx context.Context, r store.ChunkRef, q *Query) (*store.Lines, error) {
	if wl, ok := e.st.(WordLoader); ok && q.text && !r.All && q.need.tok != "" && !q.need.exact && !r.InMemory() {
		return wl.LoadWord(ctx, r, q.need.tok)
	}
	return e.st.Load(ctx, r, q.text)
}

// eachRef yields the chunks of a sequence of days one by one.
func eachRef(days iter.Seq2[[]store.ChunkRef, error]) iter.Seq2[store.ChunkRef, error] {
	return func(yield func(store.ChunkRef, error) bool) {
		for refs, err := range days {
			if err != nil {
				yield(store.ChunkRef{}, err)
				return
			}
			for _, r := range refs {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}

// page sorts the hits into the page's order and makes them records, loading
// the text of those whose chunk was loaded without it; a full page gets a
// cursor for the next.
func (e *Engine) page(ctx context.Context, hits []hit, asc bool, limit int) (*SearchResult, error) {
	order := pageOrder(hits, asc)
	if err := e.loadHitText(ctx, hits); err != nil {
		return nil, err
	}
	res := &SearchResult{Records: make([]model.Record, len(hits))}
	for i, o := range order {
		x := &hits[o.i]
		if x.rec != nil {
			res.Records[i] = *x.rec
			continue
		}
		res.Records[i] = x.lines.Record(x.i)
	}
	if len(order) == limit {
		res.NextCursor = encodeCursor(hits[order[len(order)-1].i].pos)
	}
	return res, nil
}

// loadHitText loads the text of the chunks some hit was found in without
// it, Workers chunks at a time.
func (e *Engine) loadHitText(ctx context.Context, hits []hit) error {
	var need []*store.Lines
	seen := map[*store.Lines]bool{}
	for _, x := range hits {
		if x.rec == nil && x.lines.Msgs == nil && !seen[x.lines] {
			seen[x.lines] = true
			need = append(need, x.lines)
		}
	}
	errs := make([]error, len(need))
	var wg sync.WaitGroup
	sem := make(chan struct{}, e.opts.Workers)
	for i, l := range need {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = e.st.LoadText(ctx, l)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// AttrKeys is what the engine asks of a store that can tell which attribute
// keys occur in a time range (store.Store does), to read a:b as text when no
// line has attribute a (see Query.Resolve). A store without it: every field
// is an attribute.
type AttrKeys interface {
	HasAttrKey(tr model.TimeRange, key string) bool
}

// resolve reads q's unknown fields as text for a search over tr.
func (e *Engine) resolve(q *Query, tr model.TimeRange) *Query {
	ks, ok := e.st.(AttrKeys)
	if !ok {
		return q
	}
	return q.Resolve(func(key string) bool { return ks.HasAttrKey(tr, key) })
}

// Resolve reads q's unknown fields as text for a search over tr, as Search
// and Histogram do (for callers that match records themselves, such as
// live tail).
func (e *Engine) Resolve(q *Query, tr model.TimeRange) *Query { return e.resolve(q, tr) }

// Bucket is one histogram bucket: lines with Start <= time < Start+step.
type Bucket struct {
	Start int64
	Count int
}

// Histogram counts matching lines per step over tr. Buckets are aligned to
// multiples of step since the Unix epoch; empty buckets are included.
func (e *Engine) Histogram(ctx context.Context, q *Query, tr model.TimeRange, step time.Duration) ([]Bucket, error) {
	if step <= 0 {
		return nil, badf("step must be positive")
	}
	if tr.Start >= tr.End {
		return nil, badf("start must be before end")
	}
	if q == nil {
		q, _ = Parse("")
	}
	q = e.resolve(q, tr)
	st := int64(step)
	first := floorDiv(tr.Start, st) * st
	// In unsigned arithmetic: the span of two far-apart times overflows int64.
	span := uint64(tr.End) - uint64(first)
	nb := span / uint64(st)
	if span%uint64(st) != 0 {
		nb++
	}
	if nb < 1 || nb > uint64(e.opts.MaxBuckets) || first > tr.Start || span > math.MaxInt64 {
		return nil, badf("%d buckets of %s: a histogram has 1 to %d buckets; use a larger step or a shorter range", nb, step, e.opts.MaxBuckets)
	}
	n := int64(nb)
	counts := make([]int, n)
	var mu sync.Mutex
	var firstErr error
	work := make(chan store.ChunkRef)
	var wg sync.WaitGroup
	for w := 0; w < e.opts.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make(map[int64]int)
			for r := range work {
				if err := e.countChunk(ctx, q, r, tr, first, st, local); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
			mu.Lock()
			for b, c := range local {
				if b >= 0 && b < int64(len(counts)) {
					counts[b] += c
				}
			}
			mu.Unlock()
		}()
	}
	var seqErr error
	for r, err := range eachRef(e.st.Candidates(ctx, tr, q.cond, true)) {
		if err != nil {
			seqErr = err
			break
		}
		m := r.Meta
		// Whole chunk inside the range and inside one bucket, counted by its metadata.
		if q.countable && m.MinT >= tr.Start && m.MaxT < tr.End && (m.MinT-first)/st == (m.MaxT-first)/st {
			if b := (m.MinT - first) / st; b >= 0 && b < n {
				counts[b] += q.metaCount(m)
			}
			continue
		}
		work <- r
	}
	close(work)
	wg.Wait()
	if firstErr == nil {
		firstErr = seqErr
	}
	if firstErr != nil {
		return nil, firstErr
	}
	out := make([]Bucket, n)
	for i := range out {
		out[i] = Bucket{Start: first + int64(i)*st, Count: counts[i]}
	}
	return out, nil
}

func (e *Engine) countChunk(ctx context.Context, q *Query, r store.ChunkRef, tr model.TimeRange, first, st int64, counts map[int64]int) error {
	// Warnings and errors are listed in the chunk's metadata.
	if q.countable && !r.InMemory() && r.Meta.NotableIn(q.countLevel, tr, first, st, func(b int64) { counts[b]++ }) {
		return nil
	}
	l, err := e.loadMatching(ctx, r, q)
	if err != nil {
		return err
	}
	var marks []bool
	if !r.All && q.text {
		marks = candidateLines(l, q.need)
	}
	done := ctx.Done()
	for j := 0; j < l.Len(); j++ {
		if marks != nil && !marks[j] {
			continue
		}
		t := l.Times[j]
		if !tr.Contains(t) {
			continue
		}
		if r.All {
			counts[(t-first)/st]++
			continue
		}
		if err := stopped(ctx, done); err != nil {
			return err
		}
		if q.root.match(l, j) {
			counts[(t-first)/st]++
		}
	}
	return nil
}

// stopped is ctx's error once done is closed: a check cheap enough for every
// line of a scan (no lock, unlike ctx.Err).
func stopped(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return ctx.Err()
	default:
		return nil
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Times outside [1970, 2200) are refused: they are no log's, and they would
// overflow the arithmetic of histogram buckets.
var maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// ParseTime reads a time parameter: RFC 3339 (with or without fraction), a
// duration back from now ("15m", "24h", "7d"), "now", or Unix seconds.
func ParseTime(s string, now time.Time) (int64, error) {
	t, err := parseTime(s, now)
	if err == nil && (t < 0 || t >= maxTime) {
		return 0, badf("time %q is outside 1970 to 2200", s)
	}
	return t, err
}

func parseTime(s string, now time.Time) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "now" {
		return now.UnixNano(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UnixNano(), nil
	}
	// A bare number is Unix seconds, 0 (the epoch) included: it is read
	// before durations, which would take "0" as "0s ago", i.e. now.
	if f, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "xXpP") {
		if f >= 0 && f < 1e11 {
			return int64(f * 1e9), nil
		}
		return 0, badf("time %q: Unix seconds must be between 0 and 1e11", s)
	}
	if d, err := model.ParseDuration(s); err == nil {
		return now.Add(-d).UnixNano(), nil
	}
	return 0, badf("time %q: want RFC 3339 (2026-01-02T15:04:05Z), a duration back from now (15m, 24h, 7d) or Unix seconds", s)
}

// ownedRecord returns line i with its strings copied out of the chunk's buffers.
func ownedRecord(l *store.Lines, i int) *model.Record {
	r := l.Record(i)
	r.Message = strings.Clone(r.Message)
	r.TraceID = strings.Clone(r.TraceID)
	r.SpanID = strings.Clone(r.SpanID)
	if len(r.Attrs) > 0 {
		as := make([]model.Attr, len(r.Attrs))
		for k, a := range r.Attrs {
			as[k] = model.Attr{Key: strings.Clone(a.Key), Value: strings.Clone(a.Value)}
		}
		r.Attrs = as
	}
	return &r
}

// ContextResult holds the lines around a record.
type ContextResult struct {
	Record        model.Record
	Before, After []model.Record // oldest first
	Cross         []model.Record // other hosts, oldest first
	// With Cross: the scope applied and its query over every host (for
	// reading on), the window, and whether the window holds more lines of
	// other hosts before Cross's first line and after its last (then the
	// cursors continue the scope's search, desc and asc).
	Scope                  string
	ScopeQuery             string
	Window                 model.TimeRange
	MoreBefore, MoreAfter  bool
	BeforeCursor, AfterCur string
	Coverage               Coverage // of the record's lookup and every search
}

// ContextParams describe a context request.
type ContextParams struct {
	ID            model.ID
	Before, After int
	Cross         bool
	Window        time.Duration
	CrossLimit    int
	// Scope of the cross lines: ScopeDeploy, ScopeBuild, ScopeService,
	// ScopeAll, or "" (the record's deploy, else build, else service).
	Scope string
	// CrossBefore and CrossAfter: other hosts' lines on each side of the
	// record; when both are 0, CrossLimit is shared between them.
	CrossBefore, CrossAfter int
}

// Getter finds one record by id.
type Getter interface {
	Get(id model.ID) (model.Record, error)
}

// Context returns the lines before and after a record from the same service
// and host (across its builds and deploys), like grep -B/-A, and with Cross
// the lines of every other host within Window of it.
func (e *Engine) Context(ctx context.Context, g Getter, p ContextParams) (*ContextResult, error) {
	return ContextOver(ctx, e, g, p, e.opts.MaxLimit)
}

// MatchRecord reports whether one record matches the query (for live tail).
func (q *Query) MatchRecord(r *model.Record) bool {
	meta := &store.ChunkMeta{Labels: r.Labels, Stream: r.ID.Stream, Day: r.ID.Day, FirstLine: r.ID.Line, Count: 1}
	l := &store.Lines{
		Meta: meta, Times: []int64{r.Time}, Levels: []model.Level{r.Level}, Msgs: []string{r.Message},
		Traces: []string{r.TraceID}, Spans: []string{r.SpanID}, Attrs: [][]model.Attr{r.Attrs}, Seqs: []uint64{r.Seq},
	}
	return q.root.match(l, 0)
}

// RecordMatcher matches records one at a time against a query, reusing its
// buffers (MatchRecord builds a chunk view for every record). Not for
// concurrent use.
type RecordMatcher struct {
	q    *Query
	meta store.ChunkMeta
	l    store.Lines
}

// Matcher returns a RecordMatcher for q.
func (q *Query) Matcher() *RecordMatcher {
	m := &RecordMatcher{q: q}
	m.l = store.Lines{Meta: &m.meta, Times: make([]int64, 1), Levels: make([]model.Level, 1), Msgs: make([]string, 1),
		Traces: make([]string, 1), Spans: make([]string, 1), Attrs: make([][]model.Attr, 1), Seqs: make([]uint64, 1)}
	return m
}

// Match reports whether r matches the query.
func (m *RecordMatcher) Match(r *model.Record) bool {
	m.meta = store.ChunkMeta{Labels: r.Labels, Stream: r.ID.Stream, Day: r.ID.Day, FirstLine: r.ID.Line, Count: 1}
	l := &m.l
	l.Times[0], l.Levels[0], l.Msgs[0], l.Traces[0], l.Spans[0], l.Attrs[0], l.Seqs[0] = r.Time, r.Level, r.Message, r.TraceID, r.SpanID, r.Attrs, r.Seq
	return m.q.root.match(l, 0)
}
