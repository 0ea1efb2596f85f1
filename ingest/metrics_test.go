package ingest

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

type sinkFunc func(ctx context.Context, series []model.Series) (model.MetricsResult, error)

func (f sinkFunc) AppendSamples(ctx context.Context, series []model.Series) (model.MetricsResult, error) {
	return f(ctx, series)
}

func TestMetricsValidation(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var got []model.Series
	sink := sinkFunc(func(_ context.Context, ss []model.Series) (model.MetricsResult, error) {
		got = ss
		return model.MetricsResult{Accepted: len(ss)}, nil
	})
	o := DefaultMetricsOptions()
	o.Now = func() time.Time { return now }
	mi := NewMetrics(sink, o, nil, nil)
	l := func(kv ...string) []model.Label {
		var ls []model.Label
		for i := 0; i < len(kv); i += 2 {
			ls = append(ls, model.Label{Name: kv[i], Value: kv[i+1]})
		}
		return ls
	}
	ok := now.UnixMilli()
	for _, c := range []struct {
		name   string
		series model.Series
		want   string // "" for valid
	}{
		{"valid", model.Series{Labels: l("service", "api", "__name__", "up"), Samples: []model.Sample{{T: ok, V: 1}}}, ""},
		{"no name", model.Series{Labels: l("service", "api"), Samples: []model.Sample{{T: ok}}}, "no metric name"},
		{"bad name", model.Series{Labels: l("__name__", "1up"), Samples: []model.Sample{{T: ok}}}, "metric name"},
		{"colon in name is fine", model.Series{Labels: l("__name__", "job:up:sum"), Samples: []model.Sample{{T: ok}}}, ""},
		{"bad label name", model.Series{Labels: l("__name__", "up", "a.b", "1"), Samples: []model.Sample{{T: ok}}}, "label name"},
		{"reserved label", model.Series{Labels: l("__name__", "up", "__meta", "1"), Samples: []model.Sample{{T: ok}}}, "reserved"},
		{"duplicate label", model.Series{Labels: l("__name__", "up", "a", "1", "a", "2"), Samples: []model.Sample{{T: ok}}}, "twice"},
		{"bad utf-8", model.Series{Labels: l("__name__", "up", "a", "\xff"), Samples: []model.Sample{{T: ok}}}, "UTF-8"},
		{"future", model.Series{Labels: l("__name__", "up"), Samples: []model.Sample{{T: now.Add(time.Hour).UnixMilli()}}}, "ahead"},
		// Far ahead: the distance in days, not an overflowed negative duration.
		{"far future", model.Series{Labels: l("__name__", "up"), Samples: []model.Sample{{T: math.MaxInt64}}}, "106751970592d ahead"},
		{"days ahead", model.Series{Labels: l("__name__", "up"), Samples: []model.Sample{{T: now.Add(72 * time.Hour).UnixMilli()}}}, "is 3d ahead"},
		{"past", model.Series{Labels: l("__name__", "up"), Samples: []model.Sample{{T: now.AddDate(-3, 0, 0).UnixMilli()}}}, "older"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := mi.Ingest(context.Background(), []model.Series{c.series})
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid about %q", err, c.want)
			}
		})
	}
	// Labels come out sorted, empty values dropped, a zero time filled with now.
	if _, err := mi.Ingest(context.Background(), []model.Series{{Labels: l("z", "1", "e", "", "__name__", "up"), Samples: []model.Sample{{V: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if s := got[0]; model.LabelsString(s.Labels) != `up{z="1"}` || s.Labels[0].Name != "__name__" || s.Samples[0].T != ok {
		t.Fatalf("normalised: %+v", s)
	}
}
