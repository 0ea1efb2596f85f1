package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/cluster"
)

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
