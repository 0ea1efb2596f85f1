package alert_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shiplog/shiplog/alert"
)

// A logs rule over a fake count: pending at once, firing after for:.
func Example() {
	f, problems := alert.Parse([]byte(`
groups:
  - name: api
    rules:
      - alert: ApiErrors
        logs: 'service:api AND level:error'
        window: 5m
        threshold: '> 10'
        for: 1m
        annotations: {summary: '{{ $value }} errors'}
`), alert.ParseOptions{})
	if len(problems) > 0 {
		fmt.Println(problems)
		return
	}
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	opts := alert.DefaultOptions()
	opts.Now = func() time.Time { return now }
	opts.ExternalURL = "http://127.0.0.1:7070"
	opts.Logs = func(_ context.Context, q alert.LogsQuery) ([]alert.LogsGroup, error) {
		return []alert.LogsGroup{{Count: 12, BuildID: "build-1"}}, nil
	}
	m, err := alert.NewManager(nil, nil, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	m.Apply(f)
	for _, step := range []time.Duration{0, time.Minute} {
		now = now.Add(step)
		m.EvalAll(context.Background())
		for _, a := range m.Alerts() {
			fmt.Println(a.Rule, a.State, a.Annotations["summary"], a.Links.Build)
		}
	}
	// Output:
	// ApiErrors pending 12 errors http://127.0.0.1:7070/builds/build-1
	// ApiErrors firing 12 errors http://127.0.0.1:7070/builds/build-1
}
