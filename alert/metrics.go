package alert

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Prometheus metrics of a Manager and its Notifier,
// registered once. A node of a cluster builds a new Manager and Notifier
// each time the alert lease comes back to it (see Leased); they all record
// into the one Metrics, so counters go on and nothing is registered twice.
type Metrics struct {
	manager  *managerMetrics
	notifier *notifierMetrics
	current  atomic.Pointer[Manager] // the newest Manager: shiplog_alerts counts its alerts
}

// NewMetrics registers the alerting metrics with reg (nil: none) and returns
// them, for Options.Metrics and NotifierOptions.Metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{notifier: newNotifierMetrics(reg)}
	m.manager = newManagerMetrics(reg, func() []Alert {
		if cur := m.current.Load(); cur != nil {
			return cur.Alerts()
		}
		return nil
	})
	return m
}
