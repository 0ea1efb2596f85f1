package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/query"
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
// error at start) and starts evaluating, recording into am. httpAddr is the
// bound --http address, for links when --external-url is not set.
func startAlerting(ctx context.Context, cfg *serverConfig, httpAddr string, tls bool, st alert.StateStore, eng query.Backend,
	metrics *server.Metrics, log *slog.Logger, am *alert.Metrics) (*alerting, error) {
	externalURL := cfg.externalURL
	if externalURL == "" {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		externalURL = scheme + httpAddr
	}
	no := alert.DefaultNotifierOptions()
	no.ExternalURL, no.Store, no.Metrics = externalURL, st, am
	no.ExternalLabels, no.ResendDelay = cfg.alerts.externalLabels, cfg.alerts.resendDelay
	nt, err := alert.NewNotifier(log, nil, no)
	if err != nil {
		return nil, err
	}
	mo := alert.DefaultOptions()
	mo.Logs = server.AlertLogsQuery(eng)
	mo.Query = server.AlertPromQuery(metrics)
	mo.Append = server.AlertAppend(metrics)
	mo.ExternalLabels = cfg.alerts.externalLabels
	mo.Notify, mo.Store, mo.ExternalURL, mo.Metrics = nt.Notify, st, externalURL, am
	mo.Parse = rulesParseOptions()
	mgr, err := alert.NewManager(log, nil, mo)
	if err != nil {
		nt.Close()
		return nil, err
	}
	if err := mgr.LoadFile(cfg.rulesFile); err != nil {
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

// startAlerting is a single node's alerting component: its state is in the
// local store.
func (r *serverRun) startAlerting(ctx context.Context) error {
	al, err := startAlerting(ctx, r.cfg, r.boundHTTP, r.tls != nil, r.st, r.core.Backend, r.core.Metrics, r.log, alert.NewMetrics(r.reg))
	if err != nil {
		return err
	}
	r.al, r.core.Alerts = al, al.mgr
	return nil
}

// startClusterAlerting is a cluster node's alerting component: it checks
// that the rules load over the cluster's state, then follows the alert
// lease (r.leased), evaluating while this node holds it.
func (r *serverRun) startClusterAlerting(ctx context.Context) error {
	if _, err := r.viewClusterAlerts(); err != nil {
		return usagef("server: --rules %v", err)
	}
	r.core.Alerts, r.alertCtx = r.leased, ctx
	r.leased.Start()
	return nil
}

// startLeasedAlerting starts evaluation on the cluster's state when this
// node takes the alert lease. The metrics are registered the first time and
// kept for every later start.
func (r *serverRun) startLeasedAlerting() (*alert.Manager, func(), error) {
	if r.alertMetrics == nil { // only the lease loop calls this
		r.alertMetrics = alert.NewMetrics(r.reg)
	}
	al, err := startAlerting(r.alertCtx, r.cfg, r.boundHTTP, r.tls != nil, r.node.AlertStore(), r.core.Backend, r.core.Metrics, r.log, r.alertMetrics)
	if err != nil {
		return nil, nil, err
	}
	return al.mgr, al.stop, nil
}

// viewClusterAlerts is what a node without the alert lease shows on
// /v1/alerts*: the rules over the cluster's shared state, not evaluated.
func (r *serverRun) viewClusterAlerts() (*alert.Manager, error) {
	return viewAlerts(r.cfg.rulesFile, r.node.AlertStore(), slog.New(slog.DiscardHandler))
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
