package e2e

// Cluster mode end to end (SCALE-OUT.md): three `shiplog server` processes on
// embedded NATS JetStream, a node SIGKILLed while agents ship, and the alert
// evaluation lease moving to a survivor.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// queryObs is one query answer seen while the cluster changes.
type queryObs struct {
	at      time.Time
	node    string
	kind    string // search, histogram
	phase   int32  // when the query started: 0 writing, 1 every line acked, 2 every partition applied to the end
	code    int
	err     error
	partial bool
	missing []int32
	total   int // histogram total; search: records on the page
	written int // lines written when the answer came
	dups    []string
	body    string
}

// queryWatch queries search and histogram through some nodes, in turn,
// until stopped, and keeps every answer.
type queryWatch struct {
	mu      sync.Mutex
	nodes   []*clusterNode
	obs     []queryObs
	phase   atomic.Int32
	stop    chan struct{}
	done    chan struct{}
	written func() int
}

func watchQueries(nodes []*clusterNode, start, end time.Time, written func() int) *queryWatch {
	w := &queryWatch{nodes: nodes, stop: make(chan struct{}), done: make(chan struct{}), written: written}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			nd := w.nodes[i%len(w.nodes)]
			o := queryObs{at: time.Now(), node: nd.name, kind: "histogram", phase: w.phase.Load()}
			var body []byte
			o.code, o.total, o.partial, o.missing, body, o.err = nd.histogram("", start, end)
			o.written = written()
			if o.code != 200 {
				o.body = string(body)
			}
			w.add(o)

			o = queryObs{at: time.Now(), node: nd.name, kind: "search", phase: w.phase.Load()}
			code, page, body, err := nd.searchPage(url.Values{"q": {""}, "limit": {"200"}})
			o.code, o.err, o.written = code, err, written()
			if page != nil {
				o.partial, o.missing, o.total = page.Partial, page.Missing, len(page.Records)
				seen := map[string]bool{}
				for _, r := range page.Records {
					if seen[r.Message] {
						o.dups = append(o.dups, r.Message)
					}
					seen[r.Message] = true
				}
			} else {
				o.body = string(body)
			}
			w.add(o)
		}
	}()
	return w
}

func (w *queryWatch) add(o queryObs) {
	w.mu.Lock()
	w.obs = append(w.obs, o)
	w.mu.Unlock()
}

func (w *queryWatch) finish() []queryObs {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.obs
}

func (o *queryObs) String() string {
	s := fmt.Sprintf("%s %s via %s phase %d: code %d partial=%v missing=%v total=%d written=%d",
		o.at.Format("15:04:05.000"), o.kind, o.node, o.phase, o.code, o.partial, o.missing, o.total, o.written)
	if o.err != nil {
		s += fmt.Sprintf(" err=%v", o.err)
	}
	if o.body != "" {
		s += fmt.Sprintf(" body=%.200s", o.body)
	}
	if len(o.dups) > 0 {
		s += fmt.Sprintf(" dups=%v", first(o.dups, 3))
	}
	return s
}

// checkQueryInvariants checks every answer seen: an answer is complete or
// says partial with the partitions it lacks; never an error, never a
// duplicate; a complete histogram never counts fewer lines than an earlier
// complete one nor more than were written, and, once every line was acked
// and applied to the end of its stream, counts all n.
func checkQueryInvariants(t *testing.T, obs []queryObs, n int, since time.Time) {
	t.Helper()
	var bad []string
	maxTotal := -1
	partial, complete := 0, 0
	var partialAt []string
	for i := range obs {
		o := &obs[i]
		switch {
		case o.err != nil || o.code != 200:
			bad = append(bad, "not answered: "+o.String())
			continue
		case o.partial != (len(o.missing) > 0):
			bad = append(bad, "partial and missing_partitions disagree: "+o.String())
		case len(o.dups) > 0:
			bad = append(bad, "duplicates on one page: "+o.String())
		}
		if o.partial {
			partial++
			partialAt = append(partialAt, fmt.Sprintf("+%.1fs", o.at.Sub(since).Seconds()))
			continue
		}
		complete++
		if o.kind != "histogram" {
			continue
		}
		switch {
		case o.total < maxTotal:
			bad = append(bad, fmt.Sprintf("complete (partial=false) answer counts %d lines, an earlier complete one %d: silently short: %s", o.total, maxTotal, o))
		case o.total > o.written:
			bad = append(bad, fmt.Sprintf("counts more lines than were written (duplicates): %s", o))
		case o.phase >= 1 && o.total > n:
			bad = append(bad, fmt.Sprintf("counts more than the %d lines written: %s", n, o))
		case o.phase == 2 && o.total != n:
			bad = append(bad, fmt.Sprintf("complete answer after every line was acked and applied counts %d, want %d: silently short: %s", o.total, n, o))
		}
		maxTotal = max(maxTotal, o.total)
	}
	span := ""
	if len(partialAt) > 0 {
		span = fmt.Sprintf(", from %s to %s after the kill", partialAt[0], partialAt[len(partialAt)-1])
	}
	t.Logf("queries during the changes: %d answers, %d complete, %d partial%s", len(obs), complete, partial, span)
	if len(bad) > 0 {
		t.Errorf("%d answers break the partial contract:\n%s", len(bad), strings.Join(first(bad, 20), "\n"))
	}
}

// Three nodes, four agents shipping through them (each agent knows all three
// and fails over); the node owning the most partitions is SIGKILLed while
// they ship. Every acked line survives exactly once on every survivor, every
// answer during the takeover is complete or says partial, and the killed
// node comes back on its data and catches up.
func TestClusterKillOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	began := time.Now()
	t0 := began.Add(-time.Minute)
	nodes := startCluster(t, 3)
	waitSettled(t, nodes, 60*time.Second, false, nil)
	t.Logf("cluster of 3 live after %s", time.Since(began).Round(time.Millisecond))

	var agents []*shipAgent
	for i := 0; i < 4; i++ {
		var servers []string
		for j := 0; j < 3; j++ {
			servers = append(servers, nodes[(i+j)%3].grpcAddr) // each agent starts on a different node
		}
		agents = append(agents, startShipAgent(t, fmt.Sprintf("agent%d", i), strings.Join(servers, ",")))
	}
	written := func() int {
		n := 0
		for _, a := range agents {
			a.mu.Lock()
			n += len(a.written)
			a.mu.Unlock()
		}
		return n
	}
	stopWriting := make(chan struct{})
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(1)
		go a.feed(stopWriting, 25, 50*time.Millisecond, &wg) // 500 lines/s each
	}
	// Shipping and stored: some lines are searchable.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, total, _, _, _, err := nodes[0].histogram("", t0, t0.Add(time.Hour))
		if err == nil && total > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing stored after 30s of shipping\n%s", agents[0].lastLogLines(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Two more seconds of shipping, on purpose: the victim dies holding a
	// good part of the stream, not just its first lines.
	time.Sleep(2 * time.Second)

	// SIGKILL the node that owns the most partitions.
	st, err := nodes[0].status()
	if err != nil {
		t.Fatal(err)
	}
	victim := nodes[0]
	for _, nd := range nodes {
		if len(st.partitionsOf(nd.name)) > len(st.partitionsOf(victim.name)) {
			victim = nd
		}
	}
	var survivors []*clusterNode
	for _, nd := range nodes {
		if nd != victim {
			survivors = append(survivors, nd)
		}
	}
	owned := st.partitionsOf(victim.name)
	killedAt := time.Now()
	victim.kill()
	t.Logf("killed %s (partitions %v) with %d lines written", victim.name, owned, written())
	watch := watchQueries(survivors, t0, t0.Add(time.Hour), written)
	defer func() {
		select {
		case <-watch.done:
		default:
			watch.finish()
		}
	}()

	// Writing and querying go on for 4 s while the survivors take over: the
	// window the query watch and the agents' failover are tested in.
	time.Sleep(4 * time.Second)
	close(stopWriting)
	wg.Wait()
	for _, a := range agents {
		a.mu.Lock()
		if a.werr != nil {
			t.Fatalf("writing to %s: %v\n%s", a.name, a.werr, a.lastLogLines(20))
		}
		a.mu.Unlock()
		a.stdin.Close()
	}
	want := map[string]bool{}
	for _, a := range agents {
		for _, l := range a.written {
			want[l] = true
		}
	}
	n := len(want)
	t.Logf("stopped writing: %d lines", n)

	// At EOF an agent exits 0 only once every line is acked.
	failedOver := 0
	for _, a := range agents {
		select {
		case err := <-a.exited:
			if err != nil {
				t.Fatalf("%s: %v\n%s", a.name, err, a.lastLogLines(30))
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("%s did not finish within 90s of EOF\n%s", a.name, a.lastLogLines(30))
		}
		if strings.Contains(a.log(), "failed over") {
			failedOver++
		}
	}
	watch.phase.Store(1)
	t.Logf("every agent acked all its lines %s after the kill (%d of them failed over)", time.Since(killedAt).Round(time.Millisecond), failedOver)

	// The survivors own everything, live and applied to the stream's end.
	waitSettled(t, survivors, 60*time.Second, true, nil)
	watch.phase.Store(2)
	t.Logf("survivors own every partition, applied to the end, %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	for _, nd := range survivors {
		checkExactlyOnceOn(t, nd, "", want, 30*time.Second)
	}

	// The killed node comes back on its data and takes its share again.
	restartAt := time.Now()
	victim.launch()
	victim.waitReady(90 * time.Second)
	views := waitSettled(t, nodes, 90*time.Second, true, func(st *clusterStatus) bool {
		return len(st.partitionsOf(victim.name)) > 0
	})
	back := views[0].partitionsOf(victim.name)
	withData := 0
	for _, p := range views[0].Parts {
		if p.Owner == victim.name && p.LastSeq > 0 {
			withData++
		}
	}
	t.Logf("%s back, owning partitions %v (%d with data) %s after its restart", victim.name, back, withData, time.Since(restartAt).Round(time.Millisecond))
	checkExactlyOnceOn(t, victim, "", want, 30*time.Second)
	for _, nd := range survivors {
		checkExactlyOnceOn(t, nd, "", want, 30*time.Second)
	}
	checkQueryInvariants(t, watch.finish(), n, killedAt)
	for _, nd := range nodes {
		if p := nd.logProblems(200); strings.Contains(p, "panic:") || strings.Contains(p, "fatal error") {
			t.Errorf("%s crashed:\n%s", nd.name, p)
		}
	}
}

// notice is one webhook notification received.
type notice struct {
	at     time.Time
	status string
	rule   string
	alerts int
}

// noticeHook records the webhook notifications it receives.
type noticeHook struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []notice
}

func newNoticeHook(t *testing.T) *noticeHook {
	h := &noticeHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m struct {
			Status       string            `json:"status"`
			CommonLabels map[string]string `json:"commonLabels"`
			GroupLabels  map[string]string `json:"groupLabels"`
			Alerts       []json.RawMessage `json:"alerts"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rule := m.GroupLabels["alertname"]
		if rule == "" {
			rule = m.CommonLabels["alertname"]
		}
		h.mu.Lock()
		h.got = append(h.got, notice{at: time.Now(), status: m.Status, rule: rule, alerts: len(m.Alerts)})
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// count is the notifications of rule with status.
func (h *noticeHook) count(rule, status string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, x := range h.got {
		if x.rule == rule && x.status == status {
			n++
		}
	}
	return n
}

func (h *noticeHook) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

func (h *noticeHook) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for _, x := range h.got {
		parts = append(parts, fmt.Sprintf("%s %s %s (%d alerts)", x.at.Format("15:04:05.000"), x.rule, x.status, x.alerts))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// waitFor waits up to d for a notification of rule with status.
func (h *noticeHook) waitFor(t *testing.T, rule, status string, d time.Duration, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for h.count(rule, status) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no %s notification of %s within %s; got %s\n%s", status, rule, d, h, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeError writes one error line of service through nd, as agentID.
func writeError(t *testing.T, nd *clusterNode, agentID, service, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &shiplogv1.PushRequest{AgentId: agentID, Records: []*shiplogv1.Record{{Time: timestamppb.Now(),
		Service: service, Host: "host-" + service, Level: "error", Message: msg, Seq: 1}}}
	resp, err := shiplogv1.NewIngestServiceClient(nd.dial(t)).Write(ctx, req)
	if err != nil || resp.Accepted != 1 {
		t.Fatalf("write through %s: %v %v", nd.name, resp, err)
	}
}

// alertsOf is GET /v1/alerts through nd: state by rule.
func alertsOf(t *testing.T, nd *clusterNode) map[string]string {
	t.Helper()
	var r struct {
		Alerts []struct {
			Rule  string `json:"rule"`
			State string `json:"state"`
		} `json:"alerts"`
	}
	if code, body := nd.getJSON(t, "/v1/alerts", nil, &r); code != 200 {
		t.Fatalf("/v1/alerts through %s: %d %s", nd.name, code, body)
	}
	out := map[string]string{}
	for _, a := range r.Alerts {
		out[a.Rule] = a.State
	}
	return out
}

// waitAlertLeader waits until every node of nodes sees every partition live
// and the same alert leader, one of them, and returns the views.
func waitAlertLeader(t *testing.T, nodes []*clusterNode, d time.Duration) (string, []*clusterStatus) {
	t.Helper()
	var names []string
	for _, nd := range nodes {
		names = append(names, nd.name)
	}
	deadline := time.Now().Add(d)
	for {
		views := waitSettled(t, nodes, time.Until(deadline), false, func(st *clusterStatus) bool {
			return slices.Contains(names, st.AlertLeader)
		})
		agree := true
		for _, v := range views {
			agree = agree && v.AlertLeader == views[0].AlertLeader
		}
		if agree {
			return views[0].AlertLeader, views
		}
		if time.Now().After(deadline) {
			t.Fatalf("no agreed alert leader within %s", d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// The alert rules are evaluated by one node, the holder of the alert lease:
// a firing alert is notified once, not once per node. When that node is
// SIGKILLed, another takes the lease over with the replicated state: the
// firing alert is not notified again (nor resolved while the partitions
// of the dead node are unreadable), and evaluation goes on (a second rule
// fires once, after the takeover).
func TestClusterAlertLeaseFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	hook := newNoticeHook(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(fmt.Sprintf(`
receivers:
  - name: ops
    webhook_url: %s/hook
groups:
  - name: cluster
    interval: 1s
    rules:
      - alert: FirstErrors
        logs: 'service:first AND level:error'
        window: 2m
        threshold: '> 15'
        for: 0s
      - alert: SecondErrors
        logs: 'service:second AND level:error'
        window: 2m
        threshold: '> 0'
        for: 0s
`, hook.srv.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := startCluster(t, 3, "--rules", rules)
	leaderName, views := waitAlertLeader(t, nodes, 60*time.Second)
	var leader *clusterNode
	var survivors []*clusterNode
	for _, nd := range nodes {
		if nd.name == leaderName {
			leader = nd
		} else {
			survivors = append(survivors, nd)
		}
	}
	logs := func() string {
		var b strings.Builder
		for _, nd := range nodes {
			fmt.Fprintf(&b, "--- %s:\n%s\n", nd.name, nd.logProblems(30))
		}
		return b.String()
	}

	// One error line in each partition, and a threshold that only all of
	// them pass: an evaluation that counts over fewer partitions (the dead
	// leader's, until survivors have taken them over) sees the alert resolve.
	for p, id := range agentIDPerPartition(16) {
		writeError(t, survivors[p%2], id, "first", fmt.Sprintf("first error in partition %d: connection refused", p))
	}
	t.Logf("alert leader %s owns partitions %v", leaderName, views[0].partitionsOf(leaderName))
	hook.waitFor(t, "FirstErrors", "firing", 30*time.Second, logs)
	time.Sleep(3 * time.Second) // several more evaluations, on every node that might evaluate
	if n := hook.total(); n != 1 {
		t.Fatalf("%d notifications for one firing alert, want 1 (one evaluator in the cluster): %s", n, hook)
	}
	for _, nd := range nodes {
		if got := alertsOf(t, nd); got["FirstErrors"] != "firing" {
			t.Errorf("/v1/alerts through %s before the kill: %v", nd.name, got)
		}
	}

	// SIGKILL the leader: a survivor takes the lease.
	killedAt := time.Now()
	leader.kill()
	var newLeader string
	deadline := time.Now().Add(30 * time.Second)
	var slowest time.Duration // of GET /v1/cluster, while the cluster heals
	for {
		begin := time.Now()
		st0, err0 := survivors[0].status()
		mid := time.Now()
		st1, err1 := survivors[1].status()
		slowest = max(slowest, mid.Sub(begin), time.Since(mid))
		if err0 == nil && err1 == nil && st0.AlertLeader == st1.AlertLeader && st0.AlertLeader != "" && st0.AlertLeader != leaderName &&
			!slices.Contains(st0.nodeNames(), leaderName) && !slices.Contains(st1.nodeNames(), leaderName) {
			newLeader = st0.AlertLeader
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new alert leader 30s after killing %s: %v %v / %v %v\n%s", leaderName, st0, err0, st1, err1, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	takeover := time.Now()
	t.Logf("alert lease: %s killed at %s, %s seen as the new leader by both survivors after %s (slowest GET /v1/cluster: %s)",
		leaderName, killedAt.Format("15:04:05.000"), newLeader, takeover.Sub(killedAt).Round(time.Millisecond), slowest.Round(time.Millisecond))

	// Evaluation goes on on the new leader: a second rule fires, once.
	writeError(t, survivors[1], "alert-agent-second", "second", "second error: disk full")
	// A partition's new owner can take ~20s to read it.
	for deadline := time.Now().Add(45 * time.Second); hook.count("SecondErrors", "firing") == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			var why []string
			for _, nd := range survivors {
				var r alertRules
				nd.getJSON(t, "/v1/alerts/rules", nil, &r)
				for _, x := range r.Rules {
					why = append(why, fmt.Sprintf("%s: %s last evaluated %s (%s, %s)", nd.name, x.Name, x.LastEvaluation.Format("15:04:05.000"), x.State, x.Health))
				}
				if l := firstMatch(nd.logText(), "cannot start alert evaluation"); l != "" {
					why = append(why, nd.name+": "+l)
				}
			}
			t.Fatalf("no firing notification of SecondErrors within 45s of its line (the lease holder is %s); got %s\n%s\n%s",
				newLeader, hook, strings.Join(why, "\n"), logs())
		}
	}
	// FirstErrors must not resolve in the 10 s after the takeover (while
	// the new owners read the dead leader's partitions): watch that window.
	if w := time.Until(takeover.Add(10 * time.Second)); w > 0 {
		time.Sleep(w)
	}
	if f, r := hook.count("FirstErrors", "firing"), hook.count("FirstErrors", "resolved"); f != 1 || r != 0 {
		t.Errorf("FirstErrors, firing all along: %d firing and %d resolved notifications, want 1 and 0 (the new leader must go on from the replicated state, and not count over partitions it cannot read yet): %s",
			f, r, hook)
	}
	if f, r := hook.count("SecondErrors", "firing"), hook.count("SecondErrors", "resolved"); f != 1 || r != 0 {
		t.Errorf("SecondErrors: %d firing and %d resolved notifications, want 1 and 0: %s", f, r, hook)
	}
	// Every survivor lists both firing alerts.
	deadline = time.Now().Add(10 * time.Second)
	for _, nd := range survivors {
		for {
			got := alertsOf(t, nd)
			if got["FirstErrors"] == "firing" && got["SecondErrors"] == "firing" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("/v1/alerts through %s after the takeover: %v, want FirstErrors and SecondErrors firing", nd.name, got)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	// The history has no end of FirstErrors either.
	var hist struct {
		Transitions []struct {
			Time time.Time `json:"time"`
			Rule string    `json:"rule"`
			From string    `json:"from"`
			To   string    `json:"to"`
		} `json:"transitions"`
	}
	if code, body := survivors[0].getJSON(t, "/v1/alerts/history", url.Values{"limit": {"100"}}, &hist); code != 200 {
		t.Fatalf("/v1/alerts/history: %d %s", code, body)
	}
	var steps []string
	for _, tr := range hist.Transitions {
		steps = append(steps, fmt.Sprintf("%s %s %s->%s", tr.Time.Format("15:04:05.000"), tr.Rule, tr.From, tr.To))
		if tr.Rule == "FirstErrors" && (tr.To == "resolved" || tr.To == "inactive") {
			t.Errorf("history: FirstErrors %s->%s at %s, while its lines were all in its window", tr.From, tr.To, tr.Time.Format("15:04:05.000"))
		}
	}
	t.Logf("notifications: %s; history (newest first): %s", hook, strings.Join(steps, "; "))
}

// agentIDPerPartition returns, for each of parts partitions, an agent id
// whose batches go to it.
func agentIDPerPartition(parts int) []string {
	ids := make([]string, parts)
	left := parts
	for i := 0; left > 0; i++ {
		id := fmt.Sprintf("alert-agent-%d", i)
		if p := cluster.PartitionOf(&model.Batch{AgentID: id}, parts); ids[p] == "" {
			ids[p] = id
			left--
		}
	}
	return ids
}
