package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// The flood and the quiet: one service logs 20 errors, another 20,000 after
// them. A by: service rule counts both exactly and alerts on both (a sample
// of the newest lines would see only the flood); agg: compares an aggregate.
func TestAlertFloodAndQuiet(t *testing.T) {
	st := openAlertStore(t, t.TempDir())
	defer st.Close()
	now := time.Now().UTC().Truncate(time.Second)
	t0 := now.Add(-4 * time.Minute)
	b := model.Batch{}
	for i := 0; i < 20; i++ {
		b.Records = append(b.Records, model.Record{Time: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(),
			Labels: model.Labels{Service: "quiet", Host: "q-1", BuildID: "b-q"}, Level: model.LevelError, Message: "payment failed",
			Attrs: []model.Attr{{Key: "latency_ms", Value: fmt.Sprint(100 * (i + 1))}}})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 4; k++ {
		b := model.Batch{}
		for i := 0; i < 5000; i++ {
			b.Records = append(b.Records, model.Record{Time: t0.Add(time.Minute + time.Duration(k*5000+i)*time.Millisecond).UnixNano(),
				Labels: model.Labels{Service: "flood", Host: fmt.Sprintf("f-%d", i%3)}, Level: model.LevelError, Message: "timeout",
				Attrs: []model.Attr{{Key: "latency_ms", Value: "5"}}})
		}
		if _, err := st.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	rules := []byte(`
groups:
  - name: g
    rules:
      - alert: Errors
        logs: level:error
        window: 10m
        threshold: '> 10'
        by: [service]
      - alert: Slow
        logs: level:error
        window: 10m
        agg: quantile(0.99, latency_ms)
        threshold: '> 1000'
        by: [service]
`)
	{
		eng := query.NewLocal(st, query.DefaultOptions())
		mo := alert.DefaultOptions()
		mo.Now = func() time.Time { return now }
		mo.Logs = AlertLogsQuery(eng)
		mgr, err := alert.NewManager(nil, nil, mo)
		if err != nil {
			t.Fatal(err)
		}
		f, probs := alert.Parse(rules, alert.ParseOptions{})
		if len(probs) > 0 {
			t.Fatal(probs)
		}
		mgr.Apply(f)
		mgr.EvalAll(context.Background())
		got := map[string]alert.Alert{}
		for _, a := range mgr.Alerts() {
			got[a.Rule+"/"+a.Labels["service"]] = a
		}
		if len(got) != 3 || got["Errors/quiet"].Value != 20 || got["Errors/flood"].Value != 20000 {
			t.Fatalf("alerts %v", got)
		}
		q := got["Errors/quiet"]
		if q.Links.Build != "/builds/b-q" || q.Links.Logs == "" {
			t.Errorf("quiet links %+v", q.Links)
		}
		if got["Errors/flood"].Links.Build != "" {
			t.Errorf("flood has no build: %+v", got["Errors/flood"].Links)
		}
		// p99 of 100..2000 lies between its two top values (within the
		// sketch's 1%); flood's is 5, under the threshold.
		if v := float64(got["Slow/quiet"].Value); v < 1900*0.99 || v > 2000*1.01 {
			t.Errorf("p99 of quiet = %v", v)
		}
	}
}
