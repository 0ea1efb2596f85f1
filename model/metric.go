package model

import (
	"sort"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
)

// MetricNameLabel is the label that holds a series' metric name, as in Prometheus.
const MetricNameLabel = "__name__"

// Label is one name=value pair of a metric series.
type Label struct {
	Name, Value string
}

// Sample is one float value of a metric series. NaN and ±Inf are values like
// any other; Prometheus' stale marker (a NaN with a particular bit pattern) is
// kept bit for bit.
type Sample struct {
	T int64 // Unix milliseconds, as in Prometheus
	V float64
}

// HistogramSample is one native histogram of a metric series, with integer
// counts (H) or float counts (FH): exactly one of them is set.
type HistogramSample struct {
	T  int64 // Unix milliseconds
	H  *histogram.Histogram
	FH *histogram.FloatHistogram
}

// Series is a metric series and some of its samples: floats, native
// histograms or both (at distinct times).
type Series struct {
	Labels     []Label // sorted by name, names unique, empty values left out; __name__ included
	Samples    []Sample
	Histograms []HistogramSample // sorted by time, like Samples
}

// SortLabels sorts ls by name.
func SortLabels(ls []Label) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].Name < ls[j].Name })
}

// LabelsString renders ls as Prometheus does: name{a="1", b="2"}.
func LabelsString(ls []Label) string {
	var b strings.Builder
	name := ""
	for _, l := range ls {
		if l.Name == MetricNameLabel {
			name = l.Value
		}
	}
	b.WriteString(name)
	b.WriteByte('{')
	first := true
	for _, l := range ls {
		if l.Name == MetricNameLabel {
			continue
		}
		if !first {
			b.WriteString(", ")
		}
		first = false
		b.WriteString(l.Name)
		b.WriteString(`="`)
		b.WriteString(l.Value)
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// MetricsResult answers one append of metric samples.
type MetricsResult struct {
	Accepted    int // samples stored
	Duplicates  int // samples whose series already had a sample at that time (dropped)
	OutOfWindow int // samples older than the out-of-order window (dropped)
	// OverSeriesLimit samples of NewSeriesRefused new series were refused
	// (dropped): the metric store held MaxSeries series. The samples of
	// existing series were stored.
	OverSeriesLimit  int
	NewSeriesRefused int
	MaxSeries        int
}
