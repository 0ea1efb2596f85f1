package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
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

func runServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	sd := server.DefaultOptions()
	httpAddr := fs.String("http", sd.HTTPAddr, "HTTP address: JSON API, web UI, /metrics")
	grpcAddr := fs.String("grpc", sd.GRPCAddr, "gRPC address")
	syslogAddr := fs.String("syslog", "", "syslog address, TCP and UDP (RFC 5424 and RFC 3164); empty: off")
	syslogTLSAddr := fs.String("syslog-tls", "", "syslog over TLS address (RFC 5425, usually port 6514) with --tls-cert/--tls-key, and client certificates with --tls-client-ca; empty: off")
	data := fs.String("data", "./shiplog-data", "data directory")
	fsync := fs.Bool("fsync", false, "fsync the write-ahead log before every ack (survives power loss, slower)")
	maxLine := fs.Int("max-line-bytes", ingest.DefaultOptions().MaxLineBytes, "longer messages are cut and marked truncated=true")
	maxRecv := fs.Int("max-request-bytes", sd.MaxRecvBytes, "largest gRPC message or HTTP body")
	maxPast := fs.Duration("max-past", ingest.DefaultOptions().MaxPast, "refuse records older than this")
	maxFuture := fs.Duration("max-future", ingest.DefaultOptions().MaxFuture, "refuse records further ahead of the server's clock than this")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	silentAfter := fs.Duration("silent-after", 5*time.Minute, "a host with no new line for this long is silent (unless its agent said goodbye)")
	authFile := fs.String("auth-file", "", "YAML file of tokens and scopes (see docs/operations.md); without it, no token is needed")
	insecure := fs.Bool("insecure", false, "allow listening on a non-loopback address without --auth-file, --cluster-listen without --cluster-secret-file or --cluster-tls-*, and a --min-free-disk below 64MiB")
	tlsCert := fs.String("tls-cert", "", "TLS certificate (PEM) for both listeners; reloaded on SIGHUP")
	tlsKey := fs.String("tls-key", "", "TLS private key (PEM)")
	tlsClientCA := fs.String("tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	ld := server.DefaultLimits()
	queryTimeout := fs.Duration("query-timeout", ld.QueryTimeout, "longest a query may run")
	maxQueries := fs.Int("max-concurrent-queries", ld.MaxConcurrentQueries, "queries run at once; more wait (up to --query-timeout)")
	maxQuerySamples := fs.Int("query-max-samples", metrics.DefaultOptions().MaxSamples, "PromQL: the most points one query may evaluate (estimated before it runs: subqueries' and range selectors' points times the steps around them) and samples it may hold at once, as Prometheus' --query.max-samples")
	maxSeries := fs.Int("max-series", store.DefaultMetricsOptions().MaxSeries, "metric series the store may hold (every series with samples on a kept day; --retention frees them); samples of new series beyond it are refused, existing series keep taking samples")
	maxTails := fs.Int("max-tails", ld.MaxTails, "live tails open at once; more get ResourceExhausted (429)")
	hd := server.DefaultHubOptions()
	tailQueue := fs.Int("tail-queue-records", hd.QueueRecords, "new records a live tail may have waiting to be matched; beyond it the tail skips records and is told how many")
	tailBytes := byteSize(hd.QueueBytes)
	fs.Var(&tailBytes, "tail-queue-bytes", "memory of the records waiting in all live tails' queues together (each batch counted once); beyond it a tail that is behind skips records")
	maxBatches := fs.Int("max-inflight-batches", ld.MaxInflightBatches, "batches stored at once; beyond it clients get ResourceExhausted and retry")
	var minFree, memLimit byteSize = byteSize(ld.MinFreeDisk), 0
	bodyInflight := byteSize(ld.MaxBodyBytesInflight)
	fs.Var(&bodyInflight, "max-body-bytes-inflight", "bytes of HTTP request bodies, as received and decompressed, held at once by requests in flight; beyond it clients get 429 and retry")
	readHeaderTimeout := fs.Duration("http-read-header-timeout", sd.ReadHeaderTimeout, "longest an HTTP client may take to send a request's headers")
	readTimeout := fs.Duration("http-read-timeout", sd.BodyReadTimeout, "longest an HTTP client may take to send a request's body (answers and streams after it are not cut)")
	idleTimeout := fs.Duration("http-idle-timeout", sd.IdleTimeout, "an idle keep-alive HTTP connection is closed after this long")
	syd := server.DefaultSyslogOptions()
	syslogIdle := fs.Duration("syslog-idle-timeout", syd.IdleTimeout, "a syslog TCP connection that sends nothing for this long is closed")
	syslogMaxConns := fs.Int("syslog-max-conns", syd.MaxConns, "syslog TCP connections at once; when full, the longest idle one is closed for a new one")
	fs.Var(&minFree, "min-free-disk", "refuse ingest (queries go on) when the data directory's disk has less free space (e.g. 512MiB; at least 64MiB unless --insecure, which allows 0 = off)")
	retention := fs.Duration("retention", 0, "drop day partitions (logs and metrics) older than this, e.g. 720h; 0 keeps everything")
	var retentionSize byteSize
	fs.Var(&retentionSize, "retention-size", "drop the oldest days while the data directory is larger than this, e.g. 50GiB; 0 = no bound")
	fs.Var(&memLimit, "memory-limit", "soft memory limit for the Go runtime (GOMEMLIMIT), e.g. 1GiB; 0 = none")
	sod := store.DefaultOptions()
	maxStreams := fs.Int("max-streams-per-day", sod.MaxStreamsPerDay, "new streams (service, host, build_id, deploy_id never seen before) accepted per UTC day; a batch opening more gets ResourceExhausted, known streams keep working; 0 = no limit")
	maxSeqJump := fs.Uint64("max-seq-jump", sod.MaxSeqJump, "refuse (InvalidArgument) a batch whose seq is further than this above its agent's highest stored seq; 0 = no bound")
	rulesFile := fs.String("rules", "", "alert rules file (see docs/rules.md); reloaded on SIGHUP and POST /-/reload")
	externalURL := fs.String("external-url", "", "the web UI's address in alert notifications' links (default http://<--http>)")
	ax := addAlertFlags(fs)
	cf := addClusterFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return usagef("server: unexpected argument %q", fs.Arg(0))
	}
	for _, a := range []struct{ name, v string }{{"http", *httpAddr}, {"grpc", *grpcAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return usagef("server: --%s %q: want HOST:PORT", a.name, a.v)
		}
	}
	if *data == "" {
		return usagef("server: --data must not be empty")
	}
	ccfg, err := cf.config(*insecure)
	if err != nil {
		return err
	}
	if *maxLine < 1024 {
		return usagef("server: --max-line-bytes must be at least 1024")
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return usagef("server: --tls-cert and --tls-key go together")
	}
	if *tlsClientCA != "" && *tlsCert == "" {
		return usagef("server: --tls-client-ca needs --tls-cert and --tls-key")
	}
	for _, a := range []struct{ name, v string }{{"syslog", *syslogAddr}, {"syslog-tls", *syslogTLSAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return usagef("server: --%s %q: want HOST:PORT", a.name, a.v)
		}
	}
	if *syslogTLSAddr != "" && *tlsCert == "" {
		return usagef("server: --syslog-tls needs --tls-cert and --tls-key")
	}
	if *authFile == "" && !*insecure {
		for _, a := range []struct{ name, v string }{{"http", *httpAddr}, {"grpc", *grpcAddr}, {"syslog", *syslogAddr}, {"syslog-tls", *syslogTLSAddr}} {
			if a.v == "" {
				continue
			}
			if !loopback(a.v) {
				return usagef("server: refusing to listen on %s (--%s) without --auth-file: anyone who can reach it could read and write logs; add --auth-file, or --insecure if the network is trusted", a.v, a.name)
			}
		}
	}
	if *queryTimeout <= 0 || *maxQueries <= 0 || *maxBatches <= 0 || *maxQuerySamples <= 0 || *maxSeries <= 0 || *maxTails <= 0 || *tailQueue <= 0 || tailBytes <= 0 {
		return usagef("server: --query-timeout, --max-concurrent-queries, --max-inflight-batches, --query-max-samples, --max-series, --max-tails, --tail-queue-records and --tail-queue-bytes must be positive")
	}
	if bodyInflight < 2*byteSize(*maxRecv) {
		// A body at the limit holds up to twice it while its buffer grows.
		return usagef("server: --max-body-bytes-inflight (%d) must be at least twice --max-request-bytes (%d)", bodyInflight, *maxRecv)
	}
	if *readHeaderTimeout <= 0 || *readTimeout <= 0 || *idleTimeout <= 0 || *syslogIdle <= 0 || *syslogMaxConns <= 0 {
		return usagef("server: --http-read-header-timeout, --http-read-timeout, --http-idle-timeout, --syslog-idle-timeout and --syslog-max-conns must be positive")
	}
	if minFree < minFreeDiskFloor && !*insecure {
		return usagef("server: --min-free-disk of %d bytes is below the safe floor of 64MiB: a full disk makes the store fail hard (Badger writes through memory-mapped files); raise it, or add --insecure to accept the risk", uint64(minFree))
	}
	if *retention < 0 {
		return usagef("server: --retention must not be negative")
	}
	if *retention > 0 && *retention < *maxPast {
		*maxPast = *retention
	}
	if *maxStreams < 0 {
		return usagef("server: --max-streams-per-day must not be negative")
	}
	if *silentAfter <= 0 {
		return usagef("server: --silent-after must be positive")
	}
	if *maxPast <= 0 || *maxFuture <= 0 {
		return usagef("server: --max-past and --max-future must be positive")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return usagef("server: --log-level %q: want debug, info, warn or error", *logLevel)
	}
	var log *slog.Logger
	switch *logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	case "json":
		log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	default:
		return usagef("server: --log-format %q: want text or json", *logFormat)
	}
	warnInsecureCluster(ccfg, log)

	if memLimit > 0 {
		debug.SetMemoryLimit(int64(memLimit))
	}
	// Files the server creates are its own (the WAL holds what clients sent).
	privateUmask()
	for _, f := range []struct{ name, path string }{{"auth-file", *authFile}, {"tls-key", *tlsKey}} {
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
	var auth *server.Auth
	if *authFile != "" {
		var err error
		if auth, err = server.LoadAuthFile(*authFile); err != nil {
			return usagef("server: %v", err)
		}
	}
	var certs *server.CertReloader
	var tlsCfg *tls.Config
	if *tlsCert != "" {
		var err error
		if certs, err = server.NewCertReloader(*tlsCert, *tlsKey); err != nil {
			return usagef("server: %v", err)
		}
		if tlsCfg, err = server.ServerTLSConfig(certs, *tlsClientCA); err != nil {
			return usagef("server: %v", err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	so := sod
	so.Fsync = *fsync
	so.MaxStreamsPerDay, so.MaxSeqJump = *maxStreams, *maxSeqJump
	so.Retention, so.RetentionBytes = *retention, int64(retentionSize)
	so.Metrics.MaxSeries = *maxSeries
	start := time.Now()
	var st *store.Store
	st, err = store.Open(*data, so, log, reg)
	if err != nil {
		return err
	}
	log.Info("store open", "data", *data, "took", time.Since(start).Round(time.Millisecond))
	readOnly, roWhy := st.ReadOnly()
	io := ingest.DefaultOptions()
	io.MaxLineBytes, io.MaxPast, io.MaxFuture = *maxLine, *maxPast, *maxFuture
	hub := server.NewHub(server.HubOptions{QueueRecords: *tailQueue, QueueBytes: int64(tailBytes)})
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_tails", Help: "Live tails open."},
			func() float64 { return float64(hub.Subscribers()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "shiplog_tail_skipped_records_total",
			Help: "Records live tails skipped because they fell behind (each tail counted)."},
			func() float64 { return float64(hub.Skipped()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_tail_queue_bytes", Help: "Memory of the batches waiting in live tails' queues (each batch once)."},
			func() float64 { return float64(hub.Held()) }))
	core := server.Core{
		Query:       query.New(st, query.DefaultOptions()),
		Catalog:     st,
		Getter:      st,
		Hub:         hub,
		SilentAfter: *silentAfter,
		Backup:      st.Backup,
		Limits: server.NewLimiter(ctx, server.Limits{QueryTimeout: *queryTimeout, MaxConcurrentQueries: *maxQueries, MaxTails: *maxTails,
			MaxInflightBatches: *maxBatches, MinFreeDisk: uint64(minFree), DataDir: *data, MaxBodyBytesInflight: int64(bodyInflight)}, log),
	}
	mo := metrics.DefaultOptions()
	mo.Timeout, mo.MaxSamples = *queryTimeout, *maxQuerySamples
	mio := ingest.DefaultMetricsOptions()
	mio.MaxPast = *maxPast
	core.Metrics = &server.Metrics{
		Ingest:    ingest.NewMetrics(st, mio, log, reg),
		Engine:    metrics.NewEngine(mo, log, reg),
		Queryable: metrics.NewQueryable(st, mo),
	}
	// The HTTP listener is bound now: alert links need its address (a
	// --http port 0's is known only once bound).
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("listen --http %s: %w", *httpAddr, err)
	}
	boundHTTP := hl.Addr().String()
	var al *alerting
	var node *cluster.Node
	var calerts *clusterAlerts
	closeAll := func() {
		_ = hl.Close()
		al.stop()
		if calerts != nil {
			calerts.stop()
		}
		if node != nil {
			if err := node.Close(); err != nil {
				log.Error("cluster: close", "err", err)
			}
		}
		_ = st.Close()
	}
	switch {
	case ccfg != nil:
		// Cluster mode: logs go through the replicated log to the partition
		// owners; metrics and the node's own state stay in the local store.
		ccfg.Dir = filepath.Join(*data, "cluster")
		ccfg.Store, ccfg.StreamMaxAge = so, *retention
		// --retention-size bounds the whole node; each partition store gets a share.
		ccfg.Store.RetentionBytes = so.RetentionBytes / int64(ccfg.Partitions)
		ccfg.Log, ccfg.Registerer, ccfg.Hub = log, reg, hub
		if *rulesFile != "" {
			calerts = newClusterAlerts(log)
			ccfg.OnAlertLease = calerts.onLease
		}
		if node, err = startClusterNode(ctx, *ccfg); err != nil {
			closeAll()
			return err
		}
		core.Query, core.CatalogFor, core.Cluster, core.Catalog, core.Getter = node, node.Catalog, node.Status, nil, nil
		if calerts != nil {
			kv := node.AlertStore()
			areg := reRegisterer{reg}
			calerts.start = func() (*alerting, error) {
				return startAlerting(ctx, *rulesFile, *externalURL, boundHTTP, tlsCfg != nil, ax, kv, node, core.Metrics, log, areg)
			}
			quiet := slog.New(slog.DiscardHandler)
			calerts.view = func() (*alert.Manager, error) { return viewAlerts(*rulesFile, kv, quiet) }
			if _, err := calerts.view(); err != nil {
				closeAll()
				return usagef("server: --rules %v", err)
			}
			core.Alerts = calerts
			close(calerts.ready)
			go calerts.loop()
		}
	case *rulesFile != "":
		if al, err = startAlerting(ctx, *rulesFile, *externalURL, boundHTTP, tlsCfg != nil, ax, st, core.Query, core.Metrics, log, reg); err != nil {
			closeAll()
			return err
		}
		core.Alerts = al.mgr
	}
	var sink ingest.Sink = server.TailSink{Next: st, Hub: hub}
	if node != nil {
		sink = node // the owners hand stored lines to the tails
	}
	core.Ingest = ingest.New(sink, io, log, reg)
	so2 := server.DefaultOptions()
	so2.UI = web.Handler()
	so2.HTTPAddr, so2.GRPCAddr, so2.MaxRecvBytes, so2.Gatherer = *httpAddr, *grpcAddr, *maxRecv, reg
	so2.HTTPListener = hl
	so2.Auth, so2.TLS = auth, tlsCfg
	so2.ReadHeaderTimeout, so2.BodyReadTimeout, so2.IdleTimeout = *readHeaderTimeout, *readTimeout, *idleTimeout
	so2.Registerer = reg
	srv, err := server.New(core, so2, log)
	if err != nil {
		closeAll()
		return err
	}
	go onSIGHUP(ctx, func() {
		al.reload()
		if certs != nil {
			if err := certs.Reload(); err != nil {
				log.Error("SIGHUP: keeping the old TLS certificate", "err", err)
			} else {
				log.Info("SIGHUP: TLS certificate reloaded")
			}
		}
	})
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	base := scheme + "://" + srv.HTTPAddr()
	var syslogDone chan error
	var syslogLine string
	syslogCtx, stopSyslog := context.WithCancel(ctx)
	defer stopSyslog()
	if *syslogAddr != "" || *syslogTLSAddr != "" {
		slo := server.DefaultSyslogOptions()
		slo.Addr, slo.TLSAddr, slo.TLS, slo.IdleTimeout, slo.MaxConns = *syslogAddr, *syslogTLSAddr, tlsCfg, *syslogIdle, *syslogMaxConns
		sl, err := server.ListenSyslog(core.Ingest, slo, log, reg)
		if err != nil {
			closeAll()
			return err
		}
		syslogDone = make(chan error, 1)
		go func() { syslogDone <- sl.Serve(syslogCtx) }()
		if sl.Addr() != "" {
			syslogLine = fmt.Sprintf("  syslog (tcp, udp):   %s\n", sl.Addr())
		}
		if sl.TLSAddr() != "" {
			syslogLine += fmt.Sprintf("  syslog (tls):        %s\n", sl.TLSAddr())
		}
		// Syslog has no tokens: --auth-file does not cover it.
		if auth != nil && sl.Addr() != "" {
			log.Warn("--syslog takes messages without a token from anyone who can reach it (syslog has no authentication; --auth-file does not cover it): use --syslog-tls with --tls-client-ca, or a firewall", "syslog", sl.Addr())
		}
		if auth != nil && sl.TLSAddr() != "" && *tlsClientCA == "" {
			log.Warn("--syslog-tls takes messages without a token from anyone who can reach it: add --tls-client-ca to require client certificates", "syslog_tls", sl.TLSAddr())
		}
	}
	// "data" ends the address block (internal/harness reads it).
	fmt.Fprintf(stdout, "shiplog is serving\n  web UI and HTTP API: %s/\n  gRPC:                %s\n  health:              %s/readyz\n%s  data:                %s\n",
		base, srv.GRPCAddr(), base, syslogLine, *data)
	if readOnly {
		fmt.Fprintf(stdout, "  READ-ONLY:           %s; queries are answered, ingest is refused until a restart with free space\n", roWhy)
	}
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	serveErr := srv.Serve(ctx)
	stopSyslog()
	if syslogDone != nil {
		<-syslogDone // the syslog listener stores what it received first
	}
	al.stop()
	if calerts != nil {
		calerts.stop()
	}
	if node != nil {
		log.Info("shutting down: leaving the cluster")
		if err := node.Close(); err != nil {
			log.Error("cluster: close", "err", err)
		}
	}
	log.Info("shutting down: sealing open chunks")
	closeErr := st.Close()
	if serveErr != nil && !strings.Contains(serveErr.Error(), "use of closed") {
		return serveErr
	}
	return closeErr
}

// minFreeDiskFloor is the lowest --min-free-disk without --insecure.
const minFreeDiskFloor = 64 << 20

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

// loopback reports whether addr (HOST:PORT) only listens on a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
