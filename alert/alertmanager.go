package alert

import (
	"time"
)

// AlertmanagerAlert is one alert as Prometheus POSTs it to Alertmanager's
// /api/v2/alerts (a JSON list of them).
type AlertmanagerAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

// alertmanagerMessage renders alerts as Prometheus sends them: the labels with
// the external labels added (an alert's own win), startsAt when it fired,
// endsAt when it resolved or, while it fires, a time after which Alertmanager
// resolves it by itself unless told again (4 resends or evaluations, as
// Prometheus' ValidUntil), and generatorURL the page of its matching lines.
func alertmanagerMessage(n *Notification, alerts []Alert, now time.Time, resend time.Duration, ext map[string]string, externalURL string) []AlertmanagerAlert {
	out := make([]AlertmanagerAlert, 0, len(alerts))
	validFor := 4 * max(resend, n.Interval)
	for i := range alerts {
		a := &alerts[i]
		lbls := make(map[string]string, len(a.Labels)+len(ext))
		for k, v := range ext {
			lbls[k] = v
		}
		for k, v := range a.Labels {
			lbls[k] = v
		}
		am := AlertmanagerAlert{Labels: lbls, Annotations: nonNil(a.Annotations), StartsAt: a.FiredAt.UTC(),
			GeneratorURL: a.Links.Logs}
		if am.StartsAt.IsZero() {
			am.StartsAt = a.ActiveAt.UTC()
		}
		if a.Resolved() {
			am.EndsAt = a.ResolvedAt.UTC()
		} else {
			am.EndsAt = now.Add(validFor).UTC()
		}
		if am.GeneratorURL == "" {
			am.GeneratorURL = externalURL + "/alerts"
		}
		out = append(out, am)
	}
	return out
}
