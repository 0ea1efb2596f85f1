package alert

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A file that does not load keeps the previous rules running and says why;
// a good one replaces them, keeping the alerts of rules that stay.
func TestReloadBrokenThenGood(t *testing.T) {
	n := 5.0
	r := newRig(t, nil, newClock(), &fakeEngines{logs: counts(&n, "", "", nil)})
	path := tempPath(t, "rules.yaml")
	writeFile(t, path, `
groups:
  - name: g
    rules:
      - {alert: Old, logs: x, window: 1m, threshold: '> 0'}
`)
	if err := r.mgr.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	r.eval(t, 0)
	if al := r.mgr.Alerts(); len(al) != 1 || al[0].Rule != "Old" || al[0].State != StateFiring {
		t.Fatalf("alerts %+v", al)
	}
	reloadOK := func() float64 { return testutil.ToFloat64(r.mgr.met.reloadOK) }
	if reloadOK() != 1 {
		t.Errorf("reload metric %v", reloadOK())
	}

	writeFile(t, path, `
groups:
  - name: g
    rules:
      - {alert: New, logs: x, window: 1m, threshold: '>> 0'}
`)
	err := r.mgr.Reload()
	if !errors.Is(err, ErrInvalidRules) || !strings.Contains(err.Error(), "rules.yaml:5:54: threshold") {
		t.Fatalf("reload error %v", err)
	}
	st := r.mgr.Rules()
	if st.LastReloadSuccessful || !strings.Contains(st.LastReloadError, "threshold") || len(st.Problems) != 1 ||
		len(st.Rules) != 1 || st.Rules[0].Name != "Old" || reloadOK() != 0 {
		t.Errorf("status after a bad reload %+v (metric %v)", st, reloadOK())
	}
	before := st.Rules[0].LastEvaluation
	r.eval(t, time.Minute) // the old rule still runs
	if st := r.mgr.Rules(); !st.Rules[0].LastEvaluation.After(before) || st.Rules[0].Alerts != 1 {
		t.Errorf("old rule not evaluated: %+v", st.Rules[0])
	}

	writeFile(t, path, `
groups:
  - name: g
    rules:
      - {alert: Old, logs: x, window: 1m, threshold: '> 0'}
      - {alert: New, logs: y, window: 1m, threshold: '> 1'}
`)
	if err := r.mgr.Reload(); err != nil {
		t.Fatal(err)
	}
	st = r.mgr.Rules()
	if !st.LastReloadSuccessful || st.LastReloadError != "" || len(st.Rules) != 2 || reloadOK() != 1 || st.Rules[0].Alerts != 1 {
		t.Errorf("status after a good reload %+v", st)
	}
	r.eval(t, time.Minute)
	if al := r.mgr.Alerts(); len(al) != 2 {
		t.Errorf("alerts %+v", al)
	}
	hist, _, _ := r.mgr.History("", 100)
	old := 0
	for _, h := range hist {
		if h.Rule == "Old" {
			old++
		}
	}
	if old != 2 { // pending and firing, once: the reload kept its alert
		t.Errorf("transitions of Old: %d (%+v)", old, hist)
	}
	// A rule removed by a reload drops its alerts and saved state.
	writeFile(t, path, "groups: []\n")
	if err := r.mgr.Reload(); err != nil {
		t.Fatal(err)
	}
	states, _ := r.store.AlertStates()
	for k := range states {
		if strings.HasPrefix(k, keyRule) {
			t.Errorf("state %q left after its rule went", k)
		}
	}
}

// A restart while firing (a new Manager and Notifier over the same store)
// keeps the alert firing, sends nothing again, and a pending alert keeps its
// start; the resolution still goes out.
func TestRestartWhileFiring(t *testing.T) {
	ops := newRecorder(t)
	store := newMemStore()
	c := newClock()
	n := 5.0
	rules := fmt.Sprintf(`
receivers: [{name: ops, webhook_url: %s}]
groups:
  - name: g
    rules:
      - {alert: Fire, logs: x, window: 1m, threshold: '> 0'}
      - {alert: Slow, logs: y, window: 1m, threshold: '> 0', for: 10m}
`, ops.srv.URL)
	r1 := newRig(t, store, c, &fakeEngines{logs: counts(&n, "", "", nil)})
	r1.load(t, rules)
	r1.eval(t, 0)
	if m := ops.webhook(t); m.Status != "firing" || len(m.Alerts) != 1 {
		t.Fatalf("%+v", m)
	}
	t0 := c.Now()
	r1.nt.Close()

	r2 := newRig(t, store, c, &fakeEngines{logs: counts(&n, "", "", nil)})
	r2.load(t, rules)
	al := r2.mgr.Alerts()
	if len(al) != 2 || al[0].Rule != "Fire" || al[0].State != StateFiring || al[1].Rule != "Slow" || !al[1].ActiveAt.Equal(t0) {
		t.Fatalf("restored alerts %+v", al)
	}
	r2.eval(t, time.Minute)
	ops.none(t)
	r2.eval(t, 9*time.Minute) // Slow fires 10m after it went pending, across the restart
	m := ops.webhook(t)
	if len(m.Alerts) != 1 || m.Alerts[0].Labels["alertname"] != "Slow" {
		t.Fatalf("%+v", m)
	}
	n = 0
	r2.eval(t, time.Minute)
	got := map[string]string{}
	for i := 0; i < 2; i++ {
		m := ops.webhook(t)
		got[m.GroupLabels["alertname"]] = m.Status
	}
	if got["Fire"] != "resolved" || got["Slow"] != "resolved" {
		t.Errorf("after resolution: %v", got)
	}
}
