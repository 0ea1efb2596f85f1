package alert

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/value"

	"github.com/shiplog/shiplog/model"
)

// errNoAppend is the health of recording rules on a server without a metric store.
var errNoAppend = errors.New("the metric store is not available: recording rules cannot write")

// errDuplicateSeries: a recording rule's result has two series with the same
// labels once its name and labels are set (Prometheus' error).
var errDuplicateSeries = errors.New("vector contains metrics with the same labelset after applying rule labels")

// evalRecording runs a recording rule and writes its result into the metric
// store at the query's time, with stale markers for the series it wrote last
// time and not now, as Prometheus does.
func (m *Manager) evalRecording(ctx context.Context, g *group, r *rule, ts time.Time) {
	start := time.Now()
	qts := ts.Add(-g.queryOffset)
	series, err := m.recordSeries(ctx, g, r, qts)
	if err == nil && g.limit > 0 && len(series) > g.limit {
		err = fmt.Errorf("exceeded limit of %d with %d series", g.limit, len(series))
	}
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	st := r.st
	written := map[string][]model.Label{}
	if err == nil {
		for i := range series {
			written[model.LabelsString(series[i].Labels)] = series[i].Labels
		}
		st.mu.Lock()
		for k, l := range st.recorded {
			if _, ok := written[k]; !ok {
				series = append(series, model.Series{Labels: l,
					Samples: []model.Sample{{T: qts.UnixMilli(), V: math.Float64frombits(value.StaleNaN)}}})
			}
		}
		st.mu.Unlock()
		switch {
		case len(series) == 0:
		case m.opts.Append == nil:
			err = errNoAppend
		default:
			err = m.opts.Append(ctx, series)
		}
	}
	took := time.Since(start)
	m.met.evals.Inc()
	m.met.evalSeconds.Observe(took.Seconds())
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lastEval, st.evalDur = ts, took
	if err != nil {
		m.met.failures.Inc()
		st.health, st.lastErr = "err", err.Error()
		if err != errNoPromQL && err != errNoAppend {
			m.log.Warn("recording rule failed", "group", g.name, "rule", r.spec.Record, "err", err)
		}
		return
	}
	st.health, st.lastErr, st.recorded = "ok", "", written
}

// recordSeries runs a recording rule's query at qts and names its result.
func (m *Manager) recordSeries(ctx context.Context, g *group, r *rule, qts time.Time) ([]model.Series, error) {
	s := &r.spec
	var out []model.Series
	add := func(lbls map[string]string, v float64, h *Sample) {
		l := make(map[string]string, len(lbls)+len(s.Labels)+1)
		for k, v := range lbls {
			l[k] = v
		}
		l["__name__"] = s.Record
		for k, v := range s.Labels {
			l[k] = v // an empty value removes the label
		}
		sr := model.Series{Labels: toModelLabels(l)}
		if h != nil && h.H != nil {
			sr.Histograms = []model.HistogramSample{{T: qts.UnixMilli(), FH: h.H.Copy()}}
		} else {
			sr.Samples = []model.Sample{{T: qts.UnixMilli(), V: v}}
		}
		out = append(out, sr)
	}
	if s.Logs == "" {
		if m.opts.Query == nil {
			return nil, errNoPromQL
		}
		samples, err := m.opts.Query(ctx, s.Expr, qts)
		if err != nil {
			return nil, err
		}
		for i := range samples {
			add(samples[i].Labels, samples[i].Value, &samples[i])
		}
	} else {
		window := s.Window
		if window <= 0 {
			window = g.interval
		}
		groups, err := m.logsGroups(ctx, s, qts.Add(-window), qts, func(float64) bool { return false })
		if err != nil {
			return nil, err
		}
		for i := range groups {
			v := groups[i].value(s)
			if math.IsNaN(v) && s.Agg != "" {
				continue // no number to aggregate in this group
			}
			lbls := make(map[string]string, len(groups[i].Labels))
			for k, v := range groups[i].Labels {
				lbls[labelName(k)] = v
			}
			add(lbls, v, nil)
		}
	}
	seen := make(map[string]bool, len(out))
	for i := range out {
		k := model.LabelsString(out[i].Labels)
		if seen[k] {
			return nil, errDuplicateSeries
		}
		seen[k] = true
	}
	return out, nil
}

// toModelLabels sorts a label map, leaving out empty values.
func toModelLabels(m map[string]string) []model.Label {
	out := make([]model.Label, 0, len(m))
	for k, v := range m {
		if v != "" {
			out = append(out, model.Label{Name: k, Value: v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// labelName turns a field name (an attribute key may hold dots or dashes)
// into a Prometheus label name, as Prometheus' OTLP translation does.
func labelName(f string) string {
	return strings.Map(func(r rune) rune {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, f)
}

// templateEnv is what templates of an evaluation at ts see.
func (m *Manager) templateEnv(ctx context.Context, ts time.Time) *templateEnv {
	return &templateEnv{ctx: ctx, ts: ts, query: m.opts.Query, externalURL: m.extURL, externalLabels: m.opts.ExternalLabels}
}
