package server

import (
	"testing"

	"github.com/prometheus/prometheus/model/histogram"
	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/shiplog/shiplog/model"
)

// FuzzRemoteWriteV2: any body either is refused or converts, without
// panicking, into series whose labels are sorted, named and unique, and
// whose counts match the *-Written headers' sources.
func FuzzRemoteWriteV2(f *testing.F) {
	seed := &writev2.Request{Symbols: []string{"", "__name__", "up", "job", "a", "help", "s"}, Timeseries: []writev2.TimeSeries{
		{LabelsRefs: []uint32{1, 2, 3, 4}, Samples: []writev2.Sample{{Timestamp: 1, Value: 1}},
			Metadata: writev2.Metadata{Type: writev2.Metadata_METRIC_TYPE_GAUGE, HelpRef: 5, UnitRef: 6}},
		{LabelsRefs: []uint32{1, 2}, Histograms: []writev2.Histogram{writev2.FromIntHistogram(0, 2, &histogram.Histogram{Count: 1, ZeroCount: 1})}},
		{LabelsRefs: []uint32{1, 9}},
	}}
	b, _ := seed.Marshal()
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var req writev2.Request
		if err := req.Unmarshal(body); err != nil {
			return
		}
		bt, err := seriesFromRemoteWriteV2(&req)
		if err != nil {
			return
		}
		floats, hists := 0, 0
		for _, s := range bt.series {
			named := false
			for i, l := range s.Labels {
				if l.Value == "" || i > 0 && s.Labels[i-1].Name >= l.Name {
					t.Fatalf("labels not sorted, unique and non-empty: %v", s.Labels)
				}
				named = named || l.Name == model.MetricNameLabel
			}
			if !named {
				t.Fatalf("series without a name: %v", s.Labels)
			}
			floats += len(s.Samples)
			hists += len(s.Histograms)
		}
		if floats != bt.floats || hists != bt.hists {
			t.Fatalf("counted %d/%d, series hold %d/%d", bt.floats, bt.hists, floats, hists)
		}
		m := newMetaStore()
		for _, md := range bt.meta {
			m.add(md.name, md.m)
		}
	})
}
