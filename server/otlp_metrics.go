package server

// OTLP metrics to Prometheus-style series, as Prometheus' own OTLP receiver
// names them (github.com/prometheus/otlptranslator, UnderscoreEscapingWith-
// Suffixes): gauges and non-monotonic sums are gauges; monotonic cumulative
// sums are counters (_total); cumulative histograms are _bucket{le}, _sum and
// _count; summaries are {quantile}, _sum and _count; cumulative exponential
// histograms are native histograms (scales above 8 merged down to 8). Delta
// temporality is refused (partial_success). The mapping is documented in
// docs/ingest.md.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/model/histogram"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// staleNaN is Prometheus' stale marker, for data points flagged as having no
// recorded value.
var staleNaN = math.Float64frombits(0x7ff0000000000002)

// Labels that resource attributes become on every series.
const (
	promJob      = "job"      // service.namespace/service.name
	promInstance = "instance" // service.instance.id, else host.name
	promHost     = "host"     // host.name
	promDeployID = "deploy_id"
	promBuildID  = "build_id"
)

func (o *otlpServer) exportMetrics(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	if o.core.Metrics == nil || o.core.Metrics.Ingest == nil {
		return nil, errNoMetrics
	}
	release, err := o.core.Limits.ingest(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return o.exportMetricsHeld(ctx, req)
}

// exportMetricsHeld is exportMetrics for a caller that holds an ingest slot.
func (o *otlpServer) exportMetricsHeld(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	if o.core.Metrics == nil || o.core.Metrics.Ingest == nil {
		return nil, errNoMetrics
	}
	var res stored
	series := o.names.metrics(req, &res, o.meta)
	if err := storeSeries(ctx, o.core.Metrics.Ingest, series, &res); err != nil {
		return nil, err
	}
	resp := &colmetricspb.ExportMetricsServiceResponse{}
	if res.Rejected > 0 {
		resp.PartialSuccess = &colmetricspb.ExportMetricsPartialSuccess{RejectedDataPoints: int64(res.Rejected),
			ErrorMessage: fmt.Sprintf("%d data points rejected; the first: %s", res.Rejected, rejectMessage(res.FirstReject))}
	}
	return resp, nil
}

// storeSeries stores series through the MetricsIngester, halving what it
// refuses as invalid down to single series (whose samples are then counted
// as rejected). Samples dropped as out of the out-of-order window count as
// rejected too.
func storeSeries(ctx context.Context, mi *ingest.MetricsIngester, series []model.Series, res *stored) error {
	if len(series) == 0 {
		return nil
	}
	r, err := mi.Ingest(ctx, series)
	switch {
	case err == nil:
		res.Accepted += r.Accepted
		res.Duplicates += r.Duplicates
		if r.OverSeriesLimit > 0 {
			res.reject(r.OverSeriesLimit, seriesLimitError(r))
		}
		if r.OutOfWindow > 0 {
			res.reject(r.OutOfWindow, fmt.Errorf("%d samples older than their series' newest by more than the out-of-order window (or than retention)", r.OutOfWindow))
		}
		return nil
	case !errors.Is(err, ingest.ErrInvalid):
		return err
	case len(series) == 1:
		res.reject(len(series[0].Samples)+len(series[0].Histograms), err)
		return nil
	}
	h := len(series) / 2
	if err := storeSeries(ctx, mi, series[:h], res); err != nil {
		return err
	}
	return storeSeries(ctx, mi, series[h:], res)
}

// seriesSet collects samples by series.
type seriesSet struct {
	index  map[string]int
	series []model.Series
	key    strings.Builder
}

func (s *seriesSet) add(ls []model.Label, t int64, v float64) {
	i := s.find(ls)
	s.series[i].Samples = append(s.series[i].Samples, model.Sample{T: t, V: v})
}

func (s *seriesSet) addHistogram(ls []model.Label, h model.HistogramSample) {
	i := s.find(ls)
	s.series[i].Histograms = append(s.series[i].Histograms, h)
}

// find returns the index of series ls (sorted here), adding it if new.
func (s *seriesSet) find(ls []model.Label) int {
	model.SortLabels(ls)
	s.key.Reset()
	for _, l := range ls {
		s.key.WriteString(l.Name)
		s.key.WriteByte(0xff)
		s.key.WriteString(l.Value)
		s.key.WriteByte(0xff)
	}
	i, ok := s.index[s.key.String()]
	if !ok {
		i = len(s.series)
		s.index[s.key.String()] = i
		s.series = append(s.series, model.Series{Labels: ls})
	}
	return i
}

// otlpMetrics converts with the default attribute names, keeping no
// metadata.
func otlpMetrics(req *colmetricspb.ExportMetricsServiceRequest, res *stored) []model.Series {
	return defaultOTLPNames.metrics(req, res, nil)
}

// metrics converts an export request; data points it cannot take are
// counted in res. Each resource with series gets a target_info series, and
// each metric's type, description and unit go to meta (nil: none).
func (nm *otlpNames) metrics(req *colmetricspb.ExportMetricsServiceRequest, res *stored, meta *metaStore) []model.Series {
	set := &seriesSet{index: map[string]int{}}
	mn := otlptranslator.NewMetricNamer("", otlptranslator.UnderscoreEscapingWithSuffixes)
	for _, rm := range req.GetResourceMetrics() {
		attrs := rm.GetResource().GetAttributes()
		base := nm.resourceLabels(attrs)
		before := len(set.series)
		var newest int64
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				newest = max(newest, convertMetric(set, &mn, m, base, res, meta))
			}
		}
		if len(set.series) > before {
			addTargetInfo(set, base, attrs, newest)
		}
	}
	return set.series
}

// addTargetInfo adds the resource's target_info sample (value 1, at the
// newest data point's time), as Prometheus' OTLP receiver writes it: job
// and instance, and every resource attribute but those job and instance
// come from, as labels. A resource with no other attribute gets none.
func addTargetInfo(set *seriesSet, base []model.Label, attrs []*commonpb.KeyValue, t int64) {
	var rest []*commonpb.KeyValue
	for _, kv := range attrs {
		switch kv.GetKey() {
		case otelServiceName, "service.namespace", otelInstanceID:
			continue
		}
		rest = append(rest, kv)
	}
	if len(rest) == 0 {
		return
	}
	set.add(pointLabels("target_info", base, rest), t, 1)
}

// resourceLabels are the labels every series of a resource gets.
func (nm *otlpNames) resourceLabels(attrs []*commonpb.KeyValue) []model.Label {
	var name, namespace, instance, host, deploy, build string
	buildRank, deployRank := len(nm.build), len(nm.deploy)
	for _, kv := range attrs {
		v := anyString(kv.GetValue())
		switch kv.GetKey() {
		case otelServiceName:
			name = v
		case "service.namespace":
			namespace = v
		case otelInstanceID:
			instance = v
		case otelHostName:
			host = v
		}
		if i := slices.Index(nm.build, kv.GetKey()); i >= 0 && i < buildRank && v != "" {
			buildRank, build = i, v
		}
		if i := slices.Index(nm.deploy, kv.GetKey()); i >= 0 && i < deployRank && v != "" {
			deployRank, deploy = i, v
		}
	}
	if namespace != "" && name != "" {
		name = namespace + "/" + name
	}
	if instance == "" {
		instance = host
	}
	var ls []model.Label
	for _, l := range []model.Label{{Name: promJob, Value: name}, {Name: promInstance, Value: instance}, {Name: promHost, Value: host},
		{Name: promDeployID, Value: deploy}, {Name: promBuildID, Value: build}} {
		if l.Value != "" {
			ls = append(ls, l)
		}
	}
	return ls
}

// convertMetric adds m's data points to set, and returns the newest data
// point's time (Unix milliseconds).
func convertMetric(set *seriesSet, mn *otlptranslator.MetricNamer, m *metricspb.Metric, base []model.Label, res *stored, meta *metaStore) int64 {
	var typ otlptranslator.MetricType = otlptranslator.MetricTypeGauge
	cumulative := true
	var points int
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		points = len(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		points = len(d.Sum.GetDataPoints())
		cumulative = d.Sum.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
		if d.Sum.GetIsMonotonic() {
			typ = otlptranslator.MetricTypeMonotonicCounter
		} else {
			typ = otlptranslator.MetricTypeNonMonotonicCounter
		}
	case *metricspb.Metric_Histogram:
		points = len(d.Histogram.GetDataPoints())
		typ = otlptranslator.MetricTypeHistogram
		cumulative = d.Histogram.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
	case *metricspb.Metric_Summary:
		points = len(d.Summary.GetDataPoints())
		typ = otlptranslator.MetricTypeSummary
	case *metricspb.Metric_ExponentialHistogram:
		points = len(d.ExponentialHistogram.GetDataPoints())
		typ = otlptranslator.MetricTypeExponentialHistogram
		cumulative = d.ExponentialHistogram.GetAggregationTemporality() == metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
	default:
		return 0
	}
	if !cumulative && typ != otlptranslator.MetricTypeNonMonotonicCounter {
		res.reject(points, invalid("metric %q: delta temporality is not supported (configure the exporter for cumulative temporality)", m.GetName()))
		return 0
	}
	name, err := mn.Build(otlptranslator.Metric{Name: m.GetName(), Unit: m.GetUnit(), Type: typ})
	if err != nil || !ingest.ValidMetricName(name) {
		res.reject(points, invalid("metric %q: no valid Prometheus name for it", m.GetName()))
		return 0
	}
	meta.add(name, metricMeta{Type: promMetaType(typ), Help: m.GetDescription(), Unit: unitNamer.Build(m.GetUnit())})
	newest := otlpNewest(m)
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for _, p := range d.Gauge.GetDataPoints() {
			set.add(pointLabels(name, base, p.GetAttributes()), otlpMillis(p.GetTimeUnixNano()), numberValue(p))
		}
	case *metricspb.Metric_Sum:
		for _, p := range d.Sum.GetDataPoints() {
			set.add(pointLabels(name, base, p.GetAttributes()), otlpMillis(p.GetTimeUnixNano()), numberValue(p))
		}
	case *metricspb.Metric_Histogram:
		for _, p := range d.Histogram.GetDataPoints() {
			addHistogram(set, name, base, p, res)
		}
	case *metricspb.Metric_Summary:
		for _, p := range d.Summary.GetDataPoints() {
			addSummary(set, name, base, p)
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			addExpHistogram(set, name, base, p, res)
		}
	}
	return newest
}

// unitNamer renders OTLP units as Prometheus' OTLP receiver does in
// metadata (ms: milliseconds).
var unitNamer = otlptranslator.UnitNamer{}

// promMetaType is the Prometheus metadata type of an OTLP metric type.
func promMetaType(t otlptranslator.MetricType) string {
	switch t {
	case otlptranslator.MetricTypeMonotonicCounter:
		return "counter"
	case otlptranslator.MetricTypeHistogram, otlptranslator.MetricTypeExponentialHistogram:
		return "histogram"
	case otlptranslator.MetricTypeSummary:
		return "summary"
	}
	return "gauge"
}

// otlpNewest is the newest of m's data points' times (Unix milliseconds).
func otlpNewest(m *metricspb.Metric) int64 {
	var ns uint64
	switch d := m.GetData().(type) {
	case *metricspb.Metric_Gauge:
		for _, p := range d.Gauge.GetDataPoints() {
			ns = max(ns, p.GetTimeUnixNano())
		}
	case *metricspb.Metric_Sum:
		for _, p := range d.Sum.GetDataPoints() {
			ns = max(ns, p.GetTimeUnixNano())
		}
	case *metricspb.Metric_Histogram:
		for _, p := range d.Histogram.GetDataPoints() {
			ns = max(ns, p.GetTimeUnixNano())
		}
	case *metricspb.Metric_Summary:
		for _, p := range d.Summary.GetDataPoints() {
			ns = max(ns, p.GetTimeUnixNano())
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			ns = max(ns, p.GetTimeUnixNano())
		}
	}
	return otlpMillis(ns)
}

// addExpHistogram adds an exponential histogram data point as a native
// histogram, as Prometheus' OTLP receiver does: the scale is the schema
// (scales above 8 are merged down to 8; below -4 are refused), OTLP bucket
// i, (base^i, base^(i+1)], is Prometheus bucket i+1.
func addExpHistogram(set *seriesSet, name string, base []model.Label, p *metricspb.ExponentialHistogramDataPoint, res *stored) {
	scale := p.GetScale()
	if scale < histogram.ExponentialSchemaMin {
		res.reject(1, invalid("exponential histogram %q: scale %d is below %d", name, scale, histogram.ExponentialSchemaMin))
		return
	}
	var down int32
	if scale > histogram.ExponentialSchemaMax {
		down, scale = scale-histogram.ExponentialSchemaMax, histogram.ExponentialSchemaMax
	}
	h := &histogram.Histogram{
		Schema:        scale,
		ZeroThreshold: p.GetZeroThreshold(),
		ZeroCount:     p.GetZeroCount(),
		Count:         p.GetCount(),
		Sum:           p.GetSum(),
	}
	h.PositiveSpans, h.PositiveBuckets = expBuckets(p.GetPositive().GetOffset(), p.GetPositive().GetBucketCounts(), down)
	h.NegativeSpans, h.NegativeBuckets = expBuckets(p.GetNegative().GetOffset(), p.GetNegative().GetBucketCounts(), down)
	if p.GetFlags()&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0 {
		h = &histogram.Histogram{Sum: staleNaN}
	}
	set.addHistogram(pointLabels(name, base, p.GetAttributes()), model.HistogramSample{T: otlpMillis(p.GetTimeUnixNano()), H: h})
}

// expBuckets converts OTLP bucket counts from index offset to Prometheus'
// spans and delta-encoded buckets, merging 2^down buckets into one.
func expBuckets(offset int32, counts []uint64, down int32) ([]histogram.Span, []int64) {
	var spans []histogram.Span
	var deltas []int64
	var prev int64
	var last int32 // Prometheus index of the last bucket added
	for i := 0; i < len(counts); {
		idx := (offset + int32(i)) >> down // floor, for negative indexes too
		var c uint64
		for ; i < len(counts) && (offset+int32(i))>>down == idx; i++ {
			c += counts[i]
		}
		pidx := idx + 1
		switch {
		case len(spans) == 0:
			spans = append(spans, histogram.Span{Offset: pidx, Length: 1})
		case pidx == last+1:
			spans[len(spans)-1].Length++
		default:
			spans = append(spans, histogram.Span{Offset: pidx - last - 1, Length: 1})
		}
		last = pidx
		deltas = append(deltas, int64(c)-prev)
		prev = int64(c)
	}
	return spans, deltas
}

func addHistogram(set *seriesSet, name string, base []model.Label, p *metricspb.HistogramDataPoint, res *stored) {
	t := otlpMillis(p.GetTimeUnixNano())
	stale := p.GetFlags()&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0
	val := func(v float64) float64 {
		if stale {
			return staleNaN
		}
		return v
	}
	bounds, counts := p.GetExplicitBounds(), p.GetBucketCounts()
	if len(counts) != 0 && len(counts) != len(bounds)+1 {
		res.reject(1, invalid("histogram %q: %d bucket counts for %d bounds (want bounds+1)", name, len(counts), len(bounds)))
		return
	}
	if len(counts) == 0 {
		bounds = nil // no buckets: +Inf (the count) only
	}
	var cum uint64
	for i, b := range bounds {
		cum += counts[i]
		ls := pointLabels(name+"_bucket", base, p.GetAttributes())
		ls = append(ls, model.Label{Name: "le", Value: formatLe(b)})
		set.add(ls, t, val(float64(cum)))
	}
	ls := pointLabels(name+"_bucket", base, p.GetAttributes())
	ls = append(ls, model.Label{Name: "le", Value: "+Inf"})
	set.add(ls, t, val(float64(p.GetCount())))
	if p.Sum != nil {
		set.add(pointLabels(name+"_sum", base, p.GetAttributes()), t, val(p.GetSum()))
	}
	set.add(pointLabels(name+"_count", base, p.GetAttributes()), t, val(float64(p.GetCount())))
}

func addSummary(set *seriesSet, name string, base []model.Label, p *metricspb.SummaryDataPoint) {
	t := otlpMillis(p.GetTimeUnixNano())
	stale := p.GetFlags()&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0
	val := func(v float64) float64 {
		if stale {
			return staleNaN
		}
		return v
	}
	for _, q := range p.GetQuantileValues() {
		ls := pointLabels(name, base, p.GetAttributes())
		ls = append(ls, model.Label{Name: "quantile", Value: formatLe(q.GetQuantile())})
		set.add(ls, t, val(q.GetValue()))
	}
	set.add(pointLabels(name+"_sum", base, p.GetAttributes()), t, val(p.GetSum()))
	set.add(pointLabels(name+"_count", base, p.GetAttributes()), t, val(float64(p.GetCount())))
}

// formatLe renders a bucket bound or quantile as Prometheus does.
func formatLe(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func numberValue(p *metricspb.NumberDataPoint) float64 {
	if p.GetFlags()&uint32(metricspb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0 {
		return staleNaN
	}
	switch v := p.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsDouble:
		return v.AsDouble
	case *metricspb.NumberDataPoint_AsInt:
		return float64(v.AsInt)
	}
	return 0
}

// otlpMillis converts Unix nanoseconds to the milliseconds of a sample (0
// stays 0: the time it arrives).
func otlpMillis(ns uint64) int64 {
	if ns > math.MaxInt64 {
		return math.MaxInt64 / 1_000_000 // refused by validation as too far ahead
	}
	return int64(ns) / 1e6
}

// pointLabels are a data point's labels: __name__, the resource's, and its
// attributes under Prometheus label names (attributes whose names collide
// once escaped have their values joined with ";", as Prometheus does). The
// resource's labels win over attributes of the same name.
func pointLabels(name string, base []model.Label, attrs []*commonpb.KeyValue) []model.Label {
	ls := make([]model.Label, 0, 1+len(base)+len(attrs)+1)
	ls = append(ls, model.Label{Name: model.MetricNameLabel, Value: name})
	ls = append(ls, base...)
	ln := otlptranslator.LabelNamer{}
	for _, kv := range attrs {
		n, err := ln.Build(kv.GetKey())
		if err != nil {
			continue
		}
		if strings.HasPrefix(n, "__") {
			n = "key" + n
		}
		v := anyString(kv.GetValue())
		dup := false
		for i := range ls {
			if ls[i].Name == n {
				if i > len(base) { // another attribute: join
					ls[i].Value += ";" + v
				}
				dup = true
				break
			}
		}
		if !dup {
			ls = append(ls, model.Label{Name: n, Value: v})
		}
	}
	return ls
}
