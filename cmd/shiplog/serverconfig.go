package main

import (
	"flag"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/shiplog/shiplog/cluster"
	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/metrics"
	"github.com/shiplog/shiplog/server"
	"github.com/shiplog/shiplog/store"
)

// serverConfig is `shiplog server`'s flags, parsed and validated.
type serverConfig struct {
	httpAddr, grpcAddr        string
	syslogAddr, syslogTLSAddr string
	data                      string
	fsync                     bool
	maxLine, maxRecv          int
	maxPast, maxFuture        time.Duration
	logLevel, logFormat       string
	silentAfter               time.Duration
	authFile                  string
	insecure                  bool
	tlsCert, tlsKey           string
	tlsClientCA               string

	queryTimeout               time.Duration
	maxQueries, maxQuerySample int
	maxSamplesRead             int
	promStep                   time.Duration
	otlpBuild, otlpDeploy      string
	maxSeries, maxTails        int
	tailQueue                  int
	tailBytes                  byteSize
	maxBatches                 int
	minFree, memLimit          byteSize
	gcHeadroom                 byteSize
	headsMax                   byteSize
	sealBacklog                byteSize
	bodyInflight               byteSize

	readHeaderTimeout, readTimeout, idleTimeout time.Duration
	syslogIdle                                  time.Duration
	syslogMaxConns                              int

	retention     time.Duration
	retentionSize byteSize
	maxStreams    int
	maxSeqJump    uint64
	rulesFile     string
	externalURL   string // "" means http(s)://<bound --http>; no trailing slash
	alerts        *alertFlags
	clusterFlags  *clusterFlags

	// Derived by validation.
	cluster                 *cluster.Config // nil: a single node
	buildAttrs, deployAttrs []string
	level                   slog.Level
}

// parseServerFlags parses and validates `shiplog server`'s flags (and their
// SHIPLOG_* variables). Bad flags are a usageError; --help prints the flags
// to stdout and returns errHelp.
func parseServerFlags(args []string, stdout io.Writer) (*serverConfig, error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	c := defineServerFlags(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("server: unexpected argument %q", fs.Arg(0))
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// defineServerFlags defines the server's flags on fs, bound to a config.
func defineServerFlags(fs *flag.FlagSet) *serverConfig {
	c := &serverConfig{}
	sd := server.DefaultOptions()
	id := ingest.DefaultOptions()
	fs.StringVar(&c.httpAddr, "http", sd.HTTPAddr, "HTTP address: JSON API, web UI, /metrics")
	fs.StringVar(&c.grpcAddr, "grpc", sd.GRPCAddr, "gRPC address")
	fs.StringVar(&c.syslogAddr, "syslog", "", "syslog address, TCP and UDP (RFC 5424 and RFC 3164); empty: off")
	fs.StringVar(&c.syslogTLSAddr, "syslog-tls", "", "syslog over TLS address (RFC 5425, usually port 6514) with --tls-cert/--tls-key, and client certificates with --tls-client-ca; empty: off")
	fs.StringVar(&c.data, "data", "./shiplog-data", "data directory")
	fs.BoolVar(&c.fsync, "fsync", false, "fsync the write-ahead log before every ack (survives power loss, slower)")
	fs.IntVar(&c.maxLine, "max-line-bytes", id.MaxLineBytes, "longer messages are cut and marked truncated=true")
	fs.IntVar(&c.maxRecv, "max-request-bytes", sd.MaxRecvBytes, "largest gRPC message or HTTP body")
	fs.DurationVar(&c.maxPast, "max-past", id.MaxPast, "refuse records older than this")
	fs.DurationVar(&c.maxFuture, "max-future", id.MaxFuture, "refuse records further ahead of the server's clock than this")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	fs.DurationVar(&c.silentAfter, "silent-after", 5*time.Minute, "a host with no new line for this long is silent (unless its agent said goodbye)")
	fs.StringVar(&c.authFile, "auth-file", "", "YAML file of tokens and scopes (see docs/operations.md); without it, no token is needed")
	fs.BoolVar(&c.insecure, "insecure", false, "allow listening on a non-loopback address without --auth-file, --cluster-listen without --cluster-secret-file or --cluster-tls-*, and a --min-free-disk below 64MiB")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate (PEM) for both listeners; reloaded on SIGHUP")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fs.StringVar(&c.tlsClientCA, "tls-client-ca", "", "require client certificates signed by this CA (mutual TLS)")
	defineLimitFlags(fs, c)
	so := store.DefaultOptions()
	c.minFree = byteSize(server.DefaultLimits().MinFreeDisk)
	fs.Var(&c.minFree, "min-free-disk", "refuse ingest (queries go on) when the data directory's disk has less free space (e.g. 512MiB; at least 64MiB unless --insecure, which allows 0 = off)")
	fs.DurationVar(&c.retention, "retention", 0, "drop day partitions (logs and metrics) older than this, e.g. 720h; 0 keeps everything")
	fs.Var(&c.retentionSize, "retention-size", "drop the oldest days while the data directory is larger than this, e.g. 50GiB; 0 = no bound")
	c.headsMax = byteSize(so.HeadsMaxBytes)
	fs.Var(&c.headsMax, "open-chunks-memory", "bound on the text of lines not yet sealed into chunks, all streams together (e.g. 64MiB); past it the chunks written least recently are sealed early, so memory follows the streams being written, not how many were")
	c.sealBacklog = byteSize(so.SealBacklogBytes)
	fs.Var(&c.sealBacklog, "seal-backlog-memory", "bound on the chunks handed to the sealers but not yet written (e.g. 16MiB); past it ingest waits for the sealers instead of holding more in memory")
	fs.Var(&c.memLimit, "memory-limit", "soft memory limit for the Go runtime (GOMEMLIMIT), e.g. 1GiB; 0 = none")
	c.gcHeadroom = defaultGCHeadroom
	fs.Var(&c.gcHeadroom, "gc-headroom", "how much the Go heap may grow between two collections (GOGC is lowered after each collection to allow no more than this, down to 25), so the peak memory is the live heap plus this, not twice it; 0 = GOGC alone")
	fs.IntVar(&c.maxStreams, "max-streams-per-day", so.MaxStreamsPerDay, "new streams (service, host, build_id, deploy_id never seen before) accepted per UTC day; a batch opening more gets ResourceExhausted, known streams keep working; 0 = no limit")
	fs.Uint64Var(&c.maxSeqJump, "max-seq-jump", so.MaxSeqJump, "refuse (InvalidArgument) a batch whose seq is further than this above its agent's highest stored seq; 0 = no bound")
	fs.StringVar(&c.rulesFile, "rules", "", "alert rules file (see docs/rules.md); reloaded on SIGHUP and POST /-/reload")
	fs.StringVar(&c.externalURL, "external-url", "", "the web UI's address in alert notifications' links (default http://<--http>)")
	c.alerts = addAlertFlags(fs)
	c.clusterFlags = addClusterFlags(fs)
	return c
}

// defineLimitFlags defines the query, ingest, tail and HTTP limits.
func defineLimitFlags(fs *flag.FlagSet, c *serverConfig) {
	sd := server.DefaultOptions()
	ld := server.DefaultLimits()
	md := metrics.DefaultOptions()
	fs.DurationVar(&c.queryTimeout, "query-timeout", ld.QueryTimeout, "longest a query may run")
	fs.IntVar(&c.maxQueries, "max-concurrent-queries", ld.MaxConcurrentQueries, "queries run at once; more wait (up to --query-timeout)")
	fs.IntVar(&c.maxQuerySample, "query-max-samples", md.MaxSamples, "PromQL: the most points one query may evaluate (estimated before it runs: subqueries' and range selectors' points times the steps around them) and samples it may hold at once, as Prometheus' --query.max-samples")
	fs.IntVar(&c.maxSamplesRead, "query-max-samples-read", md.MaxSamplesRead, "PromQL: the most stored samples (and series) one query may load from the store, all its selectors together (about 2 bytes each, compressed)")
	fs.DurationVar(&c.promStep, "promql-default-step", md.DefaultStep, "PromQL: the step of a subquery written without one (x[1h:]), as Prometheus' evaluation interval")
	fs.StringVar(&c.otlpBuild, "otlp-build-attr", strings.Join(sd.OTLPBuildAttrs, ","), "OTLP: resource or record attributes whose value is the build_id, the first present wins, comma-separated (e.g. add service.version)")
	fs.StringVar(&c.otlpDeploy, "otlp-deploy-attr", strings.Join(sd.OTLPDeployAttrs, ","), "OTLP: resource or record attributes whose value is the deploy_id, the first present wins, comma-separated")
	fs.IntVar(&c.maxSeries, "max-series", store.DefaultMetricsOptions().MaxSeries, "metric series the store may hold (every series with samples on a kept day; --retention frees them); samples of new series beyond it are refused, existing series keep taking samples")
	fs.IntVar(&c.maxTails, "max-tails", ld.MaxTails, "live tails open at once; more get ResourceExhausted (429)")
	hd := server.DefaultHubOptions()
	fs.IntVar(&c.tailQueue, "tail-queue-records", hd.QueueRecords, "new records a live tail may have waiting to be matched; beyond it the tail skips records and is told how many")
	c.tailBytes = byteSize(hd.QueueBytes)
	fs.Var(&c.tailBytes, "tail-queue-bytes", "memory of the records waiting in all live tails' queues together (each batch counted once); beyond it a tail that is behind skips records")
	fs.IntVar(&c.maxBatches, "max-inflight-batches", ld.MaxInflightBatches, "batches stored at once; beyond it clients get ResourceExhausted and retry")
	c.bodyInflight = byteSize(ld.MaxBodyBytesInflight)
	fs.Var(&c.bodyInflight, "max-body-bytes-inflight", "bytes of HTTP request bodies, as received and decompressed, held at once by requests in flight; beyond it clients get 429 and retry")
	fs.DurationVar(&c.readHeaderTimeout, "http-read-header-timeout", sd.ReadHeaderTimeout, "longest an HTTP client may take to send a request's headers")
	fs.DurationVar(&c.readTimeout, "http-read-timeout", sd.BodyReadTimeout, "longest an HTTP client may take to send a request's body (answers and streams after it are not cut)")
	fs.DurationVar(&c.idleTimeout, "http-idle-timeout", sd.IdleTimeout, "an idle keep-alive HTTP connection is closed after this long")
	syd := server.DefaultSyslogOptions()
	fs.DurationVar(&c.syslogIdle, "syslog-idle-timeout", syd.IdleTimeout, "a syslog TCP connection that sends nothing for this long is closed")
	fs.IntVar(&c.syslogMaxConns, "syslog-max-conns", syd.MaxConns, "syslog TCP connections at once; when full, the longest idle one is closed for a new one")
}

// validate checks the flags, in the order the usage errors have always come
// in, and fills the derived fields.
func (c *serverConfig) validate() error {
	if err := c.validateListeners(); err != nil {
		return err
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	return c.validateIngest()
}

// validateListeners checks the addresses, the data directory, cluster mode,
// TLS and that nothing listens off loopback without --auth-file.
func (c *serverConfig) validateListeners() error {
	for _, a := range []struct{ name, v string }{{"http", c.httpAddr}, {"grpc", c.grpcAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return usagef("server: --%s %q: want HOST:PORT", a.name, a.v)
		}
	}
	if c.data == "" {
		return usagef("server: --data must not be empty")
	}
	ccfg, err := c.clusterFlags.config(c.insecure)
	if err != nil {
		return err
	}
	c.cluster = ccfg
	if c.maxLine < 1024 {
		return usagef("server: --max-line-bytes must be at least 1024")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usagef("server: --tls-cert and --tls-key go together")
	}
	if c.tlsClientCA != "" && c.tlsCert == "" {
		return usagef("server: --tls-client-ca needs --tls-cert and --tls-key")
	}
	for _, a := range []struct{ name, v string }{{"syslog", c.syslogAddr}, {"syslog-tls", c.syslogTLSAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return usagef("server: --%s %q: want HOST:PORT", a.name, a.v)
		}
	}
	if c.syslogTLSAddr != "" && c.tlsCert == "" {
		return usagef("server: --syslog-tls needs --tls-cert and --tls-key")
	}
	if c.authFile == "" && !c.insecure {
		for _, a := range []struct{ name, v string }{{"http", c.httpAddr}, {"grpc", c.grpcAddr}, {"syslog", c.syslogAddr}, {"syslog-tls", c.syslogTLSAddr}} {
			if a.v == "" {
				continue
			}
			if !loopback(a.v) {
				return usagef("server: refusing to listen on %s (--%s) without --auth-file: anyone who can reach it could read and write logs; add --auth-file, or --insecure if the network is trusted", a.v, a.name)
			}
		}
	}
	return nil
}

// validateLimits checks the limits and timeouts, the disk floor and retention.
func (c *serverConfig) validateLimits() error {
	if c.queryTimeout <= 0 || c.maxQueries <= 0 || c.maxBatches <= 0 || c.maxQuerySample <= 0 || c.maxSamplesRead <= 0 || c.maxSeries <= 0 || c.maxTails <= 0 || c.tailQueue <= 0 || c.tailBytes <= 0 {
		return usagef("server: --query-timeout, --max-concurrent-queries, --max-inflight-batches, --query-max-samples, --query-max-samples-read, --max-series, --max-tails, --tail-queue-records and --tail-queue-bytes must be positive")
	}
	if c.bodyInflight < 2*byteSize(c.maxRecv) {
		// A body at the limit holds up to twice it while its buffer grows.
		return usagef("server: --max-body-bytes-inflight (%d) must be at least twice --max-request-bytes (%d)", c.bodyInflight, c.maxRecv)
	}
	if c.readHeaderTimeout <= 0 || c.readTimeout <= 0 || c.idleTimeout <= 0 || c.syslogIdle <= 0 || c.syslogMaxConns <= 0 {
		return usagef("server: --http-read-header-timeout, --http-read-timeout, --http-idle-timeout, --syslog-idle-timeout and --syslog-max-conns must be positive")
	}
	if c.sealBacklog < 1<<20 {
		return usagef("server: --seal-backlog-memory of %d bytes is too small: at least 1MiB", uint64(c.sealBacklog))
	}
	if c.headsMax < 1<<20 {
		return usagef("server: --open-chunks-memory of %d bytes is too small: at least 1MiB", uint64(c.headsMax))
	}
	if c.minFree < minFreeDiskFloor && !c.insecure {
		return usagef("server: --min-free-disk of %d bytes is below the safe floor of 64MiB: a full disk makes the store fail hard (Badger writes through memory-mapped files); raise it, or add --insecure to accept the risk", uint64(c.minFree))
	}
	if c.retention < 0 {
		return usagef("server: --retention must not be negative")
	}
	if c.retention > 0 && c.retention < c.maxPast {
		c.maxPast = c.retention
	}
	if c.maxStreams < 0 {
		return usagef("server: --max-streams-per-day must not be negative")
	}
	if c.silentAfter <= 0 {
		return usagef("server: --silent-after must be positive")
	}
	if c.maxPast <= 0 || c.maxFuture <= 0 {
		return usagef("server: --max-past and --max-future must be positive")
	}
	if c.promStep <= 0 {
		return usagef("server: --promql-default-step must be positive")
	}
	return nil
}

// validateIngest checks the OTLP attribute lists, logging and alerting.
func (c *serverConfig) validateIngest() error {
	var err error
	if c.buildAttrs, err = attrList("otlp-build-attr", c.otlpBuild); err != nil {
		return err
	}
	if c.deployAttrs, err = attrList("otlp-deploy-attr", c.otlpDeploy); err != nil {
		return err
	}
	if err := c.level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usagef("server: --log-level %q: want debug, info, warn or error", c.logLevel)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return usagef("server: --log-format %q: want text or json", c.logFormat)
	}
	if c.rulesFile == "" {
		return nil // --external-url and --alert-resend-delay are used only with --rules
	}
	if c.externalURL != "" {
		if u, err := url.Parse(c.externalURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("server: --external-url %q: want an http:// or https:// URL", c.externalURL)
		}
		c.externalURL = strings.TrimRight(c.externalURL, "/")
	}
	if c.alerts.resendDelay <= 0 {
		return usagef("server: --alert-resend-delay %v: want a positive duration", c.alerts.resendDelay)
	}
	return nil
}

// logger is the server's logger on w, as --log-level and --log-format say.
func (c *serverConfig) logger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: c.level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// minFreeDiskFloor is the lowest --min-free-disk without --insecure.
const minFreeDiskFloor = 64 << 20

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

// attrList parses a comma-separated list of attribute names (at most 8,
// none empty).
func attrList(flag, v string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(v, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, usagef("server: --%s %q: want attribute names, comma-separated, none empty", flag, v)
		}
		out = append(out, a)
	}
	if len(out) > 8 {
		return nil, usagef("server: --%s: at most 8 attribute names", flag)
	}
	return out, nil
}
