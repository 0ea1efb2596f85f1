package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/model"
)

// MetricsSink stores metric samples durably.
type MetricsSink interface {
	AppendSamples(ctx context.Context, series []model.Series) (model.MetricsResult, error)
}

// MetricsOptions are the limits of one batch of metric samples.
type MetricsOptions struct {
	MaxSamples    int           // samples in one batch
	MaxLabels     int           // labels of one series, __name__ included
	MaxNameBytes  int           // bytes of a metric or label name
	MaxValueBytes int           // bytes of a label value
	MaxFuture     time.Duration // how far ahead of the server's clock a sample may be
	MaxPast       time.Duration // how far back
	Now           func() time.Time
}

// DefaultMetricsOptions returns the limits shiplog runs with. MaxFuture is
// short: a sample from the future moves its series' newest time ahead, and
// real samples then fall behind the out-of-order window.
func DefaultMetricsOptions() MetricsOptions {
	return MetricsOptions{
		MaxSamples:    1_000_000,
		MaxLabels:     64,
		MaxNameBytes:  256,
		MaxValueBytes: 4096,
		MaxFuture:     10 * time.Minute,
		MaxPast:       2 * 365 * 24 * time.Hour,
		Now:           time.Now,
	}
}

// MetricsIngester validates metric samples and writes them to its sink.
type MetricsIngester struct {
	sink MetricsSink
	opts MetricsOptions
	log  *slog.Logger

	requests, samples, rejected prometheus.Counter
}

// NewMetrics returns a MetricsIngester writing to sink.
func NewMetrics(sink MetricsSink, opts MetricsOptions, log *slog.Logger, reg prometheus.Registerer) *MetricsIngester {
	d := DefaultMetricsOptions()
	if opts.MaxSamples <= 0 {
		opts.MaxSamples = d.MaxSamples
	}
	if opts.MaxLabels <= 0 {
		opts.MaxLabels = d.MaxLabels
	}
	if opts.MaxNameBytes <= 0 {
		opts.MaxNameBytes = d.MaxNameBytes
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = d.MaxValueBytes
	}
	if opts.MaxFuture <= 0 {
		opts.MaxFuture = d.MaxFuture
	}
	if opts.MaxPast <= 0 {
		opts.MaxPast = d.MaxPast
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mi := &MetricsIngester{
		sink:     sink,
		opts:     opts,
		log:      log,
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_metric_requests_total", Help: "Batches of metric samples accepted for storage (gRPC Push, remote write)."}),
		samples:  prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_metric_samples_total", Help: "Metric samples received in valid batches."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_ingest_metric_rejected_requests_total", Help: "Batches of metric samples refused as invalid."}),
	}
	if reg != nil {
		reg.MustRegister(mi.requests, mi.samples, mi.rejected)
	}
	return mi
}

// Ingest validates series (sorting labels, dropping empty ones, filling a
// zero time with now) and stores them. A batch with any invalid series or
// sample is refused whole with an error wrapping ErrInvalid that names it.
func (mi *MetricsIngester) Ingest(ctx context.Context, series []model.Series) (model.MetricsResult, error) {
	if err := mi.validate(series); err != nil {
		mi.rejected.Inc()
		return model.MetricsResult{}, err
	}
	res, err := mi.sink.AppendSamples(ctx, series)
	if err != nil {
		return res, err
	}
	mi.requests.Inc()
	mi.samples.Add(float64(res.Accepted + res.Duplicates + res.OutOfWindow + res.OverSeriesLimit))
	return res, nil
}

func (mi *MetricsIngester) validate(series []model.Series) error {
	now := mi.opts.Now()
	maxT := now.Add(mi.opts.MaxFuture).UnixMilli()
	minT := now.Add(-mi.opts.MaxPast).UnixMilli()
	n := 0
	for i := range series {
		n += len(series[i].Samples) + len(series[i].Histograms)
	}
	if n > mi.opts.MaxSamples {
		return fmt.Errorf("%w: %d samples in one batch, over the limit of %d", ErrInvalid, n, mi.opts.MaxSamples)
	}
	for i := range series {
		sr := &series[i]
		if err := mi.validateLabels(sr); err != nil {
			return fmt.Errorf("%w: series %d %s: %v", ErrInvalid, i, model.LabelsString(sr.Labels), err)
		}
		for j := range sr.Samples {
			if err := mi.validateTime(sr, &sr.Samples[j].T, now, minT, maxT); err != nil {
				return err
			}
		}
		for j := range sr.Histograms {
			h := &sr.Histograms[j]
			if err := mi.validateTime(sr, &h.T, now, minT, maxT); err != nil {
				return err
			}
			var err error
			switch {
			case h.H != nil && h.FH != nil:
				err = errors.New("both an integer and a float histogram")
			case h.H != nil:
				err = h.H.Validate()
			case h.FH != nil:
				err = h.FH.Validate()
			default:
				err = errors.New("no histogram")
			}
			if err != nil {
				return fmt.Errorf("%w: series %s: native histogram at %s: %v", ErrInvalid,
					model.LabelsString(sr.Labels), time.UnixMilli(h.T).UTC().Format(time.RFC3339Nano), err)
			}
		}
	}
	return nil
}

// validateTime fills a zero sample time with now and checks it is within
// [minT, maxT].
func (mi *MetricsIngester) validateTime(sr *model.Series, t *int64, now time.Time, minT, maxT int64) error {
	if *t == 0 {
		*t = now.UnixMilli()
	}
	switch {
	case *t > maxT:
		return fmt.Errorf("%w: series %s: sample at %s is %s ahead of the server's clock (at most %s)", ErrInvalid,
			model.LabelsString(sr.Labels), time.UnixMilli(*t).UTC().Format(time.RFC3339Nano),
			aheadBy(*t-now.UnixMilli()), mi.opts.MaxFuture)
	case *t < minT:
		return fmt.Errorf("%w: series %s: sample at %s is older than %s", ErrInvalid,
			model.LabelsString(sr.Labels), time.UnixMilli(*t).UTC().Format(time.RFC3339Nano), mi.opts.MaxPast)
	}
	return nil
}

// validateLabels sorts the labels, drops empty values and checks names.
func (mi *MetricsIngester) validateLabels(sr *model.Series) error {
	ls := sr.Labels[:0]
	for _, l := range sr.Labels {
		if l.Value != "" {
			ls = append(ls, l)
		}
	}
	model.SortLabels(ls)
	sr.Labels = ls
	if len(ls) > mi.opts.MaxLabels {
		return fmt.Errorf("%d labels, over the limit of %d", len(ls), mi.opts.MaxLabels)
	}
	hasName := false
	for i, l := range ls {
		if i > 0 && ls[i-1].Name == l.Name {
			return fmt.Errorf("label %q given twice", l.Name)
		}
		if len(l.Name) > mi.opts.MaxNameBytes {
			return fmt.Errorf("label name %.40q... is over %d bytes", l.Name, mi.opts.MaxNameBytes)
		}
		if len(l.Value) > mi.opts.MaxValueBytes {
			return fmt.Errorf("value of label %q is over %d bytes", l.Name, mi.opts.MaxValueBytes)
		}
		if !utf8.ValidString(l.Value) {
			return fmt.Errorf("value of label %q is not valid UTF-8", l.Name)
		}
		if l.Name == model.MetricNameLabel {
			hasName = true
			if !ValidMetricName(l.Value) {
				return fmt.Errorf("metric name %q is not valid: want [a-zA-Z_:][a-zA-Z0-9_:]*", l.Value)
			}
			continue
		}
		if !ValidLabelName(l.Name) {
			return fmt.Errorf("label name %q is not valid: want [a-zA-Z_][a-zA-Z0-9_]*", l.Name)
		}
		if strings.HasPrefix(l.Name, "__") {
			return fmt.Errorf("label name %q is reserved (names starting with __ are internal)", l.Name)
		}
	}
	if !hasName {
		return fmt.Errorf("no metric name")
	}
	return nil
}

// ValidMetricName reports whether s is a metric name in Prometheus' classic
// character set: [a-zA-Z_:][a-zA-Z0-9_:]*.
func ValidMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		ok := c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}

// ValidLabelName reports whether s is a label name in Prometheus' classic
// character set: [a-zA-Z_][a-zA-Z0-9_]*.
func ValidLabelName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range []byte(s) {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9'
		if !ok {
			return false
		}
	}
	return true
}
