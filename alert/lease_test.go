package alert

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Leased starts a manager when the lease comes, stops it when it goes and
// on Stop; managers built one after another share one Metrics, registered
// once (registering a manager's metrics twice would panic).
func TestLeasedFollowsLease(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rules, []byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        logs: 'level:error'\n        window: 5m\n        threshold: '> 10'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	met := NewMetrics(reg)
	st := newMemStore()
	var starts, stops atomic.Int32
	newMgr := func(m *Metrics) (*Manager, error) {
		o := DefaultOptions()
		o.Store, o.Metrics = st, m
		mgr, err := NewManager(nil, nil, o)
		if err != nil {
			return nil, err
		}
		return mgr, mgr.LoadFile(rules)
	}
	l := NewLeased(nil, LeasedOptions{
		Start: func() (*Manager, func(), error) {
			mgr, err := newMgr(met)
			if err != nil {
				return nil, nil, err
			}
			starts.Add(1)
			return mgr, func() { stops.Add(1) }, nil
		},
		View: func() (*Manager, error) { return newMgr(nil) },
	})
	if got := l.Rules(); len(got.Groups) != 1 || got.LastReloadError != "" {
		t.Fatalf("view before the lease: %+v", got)
	}
	l.Start()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; !ok(); i++ {
			if i > 5000 {
				t.Fatalf("never: %s (starts %d, stops %d)", what, starts.Load(), stops.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	for round := int32(1); round <= 2; round++ {
		l.OnLease(true)
		waitFor("running", func() bool { return l.Running() != nil && starts.Load() == round })
		l.OnLease(false)
		waitFor("stopped", func() bool { return l.Running() == nil && stops.Load() == round })
	}
	l.OnLease(true)
	waitFor("running again", func() bool { return l.Running() != nil })
	l.Stop()
	l.Stop()
	if l.Running() != nil || starts.Load() != 3 || stops.Load() != 3 {
		t.Errorf("after Stop: running %v, starts %d, stops %d; want none, 3, 3", l.Running() != nil, starts.Load(), stops.Load())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == "shiplog_rules" {
			n++
			if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 1 {
				t.Errorf("shiplog_rules = %v, want 1", v)
			}
		}
	}
	if n != 1 {
		t.Errorf("shiplog_rules registered %d times, want once", n)
	}
}

// Stop without Start returns at once.
func TestLeasedStopWithoutStart(t *testing.T) {
	l := NewLeased(nil, LeasedOptions{})
	l.OnLease(true)
	l.Stop()
}
