package store

import (
	"io/fs"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// collector reports, at each scrape, the sizes of the store's parts and the
// delivery accounting of all agents summed up (per-agent series would grow
// with the fleet).
type collector struct{ s *Store }

var (
	descBadger      = prometheus.NewDesc("shiplog_store_badger_bytes", "Size of Badger's files by kind: lsm (.sst: keys, metadata, small values) and vlog (.vlog: large values), as of the last measurement of the data directory (every 30 s).", []string{"kind"}, nil)
	descDir         = prometheus.NewDesc("shiplog_store_dir_bytes", "Space a part of the data directory takes on disk: wal (log lines not yet in chunks), mwal (metric samples not yet in chunks), index (Bleve), badger; as of the last measurement (every 30 s).", []string{"dir"}, nil)
	descAgents      = prometheus.NewDesc("shiplog_agents", "Agents ever seen, by state: open or closed (said goodbye).", []string{"state"}, nil)
	descAgentRecv   = prometheus.NewDesc("shiplog_agent_records_received_total", "Records received from agents, duplicates included.", nil, nil)
	descAgentDup    = prometheus.NewDesc("shiplog_agent_records_duplicate_total", "Records from agents dropped as already stored (same agent and seq).", nil, nil)
	descAgentGaps   = prometheus.NewDesc("shiplog_agent_seq_gaps_total", "Sequence numbers agents skipped: records never received.", nil, nil)
	descAgentDrop   = prometheus.NewDesc("shiplog_agent_records_dropped_total", "Records agents reported they dropped (spool full, unreadable lines).", nil, nil)
	descActive      = prometheus.NewDesc("shiplog_store_active_streams", "Streams (service, host, build_id, deploy_id) with an open chunk in memory, one per UTC day of their lines.", nil, nil)
	descNewStreams  = prometheus.NewDesc("shiplog_store_new_streams_today", "Streams first seen today (UTC, since the server started), counted against --max-streams-per-day.", nil, nil)
	descStreamLimit = prometheus.NewDesc("shiplog_store_streams_limit", "New streams accepted per UTC day (--max-streams-per-day; 0: no limit).", nil, nil)
	collectorDescs  = []*prometheus.Desc{descBadger, descDir, descAgents, descAgentRecv, descAgentDup, descAgentGaps, descAgentDrop,
		descActive, descNewStreams, descStreamLimit}
	collectorDirs   = []string{"wal", "mwal", "index", "badger"}
	collectorStates = []string{"open", "closed"}
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range collectorDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	sz := &c.s.sizes
	sz.mu.Lock()
	lsm, vlog := sz.lsm, sz.vlog
	dirs := make([]float64, len(collectorDirs))
	for i, d := range collectorDirs {
		dirs[i] = float64(sz.dirs[d])
	}
	sz.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descBadger, prometheus.GaugeValue, float64(lsm), "lsm")
	ch <- prometheus.MustNewConstMetric(descBadger, prometheus.GaugeValue, float64(vlog), "vlog")
	for i, d := range collectorDirs {
		ch <- prometheus.MustNewConstMetric(descDir, prometheus.GaugeValue, dirs[i], d)
	}
	var states [2]float64
	var recv, dup, gaps, drop float64
	for _, a := range c.s.Agents() {
		if a.Closed {
			states[1]++
		} else {
			states[0]++
		}
		recv += float64(a.Received)
		dup += float64(a.Duplicates)
		gaps += float64(a.Gaps)
		drop += float64(a.Dropped)
	}
	for i, st := range collectorStates {
		ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, states[i], st)
	}
	ch <- prometheus.MustNewConstMetric(descAgentRecv, prometheus.CounterValue, recv)
	ch <- prometheus.MustNewConstMetric(descAgentDup, prometheus.CounterValue, dup)
	ch <- prometheus.MustNewConstMetric(descAgentGaps, prometheus.CounterValue, gaps)
	ch <- prometheus.MustNewConstMetric(descAgentDrop, prometheus.CounterValue, drop)
	active, fresh := c.s.streamCounts(time.Now())
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(active))
	ch <- prometheus.MustNewConstMetric(descNewStreams, prometheus.GaugeValue, float64(fresh))
	ch <- prometheus.MustNewConstMetric(descStreamLimit, prometheus.GaugeValue, float64(c.s.opts.MaxStreamsPerDay))
}

// streamCounts is the number of open heads and of streams first seen today.
func (s *Store) streamCounts(now time.Time) (active, fresh int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.newDay == model.Day(now.UnixNano()) {
		fresh = s.newStreams
	}
	return len(s.heads), fresh
}

// dirUsage is the space the files under dir take on disk (allocated blocks).
func dirUsage(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			} else {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}
