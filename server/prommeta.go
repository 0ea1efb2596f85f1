package server

// Metric metadata (type, help, unit) as remote write (1.0's metadata list,
// 2.0's per-series metadata) and OTLP send it, for GET /api/v1/metadata. It is
// kept in memory, bounded: at most metaMaxNames metric names, each with at
// most metaMaxPerName distinct entries (the newest replace the oldest), help
// texts cut at metaMaxHelp bytes. It is not persisted: senders resend it
// (Prometheus every minute, OTLP with every export).

import (
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

const (
	metaMaxNames   = 20000
	metaMaxPerName = 4
	metaMaxHelp    = 1024
	metaMaxName    = 512
)

// metricMeta is one metadata entry, in /api/v1/metadata's JSON.
type metricMeta struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// metaStore holds metadata by metric (family) name. Safe for concurrent use.
type metaStore struct {
	mu     sync.RWMutex
	byName map[string][]metricMeta // guarded by mu
}

func newMetaStore() *metaStore { return &metaStore{byName: map[string][]metricMeta{}} }

// add records m for name; empty names and entries are ignored, as are new
// names once the store holds metaMaxNames.
func (s *metaStore) add(name string, m metricMeta) {
	if s == nil || name == "" || len(name) > metaMaxName || (m.Type == "" && m.Help == "" && m.Unit == "") {
		return
	}
	if m.Type == "" {
		m.Type = "unknown"
	}
	if len(m.Help) > metaMaxHelp {
		h := m.Help[:metaMaxHelp]
		for len(h) > 0 && !utf8.ValidString(h) {
			h = h[:len(h)-1]
		}
		m.Help = h
	}
	m.Unit = truncate(m.Unit, metaMaxName)
	s.mu.RLock()
	cur, ok := s.byName[name]
	known := slices.Contains(cur, m)
	full := !ok && len(s.byName) >= metaMaxNames
	s.mu.RUnlock()
	if known || full {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok = s.byName[name]
	if slices.Contains(cur, m) || (!ok && len(s.byName) >= metaMaxNames) {
		return
	}
	if len(cur) >= metaMaxPerName {
		cur = slices.Delete(slices.Clone(cur), 0, 1)
	}
	s.byName[name] = append(slices.Clip(cur), m)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// get answers /api/v1/metadata: name "" is every metric; limit caps the
// metrics, perMetric the entries of each (0 or less: no cap).
func (s *metaStore) get(name string, limit, perMetric int) map[string][]metricMeta {
	out := map[string][]metricMeta{}
	if s == nil {
		return out
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.byName))
	if name != "" {
		if _, ok := s.byName[name]; ok {
			names = append(names, name)
		}
	} else {
		for n := range s.byName {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	for _, n := range names {
		if limit > 0 && len(out) >= limit {
			break
		}
		ms := s.byName[n]
		if perMetric > 0 && len(ms) > perMetric {
			ms = ms[:perMetric]
		}
		out[n] = slices.Clone(ms)
	}
	return out
}

// metaFamily is the metric family a series name belongs to, for metadata
// sent per series (remote write 2.0): the name less the suffix its type
// adds.
func metaFamily(name, typ string) string {
	var suffixes []string
	switch typ {
	case "histogram", "gaugehistogram":
		suffixes = []string{"_bucket", "_sum", "_count"}
	case "summary":
		suffixes = []string{"_sum", "_count"}
	}
	for _, s := range suffixes {
		if f, ok := strings.CutSuffix(name, s); ok && f != "" {
			return f
		}
	}
	return name
}
