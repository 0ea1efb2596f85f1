package main

// Cluster mode (-cluster N): N `shiplog server` processes on this machine
// forming one cluster over embedded NATS JetStream (docs/cluster.md), against
// one node without NATS on the same data set in the same run. It measures
//
//  1. ingest: Push streams spread over the nodes' gRPC addresses, lines/s until
//     the last ack (an ack is quorum-durable in the replicated log), then the
//     time until every owner has applied everything; server CPU summed over the
//     processes and peak RSS of each;
//  2. queries a..h through a node that owns none of the data (the agent ids are
//     chosen so that their partitions are all owned by the other nodes) and
//     through an owner, each answer checked against expect.json;
//  3. takeover: SIGKILL of the node owning the most bytes, the time until every
//     partition is live again on the survivors (lease TTL included), the bytes
//     they replayed and the rate, then the queries again on the survivors.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/internal/harness"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

type clusterConfig struct {
	nodes, partitions int
	leaseTTL          time.Duration
	single            bool          // also run the single-node gRPC bench first
	idleLoad          float64       // wait for the 1-minute load average to fall below this
	idleWait          time.Duration // ... for at most this long
	maxStore          string        // --cluster-max-store ("" = the server's default)
	trace             time.Duration // log the nodes' published and applied counters this often during ingest (0: off)
	takeovers         int           // rounds of SIGKILL, takeover, restart
	profile           string        // write CPU profiles of every node during ingest here ("": none)
}

type clusterNodeResult struct {
	Name              string  `json:"name"`
	PID               int     `json:"pid"`
	HTTP              string  `json:"http"`
	GRPC              string  `json:"grpc"`
	Cluster           string  `json:"cluster_listen"`
	Partitions        []int   `json:"partitions"`      // owned before ingest
	DataPartitions    []int   `json:"data_partitions"` // of those, the ones the agents write to
	StreamBytesOwned  uint64  `json:"stream_bytes_owned"`
	PushConns         int     `json:"push_conns"`
	CPUSecondsAck     float64 `json:"cpu_seconds_to_last_ack"`
	CPUSecondsApplied float64 `json:"cpu_seconds_to_all_applied"`
	PeakRSSBytes      int64   `json:"peak_rss_bytes"`
	DiskBytes         int64   `json:"disk_bytes"` // blocks in use (du -B1), while running
	DiskBreakdown     string  `json:"disk_breakdown"`
}

type takeoverResult struct {
	Round            int      `json:"round"`
	Killed           string   `json:"killed"`
	KilledPartitions []int    `json:"killed_partitions"`
	KilledBytes      uint64   `json:"killed_stream_bytes"` // of the partitions that moved
	KilledMessages   uint64   `json:"killed_messages"`
	Survivors        []string `json:"survivors"`
	Load             float64  `json:"load_before"`
	LeaseTTLSeconds  float64  `json:"lease_ttl_seconds"`
	// From the survivors' /metrics, polled every 100 ms; seconds after the kill.
	FirstClaimSeconds float64 `json:"first_claim_seconds"`     // a killed partition owned by a survivor
	AllReadySeconds   float64 `json:"all_ready_seconds"`       // every partition owned and caught up on a survivor
	SettledSeconds    float64 `json:"settled_seconds"`         // the last change of who serves what
	AllLiveAPISeconds float64 `json:"all_live_api_seconds"`    // /v1/cluster of the query node: all live on survivors
	Disturbed         []int   `json:"disturbed_partitions"`    // survivors' own partitions released or moved meanwhile
	DoubleReady       []int   `json:"double_ready_partitions"` // seen ready on two nodes in one poll
	RenewalFailures   int     `json:"lease_renewal_failures"`  // logged by the survivors after the kill
	LostLeases        int     `json:"lost_leases"`             // "lost lease" logged by the survivors
	Handovers         int     `json:"handovers"`               // "handing partition over" logged by the survivors
	ConsumerRestarts  int     `json:"consumer_restarts"`       // "consumer stopped; restarting" (errors, the stall watchdog)
	// The replay, from the survivors' logs ("took partition" from_seq ..
	// "partition caught up" seq, millisecond timestamps).
	ReplaySpans       int          `json:"replay_spans"`
	Spans             []replaySpan `json:"spans"`
	ReplayedMessages  uint64       `json:"replayed_messages"`
	ReplayedBytes     float64      `json:"replayed_stream_bytes"` // messages x the partition's mean message size
	ReplayedLines     int64        `json:"replayed_lines"`        // the survivors' applied counters
	ReplaySeconds     float64      `json:"replay_seconds"`        // the union of the spans
	LogFirstTook      float64      `json:"first_took_seconds"`
	LogLastCaughtUp   float64      `json:"last_caught_up_seconds"`
	ReplayMBps        float64      `json:"replay_mb_per_sec"`
	ReplayLinesPerSec float64      `json:"replay_lines_per_sec"`
	// After "caught up" the survivors still seal and index what they replayed.
	QuietSeconds       float64          `json:"quiet_seconds"` // survivors' CPU under 30% of a core over 2 s
	SurvivorCPUSeconds float64          `json:"survivor_cpu_seconds"`
	SurvivorPeakRSS    map[string]int64 `json:"survivor_peak_rss_bytes"`
	RebuildMBps        float64          `json:"rebuild_mb_per_sec"` // replayed bytes / (first took .. quiet)
	// Extrapolated, not measured: the first claim plus 1 GB at ReplayMBps
	// (live: queries see it) and at RebuildMBps (sealed and indexed too).
	Extrapolated1GBSec        float64                  `json:"extrapolated_1gb_takeover_seconds"`
	Extrapolated1GBRebuiltSec float64                  `json:"extrapolated_1gb_rebuilt_seconds"`
	NewOwners                 []string                 `json:"new_owners"`
	Queries                   map[string][]queryResult `json:"queries"`
	RejoinSeconds             float64                  `json:"rejoin_seconds,omitempty"` // restart of the killed node to all live and stable
	Warnings                  []string                 `json:"warnings,omitempty"`       // not wrong answers, but not as designed
}

type clusterResults struct {
	Input           string   `json:"input"`
	Lines           int      `json:"lines"`
	Batches         int      `json:"batches"`
	Conns           int      `json:"conns"`
	Batch           int      `json:"batch"`
	Inflight        int      `json:"inflight"`
	Nodes           int      `json:"nodes"`
	Partitions      int      `json:"partitions"`
	LeaseTTLSeconds float64  `json:"lease_ttl_seconds"`
	Single          *results `json:"single_node,omitempty"`
	LoadSingle      float64  `json:"load_before_single,omitempty"`

	LoadIngest        float64             `json:"load_before_ingest"`
	IdleCPUPercent    float64             `json:"idle_cluster_cpu_percent"` // the 3 idle processes, 5 s before ingest
	StartLiveSeconds  float64             `json:"start_to_all_live_seconds"`
	QueryNode         string              `json:"query_node"`
	OwnerNode         string              `json:"owner_node"`
	AgentIDs          []string            `json:"agent_ids"`
	AgentPartitions   []int               `json:"agent_partitions"`
	IngestSeconds     float64             `json:"ingest_seconds"`
	LinesPerSec       float64             `json:"lines_per_sec"`
	ApplySeconds      float64             `json:"all_applied_seconds"`          // from the first send, /metrics polls
	ApplyAfterAck     float64             `json:"apply_after_last_ack_seconds"` // the owners' lag at the last ack
	StatusLagZero     float64             `json:"status_lag_zero_seconds"`      // /v1/cluster, refreshed every TTL/5
	CPUSecondsAck     float64             `json:"cpu_seconds_to_last_ack"`
	CPUSecondsApplied float64             `json:"cpu_seconds_to_all_applied"`
	CPUMicrosAck      float64             `json:"cpu_us_per_line_to_last_ack"`
	CPUMicrosApplied  float64             `json:"cpu_us_per_line_to_all_applied"`
	StreamBytes       uint64              `json:"stream_bytes"`
	StreamMessages    uint64              `json:"stream_messages"`
	NodeResults       []clusterNodeResult `json:"node_results"`

	LoadQueries     float64       `json:"load_before_queries"`
	QueriesNonOwner []queryResult `json:"queries_non_owner"`
	QueriesOwner    []queryResult `json:"queries_owner"`
	// The mean added latency of read after ack on these queries (the
	// nodes' shiplog_cluster_read_wait_seconds), idle; ms.
	ReadWaitMsNonOwner float64 `json:"read_wait_ms_mean_non_owner"`
	ReadWaitMsOwner    float64 `json:"read_wait_ms_mean_owner"`

	Takeovers   []*takeoverResult `json:"takeovers,omitempty"`
	StopSeconds float64           `json:"survivors_stop_seconds"`
	OK          bool              `json:"ok"`
	Errors      []string          `json:"errors,omitempty"`
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// waitIdle waits until the 1-minute load average is below limit, for at most
// wait; it returns the load it measured last.
func waitIdle(what string, limit float64, wait time.Duration) float64 {
	deadline := time.Now().Add(wait)
	l := loadAvg()
	if l < limit {
		logf("load %.2f before %s", l, what)
		return l
	}
	logf("load %.2f before %s: waiting (up to %v) for it to fall below %.2f", l, what, wait, limit)
	for time.Now().Before(deadline) {
		time.Sleep(5 * time.Second)
		if l = loadAvg(); l < limit {
			logf("load %.2f: measuring %s", l, what)
			return l
		}
	}
	logf("load still %.2f after %v: measuring %s anyway", l, wait, what)
	return l
}

// ---- the cluster's processes ---------------------------------------------

type cnode struct {
	*server
	name, clusterAddr, data string
	bin, logPath            string
	args                    []string   // to start it again on the same ports and data
	started                 chan error // the start under way
}

// startCluster starts n nodes (they wait for a quorum of each other before
// serving, so all are started first) and waits for /readyz on each.
func startCluster(bin, work string, cc clusterConfig, readyTimeout time.Duration) ([]*cnode, error) {
	nodes := make([]*cnode, cc.nodes)
	var peers []string
	for i := range nodes {
		addr, err := clusterPort()
		if err != nil {
			return nil, err
		}
		nodes[i] = &cnode{name: fmt.Sprintf("n%d", i+1), clusterAddr: addr, data: filepath.Join(work, fmt.Sprintf("n%d", i+1)), bin: bin}
		peers = append(peers, addr)
	}
	for _, n := range nodes {
		if err := os.MkdirAll(n.data, 0o755); err != nil {
			return nil, err
		}
		n.args = []string{"--node", n.name, "--cluster-listen", n.clusterAddr,
			"--cluster-peers", strings.Join(peers, ","), "--cluster-partitions", strconv.Itoa(cc.partitions),
			"--cluster-lease-ttl", cc.leaseTTL.String(), "--data", n.data}
		if cc.maxStore != "" {
			n.args = append(n.args, "--cluster-max-store", cc.maxStore)
		}
		n.logPath = filepath.Join(work, n.name+".log")
		n.start()
	}
	for _, n := range nodes {
		if err := n.waitReady(readyTimeout); err != nil {
			stopAll(nodes, 10*time.Second)
			return nil, err
		}
	}
	return nodes, nil
}

// start runs the node's process (again, after a kill: same ports, same data)
// without waiting: a node prints its addresses only once a quorum of its
// peers is up.
func (n *cnode) start() {
	ch := make(chan error, 1)
	n.started = ch
	args := n.args
	go func() {
		p, err := harness.Start(harness.Config{Bin: n.bin, Args: args, LogPath: n.logPath})
		if err == nil {
			n.server = newServer(p, n.logPath)
		}
		ch <- err
	}()
}

// waitReady waits for the start and then for /readyz; the first start's
// ports are kept for the next.
func (n *cnode) waitReady(timeout time.Duration) error {
	err := <-n.started
	n.started <- err // for stopAll
	if err != nil {
		return fmt.Errorf("node %s: %w; log %s:\n%s", n.name, err, n.logPath, logTail(n.logPath))
	}
	if err := n.proc.WaitReady(timeout); err != nil {
		return fmt.Errorf("node %s: %w; log %s:\n%s", n.name, err, n.logPath, logTail(n.logPath))
	}
	if !slices.Contains(n.args, "--http") {
		n.args = append(n.args, "--http", n.httpAddr, "--grpc", n.grpcAddr)
	}
	return nil
}

// clusterPort picks a free loopback port for --cluster-listen: every node's
// peer list names the others' route ports before any starts, so these (unlike
// HTTP and gRPC, which listen on port 0 and report it) are picked in advance.
func clusterPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// stopAll stops the nodes still running, each with SIGTERM (killed after timeout).
func stopAll(nodes []*cnode, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n != nil && n.started != nil {
			err := <-n.started // a start under way ends first
			n.started <- err
		}
		if n == nil || n.server == nil {
			continue
		}
		select {
		case <-n.exited:
			continue
		default:
		}
		wg.Go(func() {
			if _, _, _, err := n.stop(timeout); err != nil {
				logf("stop %s: %v", n.name, err)
			}
		})
	}
	wg.Wait()
}

func clusterStatus(httpAddr string) (*cluster.Status, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get("http://" + httpAddr + "/v1/cluster")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/cluster: HTTP %s: %.300s", resp.Status, b)
	}
	var st cluster.Status
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("GET /v1/cluster: %w", err)
	}
	return &st, nil
}

// allLive reports whether every partition is live with an owner in owners
// (any owner when owners is nil).
func allLive(st *cluster.Status, partitions int, owners []string) bool {
	if len(st.Parts) != partitions || st.Partial {
		return false
	}
	for _, p := range st.Parts {
		if p.State != "live" || p.Owner == "" || (owners != nil && !slices.Contains(owners, p.Owner)) {
			return false
		}
	}
	return true
}

func ownerMap(st *cluster.Status) []string {
	out := make([]string, len(st.Parts))
	for _, p := range st.Parts {
		if p.Partition >= 0 && p.Partition < len(out) {
			out[p.Partition] = p.Owner
		}
	}
	return out
}

// waitStableOwnership waits until every partition is live and the owners have
// not changed over two lease rounds, as seen from every node.
func waitStableOwnership(nodes []*cnode, cc clusterConfig, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	var prev []string
	var since time.Time
	var last *cluster.Status
	var lastErr error
	for time.Now().Before(deadline) {
		ok := true
		var owners []string
		for _, n := range nodes {
			st, err := clusterStatus(n.httpAddr)
			if st != nil {
				last = st
			}
			lastErr = err
			if err != nil || len(st.Nodes) != len(nodes) || !allLive(st, cc.partitions, nil) {
				ok = false
				break
			}
			om := ownerMap(st)
			if owners == nil {
				owners = om
			} else if !slices.Equal(owners, om) {
				ok = false
				break
			}
		}
		switch {
		case !ok:
			prev = nil
		case !slices.Equal(prev, owners):
			prev, since = owners, time.Now()
		case time.Since(since) >= 2*cc.leaseTTL/5+500*time.Millisecond:
			return owners, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	var detail []string
	if last != nil {
		detail = append(detail, fmt.Sprintf("%s sees %d nodes", last.Node, len(last.Nodes)))
		for _, p := range last.Parts {
			if p.State != "live" {
				detail = append(detail, fmt.Sprintf("partition %d %s owner %q applied %d of %d", p.Partition, p.State, p.Owner, p.Applied, p.LastSeq))
			}
		}
	}
	if lastErr != nil {
		detail = append(detail, lastErr.Error())
	}
	return nil, fmt.Errorf("partitions not all live with stable owners within %v: %s", timeout, strings.Join(detail, "; "))
}

// duBlocks is `du -sB1 dir`: the disk blocks in use, not the apparent size
// (Badger's value log of a running store is a sparse 512 MiB file).
func duBlocks(dir string) int64 {
	out, err := exec.Command("du", "-sB1", dir).Output()
	if err != nil {
		return -1
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return -1
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// ---- /metrics ------------------------------------------------------------

type promSample struct {
	name, partition string
	value           float64
}

// scrape reads the cluster metrics of one node.
func scrape(hc *http.Client, httpAddr string) ([]promSample, error) {
	resp, err := hc.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %s", resp.Status)
	}
	var out []promSample
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "shiplog_cluster_") {
			continue
		}
		sp := strings.LastIndexByte(l, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels, _ := strings.Cut(l[:sp], "{")
		s := promSample{name: name, value: v}
		if _, rest, ok := strings.Cut(labels, `partition="`); ok {
			s.partition, _, _ = strings.Cut(rest, `"`)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// readWaitMs is the mean of shiplog_cluster_read_wait_seconds on a node
// since the scrape before, in ms (0 when unknown).
func readWaitMs(hc *http.Client, httpAddr string, before []promSample) float64 {
	after, err := scrape(hc, httpAddr)
	if err != nil {
		return 0
	}
	const m = "shiplog_cluster_read_wait_seconds"
	n := metricSum(after, m+"_count") - metricSum(before, m+"_count")
	if n <= 0 {
		return 0
	}
	return (metricSum(after, m+"_sum") - metricSum(before, m+"_sum")) / n * 1000
}

func metricSum(ss []promSample, name string) float64 {
	var t float64
	for _, s := range ss {
		if s.name == name {
			t += s.value
		}
	}
	return t
}

// partsWith returns the partitions whose gauge name is 1.
func partsWith(ss []promSample, name string) []int {
	var out []int
	for _, s := range ss {
		if s.name == name && s.value == 1 {
			if p, err := strconv.Atoi(s.partition); err == nil {
				out = append(out, p)
			}
		}
	}
	return out
}

// traceApply logs, every period until stop, what each node has published
// and applied, and the applied sequence of each partition with data.
func traceApply(nodes []*cnode, period time.Duration, stop chan struct{}) {
	hc := &http.Client{Timeout: 5 * time.Second}
	t0 := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-time.After(period):
		}
		var parts []string
		for _, n := range nodes {
			ss, err := scrape(hc, n.httpAddr)
			if err != nil {
				parts = append(parts, n.name+": "+err.Error())
				continue
			}
			line := fmt.Sprintf("%s pub=%.0f app=%.0f", n.name, metricSum(ss, "shiplog_cluster_published_records_total"),
				metricSum(ss, "shiplog_cluster_applied_records_total"))
			for _, s := range ss {
				if s.name == "shiplog_cluster_partition_lag_messages" && s.value > 0 {
					line += fmt.Sprintf(" lag[%s]=%.0f", s.partition, s.value)
				}
			}
			parts = append(parts, line)
		}
		logf("trace +%.2fs: %s", time.Since(t0).Seconds(), strings.Join(parts, " | "))
	}
}

// saveProfile writes a CPU profile of secs seconds of node n to path.
func saveProfile(n *cnode, secs int, path string) {
	hc := &http.Client{Timeout: time.Duration(secs+30) * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.httpAddr, secs))
	if err != nil {
		logf("profile %s: %v", n.name, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode == http.StatusOK {
		err = os.WriteFile(path, b, 0o644)
	} else if err == nil {
		err = fmt.Errorf("HTTP %s", resp.Status)
	}
	if err != nil {
		logf("profile %s: %v", n.name, err)
		return
	}
	logf("profile of %s (%ds of the ingest) in %s", n.name, secs, path)
}

// ---- the run -------------------------------------------------------------

// pickAgents chooses one agent id per connection whose partition is owned by
// one of dataOwners (round robin over them), distinct partitions while any are
// left.
func pickAgents(conns, partitions int, owners []string, dataOwners []string) ([]string, []int, error) {
	ids := make([]string, conns)
	parts := make([]int, conns)
	used := map[int]bool{}
	for c := 0; c < conns; c++ {
		want := dataOwners[c%len(dataOwners)]
		free := false
		for p, o := range owners {
			if o == want && !used[p] {
				free = true
			}
		}
		found := false
		for k := 0; k < 1_000_000 && !found; k++ {
			id := fmt.Sprintf("bench-cluster-%d-%d", c, k)
			p := cluster.PartitionOf(&model.Batch{AgentID: id}, partitions)
			if owners[p] == want && (!free || !used[p]) {
				ids[c], parts[c], used[p], found = id, p, true, true
			}
		}
		if !found {
			return nil, nil, fmt.Errorf("no agent id found for a partition of %s", want)
		}
	}
	return ids, parts, nil
}

// clusterRun is one run of the cluster bench: its settings, the cluster's
// nodes and who owns what, and the results and problems so far.
type clusterRun struct {
	cfg        config
	cc         clusterConfig
	exp        expectation
	res        *clusterResults
	errs       []string
	hc         *http.Client
	nodes      []*cnode
	owners     []string         // the owner of each partition before ingest
	byNode     map[string][]int // the partitions of each node before ingest
	qnode      *cnode           // the query node, owner of none of the data
	dataOwners []string         // the nodes the agents write to
}

// ingestClock is what the run measured of the ingest: when it started, was
// acked and was applied, and the nodes' CPU times then.
type ingestClock struct {
	tSend, tAck, tApplied    time.Time
	cpu0, cpuAck, cpuApplied []time.Duration
	applyDeadline            time.Time
}

// fail records a problem that does not stop the run.
func (r *clusterRun) fail(format string, a ...any) {
	e := fmt.Sprintf(format, a...)
	r.errs = append(r.errs, e)
	logf("ERROR: %s", e)
}

func runCluster(cfg config, cc clusterConfig) (*clusterResults, error) {
	exp, err := readExpectation(cfg.expect)
	if err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return nil, err
	}
	res := &clusterResults{Input: cfg.input, Conns: cfg.conns, Batch: cfg.batch, Inflight: cfg.inflight,
		Nodes: cc.nodes, Partitions: cc.partitions, LeaseTTLSeconds: cc.leaseTTL.Seconds()}
	r := &clusterRun{cfg: cfg, cc: cc, exp: exp, res: res, hc: &http.Client{Timeout: 10 * time.Second}}

	// 0. One node without NATS, same data set, same flags.
	if cc.single {
		r.runSingle()
	}

	// 1. Parse and build the batches before any clock starts.
	perConn, err := r.batches()
	if err != nil {
		return res, err
	}

	work, err := os.MkdirTemp("", "shiplog-bench-cluster-*")
	if err != nil {
		return res, err
	}
	keepWork := false // also kept when the run fails (res.OK false)
	defer func() {
		if keepWork || cfg.keep || !res.OK {
			logf("kept %s (n*.log, data)", work)
		} else {
			os.RemoveAll(work)
		}
	}()

	// 2. Start the cluster, wait for every partition to be live.
	tStart := time.Now()
	nodes, err := startCluster(bin, work, cc, cfg.readyTimeout)
	if err != nil {
		return res, err
	}
	defer stopAll(nodes, cfg.stopTimeout)
	r.nodes = nodes
	if err := r.placeAgents(tStart, perConn); err != nil {
		return res, err
	}

	// 3. Ingest, spread over every node's gRPC address.
	r.measureIdle()
	logf("ingesting %d lines over %d Push streams spread over %d nodes", res.Lines, cfg.conns, len(nodes))
	stopObservers := r.observeIngest()
	clk, err := r.ingest(perConn)
	perConn = nil
	if err != nil {
		return res, err
	}

	// 4. Until every owner has applied everything: the applied-records counters
	// of the nodes (read in process, no tick delay), then /v1/cluster's lag.
	if err := r.waitApplied(clk); err != nil {
		return res, err
	}
	stopObservers()
	st := r.waitStatusLagZero(clk)
	r.nodeResults(clk, st)

	// 5. Queries through the node that owns none of the data, and through an owner.
	r.queries()

	// 6. Takeover: SIGKILL the node owning the most bytes; with more rounds,
	// restart it on its data, wait until it has its share again, and repeat.
	r.takeovers()

	// 7. Stop what is left with SIGTERM: each must leave the cluster and exit 0.
	r.stopSurvivors()
	for _, t := range res.Takeovers {
		if len(t.Warnings) > 0 {
			keepWork = true // the logs explain the warnings
		}
	}
	res.Errors = r.errs
	if len(r.errs) > 0 {
		return res, fmt.Errorf("%d problem(s):\n  %s\nlogs in %s", len(r.errs), strings.Join(r.errs, "\n  "), work)
	}
	res.OK = true
	return res, nil
}

// runSingle runs the single-node gRPC bench on the same data set and flags.
func (r *clusterRun) runSingle() {
	r.res.LoadSingle = waitIdle("the single-node run", r.cc.idleLoad, r.cc.idleWait)
	scfg := r.cfg
	scfg.mode, scfg.jsonOut, scfg.dataDir = "grpc", "", ""
	single, err := run(scfg)
	r.res.Single = single
	if single != nil {
		printTable(os.Stdout, single)
	}
	if err != nil {
		r.fail("single node: %v", err)
	}
}

// batches reads the input and builds each connection's batches.
func (r *clusterRun) batches() ([][]*shiplogv1.PushRequest, error) {
	t0 := time.Now()
	recs, err := readInput(r.cfg, r.exp)
	if err != nil {
		return nil, err
	}
	r.res.Lines = len(recs)
	perConn := buildBatches(recs, r.cfg.batch, r.cfg.conns, "bench-cluster")
	for _, bs := range perConn {
		r.res.Batches += len(bs)
	}
	logf("parsed %d lines into %d batches in %.2fs", r.res.Lines, r.res.Batches, time.Since(t0).Seconds())
	return perConn, nil
}

// placeAgents waits until every partition is live, picks the query node (the
// one with the fewest partitions) and gives each connection an agent id whose
// partition another node owns.
func (r *clusterRun) placeAgents(tStart time.Time, perConn [][]*shiplogv1.PushRequest) error {
	res, cc := r.res, r.cc
	owners, err := waitStableOwnership(r.nodes, cc, r.cfg.readyTimeout)
	if err != nil {
		return err
	}
	r.owners = owners
	res.StartLiveSeconds = time.Since(tStart).Seconds()
	r.byNode = map[string][]int{}
	for p, o := range owners {
		r.byNode[o] = append(r.byNode[o], p)
	}
	for _, n := range r.nodes {
		logf("node %s pid %d http %s grpc %s cluster %s: partitions %v", n.name, n.pid(), n.httpAddr, n.grpcAddr, n.clusterAddr, r.byNode[n.name])
	}
	// The query node: the one with the fewest partitions; the agents write
	// only to partitions of the others.
	qi := 0
	for i, n := range r.nodes {
		if len(r.byNode[n.name]) <= len(r.byNode[r.nodes[qi].name]) {
			qi = i
		}
	}
	r.qnode = r.nodes[qi]
	for _, n := range r.nodes {
		if n != r.qnode {
			r.dataOwners = append(r.dataOwners, n.name)
		}
	}
	res.QueryNode = r.qnode.name
	res.AgentIDs, res.AgentPartitions, err = pickAgents(r.cfg.conns, cc.partitions, owners, r.dataOwners)
	if err != nil {
		return err
	}
	for c, bs := range perConn {
		for _, req := range bs {
			req.AgentId = res.AgentIDs[c]
		}
	}
	logf("all %d partitions live %.2fs after start; query node %s owns %v; agents %v write to partitions %v",
		cc.partitions, res.StartLiveSeconds, r.qnode.name, r.byNode[r.qnode.name], res.AgentIDs, res.AgentPartitions)
	return nil
}

// measureIdle waits for the machine to be idle, then measures the idle
// cluster's CPU over 5 s.
func (r *clusterRun) measureIdle() {
	r.res.LoadIngest = waitIdle("the cluster ingest", r.cc.idleLoad, r.cc.idleWait)
	var idle0, idle1 time.Duration
	for _, n := range r.nodes {
		c, _ := procCPU(n.pid())
		idle0 += c
	}
	time.Sleep(5 * time.Second)
	for _, n := range r.nodes {
		c, _ := procCPU(n.pid())
		idle1 += c
	}
	r.res.IdleCPUPercent = 100 * (idle1 - idle0).Seconds() / 5
	logf("the idle cluster used %.1f%% of a core over 5s", r.res.IdleCPUPercent)
}

// observeIngest starts the apply trace and the CPU profiles asked for; the
// function it returns stops the trace and waits for the profiles.
func (r *clusterRun) observeIngest() func() {
	stopTrace := make(chan struct{})
	if r.cc.trace > 0 {
		go traceApply(r.nodes, r.cc.trace, stopTrace)
	}
	var profWG sync.WaitGroup
	if r.cc.profile != "" {
		// Long enough to cover the ingest at ~150k lines/s; a profile ends
		// early only with the process, so keep it a little short.
		secs := max(2, int(float64(r.res.Lines)/150000*0.8))
		for _, n := range r.nodes {
			profWG.Go(func() { saveProfile(n, secs, filepath.Join(r.cc.profile, n.name+"-ingest.pprof")) })
		}
	}
	return func() {
		close(stopTrace)
		profWG.Wait()
	}
}

// ingest pushes every connection's batches, spread over the nodes' gRPC
// addresses, until the last ack.
func (r *clusterRun) ingest(perConn [][]*shiplogv1.PushRequest) (*ingestClock, error) {
	nodes := r.nodes
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.grpcAddr
	}
	clk := &ingestClock{cpu0: make([]time.Duration, len(nodes))}
	startClock := func() {
		for i, n := range nodes {
			clk.cpu0[i], _ = procCPU(n.pid())
		}
		clk.tSend = time.Now()
	}
	wall, err := ingestGRPC(context.Background(), addrs, perConn, r.cfg.inflight, startClock)
	clk.tAck = time.Now()
	clk.cpuAck = make([]time.Duration, len(nodes))
	for i, n := range nodes {
		clk.cpuAck[i], _ = procCPU(n.pid())
	}
	if err != nil {
		var logs []string
		for _, n := range nodes {
			logs = append(logs, fmt.Sprintf("%s (%s):\n%s", n.name, n.logPath, logTail(n.logPath)))
		}
		return nil, fmt.Errorf("cluster ingest: %w\n%s", err, strings.Join(logs, "\n"))
	}
	r.res.IngestSeconds = wall.Seconds()
	r.res.LinesPerSec = float64(r.res.Lines) / wall.Seconds()
	logf("acked in %.2fs: %.0f lines/s", r.res.IngestSeconds, r.res.LinesPerSec)
	return clk, nil
}

// waitApplied polls the nodes' applied-records counters until they add up
// to every line, for at most 10 minutes after the last ack.
func (r *clusterRun) waitApplied(clk *ingestClock) error {
	clk.applyDeadline = time.Now().Add(10 * time.Minute)
	for {
		var sum float64
		for _, n := range r.nodes {
			ss, err := scrape(r.hc, n.httpAddr)
			if err != nil {
				r.fail("scrape %s: %v", n.name, err)
				break
			}
			sum += metricSum(ss, "shiplog_cluster_applied_records_total")
		}
		if int(sum) >= r.res.Lines {
			clk.tApplied = time.Now()
			break
		}
		if time.Now().After(clk.applyDeadline) {
			return fmt.Errorf("owners applied %.0f of %d lines within 10 minutes of the last ack", sum, r.res.Lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	clk.cpuApplied = make([]time.Duration, len(r.nodes))
	for i, n := range r.nodes {
		clk.cpuApplied[i], _ = procCPU(n.pid())
	}
	r.res.ApplySeconds = clk.tApplied.Sub(clk.tSend).Seconds()
	r.res.ApplyAfterAck = clk.tApplied.Sub(clk.tAck).Seconds()
	return nil
}

// waitStatusLagZero polls the query node's /v1/cluster until it shows every
// batch applied and every partition live; it returns the last status read.
func (r *clusterRun) waitStatusLagZero(clk *ingestClock) *cluster.Status {
	var st *cluster.Status
	var err error
	for {
		st, err = clusterStatus(r.qnode.httpAddr)
		if err == nil {
			var last, applied, msgs, lag uint64
			for _, p := range st.Parts {
				last += p.LastSeq
				applied += p.Applied
				msgs += p.Messages
				lag += p.Lag
			}
			if lag == 0 && applied == last && msgs == uint64(r.res.Batches) && allLive(st, r.cc.partitions, nil) {
				r.res.StatusLagZero = time.Since(clk.tSend).Seconds()
				break
			}
		}
		if time.Now().After(clk.applyDeadline) {
			r.fail("/v1/cluster never showed lag 0 with %d messages (last: %+v, %v)", r.res.Batches, st, err)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return st
}

// nodeResults sums up each node's share of the ingest: partitions, CPU,
// memory, stream bytes and disk.
func (r *clusterRun) nodeResults(clk *ingestClock, st *cluster.Status) {
	res, nodes := r.res, r.nodes
	for i, n := range nodes {
		nr := clusterNodeResult{Name: n.name, PID: n.pid(), HTTP: n.httpAddr, GRPC: n.grpcAddr, Cluster: n.clusterAddr,
			Partitions: r.byNode[n.name], CPUSecondsAck: (clk.cpuAck[i] - clk.cpu0[i]).Seconds(), CPUSecondsApplied: (clk.cpuApplied[i] - clk.cpu0[i]).Seconds()}
		for c := range r.cfg.conns {
			if c%len(nodes) == i {
				nr.PushConns++
			}
		}
		for _, p := range res.AgentPartitions {
			if r.owners[p] == n.name && !slices.Contains(nr.DataPartitions, p) {
				nr.DataPartitions = append(nr.DataPartitions, p)
			}
		}
		sort.Ints(nr.DataPartitions)
		nr.PeakRSSBytes, _ = procHWM(n.pid())
		res.CPUSecondsAck += nr.CPUSecondsAck
		res.CPUSecondsApplied += nr.CPUSecondsApplied
		res.NodeResults = append(res.NodeResults, nr)
	}
	nl := float64(res.Lines)
	res.CPUMicrosAck = res.CPUSecondsAck * 1e6 / nl
	res.CPUMicrosApplied = res.CPUSecondsApplied * 1e6 / nl
	bytesOf := map[string]uint64{}
	if st != nil {
		if now := ownerMap(st); !slices.Equal(now, r.owners) {
			r.fail("ownership changed during ingest: before %v, after %v", r.owners, now)
		}
		for _, p := range st.Parts {
			res.StreamBytes += p.Bytes
			res.StreamMessages += p.Messages
			bytesOf[p.Owner] += p.Bytes
			if p.Owner == r.qnode.name && p.Messages != 0 {
				r.fail("query node %s owns partition %d, which holds %d messages", r.qnode.name, p.Partition, p.Messages)
			}
		}
	}
	for i := range res.NodeResults {
		nr := &res.NodeResults[i]
		nr.StreamBytesOwned = bytesOf[nr.Name]
		nr.DiskBytes = duBlocks(nodes[i].data)
		for _, sub := range []string{"cluster/jetstream", "cluster/partitions", "badger", "wal"} {
			nr.DiskBreakdown += fmt.Sprintf("%s=%.1fMB ", sub, float64(duBlocks(filepath.Join(nodes[i].data, sub)))/1e6)
		}
		nr.DiskBreakdown = strings.TrimSpace(nr.DiskBreakdown)
	}
	logf("all applied %.2fs after the first send (%.2fs after the last ack; /v1/cluster lag 0 at %.2fs); "+
		"CPU %.2f µs/line to the last ack, %.2f to all applied; streams %d messages, %.1f MB",
		res.ApplySeconds, res.ApplyAfterAck, res.StatusLagZero, res.CPUMicrosAck, res.CPUMicrosApplied,
		res.StreamMessages, float64(res.StreamBytes)/1e6)
	for _, nr := range res.NodeResults {
		logf("  %s: partitions %v (data in %v, %.1f MB of stream), CPU %.2fs / %.2fs, peak RSS %.0f MiB, disk %.1f MB (%s)",
			nr.Name, nr.Partitions, nr.DataPartitions, float64(nr.StreamBytesOwned)/1e6, nr.CPUSecondsAck, nr.CPUSecondsApplied,
			float64(nr.PeakRSSBytes)/(1<<20), float64(nr.DiskBytes)/1e6, nr.DiskBreakdown)
	}
}

// queries runs the queries through the query node and through an owner and
// measures the read-after-ack wait on each.
func (r *clusterRun) queries() {
	res, qnode := r.res, r.qnode
	var onode *cnode
	for _, n := range r.nodes {
		if n.name == r.dataOwners[0] {
			onode = n
		}
	}
	res.OwnerNode = onode.name
	res.LoadQueries = waitIdle("the queries", r.cc.idleLoad, r.cc.idleWait)
	qBefore, _ := scrape(r.hc, qnode.httpAddr)
	oBefore, _ := scrape(r.hc, onode.httpAddr)
	qs, qerrs := runQueriesOn(map[string]string{"non-owner " + qnode.name: qnode.httpAddr, "owner " + onode.name: onode.httpAddr},
		&r.exp, r.cfg.runs)
	res.QueriesNonOwner, res.QueriesOwner = qs["non-owner "+qnode.name], qs["owner "+onode.name]
	res.ReadWaitMsNonOwner, res.ReadWaitMsOwner = readWaitMs(r.hc, qnode.httpAddr, qBefore), readWaitMs(r.hc, onode.httpAddr, oBefore)
	logf("read after ack added %.2f ms per query on average through %s, %.2f ms through %s",
		res.ReadWaitMsNonOwner, qnode.name, res.ReadWaitMsOwner, onode.name)
	r.errs = append(r.errs, qerrs...)
}

// takeovers runs the takeover rounds: kill, measure, restart the victim on
// its data and wait until ownership is stable again, then the next round.
func (r *clusterRun) takeovers() {
	cfg, cc := r.cfg, r.cc
	for round := 1; round <= cc.takeovers; round++ {
		st, err := clusterStatus(r.qnode.httpAddr)
		if err != nil {
			r.fail("takeover round %d: %v", round, err)
			break
		}
		tr, victim, terrs := takeover(r.nodes, r.qnode, st, cc, &r.exp, cfg.runs, cfg.readyTimeout)
		tr.Round = round
		r.res.Takeovers = append(r.res.Takeovers, tr)
		r.errs = append(r.errs, terrs...)
		if len(terrs) > 0 || round == cc.takeovers {
			break
		}
		t0 := time.Now()
		victim.start()
		if err := victim.waitReady(cfg.readyTimeout); err != nil {
			r.fail("restart %s: %v", victim.name, err)
			break
		}
		if _, err := waitStableOwnership(r.nodes, cc, cfg.readyTimeout); err != nil {
			r.fail("after restarting %s: %v", victim.name, err)
			break
		}
		tr.RejoinSeconds = time.Since(t0).Seconds()
		logf("%s restarted and all partitions live and stable again after %.2fs", victim.name, tr.RejoinSeconds)
	}
}

// stopSurvivors stops every node still running with SIGTERM: each must leave
// the cluster and exit 0.
func (r *clusterRun) stopSurvivors() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		select {
		case <-n.exited:
			continue
		default:
		}
		wg.Go(func() {
			clean, took, _, err := n.stop(r.cfg.stopTimeout)
			mu.Lock()
			defer mu.Unlock()
			r.res.StopSeconds = max(r.res.StopSeconds, took.Seconds())
			if err != nil || !clean {
				r.errs = append(r.errs, fmt.Sprintf("stop %s: clean=%v: %v", n.name, clean, err))
			}
		})
	}
	wg.Wait()
	logf("survivors stopped in %.2fs", r.res.StopSeconds)
}

// runQueriesOn runs the bench's queries on every target, run r of each query
// on every target before run r+1, and checks each answer.
func runQueriesOn(targets map[string]string, exp *expectation, runs int) (map[string][]queryResult, []string) {
	var errs []string
	names := make([]string, 0, len(targets))
	for k := range targets {
		names = append(names, k)
	}
	sort.Strings(names)
	qsets := map[string][]query{}
	for _, name := range names {
		qs, err := buildQueries(newQueryClient(targets[name]), exp)
		if err != nil {
			errs = append(errs, fmt.Sprintf("queries on %s: %v", name, err))
			logf("queries on %s: FAILED: %v", name, err)
			continue
		}
		qsets[name] = qs
	}
	out := map[string][]queryResult{}
	if len(qsets) == 0 {
		return out, errs
	}
	nq := len(qsets[names[0]])
	for i := 0; i < nq; i++ {
		qname := qsets[names[0]][i].name
		lat := map[string][]time.Duration{}
		qr := map[string]*queryResult{}
		for _, t := range names {
			if qsets[t] != nil {
				qr[t] = &queryResult{Name: qname, OK: true}
			}
		}
		for r := 0; r < runs; r++ {
			for _, t := range names {
				if qsets[t] == nil || !qr[t].OK {
					continue
				}
				d, err := qsets[t][i].run()
				if err != nil {
					qr[t].OK, qr[t].Error = false, err.Error()
					errs = append(errs, fmt.Sprintf("query %s on %s: MISMATCH/ERROR (run %d): %v", qname, t, r+1, err))
					logf("query %s on %s: FAILED: %v", qname, t, err)
					continue
				}
				lat[t] = append(lat[t], d)
				qr[t].RunsMs = append(qr[t].RunsMs, float64(d.Microseconds())/1000)
			}
		}
		for _, t := range names {
			if q := qr[t]; q != nil {
				q.MedianMs = float64(median(lat[t]).Microseconds()) / 1000
				out[t] = append(out[t], *q)
				logf("query %-58s on %-14s %8.1f ms (ok=%v)", qname, t, q.MedianMs, q.OK)
			}
		}
	}
	return out, errs
}

// takeoverRun is one takeover round: the victim, the survivors, what the
// victim owned, and the survivors' CPU since the kill.
type takeoverRun struct {
	tr        *takeoverResult
	cc        clusterConfig
	hc        *http.Client
	victim    *cnode
	survivors []*cnode
	qnode     *cnode          // a survivor to ask /v1/cluster
	moved     map[int]bool    // the victim's partitions
	before    []string        // the owner of each partition before the kill
	msgBytes  map[int]float64 // mean message size per partition
	tKill     time.Time
	cpuKill   time.Duration
	sampleMu  sync.Mutex
	samples   []cpuSample // the survivors' CPU since the kill, every 250 ms
	errs      []string
}

// takeover kills the node owning the most stream bytes and measures how long
// the survivors take to own and rebuild its partitions, and whether the
// partitions they already owned stayed where they were.
func takeover(nodes []*cnode, qnode *cnode, st *cluster.Status, cc clusterConfig, exp *expectation, runs int, readyTimeout time.Duration) (*takeoverResult, *cnode, []string) {
	t := newTakeover(nodes, qnode, st, cc)
	tr, victim := t.tr, t.victim
	applied0 := map[string]float64{}
	for _, n := range t.survivors {
		ss, err := scrape(t.hc, n.httpAddr)
		if err != nil {
			return tr, victim, []string{fmt.Sprintf("takeover: scrape %s: %v", n.name, err)}
		}
		applied0[n.name] = metricSum(ss, "shiplog_cluster_applied_records_total")
	}
	tr.Load = waitIdle("the takeover", cc.idleLoad, cc.idleWait)
	logf("takeover: SIGKILL %s (pid %d), owner of partitions %v = %.1f MB of stream (%d messages); lease TTL %v",
		victim.name, victim.pid(), tr.KilledPartitions, float64(tr.KilledBytes)/1e6, tr.KilledMessages, cc.leaseTTL)
	t.cpuKill = t.cpuAt()
	t.tKill = time.Now()
	_ = victim.cmd.Process.Signal(syscall.SIGKILL)
	<-victim.exited

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.samples = []cpuSample{{t.tKill, t.cpuKill}}
	go t.sampleCPU(ctx)
	apiLive := make(chan time.Duration, 1)
	go t.watchAPI(ctx, apiLive)

	firstAll, err := t.settle()
	if err != nil {
		return tr, victim, []string{err.Error()}
	}
	select {
	case d := <-apiLive:
		tr.AllLiveAPISeconds = d.Seconds()
	case <-time.After(time.Minute):
		t.errs = append(t.errs, "takeover: /v1/cluster did not show every partition live on the survivors within a minute of their metrics")
	}

	spans := t.replayFromLogs()
	t.replayRates(spans, applied0)
	// The survivors go on sealing and indexing what they replayed after it
	// is live: from the replay's end (not the last, empty, partition's claim).
	from := t.tKill.Add(max(firstAll, 0))
	if len(spans) > 0 {
		from = t.tKill.Add(time.Duration(tr.LogLastCaughtUp * float64(time.Second)))
	}
	t.waitQuiet(from)
	t.warn()
	// Every survivor agrees, then the answers: nothing lost, nothing twice.
	if _, err := waitStableOwnership(t.survivors, cc, readyTimeout); err != nil {
		return tr, victim, append(t.errs, "takeover: "+err.Error())
	}
	if s, err := clusterStatus(t.qnode.httpAddr); err == nil {
		tr.NewOwners = ownerMap(s)
		var last, applied uint64
		for _, p := range s.Parts {
			last += p.LastSeq
			applied += p.Applied
		}
		if last != applied {
			t.errs = append(t.errs, fmt.Sprintf("takeover: applied %d of %d stream messages after every partition was live", applied, last))
		}
	}
	targets := map[string]string{}
	for _, n := range t.survivors {
		targets["survivor "+n.name] = n.httpAddr
	}
	qs, qerrs := runQueriesOn(targets, exp, runs)
	tr.Queries = qs
	return tr, victim, append(t.errs, qerrs...)
}

// newTakeover picks the victim, the node owning the most stream bytes, and
// notes what it owns; qnode is replaced by a survivor if it is the victim.
func newTakeover(nodes []*cnode, qnode *cnode, st *cluster.Status, cc clusterConfig) *takeoverRun {
	t := &takeoverRun{
		tr: &takeoverResult{LeaseTTLSeconds: cc.leaseTTL.Seconds()}, cc: cc,
		hc:    &http.Client{Timeout: 5 * time.Second},
		moved: map[int]bool{}, before: ownerMap(st), msgBytes: map[int]float64{},
	}
	tr := t.tr
	bytesOf := map[string]uint64{}
	for _, p := range st.Parts {
		bytesOf[p.Owner] += p.Bytes
	}
	for _, n := range nodes {
		if t.victim == nil || bytesOf[n.name] > bytesOf[t.victim.name] {
			t.victim = n
		}
	}
	tr.Killed = t.victim.name
	for _, p := range st.Parts {
		if p.Owner == t.victim.name {
			tr.KilledPartitions = append(tr.KilledPartitions, p.Partition)
			tr.KilledBytes += p.Bytes
			tr.KilledMessages += p.Messages
			t.moved[p.Partition] = true
		}
		if p.Messages > 0 {
			t.msgBytes[p.Partition] = float64(p.Bytes) / float64(p.Messages)
		}
	}
	for _, n := range nodes {
		if n != t.victim {
			t.survivors = append(t.survivors, n)
			tr.Survivors = append(tr.Survivors, n.name)
		}
	}
	t.qnode = qnode
	if qnode == t.victim {
		t.qnode = t.survivors[0]
	}
	return t
}

// cpuAt is the survivors' CPU time so far.
func (t *takeoverRun) cpuAt() time.Duration {
	var sum time.Duration
	for _, n := range t.survivors {
		c, _ := procCPU(n.pid())
		sum += c
	}
	return sum
}

// sampleCPU samples the survivors' CPU every 250 ms until ctx ends.
func (t *takeoverRun) sampleCPU(ctx context.Context) {
	for ctx.Err() == nil {
		time.Sleep(250 * time.Millisecond)
		c := cpuSample{at: time.Now(), cpu: t.cpuAt()}
		t.sampleMu.Lock()
		t.samples = append(t.samples, c)
		t.sampleMu.Unlock()
	}
}

// watchAPI sends the time after the kill at which /v1/cluster, as a client
// sees it, showed every partition live on the survivors.
func (t *takeoverRun) watchAPI(ctx context.Context, apiLive chan<- time.Duration) {
	for ctx.Err() == nil {
		if s, err := clusterStatus(t.qnode.httpAddr); err == nil && allLive(s, t.cc.partitions, t.tr.Survivors) {
			apiLive <- time.Since(t.tKill)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle polls the survivors' /metrics every 100 ms: who has each partition
// owned and caught up, until that has not changed for three lease rounds. It
// returns when every partition was first served (-1: never).
func (t *takeoverRun) settle() (firstAll time.Duration, err error) {
	cc, tr := t.cc, t.tr
	stableFor := 3*cc.leaseTTL/5 + time.Second
	deadline := t.tKill.Add(5*time.Minute + 2*cc.leaseTTL)
	var serving map[int]string
	var firstClaim, lastChange time.Duration = -1, 0
	firstAll = -1
	disturbed, double := map[int]bool{}, map[int]bool{}
	for {
		now := time.Since(t.tKill)
		cur := map[int]string{}
		ok := true
		for _, n := range t.survivors {
			ss, err := scrape(t.hc, n.httpAddr)
			if err != nil {
				ok = false
				break
			}
			for _, p := range partsWith(ss, "shiplog_cluster_partition_owned") {
				if t.moved[p] && firstClaim < 0 {
					firstClaim = now
				}
			}
			for _, p := range partsWith(ss, "shiplog_cluster_partition_ready") {
				if cur[p] != "" {
					double[p] = true
				}
				cur[p] = n.name
			}
		}
		if ok {
			if !mapsEqual(cur, serving) {
				serving, lastChange = cur, now
			}
			for p, o := range t.before {
				if !t.moved[p] && cur[p] != o {
					disturbed[p] = true
				}
			}
			all := len(cur) == cc.partitions
			if all && firstAll < 0 {
				firstAll = now
			}
			if all && now-lastChange >= stableFor {
				break
			}
		}
		if time.Now().After(deadline) {
			return firstAll, fmt.Errorf("takeover: partitions served by the survivors did not settle within %v (last: %v)",
				time.Since(t.tKill).Round(time.Second), serving)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tr.FirstClaimSeconds, tr.AllReadySeconds, tr.SettledSeconds = firstClaim.Seconds(), firstAll.Seconds(), lastChange.Seconds()
	tr.Disturbed, tr.DoubleReady = sortedKeys(disturbed), sortedKeys(double)
	return firstAll, nil
}

// replayFromLogs reads the replay from the survivors' logs: the spans from
// "took partition" to "partition caught up", and the lease events.
func (t *takeoverRun) replayFromLogs() [][2]time.Time {
	tr := t.tr
	var spans [][2]time.Time
	for _, n := range t.survivors {
		evs, err := clusterLogEvents(n.logPath, t.tKill)
		if err != nil {
			t.errs = append(t.errs, fmt.Sprintf("takeover: read %s: %v", n.logPath, err))
		}
		open := map[int]clusterEvent{}
		for _, e := range evs {
			switch e.kind {
			case "took partition":
				open[e.partition] = e
				if !t.moved[e.partition] && !slices.Contains(tr.Disturbed, e.partition) {
					tr.Disturbed = append(tr.Disturbed, e.partition) // a survivor's own partition, taken (again)
					sort.Ints(tr.Disturbed)
				}
			case "partition caught up":
				if o, ok := open[e.partition]; ok {
					delete(open, e.partition)
					if e.seq >= o.seq { // something to replay (else: at the end already)
						spans = append(spans, [2]time.Time{o.t, e.t})
						tr.Spans = append(tr.Spans, replaySpan{Node: n.name, Partition: e.partition, FromSeq: o.seq, ToSeq: e.seq,
							StartSeconds: o.t.Sub(t.tKill).Seconds(), Seconds: e.t.Sub(o.t).Seconds()})
						tr.ReplayedMessages += e.seq - o.seq + 1
						tr.ReplayedBytes += float64(e.seq-o.seq+1) * t.msgBytes[e.partition]
					}
				}
			case "lease renewal failed":
				tr.RenewalFailures++
			case "lost lease", "lease expired unrenewed; stopping":
				tr.LostLeases++
			case "handing partition over":
				tr.Handovers++
			case "consumer stopped; restarting":
				tr.ConsumerRestarts++
			}
		}
	}
	return spans
}

// replayRates works out the replay's duration and rates from its spans and
// the survivors' applied counters (applied0: before the kill).
func (t *takeoverRun) replayRates(spans [][2]time.Time, applied0 map[string]float64) {
	tr := t.tr
	tr.ReplaySpans = len(spans)
	busy, first, last := union(spans)
	tr.ReplaySeconds = busy.Seconds()
	if len(spans) > 0 {
		tr.LogFirstTook, tr.LogLastCaughtUp = first.Sub(t.tKill).Seconds(), last.Sub(t.tKill).Seconds()
	}
	var replayed float64
	for _, n := range t.survivors {
		if ss, err := scrape(t.hc, n.httpAddr); err == nil {
			replayed += metricSum(ss, "shiplog_cluster_applied_records_total") - applied0[n.name]
		}
	}
	tr.ReplayedLines = int64(replayed)
	if tr.ReplaySeconds > 0 {
		tr.ReplayMBps = tr.ReplayedBytes / 1e6 / tr.ReplaySeconds
		tr.ReplayLinesPerSec = replayed / tr.ReplaySeconds
		tr.Extrapolated1GBSec = tr.FirstClaimSeconds + 1000/tr.ReplayMBps
	}
	logf("takeover: first claim %.2fs after the kill, all ready %.2fs, settled %.2fs (/v1/cluster all live %.2fs); "+
		"disturbed %v, %d renewal failures, %d lost leases, %d handovers, %d consumer restarts; "+
		"replayed %d messages, %.1f MB, %d lines in %.2fs (logs: took %.3fs .. caught up %.3fs) = %.1f MB/s",
		tr.FirstClaimSeconds, tr.AllReadySeconds, tr.SettledSeconds, tr.AllLiveAPISeconds,
		tr.Disturbed, tr.RenewalFailures, tr.LostLeases, tr.Handovers, tr.ConsumerRestarts,
		tr.ReplayedMessages, tr.ReplayedBytes/1e6, tr.ReplayedLines, tr.ReplaySeconds, tr.LogFirstTook, tr.LogLastCaughtUp, tr.ReplayMBps)
}

// waitQuiet finds the first 2 s window after from in which the survivors
// used under 30% of a core (the polls above cost them a few %): sealing and
// indexing what they replayed is done. It then sums up their CPU and memory.
func (t *takeoverRun) waitQuiet(from time.Time) {
	tr := t.tr
	for quietDeadline := time.Now().Add(5 * time.Minute); tr.QuietSeconds == 0 && time.Now().Before(quietDeadline); {
		t.sampleMu.Lock()
		ss := append([]cpuSample(nil), t.samples...)
		t.sampleMu.Unlock()
		for i, j := 0, 0; j < len(ss); j++ {
			for i < j && ss[j].at.Sub(ss[i+1].at) >= 2*time.Second {
				i++
			}
			if ss[i].at.Before(from) {
				continue
			}
			if w := ss[j].at.Sub(ss[i].at); w >= 2*time.Second && (ss[j].cpu-ss[i].cpu).Seconds() < 0.3*w.Seconds() {
				tr.QuietSeconds = ss[i].at.Sub(t.tKill).Seconds()
				break
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	tr.SurvivorCPUSeconds = (t.cpuAt() - t.cpuKill).Seconds()
	tr.SurvivorPeakRSS = map[string]int64{}
	for _, n := range t.survivors {
		tr.SurvivorPeakRSS[n.name], _ = procHWM(n.pid())
	}
	if tr.QuietSeconds > 0 && tr.ReplayedBytes > 0 {
		tr.RebuildMBps = tr.ReplayedBytes / 1e6 / (tr.QuietSeconds - tr.LogFirstTook)
		tr.Extrapolated1GBRebuiltSec = tr.FirstClaimSeconds + 1000/tr.RebuildMBps
	}
	logf("takeover: survivors quiet (sealing and indexing done) %.2fs after the kill; %.2f CPU s since the kill; rebuild %.1f MB/s",
		tr.QuietSeconds, tr.SurvivorCPUSeconds, tr.RebuildMBps)
}

// warn notes what was not as designed: slow replays, a partition ready on
// two nodes at once, survivors' partitions disturbed.
func (t *takeoverRun) warn() {
	tr := t.tr
	for _, sp := range tr.Spans {
		if sp.Seconds > 5 {
			tr.Warnings = append(tr.Warnings, fmt.Sprintf("the replay of partition %d on %s (seq %d..%d) took %.1fs",
				sp.Partition, sp.Node, sp.FromSeq, sp.ToSeq, sp.Seconds))
		}
	}
	if len(tr.DoubleReady) > 0 {
		tr.Warnings = append(tr.Warnings, fmt.Sprintf("partitions %v were seen owned and caught up on two survivors in one 100 ms poll", tr.DoubleReady))
	}
	if len(tr.Disturbed) > 0 {
		tr.Warnings = append(tr.Warnings, fmt.Sprintf("partitions %v that survivors owned before the kill were released, retaken or moved", tr.Disturbed))
	}
}

type replaySpan struct {
	Node         string  `json:"node"`
	Partition    int     `json:"partition"`
	FromSeq      uint64  `json:"from_seq"`
	ToSeq        uint64  `json:"to_seq"`
	StartSeconds float64 `json:"start_seconds"` // after the kill
	Seconds      float64 `json:"seconds"`
}

type cpuSample struct {
	at  time.Time
	cpu time.Duration // the survivors' user+system CPU so far
}

func mib(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%.0f", k, float64(v)/(1<<20)))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func sortedKeys(m map[int]bool) []int {
	out := []int{}
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// union is the total length of the time spans, and the first start and last end.
func union(spans [][2]time.Time) (busy time.Duration, first, last time.Time) {
	if len(spans) == 0 {
		return 0, first, last
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i][0].Before(spans[j][0]) })
	cur := spans[0]
	first = cur[0]
	for _, sp := range spans[1:] {
		if sp[0].After(cur[1]) {
			busy += cur[1].Sub(cur[0])
			cur = sp
		} else if sp[1].After(cur[1]) {
			cur[1] = sp[1]
		}
	}
	busy += cur[1].Sub(cur[0])
	for _, sp := range spans {
		if sp[1].After(last) {
			last = sp[1]
		}
	}
	return busy, first, last
}

type clusterEvent struct {
	t         time.Time
	kind      string
	partition int
	seq       uint64 // from_seq of "took partition", seq of "caught up"
}

var clusterLogLine = regexp.MustCompile(`^time=(\S+) .*msg="cluster: (took partition|partition caught up|lease renewal failed|lost lease|lease expired unrenewed; stopping|handing partition over|consumer stopped; restarting)"(.*)$`)
var partitionAttr = regexp.MustCompile(`\bpartition=(\d+)`)
var seqAttr = regexp.MustCompile(`\b(?:from_seq|seq)=(\d+)`)

// clusterLogEvents reads a server log (text format) for the cluster's
// partition events at or after since, in order.
func clusterLogEvents(path string, since time.Time) ([]clusterEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []clusterEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := clusterLogLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil || t.Before(since.Truncate(time.Millisecond)) {
			continue
		}
		e := clusterEvent{t: t, kind: m[2], partition: -1}
		if pm := partitionAttr.FindStringSubmatch(m[3]); pm != nil {
			e.partition, _ = strconv.Atoi(pm[1])
		}
		if sm := seqAttr.FindStringSubmatch(m[3]); sm != nil {
			e.seq, _ = strconv.ParseUint(sm[1], 10, 64)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func printClusterTable(w io.Writer, r *clusterResults) {
	fmt.Fprintf(w, "\nshiplog cluster bench: %d lines from %s, %d nodes on this machine, %d partitions, lease TTL %.0fs\n",
		r.Lines, filepath.Base(r.Input), r.Nodes, r.Partitions, r.LeaseTTLSeconds)
	fmt.Fprintf(w, "Push: %d conns (agent ids %v -> partitions %v), batch %d, inflight %d; query node %s owns no data\n\n",
		r.Conns, r.AgentIDs, r.AgentPartitions, r.Batch, r.Inflight, r.QueryNode)
	row := func(name, a, b string) { fmt.Fprintf(w, "  %-58s %14s %14s\n", name, a, b) }
	f := func(format string, v float64) string {
		if v == 0 || math.IsNaN(v) {
			return "-"
		}
		return fmt.Sprintf(format, v)
	}
	s := r.Single
	if s == nil {
		s = &results{}
	}
	row("", "1 node", fmt.Sprintf("%d nodes", r.Nodes))
	row("load average before ingest", f("%.2f", r.LoadSingle), f("%.2f", r.LoadIngest))
	row("CPU of the idle servers, % of a core", "", f("%.1f", r.IdleCPUPercent))
	row("ingest lines/s (to the last ack)", f("%.0f", s.LinesPerSec), f("%.0f", r.LinesPerSec))
	row("ingest wall s", f("%.2f", s.IngestSeconds), f("%.2f", r.IngestSeconds))
	row("all applied, s from the first send", "", f("%.2f", r.ApplySeconds))
	row("  after the last ack", "", f("%.2f", r.ApplyAfterAck))
	row("  /v1/cluster lag 0 (2 s status rounds)", "", f("%.2f", r.StatusLagZero))
	row("server CPU µs/line to the last ack", f("%.2f", s.CPUMicrosPerLine), f("%.2f", r.CPUMicrosAck))
	row("server CPU µs/line to all applied", "", f("%.2f", r.CPUMicrosApplied))
	row("peak RSS MiB (ingest)", f("%.0f", float64(s.PeakRSSBytes)/(1<<20)), "")
	for _, n := range r.NodeResults {
		row(fmt.Sprintf("  %s (%d conns, data parts %v)", n.Name, n.PushConns, n.DataPartitions), "", f("%.0f", float64(n.PeakRSSBytes)/(1<<20)))
	}
	row("stream MB (R3: on disk 3x)", "", f("%.1f", float64(r.StreamBytes)/1e6))
	for _, n := range r.NodeResults {
		row(fmt.Sprintf("  disk MB of %s (du, running)", n.Name), "", f("%.1f", float64(n.DiskBytes)/1e6))
	}
	row("load average before queries", "", f("%.2f", r.LoadQueries))
	byName := func(qs []queryResult, name string) string {
		for _, q := range qs {
			if q.Name == name {
				if !q.OK {
					return "FAIL"
				}
				return fmt.Sprintf("%.1f", q.MedianMs)
			}
		}
		return "-"
	}
	fmt.Fprintf(w, "\n  %-58s %14s %14s %14s\n", "query ms (median)", "1 node", "non-owner "+r.QueryNode, "owner "+r.OwnerNode)
	fmt.Fprintf(w, "  %-58s %14s %14.2f %14.2f\n", "  of which read after ack (mean)", "", r.ReadWaitMsNonOwner, r.ReadWaitMsOwner)
	for _, q := range r.QueriesNonOwner {
		fmt.Fprintf(w, "  %-58s %14s %14s %14s\n", q.Name, byName(s.Queries, q.Name), byName(r.QueriesNonOwner, q.Name), byName(r.QueriesOwner, q.Name))
	}
	for _, t := range r.Takeovers {
		fmt.Fprintf(w, "\ntakeover %d (load %.2f): SIGKILL %s, owner of %v (%.1f MB of stream, %d messages); lease TTL %.0fs\n",
			t.Round, t.Load, t.Killed, t.KilledPartitions, float64(t.KilledBytes)/1e6, t.KilledMessages, t.LeaseTTLSeconds)
		fmt.Fprintf(w, "  seconds after the kill: first claim %.2f, every partition caught up on a survivor %.2f, settled %.2f; /v1/cluster all live %.2f\n",
			t.FirstClaimSeconds, t.AllReadySeconds, t.SettledSeconds, t.AllLiveAPISeconds)
		fmt.Fprintf(w, "  survivors' own partitions disturbed: %v (logged: %d lease renewal failures, %d lost leases, %d handovers, %d consumer restarts)\n",
			t.Disturbed, t.RenewalFailures, t.LostLeases, t.Handovers, t.ConsumerRestarts)
		for _, wn := range t.Warnings {
			fmt.Fprintf(w, "  WARNING: %s\n", wn)
		}
		for _, sp := range t.Spans {
			fmt.Fprintf(w, "  replayed partition %d on %s: seq %d..%d from %.2fs after the kill, in %.2fs\n",
				sp.Partition, sp.Node, sp.FromSeq, sp.ToSeq, sp.StartSeconds, sp.Seconds)
		}
		fmt.Fprintf(w, "  replay (server logs, %d spans, took %.3fs .. last caught up %.3fs): %d messages, %.1f MB of stream, %d lines in %.2fs = %.1f MB/s, %.0f lines/s\n",
			t.ReplaySpans, t.LogFirstTook, t.LogLastCaughtUp, t.ReplayedMessages, t.ReplayedBytes/1e6, t.ReplayedLines, t.ReplaySeconds, t.ReplayMBps, t.ReplayLinesPerSec)
		fmt.Fprintf(w, "  survivors quiet again (sealing, indexing done) %.2fs after the kill: %.1f CPU s since the kill, rebuild %.1f MB/s; peak RSS MiB %v\n",
			t.QuietSeconds, t.SurvivorCPUSeconds, t.RebuildMBps, mib(t.SurvivorPeakRSS))
		if t.ReplayMBps > 0 {
			fmt.Fprintf(w, "  extrapolated (not measured): 1 GB of stream taken over and live in ~%.0fs (%.1fs to the first claim + 1000 MB at %.1f MB/s)",
				t.Extrapolated1GBSec, t.FirstClaimSeconds, t.ReplayMBps)
			if t.RebuildMBps > 0 {
				fmt.Fprintf(w, ", sealed and indexed in ~%.0fs (at %.1f MB/s)", t.Extrapolated1GBRebuiltSec, t.RebuildMBps)
			}
			fmt.Fprintln(w)
		}
		names := make([]string, 0, len(t.Queries))
		for k := range t.Queries {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			for _, q := range t.Queries[k] {
				v := fmt.Sprintf("%.1f ms", q.MedianMs)
				if !q.OK {
					v = "FAIL: " + q.Error
				}
				fmt.Fprintf(w, "  after takeover, %-12s %-58s %s\n", k, q.Name, v)
			}
		}
		if t.RejoinSeconds > 0 {
			fmt.Fprintf(w, "  %s restarted on its data: all live and stable with %d nodes after %.1fs\n", t.Killed, r.Nodes, t.RejoinSeconds)
		}
	}
	status := "OK: all answers match " + filepath.Base(r.Input) + ".expect.json"
	if !r.OK {
		status = "FAILED"
	}
	fmt.Fprintf(w, "\n%s\n", status)
}
