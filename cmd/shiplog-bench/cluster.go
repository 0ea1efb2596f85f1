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
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/cluster"
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
