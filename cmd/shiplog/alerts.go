package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/server"
)

// alerting is the server's rule manager and notifier, running.
type alerting struct {
	mgr    *alert.Manager
	nt     *alert.Notifier
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// startAlerting loads the rules file (a file that does not load is a usage
// error at start) and starts evaluating. externalURL "" means http(s)://httpAddr.
func startAlerting(ctx context.Context, rulesFile, externalURL, httpAddr string, tls bool, ax *alertFlags, st alert.StateStore, eng server.Querier,
	metrics *server.Metrics, log *slog.Logger, reg prometheus.Registerer) (*alerting, error) {
	if externalURL == "" {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		externalURL = scheme + httpAddr
	}
	if u, err := url.Parse(externalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("server: --external-url %q: want an http:// or https:// URL", externalURL)
	}
	externalURL = strings.TrimRight(externalURL, "/")
	no := alert.DefaultNotifierOptions()
	no.ExternalURL, no.Store = externalURL, st
	no.ExternalLabels, no.ResendDelay = ax.externalLabels, ax.resendDelay
	nt, err := alert.NewNotifier(log, reg, no)
	if err != nil {
		return nil, err
	}
	mo := alert.DefaultOptions()
	mo.Logs = server.AlertLogsQuery(eng)
	mo.Query = server.AlertPromQuery(metrics)
	mo.Append = server.AlertAppend(metrics)
	mo.ExternalLabels = ax.externalLabels
	mo.Notify, mo.Store, mo.ExternalURL = nt.Notify, st, externalURL
	mo.Parse = rulesParseOptions()
	mgr, err := alert.NewManager(log, reg, mo)
	if err != nil {
		nt.Close()
		return nil, err
	}
	if err := mgr.LoadFile(rulesFile); err != nil {
		nt.Close()
		return nil, usagef("server: --rules %v", err)
	}
	if mo.Query == nil {
		log.Warn("no PromQL engine: expr: rules report an error")
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &alerting{mgr: mgr, nt: nt, log: log, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		mgr.Run(ctx)
	}()
	return a, nil
}

// alertFlags are the server's alerting flags besides --rules and --external-url.
type alertFlags struct {
	externalLabels map[string]string
	resendDelay    time.Duration
}

// addAlertFlags defines --external-labels and --alert-resend-delay on fs.
func addAlertFlags(fs *flag.FlagSet) *alertFlags {
	ax := &alertFlags{externalLabels: map[string]string{}}
	fs.Func("external-labels", "labels NAME=VALUE,... added to alerts sent to an Alertmanager, and $externalLabels in rule templates (Prometheus' external_labels)", func(s string) error {
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" || v == "" || !utf8.ValidString(k+v) || k == "__name__" {
				return fmt.Errorf("%q: want NAME=VALUE,...", kv)
			}
			ax.externalLabels[k] = v
		}
		return nil
	})
	fs.DurationVar(&ax.resendDelay, "alert-resend-delay", alert.DefaultNotifierOptions().ResendDelay,
		"how often alerts still firing are sent again to an Alertmanager receiver without its own resend_interval (Prometheus' --rules.alert.resend-delay)")
	return ax
}

// reload reads the rules file again (SIGHUP); a bad file keeps the old rules.
func (a *alerting) reload() {
	if a == nil {
		return
	}
	if err := a.mgr.Reload(); err == nil {
		a.log.Info("SIGHUP: rules reloaded")
	}
}

// stop ends evaluation and notification (before the store closes).
func (a *alerting) stop() {
	if a == nil {
		return
	}
	a.cancel()
	<-a.done
	a.nt.Close()
}

// viewAlerts is a manager over the cluster's shared alert state that does not
// evaluate: what a node without the alert lease shows on /v1/alerts*.
func viewAlerts(rulesFile string, st alert.StateStore, log *slog.Logger) (*alert.Manager, error) {
	mo := alert.DefaultOptions()
	mo.Store = st
	mo.Parse = rulesParseOptions()
	mgr, err := alert.NewManager(log, nil, mo)
	if err != nil {
		return nil, err
	}
	if err := mgr.LoadFile(rulesFile); err != nil {
		return nil, err
	}
	return mgr, nil
}
