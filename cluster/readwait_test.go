package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/server"
	"github.com/shiplog/shiplog/store"
)

// holdGate holds a node's consumers back while closed (a test hook in place
// of a starved CPU: the owner stays behind its streams for as long as the
// test wants, exactly).
type holdGate struct{ ch atomic.Pointer[chan struct{}] }

func (g *holdGate) hold() {
	ch := make(chan struct{})
	g.ch.Store(&ch)
}

func (g *holdGate) release() {
	if ch := g.ch.Swap(nil); ch != nil {
		close(*ch)
	}
}

func (g *holdGate) wait(ctx context.Context, _ int) {
	if ch := g.ch.Load(); ch != nil {
		select {
		case <-*ch:
		case <-ctx.Done():
		}
	}
}

type testNode struct {
	*Node
	gate *holdGate
	reg  *prometheus.Registry
}

func freeListen(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startTestCluster starts n nodes in process (their embedded NATS servers
// routed over loopback) and waits until every partition is live on every
// node's view.
func startTestCluster(t *testing.T, n, parts int, readWait time.Duration) []*testNode {
	t.Helper()
	root := t.TempDir()
	listens := make([]string, n)
	for i := range listens {
		listens[i] = freeListen(t)
	}
	nodes := make([]*testNode, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		tn := &testNode{gate: &holdGate{}, reg: prometheus.NewRegistry()}
		nodes[i] = tn
		var peers []string
		for j, l := range listens {
			if j != i {
				peers = append(peers, l)
			}
		}
		cfg := Config{Node: fmt.Sprintf("n%d", i+1), Listen: listens[i], Peers: peers, Partitions: parts,
			Dir: filepath.Join(root, fmt.Sprintf("n%d", i+1)), MaxStore: 1 << 30, MaxMemory: 64 << 20,
			LeaseTTL: 3 * time.Second, ReadWait: readWait, StartTimeout: time.Minute,
			Store: store.DefaultOptions(), Registerer: tn.reg, beforeApply: tn.gate.wait}
		wg.Go(func() { tn.Node, errs[i] = Start(context.Background(), cfg) })
	}
	wg.Wait()
	for i, tn := range nodes {
		if tn.Node != nil {
			t.Cleanup(func() { tn.gate.release(); _ = tn.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("start n%d: %v", i+1, errs[i])
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		settled := true
		for _, tn := range nodes {
			st, err := tn.Status(context.Background())
			if err != nil || st.Partial || len(st.Nodes) != n {
				settled = false
			}
		}
		if settled {
			return nodes
		}
		if time.Now().After(deadline) {
			v, _ := nodes[0].Status(context.Background())
			t.Fatalf("cluster not settled within 60s: %+v", v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentOwnedBy finds an agent id, starting with prefix, whose batches go
// to a partition owner owns.
func agentOwnedBy(t *testing.T, nodes []*testNode, owner string, prefix string) string {
	t.Helper()
	owners := *nodes[0].owners.Load()
	for i := range 10000 {
		a := fmt.Sprintf("%s-%d", prefix, i)
		if owners[PartitionOf(&model.Batch{AgentID: a}, len(owners))] == owner {
			return a
		}
	}
	t.Fatalf("no agent lands on a partition of %s (%v)", owner, owners)
	return ""
}

// acked is every line acked so far.
type acked struct {
	mu    sync.Mutex
	lines map[string]bool   // of service "svc"
	other int               // lines of other services
	seqs  map[string]uint64 // agent -> last seq written
}

// snapshot is the lines of service "svc" acked so far, and how many lines
// were acked in all.
func (a *acked) snapshot() (map[string]bool, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.lines))
	for l := range a.lines {
		out[l] = true
	}
	return out, len(out) + a.other
}

// write appends k lines of agent and service through n and records them
// once acked.
func (a *acked) write(t *testing.T, n *testNode, agent, service string, k int, base time.Time) {
	a.mu.Lock()
	from := a.seqs[agent] + 1
	a.seqs[agent] += uint64(k)
	a.mu.Unlock()
	b := model.Batch{AgentID: agent}
	for s := from; s < from+uint64(k); s++ {
		b.Records = append(b.Records, model.Record{Time: base.Add(time.Duration(s) * time.Millisecond).UnixNano(),
			Labels: model.Labels{Service: service, Host: agent}, Message: fmt.Sprintf("%s line %06d", agent, s), Seq: s})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := n.Append(ctx, b)
	if err != nil || res.Accepted != k {
		t.Errorf("append through %s: %+v %v", n.Name(), res, err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if service != "svc" {
		a.other += k
		return
	}
	for _, r := range b.Records {
		a.lines[r.Message] = true
	}
}

// answer is what one node said to one query.
type answer struct {
	node, kind string
	missing    []int
	lines      []string            // search, context
	ids        map[string]model.ID // search: by message
	count      int                 // histogram, alert
	agents     []string            // catalog
	err        error
}

// ask runs through n, as of now: a search of service svc, a histogram of
// everything, the context after anchor (when set), a logs: alert count of
// service svc and the catalog.
func ask(n *testNode, tr model.TimeRange, anchor model.ID) []answer {
	var out []answer
	var mu sync.Mutex
	var wg sync.WaitGroup
	add := func(a answer) {
		mu.Lock()
		out = append(out, a)
		mu.Unlock()
	}
	q, _ := query.Parse("")
	svc, err := query.Parse("service:svc")
	if err != nil {
		panic(err)
	}
	wg.Go(func() {
		a := answer{node: n.Name(), kind: "search"}
		res, err := n.Search(context.Background(), query.SearchParams{Query: svc, Range: tr, Limit: 10000})
		a.err = err
		if err == nil {
			a.missing = res.Coverage.Missing
			a.ids = map[string]model.ID{}
			for _, r := range res.Records {
				a.lines = append(a.lines, r.Message)
				a.ids[r.Message] = r.ID
			}
		}
		add(a)
	})
	wg.Go(func() {
		a := answer{node: n.Name(), kind: "histogram"}
		h, err := n.Histogram(context.Background(), q, tr, time.Hour)
		a.err = err
		if err == nil {
			a.missing = h.Coverage.Missing
			for _, b := range h.Buckets {
				a.count += b.Count
			}
		}
		add(a)
	})
	if anchor != (model.ID{}) {
		wg.Go(func() {
			// The lines after the anchor on its host, as the UI's context view.
			a := answer{node: n.Name(), kind: "context"}
			res, err := n.Context(context.Background(), query.ContextParams{ID: anchor, After: 10000})
			a.err = err
			if err == nil {
				a.missing = res.Coverage.Missing
			}
			if errors.Is(err, model.ErrUnavailable) {
				// The anchor's partition is behind: 503, retry. Partial.
				a.err, a.missing = nil, append(a.missing, -1)
			}
			if a.err == nil && err == nil {
				a.lines = append(a.lines, res.Record.Message)
				for _, r := range res.After {
					a.lines = append(a.lines, r.Message)
				}
			}
			add(a)
		})
	}
	wg.Go(func() {
		// A logs: alert rule's count, as the evaluator takes it: an
		// Unavailable error is partial (the rule keeps its state).
		a := answer{node: n.Name(), kind: "alert"}
		gs, err := server.AlertLogsQuery(n.Node)(context.Background(), alert.LogsQuery{Query: "service:svc",
			Start: time.Unix(0, tr.Start), End: time.Unix(0, tr.End)})
		switch {
		case errors.Is(err, model.ErrUnavailable):
			a.missing = []int{-1}
		case err != nil:
			a.err = err
		default:
			for _, g := range gs {
				a.count += int(g.Count)
			}
		}
		add(a)
	})
	wg.Go(func() {
		a := answer{node: n.Name(), kind: "catalog"}
		c, err := n.Catalog(context.Background())
		a.err = err
		if err == nil {
			a.missing = c.Coverage.Missing
			for _, ag := range c.Agents() {
				a.agents = append(a.agents, ag.ID)
			}
		}
		add(a)
	})
	wg.Wait()
	return out
}

// check reports how a answers against want (every line of service svc
// acked before the query started) and total (every line acked before it):
// complete answers hold all of it.
func check(t *testing.T, round int, a answer, want map[string]bool, total int, agents []string, anchorAgent string) (partial bool) {
	t.Helper()
	if a.err != nil {
		t.Errorf("round %d: %s via %s: %v", round, a.kind, a.node, a.err)
		return false
	}
	if len(a.missing) > 0 {
		return true
	}
	switch a.kind {
	case "search":
		seen := make(map[string]int, len(a.lines))
		for _, l := range a.lines {
			seen[l]++
		}
		var lost []string
		for l := range want {
			if seen[l] == 0 {
				lost = append(lost, l)
			}
		}
		for l, c := range seen {
			if c > 1 {
				t.Errorf("round %d: search via %s: %q %d times", round, a.node, l, c)
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			t.Errorf("round %d: search via %s lacks %d of %d acked lines (first %v) and does not say partial", round, a.node, len(lost), len(want), lost[:min(3, len(lost))])
		}
	case "histogram":
		if a.count < total {
			t.Errorf("round %d: histogram via %s counts %d, %d lines were acked before it, and it does not say partial", round, a.node, a.count, total)
		}
	case "context":
		seen := map[string]bool{}
		for _, l := range a.lines {
			seen[l] = true
		}
		lost := 0
		for l := range want {
			if strings.HasPrefix(l, anchorAgent+" ") && !seen[l] {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("round %d: context via %s lacks %d acked lines of %s and does not say partial", round, a.node, lost, anchorAgent)
		}
	case "alert":
		if a.count < len(want) {
			t.Errorf("round %d: alert count via %s is %d, %d lines were acked before it, and it was not refused as partial", round, a.node, a.count, len(want))
		}
	case "catalog":
		for _, ag := range agents {
			if !slices.Contains(a.agents, ag) {
				t.Errorf("round %d: catalog via %s lacks agent %s (acked before it) and does not say partial", round, a.node, ag)
			}
		}
	}
	return false
}

// TestClusterReadAfterAck: one node's consumers are held back (a test hook,
// as a starved CPU would), lines are acked through another node, and every
// node is asked at once (search, histogram, context, a logs: alert rule's
// count through server.AlertLogsQuery, the catalog), many rounds: each
// answer holds every line acked before it or says partial (for the alert
// count: is refused as Unavailable, so the rule keeps its state). In rounds where the consumers are held through
// the queries, the answers must say partial; in the others, they are let go
// shortly after the write, and the answers may wait for them.
func TestClusterReadAfterAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	const parts, rounds = 8, 24
	readWait := 500 * time.Millisecond
	nodes := startTestCluster(t, 3, parts, readWait)
	base := time.Now().Add(-time.Minute).Truncate(time.Second)
	tr := model.TimeRange{Start: base.Add(-time.Hour).UnixNano(), End: base.Add(time.Hour).UnixNano()}
	ak := &acked{lines: map[string]bool{}, seqs: map[string]uint64{}}
	var agents []string
	for _, tn := range nodes {
		agents = append(agents, agentOwnedBy(t, nodes, tn.Name(), "a"+tn.Name()))
	}
	// Background writers on every node's partitions, the whole time.
	stop := make(chan struct{})
	var bg sync.WaitGroup
	for i, tn := range nodes {
		ag := agentOwnedBy(t, nodes, tn.Name(), "bg"+tn.Name())
		bg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ak.write(t, nodes[(i+1)%3], ag, "bg", 10, base)
				time.Sleep(20 * time.Millisecond) // a steady trickle, not a flood
			}
		})
	}
	var anchor model.ID // the first line of agents[0], once a search found it
	var partials, complete int
	var heldPartial int
	for r := range rounds {
		victim := nodes[r%3]
		held := r%2 == 1 // held through the queries, or let go at once
		victim.gate.hold()
		// The partition written stays the victim's through the round unless
		// a lease is lost (a starved machine): then nothing is asserted of
		// the held answers.
		vp := victim.parts[PartitionOf(&model.Batch{AgentID: agents[r%3]}, parts)]
		owned := vp.owned.Load()
		ak.write(t, nodes[(r+1)%3], agents[r%3], "svc", 50, base)
		want, total := ak.snapshot()
		wantAgents := slices.Clone(agents[:min(r+1, 3)])
		if !held {
			// Let go while the queries below are (likely) in flight: any
			// interleaving is right, so the delay is only to vary it.
			go func() { time.Sleep(20 * time.Millisecond); victim.gate.release() }()
		}
		var answers []answer
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, tn := range nodes {
			wg.Go(func() {
				a := ask(tn, tr, anchor)
				mu.Lock()
				answers = append(answers, a...)
				mu.Unlock()
			})
		}
		wg.Wait()
		owned = owned && vp.owned.Load()
		victim.gate.release()
		if held && !owned {
			t.Logf("round %d: %s lost the partition written during the round; its answers are only checked for completeness", r, victim.Name())
		}
		for _, a := range answers {
			if a.kind == "search" && len(a.missing) == 0 && anchor == (model.ID{}) {
				anchor = a.ids[agents[0]+" line 000001"]
			}
			if check(t, r, a, want, total, wantAgents, agents[0]) {
				partials++
				if held {
					heldPartial++
				}
			} else {
				complete++
				if held && owned && a.err == nil {
					// The victim stored nothing since the write: a complete
					// answer here would be short, whatever check found.
					t.Errorf("round %d: %s via %s answered complete while %s's consumers were held behind an acked write", r, a.kind, a.node, victim.Name())
				}
			}
		}
		if t.Failed() {
			break
		}
	}
	close(stop)
	bg.Wait()
	t.Logf("%d rounds: %d complete answers, %d partial (%d of them while the owner was held)", rounds, complete, partials, heldPartial)
	if t.Failed() {
		return
	}
	measureReadWait(t, nodes, tr, base, ak)
}

// measureReadWait logs what read after ack adds to a query: idle, then with
// writers busy on every node.
func measureReadWait(t *testing.T, nodes []*testNode, tr model.TimeRange, base time.Time, ak *acked) {
	q, _ := query.Parse("")
	run := func(label string) {
		before := readWaitSum(t, nodes[0])
		var took []time.Duration
		partial := 0
		for range 40 {
			start := time.Now()
			h, err := nodes[0].Histogram(context.Background(), q, tr, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
			if h.Coverage.Partial() {
				partial++
			}
		}
		after := readWaitSum(t, nodes[0])
		var fetch []time.Duration
		for range 40 {
			by, _ := nodes[0].plan()
			fetch = append(fetch, nodes[0].streamEnds(context.Background(), by, time.Now().Add(time.Second)).took)
		}
		slices.Sort(took)
		slices.Sort(fetch)
		cnt := after.count - before.count
		r := func(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
		t.Logf("%s: %d histograms via %s: p50 %s, p90 %s; read after ack added %s on average (stream ends plus the owners' wait); "+
			"taking the %d streams' ends alone: p50 %s, p90 %s; %d partial",
			label, len(took), nodes[0].Name(), r(took[len(took)/2]), r(took[len(took)*9/10]),
			r(time.Duration((after.sum-before.sum)/float64(cnt)*1e9)), nodes[0].Partitions(), r(fetch[len(fetch)/2]), r(fetch[len(fetch)*9/10]), partial)
	}
	run("idle")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, tn := range nodes {
		for k := range 2 {
			ag := agentOwnedBy(t, nodes, tn.Name(), fmt.Sprintf("load%d%s", k, tn.Name()))
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ak.write(t, nodes[(i+k)%3], ag, "load", 200, base)
				}
			})
		}
	}
	// Measure once the load is on: as many batches acked as there are writers.
	_, before := ak.snapshot()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n := ak.snapshot(); n >= before+6*200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the writers had no batch acked within 60s")
		}
	}
	run("under load (6 writers of 200-line batches)")
	close(stop)
	wg.Wait()
}

type histSum struct {
	sum   float64
	count uint64
}

func readWaitSum(t *testing.T, n *testNode) histSum {
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "shiplog_cluster_read_wait_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			return histSum{h.GetSampleSum(), h.GetSampleCount()}
		}
	}
	t.Fatal("no shiplog_cluster_read_wait_seconds")
	return histSum{}
}
