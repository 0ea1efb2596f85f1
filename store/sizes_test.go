package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/shiplog/shiplog/model"
)

// TestSizeGauges: after ingest every size gauge of the store is non-zero:
// Badger's files by kind, each part of the data directory, and the whole
// directory without --retention (Badger runs with its own metrics off, so
// its DB.Size() said 0; the sizes come from a walk of the directory).
func TestSizeGauges(t *testing.T) {
	dir := t.TempDir()
	o := DefaultOptions()
	o.SizeCheck = 20 * time.Millisecond
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	ingest := func(s *Store, agent string, at time.Time) {
		t.Helper()
		if _, err := s.Append(ctx, testBatch(agent, 2000, 1, at)); err != nil {
			t.Fatal(err)
		}
		var batch []model.Series
		for i := 0; i < 50; i++ {
			batch = append(batch, model.Series{Labels: metricLabels("x", "i", fmt.Sprint(i)), Samples: []model.Sample{{T: at.UnixMilli(), V: float64(i)}}})
		}
		if _, err := s.AppendSamples(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	// A first run leaves Badger's tables (.sst) and Bleve's index behind.
	s := testOpen(t, dir, o)
	ingest(s, "a1", t0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s, err := Open(dir, o, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ingest(s, "a2", t0.Add(time.Second)) // lines in the WAL, samples in the metrics WAL
	want := []string{"shiplog_store_disk_bytes", "shiplog_store_badger_bytes{kind=lsm}", "shiplog_store_badger_bytes{kind=vlog}",
		"shiplog_store_dir_bytes{dir=wal}", "shiplog_store_dir_bytes{dir=mwal}", "shiplog_store_dir_bytes{dir=index}", "shiplog_store_dir_bytes{dir=badger}"}
	var got map[string]float64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = gauges(t, reg)
		zero := 0
		for _, w := range want {
			if got[w] <= 0 {
				zero++
			}
		}
		if zero == 0 {
			return
		}
	}
	for _, w := range want {
		if got[w] <= 0 {
			t.Errorf("%s = %v after ingest, want the size measured", w, got[w])
		}
	}
}

// gauges gathers reg into name{label=value} -> value.
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[name] = value(m)
		}
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}
