package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/internal/harness"
)

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
