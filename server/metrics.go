package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/metrics"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// Metrics is what the metrics handlers call: MetricsService/Push, remote
// write and the Prometheus HTTP API.
type Metrics struct {
	Ingest    *ingest.MetricsIngester
	Engine    *metrics.Engine
	Queryable *metrics.Queryable
}

type metricsServer struct {
	shiplogv1.UnimplementedMetricsServiceServer
	core Core
	ins  *instruments
}

func (s *metricsServer) Push(ctx context.Context, req *shiplogv1.PushMetricsRequest) (*shiplogv1.PushMetricsResponse, error) {
	if s.core.Metrics == nil {
		return nil, toStatus(errNoMetrics)
	}
	series, err := seriesFromProto(req.GetSamples())
	if err != nil {
		return nil, toStatus(err)
	}
	res, err := s.ins.storeMetrics(ctx, s.core, series)
	if err != nil {
		return nil, toStatus(err)
	}
	return &shiplogv1.PushMetricsResponse{Accepted: uint32(res.Accepted), Duplicates: uint32(res.Duplicates)}, nil
}

// seriesFromProto groups samples by series.
func seriesFromProto(samples []*shiplogv1.Sample) ([]model.Series, error) {
	var out []model.Series
	index := map[string]int{}
	var key strings.Builder
	for i, smp := range samples {
		if smp == nil {
			return nil, invalid("sample %d is null", i)
		}
		if smp.GetName() == "" {
			return nil, invalid("sample %d: name is empty", i)
		}
		ls := make([]model.Label, 0, len(smp.GetLabels())+1)
		ls = append(ls, model.Label{Name: model.MetricNameLabel, Value: smp.GetName()})
		for k, v := range smp.GetLabels() {
			if k == model.MetricNameLabel {
				return nil, invalid("sample %d: the metric name goes in name, not in the label %s", i, k)
			}
			if v != "" {
				ls = append(ls, model.Label{Name: k, Value: v})
			}
		}
		model.SortLabels(ls)
		key.Reset()
		for _, l := range ls {
			key.WriteString(l.Name)
			key.WriteByte(0xff)
			key.WriteString(l.Value)
			key.WriteByte(0xff)
		}
		var t int64
		if ts := smp.GetTime(); ts != nil {
			if err := ts.CheckValid(); err != nil {
				return nil, invalid("sample %d %s: time: %v", i, model.LabelsString(ls), err)
			}
			t = ts.AsTime().UnixMilli()
			if t <= 0 {
				return nil, invalid("sample %d %s: time %s is before 1970", i, model.LabelsString(ls), ts.AsTime().Format("2006-01-02T15:04:05Z07:00"))
			}
		}
		j, ok := index[key.String()]
		if !ok {
			j = len(out)
			index[key.String()] = j
			out = append(out, model.Series{Labels: ls})
		}
		out[j].Samples = append(out[j].Samples, model.Sample{T: t, V: smp.GetValue()})
	}
	return out, nil
}

// storeMetrics validates and stores series, admitted by the limiter, and
// turns samples refused by the store (older than the out-of-order window)
// into an error naming them, as Prometheus' remote-write receiver does; the
// other samples are stored.
func (ins *instruments) storeMetrics(ctx context.Context, core Core, series []model.Series) (model.MetricsResult, error) {
	release, err := core.Limits.ingest(ctx)
	if err != nil {
		return model.MetricsResult{}, err
	}
	defer release()
	done := ins.batch("metrics")
	res, err := core.Metrics.Ingest.Ingest(ctx, series)
	done()
	if err != nil {
		return res, err
	}
	if res.OverSeriesLimit > 0 {
		return res, seriesLimitError(res)
	}
	if res.OutOfWindow > 0 {
		return res, invalid("%d samples were older than their series' newest by more than the out-of-order window (or than retention) and were dropped; the other %d were stored",
			res.OutOfWindow, res.Accepted+res.Duplicates)
	}
	return res, nil
}

// errSeriesLimit: a write brought new metric series beyond --max-series;
// their samples were dropped, the rest stored. gRPC: ResourceExhausted;
// remote write: 400, so that the sender drops the batch rather than resend
// it forever (what could be stored is); OTLP: a partial success.
var errSeriesLimit = errors.New("metric series limit reached")

func seriesLimitError(res model.MetricsResult) error {
	msg := fmt.Sprintf("%d samples of %d new series were refused: the metric store holds its limit of %d series (--max-series); the %d samples of existing series were stored",
		res.OverSeriesLimit, res.NewSeriesRefused, res.MaxSeries, res.Accepted+res.Duplicates)
	if res.OutOfWindow > 0 {
		msg += fmt.Sprintf(" (%d more were older than the out-of-order window and dropped)", res.OutOfWindow)
	}
	return fmt.Errorf("%w: %s", errSeriesLimit, msg)
}
