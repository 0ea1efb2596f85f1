package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// Queries across nodes. Any node answers: it splits the partitions by owner
// (from the last lease round), asks each owner over NATS request/reply for
// the answer over just those partitions (its own it answers in process),
// and merges. A partition with no owner, an owner that does not answer, or an
// owner still catching up is missing from the answer, which says so in its
// value (query.Coverage).
//
// Read after ack: at the start of a query the asking node takes each
// partition's last stream sequence from the stream's leader (the only place
// that knows of batches acked through the other nodes), and each owner
// answers for a partition only once it has stored up to that sequence,
// waiting at most Config.ReadWait; a partition still behind then is missing.
// So an answer holds every batch acked before the query started, or says
// partial.

// rpcTimeout bounds one owner's answer when the caller set no deadline.
const rpcTimeout = 15 * time.Second

type rpcReq struct {
	Op    string `json:"op"` // search, histogram, stats, facets, get, catalog, attrkeys
	Parts []int  `json:"parts"`
	// Until[i] is the stream sequence partition Parts[i] must have stored
	// before it is answered for; Wait (ns) how long the owner may wait for
	// that. Without Until, no wait.
	Until  []uint64   `json:"until,omitempty"`
	Wait   int64      `json:"wait,omitempty"`
	Q      query.Spec `json:"q"`
	Start  int64      `json:"start,omitempty"`
	End    int64      `json:"end,omitempty"`
	Limit  int        `json:"limit,omitempty"`
	Cursor string     `json:"cursor,omitempty"`
	Asc    bool       `json:"asc,omitempty"`
	Step   int64      `json:"step,omitempty"`
	ID     model.ID   `json:"id,omitempty"`
	By     []string   `json:"by,omitempty"`     // stats
	Aggs   []string   `json:"aggs,omitempty"`   // stats
	Align  bool       `json:"align,omitempty"`  // stats: buckets from Start
	Fields []string   `json:"fields,omitempty"` // facets; attrkeys: the keys asked about
}

type rpcResp struct {
	Err     string                 `json:"err,omitempty"`
	Waited  int64                  `json:"waited,omitempty"` // ns spent waiting for Until
	Kind    string                 `json:"kind,omitempty"`   // bad, notfound
	Missing []int                  `json:"missing,omitempty"`
	Records []model.Record         `json:"records,omitempty"`
	More    bool                   `json:"more,omitempty"`
	Buckets []query.Bucket         `json:"buckets,omitempty"`
	Record  *model.Record          `json:"record,omitempty"`
	Streams []store.StreamInfo     `json:"streams,omitempty"`
	Agents  []store.AgentInfo      `json:"agents,omitempty"`
	Runs    map[string][]model.Run `json:"runs,omitempty"`
	Stats   *query.StatsPartial    `json:"stats,omitempty"`
	Facets  *query.FacetsPartial   `json:"facets,omitempty"`
	Keys    []string               `json:"keys,omitempty"` // attrkeys: those some line in range has
}

var (
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
)

// local is a query view over some of this node's partition stores. It
// implements query.Store, query.Catalog and query.Getter.
type local struct{ stores []*store.Store }

func (l *local) Candidates(ctx context.Context, tr model.TimeRange, c *store.Cond, asc bool) iter.Seq2[[]store.ChunkRef, error] {
	seqs := make([]iter.Seq2[[]store.ChunkRef, error], len(l.stores))
	for i, st := range l.stores {
		seq := st.Candidates(ctx, tr, c, asc)
		seqs[i] = func(yield func([]store.ChunkRef, error) bool) {
			for refs, err := range seq {
				for j := range refs {
					refs[j].Src = i
				}
				if !yield(refs, err) {
					return
				}
			}
		}
	}
	return store.MergeCandidates(asc, seqs...)
}

func (l *local) Load(ctx context.Context, r store.ChunkRef, text bool) (*store.Lines, error) {
	return l.stores[r.Src].Load(ctx, r, text)
}

func (l *local) LoadWord(ctx context.Context, r store.ChunkRef, word string) (*store.Lines, error) {
	return l.stores[r.Src].LoadWord(ctx, r, word)
}

func (l *local) LoadAttrs(ctx context.Context, r store.ChunkRef) (*store.Lines, error) {
	return l.stores[r.Src].LoadAttrs(ctx, r)
}

func (l *local) LoadText(ctx context.Context, ln *store.Lines) error {
	return l.stores[ln.Src].LoadText(ctx, ln)
}

func (l *local) Streams() []store.StreamInfo {
	var out []store.StreamInfo
	for _, st := range l.stores {
		out = append(out, st.Streams()...)
	}
	return out
}

func (l *local) Agents() []store.AgentInfo {
	var out []store.AgentInfo
	for _, st := range l.stores {
		out = append(out, st.Agents()...)
	}
	return out
}

func (l *local) Runs() map[string][]model.Run {
	out := map[string][]model.Run{}
	for _, st := range l.stores {
		for k, v := range st.Runs() {
			out[k] = append(out[k], v...)
		}
	}
	return out
}

func (l *local) Get(id model.ID) (model.Record, error) {
	for _, st := range l.stores {
		if r, err := st.Get(id); err == nil {
			return r, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return r, err
		}
	}
	return model.Record{}, fmt.Errorf("record %s: %w", id, store.ErrNotFound)
}

// view returns the stores of the asked partitions this node owns and has
// stored up to req.Until (waiting up to req.Wait for that), and the ones it
// cannot answer for.
func (n *Node) view(ctx context.Context, req *rpcReq) (*local, []int) {
	l := &local{}
	var missing []int
	deadline := time.Now().Add(time.Duration(req.Wait))
	for i, id := range req.Parts {
		if id < 0 || id >= len(n.parts) {
			continue
		}
		p := n.parts[id]
		if len(req.Until) != len(req.Parts) {
			// From a node without read after ack (a rolling upgrade):
			// as it expects, a partition is answered for once ready.
			if !p.ready.Load() {
				missing = append(missing, id)
				continue
			}
		} else if !p.caughtUp(ctx, req.Until[i], deadline) {
			missing = append(missing, id)
			continue
		}
		p.mu.Lock()
		st := p.st
		p.mu.Unlock()
		if st == nil || !p.owned.Load() {
			missing = append(missing, id)
			continue
		}
		l.stores = append(l.stores, st)
	}
	return l, missing
}

// answer runs one request over this node's own partitions.
func (n *Node) answer(ctx context.Context, req *rpcReq) *rpcResp {
	start := time.Now()
	l, missing := n.view(ctx, req)
	resp := &rpcResp{Missing: missing, Waited: int64(time.Since(start))}
	fail := func(err error) *rpcResp {
		resp.Err = err.Error()
		switch {
		case errors.Is(err, query.ErrBadQuery):
			resp.Kind = "bad"
		case errors.Is(err, store.ErrNotFound):
			resp.Kind = "notfound"
		case errors.Is(err, query.ErrTooManyGroups):
			resp.Kind = "toomany"
		}
		return resp
	}
	switch req.Op {
	case "search", "histogram":
		q, err := req.Q.Query()
		if err != nil {
			return fail(err)
		}
		eng := query.New(l, query.DefaultOptions())
		tr := model.TimeRange{Start: req.Start, End: req.End}
		if req.Op == "histogram" {
			b, err := eng.Histogram(ctx, q, tr, time.Duration(req.Step))
			if err != nil {
				return fail(err)
			}
			resp.Buckets = b
			return resp
		}
		r, err := eng.Search(ctx, query.SearchParams{Query: q, Range: tr, Limit: req.Limit, Cursor: req.Cursor, Asc: req.Asc})
		if err != nil {
			return fail(err)
		}
		resp.Records, resp.More = r.Records, r.NextCursor != ""
	case "stats", "facets":
		return n.answerAgg(ctx, l, req, resp, fail)
	case "get":
		r, err := l.Get(req.ID)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return resp
			}
			return fail(err)
		}
		resp.Record = &r
	case "catalog":
		resp.Streams, resp.Agents, resp.Runs = l.Streams(), l.Agents(), l.Runs()
	case "attrkeys":
		if len(req.Fields) > maxAttrKeysAsked {
			return fail(fmt.Errorf("%w: %d attribute keys asked at once, at most %d", query.ErrBadQuery, len(req.Fields), maxAttrKeysAsked))
		}
		tr := model.TimeRange{Start: req.Start, End: req.End}
		for _, k := range req.Fields {
			if l.HasAttrKey(tr, k) {
				resp.Keys = append(resp.Keys, k)
			}
		}
	default:
		return fail(fmt.Errorf("%w: unknown cluster op %q", query.ErrBadQuery, req.Op))
	}
	return resp
}

// serveRPC answers another node's request.
func (n *Node) serveRPC(m *nats.Msg) {
	var req rpcReq
	var resp *rpcResp
	if err := json.Unmarshal(m.Data, &req); err != nil {
		resp = &rpcResp{Err: "bad cluster request: " + err.Error()}
	} else {
		ctx, cancel := context.WithTimeout(n.ctx, rpcTimeout)
		resp = n.answer(ctx, &req)
		cancel()
	}
	b, err := json.Marshal(resp)
	if err != nil {
		b, _ = json.Marshal(&rpcResp{Err: err.Error()})
	}
	out := zenc.EncodeAll(b, nil)
	if len(out) > maxPayload-1024 {
		out = zenc.EncodeAll([]byte(`{"err":"answer too large for one cluster message; narrow the query"}`), nil)
	}
	_ = m.Respond(out)
}

// plan splits every partition by owner; partitions without one are missing.
func (n *Node) plan() (map[string][]int, []int) {
	owners := *n.owners.Load()
	by := map[string][]int{}
	var missing []int
	for p, o := range owners {
		if o == "" || o == "?" {
			missing = append(missing, p)
			continue
		}
		by[o] = append(by[o], p)
	}
	return by, missing
}

// fanout sends req to every owner (itself in process) and returns the
// answers, and the partitions that could not be answered. Each owner answers
// as of the partitions' stream ends: at (taken at the start of a request
// that fans out several times), or, when nil, those when fanout started (see
// "Read after ack" above).
func (n *Node) fanout(ctx context.Context, req rpcReq, at *ends) ([]*rpcResp, query.Coverage, error) {
	start := time.Now()
	deadline := start.Add(n.cfg.ReadWait)
	by, missing := n.plan()
	var cov query.Coverage
	cov.Add(missing...)
	var se ends
	if at != nil {
		se = *at
		se.took = 0 // taken before, for the whole request
	} else {
		se = n.streamEnds(ctx, by, deadline)
	}
	type result struct {
		parts []int
		resp  *rpcResp
		err   error
	}
	results := make([]result, 0, len(by))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for node, parts := range by {
		r := req
		r.Parts, r.Until = nil, nil
		for _, p := range parts {
			end, ok := se.lookup(p)
			if !ok {
				// Its stream's end is unknown (no leader in time): what
				// was acked on it cannot be told, so it is missing.
				cov.Add(p)
				continue
			}
			r.Parts, r.Until = append(r.Parts, p), append(r.Until, end)
		}
		if len(r.Parts) == 0 {
			continue
		}
		r.Wait = int64(max(time.Until(deadline), 0))
		wg.Go(func() {
			var resp *rpcResp
			var err error
			if node == n.cfg.Node {
				resp = n.answer(ctx, &r)
			} else {
				resp, err = n.call(ctx, node, &r)
			}
			mu.Lock()
			results = append(results, result{r.Parts, resp, err})
			mu.Unlock()
		})
	}
	wg.Wait()
	var waited time.Duration
	out := make([]*rpcResp, 0, len(results))
	for _, r := range results {
		if r.err != nil {
			if ctx.Err() != nil {
				return nil, cov, ctx.Err()
			}
			n.log.Warn("cluster: owner did not answer", "parts", r.parts, "err", r.err)
			cov.Add(r.parts...)
			continue
		}
		waited = max(waited, time.Duration(r.resp.Waited))
		cov.Add(r.resp.Missing...)
		if r.resp.Err != "" {
			switch r.resp.Kind {
			case "bad":
				return nil, cov, fmt.Errorf("%w: %s", query.ErrBadQuery, strings.TrimPrefix(r.resp.Err, query.ErrBadQuery.Error()+": "))
			case "notfound":
				return nil, cov, fmt.Errorf("%s: %w", r.resp.Err, store.ErrNotFound)
			case "toomany":
				return nil, cov, fmt.Errorf("%w: %s", query.ErrTooManyGroups, strings.TrimPrefix(r.resp.Err, query.ErrTooManyGroups.Error()+": "))
			}
			n.log.Warn("cluster: owner failed", "parts", r.parts, "err", r.resp.Err)
			cov.Add(r.parts...)
			continue
		}
		out = append(out, r.resp)
	}
	n.ins.readWait.Observe((se.took + waited).Seconds())
	return out, cov, nil
}

// streamEnds is the last sequence of each owned partition's stream, asked of
// the stream's leader in parallel; a partition whose leader does not answer
// by deadline is left out. took is how long that took.
func (n *Node) streamEnds(ctx context.Context, by map[string][]int, deadline time.Time) ends {
	e := ends{seqs: make(map[int]uint64, n.cfg.Partitions)}
	start := time.Now()
	ictx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, parts := range by {
		for _, p := range parts {
			wg.Go(func() {
				seq, err := leaderEnd(ictx, n.nc, streamName(p))
				if err != nil {
					n.log.Debug("cluster: stream end unknown; partition missing from the answer", "partition", p, "err", err)
					return
				}
				mu.Lock()
				e.seqs[p] = seq
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	e.took = time.Since(start)
	return e
}

// ends are the partitions' stream ends a request is answered as of.
type ends struct {
	seqs map[int]uint64
	took time.Duration
}

func (e ends) lookup(p int) (uint64, bool) { s, ok := e.seqs[p]; return s, ok }

// leaderEnd is a stream's last sequence from its stream info (the JetStream
// API request itself: the client's Stream call decodes far more than this
// needs, on every query). Only the stream's leader answers that request (its
// state holds every batch it has acked); while the stream has no leader a
// replica may answer, with a state that can be behind, and its answer (no
// leader named) is not taken.
func leaderEnd(ctx context.Context, nc *nats.Conn, name string) (uint64, error) {
	m, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+name, nil)
	if err != nil {
		return 0, err
	}
	var info struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		Cluster *struct {
			Leader string `json:"leader"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return 0, err
	}
	switch {
	case info.Error != nil:
		return 0, errors.New(info.Error.Description)
	case info.Cluster != nil && info.Cluster.Leader == "":
		return 0, errors.New("the stream has no leader")
	}
	return info.State.LastSeq, nil
}

func (n *Node) call(ctx context.Context, node string, req *rpcReq) (*rpcResp, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
	}
	m, err := n.nc.RequestWithContext(ctx, rpcSubject+node, b)
	if err != nil {
		return nil, err
	}
	raw, err := zdec.DecodeAll(m.Data, nil)
	if err != nil {
		return nil, err
	}
	var resp rpcResp
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Search implements query.Backend over the whole cluster.
func (n *Node) Search(ctx context.Context, p query.SearchParams) (*query.SearchResult, error) {
	return n.search(ctx, p, nil)
}

// search is Search as of the stream ends at (nil: as of now).
func (n *Node) search(ctx context.Context, p query.SearchParams, at *ends) (*query.SearchResult, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	if p.Limit > query.DefaultOptions().MaxLimit {
		return nil, fmt.Errorf("%w: limit %d is over %d", query.ErrBadQuery, p.Limit, query.DefaultOptions().MaxLimit)
	}
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "search", Q: p.Query.Spec(), Start: p.Range.Start, End: p.Range.End,
		Limit: p.Limit, Cursor: p.Cursor, Asc: p.Asc}, at)
	if err != nil {
		return nil, err
	}
	pages := make([]query.Page, len(resps))
	for i, r := range resps {
		pages[i] = query.Page{Records: r.Records, More: r.More}
	}
	res := query.MergePages(pages, p.Limit, p.Asc)
	res.Coverage = cov
	return res, nil
}

// Histogram sums the owners' buckets (all aligned to multiples of step).
func (n *Node) Histogram(ctx context.Context, q *query.Query, tr model.TimeRange, step time.Duration) (*query.HistogramResult, error) {
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "histogram", Q: q.Spec(), Start: tr.Start, End: tr.End, Step: int64(step)}, nil)
	if err != nil {
		return nil, err
	}
	sum := map[int64]int{}
	for _, r := range resps {
		for _, b := range r.Buckets {
			sum[b.Start] += b.Count
		}
	}
	out := make([]query.Bucket, 0, len(sum))
	for s, c := range sum {
		out = append(out, query.Bucket{Start: s, Count: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	return &query.HistogramResult{Buckets: out, Coverage: cov}, nil
}

// Context answers a context request across the cluster: the record is
// looked up on its owner, and it and its neighbours are all read as of the
// partitions' stream ends when the request started.
func (n *Node) Context(ctx context.Context, p query.ContextParams) (*query.ContextResult, error) {
	by, _ := n.plan()
	se := n.streamEnds(ctx, by, time.Now().Add(n.cfg.ReadWait))
	at := asOf{n: n, ends: &se}
	g := &getter{asOf: at, ctx: ctx}
	res, err := query.ContextOver(ctx, at, g, p, query.DefaultOptions().MaxLimit)
	if err != nil {
		return nil, err
	}
	res.Coverage.Add(g.cov.Missing...)
	return res, nil
}

// maxAttrKeysAsked bounds the keys of one attrkeys request.
const maxAttrKeysAsked = 1024

// Resolve implements query.Backend for a live tail, which matches records
// itself: q's field:value terms whose field no partition has as an attribute
// in tr are read as text, as a single node does (query.Query.Resolve); the
// owners are asked which keys they hold. When an owner does not answer, q
// is taken as written: the attribute may be on the partitions it holds.
// (A search's terms are resolved by each owner over its own partitions.)
func (n *Node) Resolve(q *query.Query, tr model.TimeRange) *query.Query {
	var keys []string
	q.Resolve(func(k string) bool { keys = append(keys, k); return true })
	if len(keys) == 0 || len(keys) > maxAttrKeysAsked {
		return q
	}
	ctx, cancel := context.WithTimeout(n.ctx, rpcTimeout)
	defer cancel()
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "attrkeys", Fields: keys, Start: tr.Start, End: tr.End}, nil)
	if err != nil || cov.Partial() {
		n.log.Warn("cluster: a tail's attribute keys could not be checked on every partition; its field:value terms are taken as written",
			"err", err, "missing", cov.Missing)
		return q
	}
	known := map[string]bool{}
	for _, r := range resps {
		for _, k := range r.Keys {
			known[k] = true
		}
	}
	return q.Resolve(func(k string) bool { return known[k] })
}

// asOf searches the cluster as of fixed stream ends (query.Searcher).
type asOf struct {
	n    *Node
	ends *ends
}

func (a asOf) Search(ctx context.Context, p query.SearchParams) (*query.SearchResult, error) {
	return a.n.search(ctx, p, a.ends)
}

// getter looks a record up on its partition's owner (query.Getter); cov
// collects the partitions the lookups could not ask.
type getter struct {
	asOf
	ctx context.Context
	cov query.Coverage
}

func (g *getter) Get(id model.ID) (model.Record, error) {
	resps, cov, err := g.n.fanout(g.ctx, rpcReq{Op: "get", ID: id}, g.ends)
	g.cov.Add(cov.Missing...)
	if err != nil {
		return model.Record{}, err
	}
	for _, r := range resps {
		if r.Record != nil {
			return *r.Record, nil
		}
	}
	if cov.Partial() {
		// It may be in a partition that is moving: not "not found".
		return model.Record{}, fmt.Errorf("%w: record %s not found, but partitions %v have no live owner, or an owner behind what was acked, right now; retry", model.ErrUnavailable, id, cov.Missing)
	}
	return model.Record{}, fmt.Errorf("record %s: %w", id, store.ErrNotFound)
}

// Catalog gathers the owners' streams, agents and runs into one catalog.
func (n *Node) Catalog(ctx context.Context) (*query.CatalogResult, error) {
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "catalog"}, nil)
	if err != nil {
		return nil, err
	}
	c := &catalog{runs: map[string][]model.Run{}}
	for _, r := range resps {
		c.streams = append(c.streams, r.Streams...)
		c.agents = append(c.agents, r.Agents...)
		for k, v := range r.Runs {
			c.runs[k] = append(c.runs[k], v...)
		}
	}
	sort.Slice(c.streams, func(i, j int) bool { return c.streams[i].ID < c.streams[j].ID })
	sort.Slice(c.agents, func(i, j int) bool { return c.agents[i].ID < c.agents[j].ID })
	return &query.CatalogResult{Catalog: c, Coverage: cov}, nil
}

type catalog struct {
	streams []store.StreamInfo
	agents  []store.AgentInfo
	runs    map[string][]model.Run
}

func (c *catalog) Streams() []store.StreamInfo  { return c.streams }
func (c *catalog) Agents() []store.AgentInfo    { return c.agents }
func (c *catalog) Runs() map[string][]model.Run { return c.runs }

// HasAttrKey reports whether any of the stores may have attribute key in tr
// (query.AttrKeys).
func (l *local) HasAttrKey(tr model.TimeRange, key string) bool {
	for _, st := range l.stores {
		if st.HasAttrKey(tr, key) {
			return true
		}
	}
	return false
}
