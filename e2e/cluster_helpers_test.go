package e2e

// Helpers of the cluster tests: several `shiplog server` processes in cluster
// mode started together (a node only answers /readyz once a quorum of its
// peers is up, so startServer, which waits for each in turn, cannot start
// them), GET /v1/cluster, and `shiplog agent` processes fed through a pipe.

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// clusterNode is one node of a test cluster: a server with its name and its
// --cluster-listen address.
type clusterNode struct {
	*server
	name   string
	listen string
	secret string // the cluster secret it was started with ("" none)
}

// clusterPort picks a free loopback port for --cluster-listen. Unlike HTTP
// and gRPC (which listen on 127.0.0.1:0 and report it), every node's peer
// list must name the others' route ports before any of them starts, so these
// are picked, closed and passed on: the one place a port can be taken in
// between, and the test then fails at start, not later.
func clusterPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// clusterHTTP is the client of the cluster tests: JetStream calls behind
// /v1/cluster can take seconds while a stream has no leader.
var clusterHTTP = &http.Client{Timeout: 30 * time.Second}

// startCluster starts n nodes of one cluster (lease TTL 3s, 16 partitions)
// with extra flags each, and waits until every one answers /readyz. Unless
// extra sets --cluster-secret-file or --cluster-tls-cert, the nodes share a
// random secret (--cluster-secret-file), so every cluster test runs with
// authenticated routes.
func startCluster(t *testing.T, n int, extra ...string) []*clusterNode {
	t.Helper()
	root := t.TempDir()
	var secret string
	if !slices.Contains(extra, "--cluster-secret-file") && !slices.Contains(extra, "--cluster-tls-cert") {
		secret = rand.Text()
		file := filepath.Join(root, "cluster-secret")
		if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		extra = append([]string{"--cluster-secret-file", file}, extra...)
	}
	nodes := make([]*clusterNode, n)
	var listens []string
	for i := range nodes {
		nd := &clusterNode{name: fmt.Sprintf("n%d", i+1), listen: clusterPort(t), secret: secret}
		nd.server = &server{t: t, dir: filepath.Join(root, nd.name)}
		listens = append(listens, nd.listen)
		nodes[i] = nd
	}
	for _, nd := range nodes {
		nd.extraFlags = append([]string{"--node", nd.name, "--cluster-listen", nd.listen,
			"--cluster-peers", strings.Join(listens, ","), "--cluster-partitions", "16", "--cluster-lease-ttl", "3s",
			"--cluster-max-store", "2GiB", "--cluster-max-memory", "64MiB"}, extra...)
		nd.launch()
		t.Cleanup(nd.kill)
	}
	for _, nd := range nodes {
		nd.waitReady(90 * time.Second)
	}
	t.Cleanup(func() {
		// The nodes' logs, on failure or when asked (the data goes with
		// t.TempDir).
		if !t.Failed() && os.Getenv("SHIPLOG_E2E_LOGS") == "" {
			return
		}
		for _, nd := range nodes {
			text := nd.logText()
			if os.Getenv("SHIPLOG_E2E_LOGS") == "" {
				text = nd.logProblems(60)
			}
			t.Logf("--- log of %s:\n%s", nd.name, text)
		}
	})
	return nodes
}

// waitReady waits for the node's start (it prints its addresses once a
// quorum of its peers is up) and then until /readyz answers 200.
func (nd *clusterNode) waitReady(d time.Duration) { nd.waitStarted(d) }

// clusterStatus is GET /v1/cluster.
type clusterStatus struct {
	Node        string `json:"node"`
	AlertLeader string `json:"alert_leader"`
	Nodes       []struct {
		Name       string `json:"name"`
		Partitions []int  `json:"partitions"`
		Alerts     bool   `json:"alerts"`
	} `json:"nodes"`
	Parts []struct {
		Partition int    `json:"partition"`
		Owner     string `json:"owner"`
		State     string `json:"state"`
		LastSeq   uint64 `json:"last_seq"`
		Applied   uint64 `json:"applied_seq"`
		Lag       uint64 `json:"lag"`
	} `json:"partition_owners"`
	Partial bool  `json:"partial"`
	Missing []int `json:"missing_partitions"`
}

func (st *clusterStatus) nodeNames() []string {
	var out []string
	for _, n := range st.Nodes {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// partitionsOf is the partitions node owns, by the partition table.
func (st *clusterStatus) partitionsOf(node string) []int {
	var out []int
	for _, p := range st.Parts {
		if p.Owner == node {
			out = append(out, p.Partition)
		}
	}
	return out
}

// settled reports whether every partition is live with no lag, owned by
// one of nodes, and the live nodes are exactly nodes.
func (st *clusterStatus) settled(nodes []string, wantLag0 bool) bool {
	if st.Partial || len(st.Missing) != 0 || len(st.Parts) != 16 || !slices.Equal(st.nodeNames(), nodes) {
		return false
	}
	for _, p := range st.Parts {
		if p.State != "live" || !slices.Contains(nodes, p.Owner) || (wantLag0 && (p.Lag != 0 || p.Applied != p.LastSeq)) {
			return false
		}
	}
	return true
}

// summary is a one-line view of the partition table.
func (st *clusterStatus) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node=%s nodes=%v alert_leader=%q partial=%v missing=%v parts:", st.Node, st.nodeNames(), st.AlertLeader, st.Partial, st.Missing)
	for _, p := range st.Parts {
		fmt.Fprintf(&b, " %d:%s/%s/%d/%d", p.Partition, p.Owner, p.State, p.Applied, p.LastSeq)
	}
	return b.String()
}

// status GETs /v1/cluster; an error for no answer or a non-200 one.
func (nd *clusterNode) status() (*clusterStatus, error) {
	code, body, err := httpGet(clusterHTTP, "http://"+nd.httpAddr, "/v1/cluster", nil)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /v1/cluster: %d %.300s", code, body)
	}
	var st clusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("GET /v1/cluster: %v: %.300s", err, body)
	}
	return &st, nil
}

// waitSettled waits until every node of nodes sees exactly them, every
// partition live (and with wantLag0 applied up to the stream's end) and
// cond (if not nil) holds on each view. It returns the last view of each.
func waitSettled(t *testing.T, nodes []*clusterNode, d time.Duration, wantLag0 bool, cond func(*clusterStatus) bool) []*clusterStatus {
	t.Helper()
	var names []string
	for _, nd := range nodes {
		names = append(names, nd.name)
	}
	slices.Sort(names)
	deadline := time.Now().Add(d)
	var last []string
	for {
		views := make([]*clusterStatus, len(nodes))
		ok := true
		last = last[:0]
		for i, nd := range nodes {
			st, err := nd.status()
			if err != nil {
				ok = false
				last = append(last, nd.name+": "+err.Error())
				continue
			}
			views[i] = st
			last = append(last, st.summary())
			if !st.settled(names, wantLag0) || (cond != nil && !cond(st)) {
				ok = false
			}
		}
		if ok {
			return views
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %v not settled within %s:\n%s", names, d, strings.Join(last, "\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// clusterPage is one search answer in cluster mode.
type clusterPage struct {
	Records []struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	} `json:"records"`
	NextCursor string  `json:"next_cursor"`
	Partial    bool    `json:"partial"`
	Missing    []int32 `json:"missing_partitions"`
}

// searchPage is one GET /v1/logs:search: the status, the decoded answer
// (when 200) and the raw body.
func (nd *clusterNode) searchPage(params url.Values) (int, *clusterPage, []byte, error) {
	code, body, err := httpGet(clusterHTTP, "http://"+nd.httpAddr, "/v1/logs:search", params)
	if err != nil || code != 200 {
		return code, nil, body, err
	}
	var p clusterPage
	if err := json.Unmarshal(body, &p); err != nil {
		return code, nil, body, fmt.Errorf("decode search: %v", err)
	}
	return code, &p, body, nil
}

// histogram is one GET /v1/logs:histogram of q over [start, end).
func (nd *clusterNode) histogram(q string, start, end time.Time) (code int, total int, partial bool, missing []int32, body []byte, err error) {
	code, body, err = httpGet(clusterHTTP, "http://"+nd.httpAddr, "/v1/logs:histogram", url.Values{"q": {q},
		"start": {start.UTC().Format(time.RFC3339Nano)}, "end": {end.UTC().Format(time.RFC3339Nano)}, "step": {"1m"}})
	if err != nil || code != 200 {
		return
	}
	var h struct {
		Total   int     `json:"total"`
		Partial bool    `json:"partial"`
		Missing []int32 `json:"missing_partitions"`
	}
	if err = json.Unmarshal(body, &h); err != nil {
		return
	}
	return code, h.Total, h.Partial, h.Missing, body, nil
}

// searchMessages pages through every record of q through nd. It reports
// whether any page said partial; an error for a failed page.
func (nd *clusterNode) searchMessages(q string) (msgs []string, partial bool, err error) {
	p := url.Values{"q": {q}, "limit": {"5000"}}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			return nil, false, fmt.Errorf("paging does not end")
		}
		code, page, body, err := nd.searchPage(p)
		if err != nil || code != 200 {
			return nil, false, fmt.Errorf("search %v on %s: %d %v %.300s", p, nd.name, code, err, body)
		}
		if page.Partial != (len(page.Missing) > 0) {
			return nil, false, fmt.Errorf("search on %s: partial=%v with missing_partitions=%v", nd.name, page.Partial, page.Missing)
		}
		partial = partial || page.Partial
		for _, r := range page.Records {
			msgs = append(msgs, r.Message)
		}
		if page.NextCursor == "" {
			return msgs, partial, nil
		}
		p.Set("cursor", page.NextCursor)
	}
}

// checkExactlyOnceOn waits (up to d) for a search through nd with no partial
// page, then checks it returned every message of want exactly once and
// nothing else.
func checkExactlyOnceOn(t *testing.T, nd *clusterNode, q string, want map[string]bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msgs, partial, err := nd.searchMessages(q)
		if err != nil {
			t.Fatalf("%v\n%s", err, nd.logProblems(20))
		}
		if !partial {
			seen := make(map[string]int, len(msgs))
			var dups, extra []string
			for _, m := range msgs {
				seen[m]++
				if seen[m] == 2 {
					dups = append(dups, m)
				}
				if !want[m] {
					extra = append(extra, m)
				}
			}
			var missing []string
			for m := range want {
				if seen[m] == 0 {
					missing = append(missing, m)
				}
			}
			if len(dups)+len(extra)+len(missing) > 0 {
				slices.Sort(missing)
				slices.Sort(dups)
				t.Fatalf("search through %s (not partial): %d records for %d lines written: %d missing (first %v), %d duplicated (first %v), %d unknown (first %v)",
					nd.name, len(msgs), len(want), len(missing), first(missing, 5), len(dups), first(dups, 5), len(extra), first(extra, 5))
			}
			t.Logf("search through %s: all %d lines exactly once", nd.name, len(want))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("search through %s still partial after %s", nd.name, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// shipAgent is a `shiplog agent` process reading its stdin, fed by a writer
// of numbered lines "NAME line 000123".
type shipAgent struct {
	name    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  string // its log file
	exited  chan error
	mu      sync.Mutex
	written []string // lines written to its stdin
	werr    error    // the first write error
}

// startShipAgent starts an agent shipping stdin to servers (comma-separated
// gRPC addresses, tried in order).
func startShipAgent(t *testing.T, name, servers string, extra ...string) *shipAgent {
	t.Helper()
	dir := t.TempDir()
	a := &shipAgent{name: name, stderr: filepath.Join(dir, "agent.log"), exited: make(chan error, 1)}
	args := append([]string{"agent", "--server", servers, "--service", "svc-" + name, "--host", "host-" + name,
		"--spool", filepath.Join(dir, "spool"), "--batch-max-records", "500", "--linger", "50ms", "--backoff-max", "500ms",
		"--shutdown-timeout", "90s"}, extra...)
	a.cmd = exec.Command(binary, args...)
	in, err := a.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	a.stdin = in
	logf, err := os.Create(a.stderr)
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait(); logf.Close() }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
	})
	return a
}

// write writes n more lines; it keeps the first error.
func (a *shipAgent) write(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.werr != nil {
		return
	}
	var b strings.Builder
	lines := make([]string, 0, n)
	for i := 0; i < n; i++ {
		l := a.name + " line " + fmt.Sprintf("%06d", len(a.written)+i)
		lines = append(lines, l)
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if _, err := io.WriteString(a.stdin, b.String()); err != nil {
		a.werr = err
		return
	}
	a.written = append(a.written, lines...)
}

// feed writes per lines every tick until stop is closed.
func (a *shipAgent) feed(stop <-chan struct{}, per int, tick time.Duration, wg *sync.WaitGroup) {
	defer wg.Done()
	tk := time.NewTicker(tick)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			a.write(per)
		}
	}
}

func (a *shipAgent) log() string {
	b, _ := os.ReadFile(a.stderr)
	return string(b)
}

// lastLogLines is the end of the agent's log.
func (a *shipAgent) lastLogLines(n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(a.log()))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
