package alert

import "time"

// WebhookMessage is the body of a generic webhook: Alertmanager's webhook
// payload (version 4), so receivers written for Alertmanager work, with
// shiplog's additions (value, links) on each alert.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   int               `json:"truncatedAlerts"`
	Status            string            `json:"status"` // firing when any alert fires, else resolved
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status       string            `json:"status"` // firing or resolved
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"` // zero (0001-01-01T00:00:00Z) while firing
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	// shiplog's additions.
	Value Float `json:"value"`
	Links Links `json:"links"`
}

// maxWebhookAlerts bounds the alerts of one body (Alertmanager's max_alerts).
const maxWebhookAlerts = 500

func webhookMessage(r Receiver, n *Notification, alerts []Alert, externalURL string) *WebhookMessage {
	m := &WebhookMessage{
		Version:           "4",
		GroupKey:          n.GroupKey,
		Status:            "resolved",
		Receiver:          r.Name,
		GroupLabels:       map[string]string{"alertname": n.Rule},
		CommonLabels:      common(alerts, func(a *Alert) map[string]string { return a.Labels }),
		CommonAnnotations: common(alerts, func(a *Alert) map[string]string { return a.Annotations }),
		ExternalURL:       externalURL,
		Alerts:            []WebhookAlert{},
	}
	for i := range alerts {
		a := &alerts[i]
		if a.State == StateFiring {
			m.Status = "firing"
		}
		if len(m.Alerts) == maxWebhookAlerts {
			m.TruncatedAlerts++
			continue
		}
		w := WebhookAlert{Status: a.StatusString(), Labels: nonNil(a.Labels), Annotations: nonNil(a.Annotations),
			StartsAt: a.FiredAt.UTC(), GeneratorURL: a.Links.Logs, Fingerprint: a.Fingerprint, Value: a.Value, Links: a.Links}
		if w.StartsAt.IsZero() {
			w.StartsAt = a.ActiveAt.UTC()
		}
		if a.Resolved() {
			w.EndsAt = a.ResolvedAt.UTC()
		}
		if w.GeneratorURL == "" {
			w.GeneratorURL = externalURL + "/alerts"
		}
		m.Alerts = append(m.Alerts, w)
	}
	return m
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// common returns the pairs every alert shares.
func common(alerts []Alert, get func(*Alert) map[string]string) map[string]string {
	out := map[string]string{}
	for i := range alerts {
		m := get(&alerts[i])
		if i == 0 {
			for k, v := range m {
				out[k] = v
			}
			continue
		}
		for k, v := range out {
			if m[k] != v {
				delete(out, k)
			}
		}
	}
	return out
}
