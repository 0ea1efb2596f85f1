package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/metrics"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/server"
	"github.com/shiplog/shiplog/store"
	"github.com/shiplog/shiplog/web"
)

// serverRun is one run of `shiplog server`: its configuration and the parts
// its components start, each set by the component that starts it.
type serverRun struct {
	cfg    *serverConfig
	log    *slog.Logger
	stdout io.Writer
	reg    *prometheus.Registry
	auth   *server.Auth
	certs  *server.CertReloader
	tls    *tls.Config

	st           *store.Store
	storeOpts    store.Options
	readOnly     bool
	roWhy        string
	hub          *server.Hub
	core         server.Core
	hl           net.Listener
	boundHTTP    string
	node         *cluster.Node
	al           *alerting     // a single node's alerting
	leased       *alert.Leased // a cluster node's alerting
	alertMetrics *alert.Metrics
	alertCtx     context.Context // a cluster node's alerting runs until it is done
	srv          *server.Server
	syslogLines  string
	stopSyslog   context.CancelFunc
	syslogDone   chan error
	stopSIGHUP   context.CancelFunc
}

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServerFlags(args, stdout)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	r := &serverRun{cfg: cfg, log: cfg.logger(stderr), stdout: stdout}
	if err := r.prepare(); err != nil {
		return err
	}
	defer startGCHeadroom(int64(cfg.gcHeadroom))()
	s, err := startComponents(ctx, r.components(), r.log)
	if err != nil {
		return err
	}
	r.printServing()
	serveErr := r.srv.Serve(ctx)
	stopping := time.Now()
	closeErr := s.stop()
	if serveErr != nil && !errors.Is(serveErr, net.ErrClosed) {
		return serveErr
	}
	if closeErr == nil {
		// The last line of a clean stop: everything acked is in the store.
		r.log.Info("shutdown complete: every acked record and sample is stored", "took", time.Since(stopping).Round(time.Millisecond))
	}
	return closeErr
}

// prepare sets up the process and loads the secrets and certificates the
// flags name, before anything starts.
func (r *serverRun) prepare() error {
	cfg, log := r.cfg, r.log
	warnInsecureCluster(cfg.cluster, log)
	if cfg.memLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.memLimit))
	}
	// Files the server creates are its own (the WAL holds what clients sent).
	privateUmask()
	for _, f := range []struct{ name, path string }{{"auth-file", cfg.authFile}, {"tls-key", cfg.tlsKey}} {
		if f.path == "" {
			continue
		}
		warn, err := checkSecretFile(f.path, f.name)
		if err != nil {
			return err
		}
		if warn != "" {
			log.Warn(warn)
		}
	}
	var err error
	if cfg.authFile != "" {
		if r.auth, err = server.LoadAuthFile(cfg.authFile); err != nil {
			return usagef("server: %v", err)
		}
	}
	if cfg.tlsCert != "" {
		if r.certs, err = server.NewCertReloader(cfg.tlsCert, cfg.tlsKey); err != nil {
			return usagef("server: %v", err)
		}
		if r.tls, err = server.ServerTLSConfig(r.certs, cfg.tlsClientCA); err != nil {
			return usagef("server: %v", err)
		}
	}
	r.reg = prometheus.NewRegistry()
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return nil
}

// components are the server's parts in the order they start:
//
//  1. store: the local store (a cluster node's metrics and own state), the
//     query engine, limits and metrics wiring over it;
//  2. http listener: --http is bound early, as alert links need its address;
//  3. cluster node (cluster mode): joins the cluster; logs then go through
//     the replicated log to the partition owners;
//  4. alerting (--rules): evaluation on a single node, or on the holder of
//     the cluster's alert lease;
//  5. server: ingest and the gRPC and HTTP servers (Serve runs them);
//  6. SIGHUP: reloads the rules and the TLS certificate;
//  7. syslog (--syslog, --syslog-tls).
//
// They stop in reverse: syslog stores what it received first, evaluation
// ends before the node leaves the cluster, and the store closes last.
func (r *serverRun) components() []component {
	cs := []component{
		{name: "store", start: r.startStore, stop: r.closeStore, stopping: "sealing open chunks"},
		{name: "http listener", start: r.listenHTTP, stop: func() error { _ = r.hl.Close(); return nil }},
	}
	if r.cfg.cluster != nil {
		cs = append(cs, component{name: "cluster node", start: r.startNode, stop: r.closeNode, stopping: "leaving the cluster"})
	}
	switch {
	case r.cfg.rulesFile != "" && r.cfg.cluster != nil:
		r.leased = alert.NewLeased(r.log, alert.LeasedOptions{Start: r.startLeasedAlerting, View: r.viewClusterAlerts})
		r.cfg.cluster.OnAlertLease = r.leased.OnLease
		cs = append(cs, component{name: "alerting", start: r.startClusterAlerting, stop: func() error { r.leased.Stop(); return nil }})
	case r.cfg.rulesFile != "":
		cs = append(cs, component{name: "alerting", start: r.startAlerting, stop: func() error { r.al.stop(); return nil }})
	}
	cs = append(cs,
		component{name: "server", start: r.newServer},
		component{name: "SIGHUP", start: r.watchSIGHUP, stop: func() error { r.stopSIGHUP(); return nil }})
	if r.cfg.syslogAddr != "" || r.cfg.syslogTLSAddr != "" {
		cs = append(cs, component{name: "syslog", start: r.startSyslog, stop: r.stopSyslogListener})
	}
	return cs
}

// startStore opens the store and wires the query side over it.
func (r *serverRun) startStore(ctx context.Context) error {
	cfg := r.cfg
	so := store.DefaultOptions()
	so.Fsync = cfg.fsync
	so.MaxStreamsPerDay, so.MaxSeqJump = cfg.maxStreams, cfg.maxSeqJump
	so.Retention, so.RetentionBytes = cfg.retention, int64(cfg.retentionSize)
	so.Metrics.MaxSeries = cfg.maxSeries
	so.HeadsMaxBytes = int64(cfg.headsMax)
	so.SealBacklogBytes = int64(cfg.sealBacklog)
	r.storeOpts = so
	start := time.Now()
	st, err := store.Open(cfg.data, so, r.log, r.reg)
	if err != nil {
		return err
	}
	r.st = st
	r.log.Info("store open", "data", cfg.data, "took", time.Since(start).Round(time.Millisecond))
	r.readOnly, r.roWhy = st.ReadOnly()
	r.wireCore(ctx)
	return nil
}

func (r *serverRun) closeStore() error { return r.st.Close() }

// wireCore builds the server's core over the local store: the query
// engine, live tails, limits and the metrics engine.
func (r *serverRun) wireCore(ctx context.Context) {
	cfg, st, reg := r.cfg, r.st, r.reg
	hub := server.NewHub(server.HubOptions{QueueRecords: cfg.tailQueue, QueueBytes: int64(cfg.tailBytes)})
	r.hub = hub
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_tails", Help: "Live tails open."},
			func() float64 { return float64(hub.Subscribers()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shiplog_tail_skipped_records_total",
			Help: "Records live tails skipped because they fell behind (each tail counted)."},
			func() float64 { return float64(hub.Skipped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_tail_queue_bytes", Help: "Memory of the batches waiting in live tails' queues (each batch once)."},
			func() float64 { return float64(hub.Held()) }))
	r.core = server.Core{
		Backend:     query.NewLocal(st, query.DefaultOptions()),
		Hub:         hub,
		SilentAfter: cfg.silentAfter,
		Backup:      st.Backup,
		Limits: server.NewLimiter(ctx, server.Limits{QueryTimeout: cfg.queryTimeout, MaxConcurrentQueries: cfg.maxQueries, MaxTails: cfg.maxTails,
			MaxInflightBatches: cfg.maxBatches, MinFreeDisk: uint64(cfg.minFree), DataDir: cfg.data, MaxBodyBytesInflight: int64(cfg.bodyInflight)}, r.log),
	}
	mo := metrics.DefaultOptions()
	mo.Timeout, mo.MaxSamples, mo.DefaultStep = cfg.queryTimeout, cfg.maxQuerySample, cfg.promStep
	mo.MaxSamplesRead = cfg.maxSamplesRead
	mio := ingest.DefaultMetricsOptions()
	mio.MaxPast = cfg.maxPast
	r.core.Metrics = &server.Metrics{
		Ingest:    ingest.NewMetrics(st, mio, r.log, reg),
		Engine:    metrics.NewEngine(mo, r.log, reg),
		Queryable: metrics.NewQueryable(st, mo),
	}
}

// listenHTTP binds --http now: alert links need its address (a --http port
// 0's is known only once bound).
func (r *serverRun) listenHTTP(context.Context) error {
	hl, err := net.Listen("tcp", r.cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("listen --http %s: %w", r.cfg.httpAddr, err)
	}
	r.hl, r.boundHTTP = hl, hl.Addr().String()
	return nil
}

// startNode joins the cluster. Logs go through the replicated log to the
// partition owners; metrics and the node's own state stay in the local store.
func (r *serverRun) startNode(ctx context.Context) error {
	ccfg := *r.cfg.cluster
	ccfg.Dir = filepath.Join(r.cfg.data, "cluster")
	ccfg.Store, ccfg.StreamMaxAge = r.storeOpts, r.cfg.retention
	// --retention-size bounds the whole node; each partition store gets a share.
	ccfg.Store.RetentionBytes = r.storeOpts.RetentionBytes / int64(ccfg.Partitions)
	// A node holds a store per partition it owns: the bound is shared.
	ccfg.Store.HeadsMaxBytes = max(1<<20, r.storeOpts.HeadsMaxBytes/int64(ccfg.Partitions))
	ccfg.Store.SealBacklogBytes = max(1<<20, r.storeOpts.SealBacklogBytes/int64(ccfg.Partitions))
	ccfg.Log, ccfg.Registerer, ccfg.Hub = r.log, r.reg, r.hub
	node, err := cluster.Start(ctx, ccfg)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	r.node = node
	r.core.Backend = node // reads fan out to the partitions' owners
	return nil
}

// closeNode leaves the cluster; an error is logged, the stop goes on.
func (r *serverRun) closeNode() error {
	if err := r.node.Close(); err != nil {
		r.log.Error("cluster: close", "err", err)
	}
	return nil
}

// newServer builds ingest and the gRPC and HTTP servers (Serve runs them).
func (r *serverRun) newServer(context.Context) error {
	cfg := r.cfg
	var sink ingest.Sink = server.TailSink{Next: r.st, Hub: r.hub}
	if r.node != nil {
		sink = r.node // the owners hand stored lines to the tails
	}
	iop := ingest.DefaultOptions()
	iop.MaxLineBytes, iop.MaxPast, iop.MaxFuture = cfg.maxLine, cfg.maxPast, cfg.maxFuture
	r.core.Ingest = ingest.New(sink, iop, r.log, r.reg)
	so := server.DefaultOptions()
	so.UI = web.Handler()
	so.HTTPAddr, so.GRPCAddr, so.MaxRecvBytes, so.Gatherer = cfg.httpAddr, cfg.grpcAddr, cfg.maxRecv, r.reg
	so.HTTPListener = r.hl
	so.Auth, so.TLS = r.auth, r.tls
	so.ReadHeaderTimeout, so.BodyReadTimeout, so.IdleTimeout = cfg.readHeaderTimeout, cfg.readTimeout, cfg.idleTimeout
	so.Registerer = r.reg
	so.OTLPBuildAttrs, so.OTLPDeployAttrs = cfg.buildAttrs, cfg.deployAttrs
	srv, err := server.New(r.core, so, r.log)
	if err != nil {
		return err
	}
	r.srv = srv
	return nil
}

// watchSIGHUP reloads the rules (a single node's) and the TLS certificate on
// every SIGHUP until stopped.
func (r *serverRun) watchSIGHUP(ctx context.Context) error {
	ctx, r.stopSIGHUP = context.WithCancel(ctx)
	go onSIGHUP(ctx, func() {
		r.al.reload()
		if r.certs != nil {
			if err := r.certs.Reload(); err != nil {
				r.log.Error("SIGHUP: keeping the old TLS certificate", "err", err)
			} else {
				r.log.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	})
	return nil
}

// onSIGHUP calls fn on every SIGHUP until ctx is done.
func onSIGHUP(ctx context.Context, fn func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			fn()
		}
	}
}

// startSyslog listens on --syslog and --syslog-tls and serves them.
func (r *serverRun) startSyslog(ctx context.Context) error {
	cfg, log := r.cfg, r.log
	slo := server.DefaultSyslogOptions()
	slo.Addr, slo.TLSAddr, slo.TLS, slo.IdleTimeout, slo.MaxConns = cfg.syslogAddr, cfg.syslogTLSAddr, r.tls, cfg.syslogIdle, cfg.syslogMaxConns
	sl, err := server.ListenSyslog(r.core.Ingest, slo, log, r.reg)
	if err != nil {
		return err
	}
	ctx, r.stopSyslog = context.WithCancel(ctx)
	r.syslogDone = make(chan error, 1)
	go func() { r.syslogDone <- sl.Serve(ctx) }()
	if sl.Addr() != "" {
		r.syslogLines = fmt.Sprintf("  syslog (tcp, udp):   %s\n", sl.Addr())
	}
	if sl.TLSAddr() != "" {
		r.syslogLines += fmt.Sprintf("  syslog (tls):        %s\n", sl.TLSAddr())
	}
	// Syslog has no tokens: --auth-file does not cover it.
	if r.auth != nil && sl.Addr() != "" {
		log.Warn("--syslog takes messages without a token from anyone who can reach it (syslog has no authentication; --auth-file does not cover it): use --syslog-tls with --tls-client-ca, or a firewall", "syslog", sl.Addr())
	}
	if r.auth != nil && sl.TLSAddr() != "" && cfg.tlsClientCA == "" {
		log.Warn("--syslog-tls takes messages without a token from anyone who can reach it: add --tls-client-ca to require client certificates", "syslog_tls", sl.TLSAddr())
	}
	return nil
}

// stopSyslogListener stops the syslog listeners and waits until what they
// received is stored.
func (r *serverRun) stopSyslogListener() error {
	r.stopSyslog()
	<-r.syslogDone
	return nil
}

// printServing prints the addresses block. "data" ends it (internal/harness
// reads it); READ-ONLY, when the store opened read-only, follows.
func (r *serverRun) printServing() {
	scheme := "http"
	if r.tls != nil {
		scheme = "https"
	}
	base := scheme + "://" + r.srv.HTTPAddr()
	fmt.Fprintf(r.stdout, "shiplog is serving\n  web UI and HTTP API: %s/\n  gRPC:                %s\n  health:              %s/readyz\n%s  data:                %s\n",
		base, r.srv.GRPCAddr(), base, r.syslogLines, r.cfg.data)
	if r.readOnly {
		fmt.Fprintf(r.stdout, "  READ-ONLY:           %s; queries are answered, ingest is refused until a restart with free space\n", r.roWhy)
	}
	if f, ok := r.stdout.(*os.File); ok {
		_ = f.Sync()
	}
}
