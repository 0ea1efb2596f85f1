package main

import (
	"fmt"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// The stats floors (issue 15): exact aggregations on a live server right
// after ingest, each answer checked against counts taken from the parsed
// data set before the clock starts.
//
// gen_logs.py writes no attributes; durations are in the messages as
// logfmt fields (duration=12.3ms, latency=1.20s, took=4.5ms), so the bench
// adds latency_ms, in milliseconds, to the records that have one, as a
// shipper extracting logfmt fields would (about an eighth of the lines).

// latencyKeys are the message fields latency_ms is read from.
var latencyKeys = []string{" duration=", " latency=", " took="}

// msLatency reads the first duration field of msg in milliseconds.
func msLatency(msg string) (float64, bool) {
	for _, k := range latencyKeys {
		i := strings.Index(msg, k)
		if i < 0 {
			continue
		}
		v := msg[i+len(k):]
		if j := strings.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		mult := 1.0
		switch {
		case strings.HasSuffix(v, "ms"):
			v = v[:len(v)-2]
		case strings.HasSuffix(v, "s"):
			v, mult = v[:len(v)-1], 1000
		default:
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		return math.Round(f*mult*1000) / 1000, true
	}
	return 0, false
}

// addLatency sets latency_ms on the records whose message has a duration.
func addLatency(recs []*shiplogv1.Record) {
	for _, r := range recs {
		if v, ok := msLatency(r.Message); ok {
			if r.Attributes == nil {
				r.Attributes = map[string]string{}
			}
			r.Attributes["latency_ms"] = strconv.FormatFloat(v, 'f', -1, 64)
		}
	}
}

// statsWant is what the floors' answers must be.
type statsWant struct {
	byServiceLevel map[string]int64 // "service level"
	errorsByHost   map[string]int64
	build          string
	buildCount     int64
	buildFacets    map[string]map[string]int64 // field -> value -> count
	p99            map[string]float64          // by service (every service logs durations): the value of rank floor(0.99*(n-1))
	latencies      int64
	lat            map[string][]float64 // by service, until finish
}

func countStats(recs []*shiplogv1.Record, build string) *statsWant {
	w := newStatsWant(build)
	for _, r := range recs {
		w.add(r)
	}
	w.finish()
	return w
}

// newStatsWant starts counting the answers for the floors; add every
// record, then finish.
func newStatsWant(build string) *statsWant {
	return &statsWant{byServiceLevel: map[string]int64{}, errorsByHost: map[string]int64{}, build: build,
		buildFacets: map[string]map[string]int64{}, p99: map[string]float64{}, lat: map[string][]float64{}}
}

func (w *statsWant) add(r *shiplogv1.Record) {
	w.byServiceLevel[r.Service+" "+r.Level]++
	if r.Level == "error" {
		w.errorsByHost[r.Host]++
	}
	if r.BuildId == w.build {
		w.buildCount++
		for f, v := range map[string]string{"service": r.Service, "host": r.Host, "deploy_id": r.DeployId, "level": r.Level} {
			if w.buildFacets[f] == nil {
				w.buildFacets[f] = map[string]int64{}
			}
			w.buildFacets[f][v]++
		}
	}
	if s, ok := r.Attributes["latency_ms"]; ok {
		v, _ := strconv.ParseFloat(s, 64)
		w.lat[r.Service] = append(w.lat[r.Service], v)
		w.latencies++
	}
}

// finish computes the p99s and lets the latencies go.
func (w *statsWant) finish() {
	for svc, vs := range w.lat {
		sort.Float64s(vs)
		w.p99[svc] = vs[int(0.99*float64(len(vs)-1))]
	}
	w.lat = nil
}

// buildStatsQueries returns the four floor queries (i..l); each name ends
// with its floor in ms.
func buildStatsQueries(q *queryClient, exp *expectation, w *statsWant) ([]query, error) {
	first, err := time.Parse(time.RFC3339Nano, exp.FirstTime)
	if err != nil {
		return nil, fmt.Errorf("expect.json first_time: %w", err)
	}
	span := time.Duration(exp.SpanHours * float64(time.Hour))
	rng := func(kv ...string) url.Values {
		v := url.Values{"start": {first.UTC().Format(time.RFC3339Nano)}, "end": {first.Add(span).UTC().Format(time.RFC3339Nano)}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	stats := func(params url.Values, want map[string]int64, key func(*shiplogv1.StatsGroup) string) (*shiplogv1.StatsResponse, time.Duration, error) {
		var s shiplogv1.StatsResponse
		took, err := q.get("/v1/logs:stats", params, &s)
		if err != nil {
			return nil, took, err
		}
		if want == nil {
			return &s, took, nil
		}
		if len(s.Groups) != len(want) || s.Other != 0 {
			return nil, took, fmt.Errorf("%d groups (other %v), want %d", len(s.Groups), s.Other, len(want))
		}
		for _, g := range s.Groups {
			if k := key(g); int64(g.Count) != want[k] {
				return nil, took, fmt.Errorf("group %q: %v, want %d", k, g.Count, want[k])
			}
		}
		return &s, took, nil
	}
	qs := []query{
		{"i: stats by service,level <=20", func() (time.Duration, error) {
			_, took, err := stats(rng("by", "service,level", "limit", "1000"), w.byServiceLevel,
				func(g *shiplogv1.StatsGroup) string { return g.Labels["service"] + " " + g.Labels["level"] })
			return took, err
		}},
		{"j: stats by host, level:error <=20", func() (time.Duration, error) {
			_, took, err := stats(rng("q", "level:error", "by", "host", "limit", "1000"), w.errorsByHost,
				func(g *shiplogv1.StatsGroup) string { return g.Labels["host"] })
			return took, err
		}},
		{"k: facets of " + w.build + " <=30", func() (time.Duration, error) {
			var f shiplogv1.FacetsResponse
			took, err := q.get("/v1/logs:facets", rng("q", "build_id:"+w.build, "limit", "1000"), &f)
			if err != nil {
				return took, err
			}
			if int64(f.Total) != w.buildCount {
				return took, fmt.Errorf("total %v, want %d", f.Total, w.buildCount)
			}
			checked := 0
			for _, fc := range f.Fields {
				want := w.buildFacets[fc.Name]
				if want == nil {
					continue
				}
				checked++
				if int(fc.Distinct) != len(want) {
					return took, fmt.Errorf("%s: %v distinct, want %d", fc.Name, fc.Distinct, len(want))
				}
				for _, v := range fc.Values {
					if int64(v.Count) != want[v.Value] {
						return took, fmt.Errorf("%s=%s: %v, want %d", fc.Name, v.Value, v.Count, want[v.Value])
					}
				}
			}
			if checked != len(w.buildFacets) {
				return took, fmt.Errorf("%d of the %d label and level fields in the answer", checked, len(w.buildFacets))
			}
			return took, nil
		}},
		{"l: p99 latency by service <=1500", func() (time.Duration, error) {
			const agg = "quantile(0.99,latency_ms)"
			s, took, err := stats(rng("by", "service", "agg", agg, "limit", "1000"), nil, nil)
			if err != nil {
				return took, err
			}
			if int64(s.Total) != int64(exp.N) || len(s.Groups) != len(w.p99) {
				return took, fmt.Errorf("total %v, %d groups; want %d, %d", s.Total, len(s.Groups), exp.N, len(w.p99))
			}
			for _, g := range s.Groups {
				want, ok := w.p99[g.Labels["service"]]
				got := g.Values[agg]
				if !ok || math.Abs(got-want) > 0.01*want {
					return took, fmt.Errorf("service %s: p99 %v, want %v within 1%%", g.Labels["service"], got, want)
				}
			}
			return took, nil
		}},
	}
	if w.latencies == 0 { // -mode jsonl: the records carry no latency_ms
		qs = qs[:3]
	}
	return qs, nil
}
