// Package server serves shiplog's gRPC services and, on a second listener, the
// HTTP JSON API (grpc-gateway), health endpoints and the web UI. Handlers
// validate, convert protobuf to model types, call the core and map errors.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/ingest"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// Options configure the listeners.
type Options struct {
	HTTPAddr string
	GRPCAddr string
	// HTTPListener, when set, is the HTTP listener, already bound (to
	// HTTPAddr): the caller needed its address first (a port 0's).
	HTTPListener    net.Listener
	MaxRecvBytes    int           // largest gRPC message and HTTP body
	ShutdownTimeout time.Duration // for in-flight requests on SIGTERM
	// ReadHeaderTimeout bounds reading a request's headers, BodyReadTimeout
	// reading its body (lifted once the body is read: it does not cut long
	// queries or streams), IdleTimeout a keep-alive connection's wait for its
	// next request.
	ReadHeaderTimeout time.Duration
	BodyReadTimeout   time.Duration
	IdleTimeout       time.Duration
	// Gatherer serves /metrics (nil: no /metrics).
	Gatherer prometheus.Gatherer
	// UI, when set, serves every path the API does not.
	UI http.Handler
	// Auth, when set, requires bearer tokens (see auth.go).
	Auth *Auth
	// TLS, when set, serves both listeners over TLS.
	TLS *tls.Config
	// Registerer gets the server's own metrics (nil: none).
	Registerer prometheus.Registerer
	// OTLPBuildAttrs and OTLPDeployAttrs name the OTLP attributes whose
	// value is a record's (and a series') build_id and deploy_id, the first
	// present winning (empty: OpenTelemetry's semantic conventions, then
	// build_id and deploy_id).
	OTLPBuildAttrs, OTLPDeployAttrs []string
}

// DefaultOptions returns the contract's defaults.
func DefaultOptions() Options {
	return Options{
		HTTPAddr:          "127.0.0.1:7070",
		GRPCAddr:          "127.0.0.1:7071",
		MaxRecvBytes:      64 << 20,
		ShutdownTimeout:   5 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		BodyReadTimeout:   time.Minute,
		IdleTimeout:       2 * time.Minute,
		OTLPBuildAttrs:    slices.Clone(defaultBuildAttrs),
		OTLPDeployAttrs:   slices.Clone(defaultDeployAttrs),
	}
}

// Server is shiplog's network face.
type Server struct {
	opts   Options
	log    *slog.Logger
	grpc   *grpc.Server
	http   *http.Server
	gl, hl net.Listener
	ready  atomic.Bool
	// base is the context of every HTTP request; cancelled on shutdown so that
	// long-lived responses (live tail) end.
	base       context.Context
	cancelBase context.CancelFunc
	// routes, rpcs and gwPaths are the scope of every HTTP route, gRPC
	// method and grpc-gateway path (routes.go).
	routes  *router
	rpcs    rpcScopes
	gwPaths map[string]string
}

// ClusterReporter is what a Backend spread over several nodes
// (cluster.Node) implements besides: its status, as JSON, answers GET
// /v1/cluster. A Backend without it is a single node.
type ClusterReporter interface {
	ClusterStatus(ctx context.Context) (json.RawMessage, error)
}

// Core is what the handlers call.
type Core struct {
	Ingest *ingest.Ingester
	// Backend answers every read of the logs: query.Local over this node's
	// store, or the cluster's fan-out (cluster.Node). Its answers say what
	// they lack (query.Coverage), which the responses' partial and
	// missing_partitions fields show.
	Backend query.Backend
	// Hub feeds live tails; the Ingester's sink must be a TailSink on it
	// (cluster mode: the partition owners publish to it). It is a push feed
	// of records as they are stored, not a read of the Backend.
	Hub *Hub
	// SilentAfter: a host with no new line for this long is silent.
	SilentAfter time.Duration
	// Limits admits queries and batches (nil: no limits).
	Limits *Limiter
	// Backup writes a consistent copy of the store (AdminService/Backup).
	Backup func(io.Writer) error
	// Alerts serves /v1/alerts* and POST /-/reload (nil: no --rules; they
	// answer Unimplemented).
	Alerts Alerting
	// Metrics serves MetricsService, remote write and the Prometheus API
	// (nil: they answer Unavailable).
	Metrics *Metrics
}

// New binds both listeners (so their addresses are known before Serve).
func New(core Core, opts Options, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultOptions()
	if opts.MaxRecvBytes <= 0 {
		opts.MaxRecvBytes = d.MaxRecvBytes
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = d.ShutdownTimeout
	}
	if opts.ReadHeaderTimeout <= 0 {
		opts.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = d.BodyReadTimeout
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = d.IdleTimeout
	}
	s := &Server{opts: opts, log: log}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	var err error
	if s.gl, err = net.Listen("tcp", opts.GRPCAddr); err != nil {
		return nil, fmt.Errorf("listen --grpc %s: %w", opts.GRPCAddr, err)
	}
	if s.hl = opts.HTTPListener; s.hl == nil {
		if s.hl, err = net.Listen("tcp", opts.HTTPAddr); err != nil {
			_ = s.gl.Close()
			return nil, fmt.Errorf("listen --http %s: %w", opts.HTTPAddr, err)
		}
	}
	ins := newInstruments(opts.Registerer)
	if opts.Registerer != nil && core.Limits != nil {
		opts.Registerer.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_request_body_bytes_inflight",
			Help: "Bytes of request bodies, as received and decompressed, held by requests in flight (bounded by --max-body-bytes-inflight)."},
			func() float64 { return float64(core.Limits.BodyBytesInflight()) }))
	}
	if opts.TLS != nil {
		s.hl = tls.NewListener(s.hl, opts.TLS)
	}
	svc := services{
		ingest:  &ingestServer{core: core, log: log, ins: ins},
		query:   limitedQueries{s: &queryServer{core: core}, lm: core.Limits},
		admin:   &adminServer{core: core},
		metrics: &metricsServer{core: core, ins: ins},
		otlp: &otlpServer{core: core, log: log, meta: newMetaStore(),
			names: newOTLPNames(opts.OTLPBuildAttrs, opts.OTLPDeployAttrs)},
	}
	s.rpcs = rpcScopes{}
	s.grpc = s.newGRPC(core, ins, svc)
	gw, err := s.newGateway(svc)
	var alerts *runtime.ServeMux
	if err == nil {
		alerts, err = s.newAlertsGateway(svc)
	}
	if err != nil {
		_, _ = s.gl.Close(), s.hl.Close()
		return nil, err
	}
	s.routes = newRouter()
	s.registerHTTP(core, ins, svc.otlp, gw, alerts)
	var handler http.Handler = ins.middleware(s.routes)
	if opts.Auth != nil {
		handler = opts.Auth.middleware(s.routes, handler)
	}
	s.http = &http.Server{
		Handler:           limitBody(handler, int64(opts.MaxRecvBytes), opts.BodyReadTimeout),
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return s.base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// services are the gRPC services that the gateways serve over HTTP too.
type services struct {
	ingest  *ingestServer
	query   limitedQueries
	admin   *adminServer
	metrics *metricsServer
	otlp    *otlpServer // its metaStore is the Prometheus API's metadata too
}

// newGRPC is the gRPC server with every service registered with its scope.
func (s *Server) newGRPC(core Core, ins *instruments, svc services) *grpc.Server {
	opts := s.opts
	unary := []grpc.UnaryServerInterceptor{recoverUnary(s.log), ins.unary()}
	stream := []grpc.StreamServerInterceptor{recoverStream(s.log)}
	if opts.Auth != nil {
		unary = append(unary, opts.Auth.unary(s.rpcs))
		stream = append(stream, opts.Auth.stream(s.rpcs))
	}
	gopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxRecvBytes),
		grpc.MaxSendMsgSize(opts.MaxRecvBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		// Gzip messages are decompressed in the body budget. The option is
		// deprecated in favour of the process-wide encoding registry, but it
		// is this server's own and so can reach its Limiter.
		grpc.RPCDecompressor(grpcGzip{lm: core.Limits, max: int64(opts.MaxRecvBytes)}),
	}
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	gs := grpc.NewServer(gopts...)
	shiplogv1.RegisterIngestServiceServer(s.rpcs.with(gs, ScopeIngest), svc.ingest)
	shiplogv1.RegisterQueryServiceServer(s.rpcs.with(gs, ScopeQuery), svc.query)
	shiplogv1.RegisterAdminServiceServer(s.rpcs.with(gs, ScopeAdmin), svc.admin)
	shiplogv1.RegisterMetricsServiceServer(s.rpcs.with(gs, ScopeIngest), svc.metrics)
	registerOTLPGRPC(s.rpcs.with(gs, ScopeIngest), svc.otlp)
	reflection.Register(s.rpcs.with(gs, scopeAny))
	return gs
}

// newGateway is the grpc-gateway's mux: each path needs its RPC's scope.
func (s *Server) newGateway(svc services) (*runtime.ServeMux, error) {
	paths, err := gatewayScopes(s.rpcs)
	if err != nil {
		return nil, err
	}
	s.gwPaths = paths
	gw := runtime.NewServeMux(s.gatewayOptions(gatewayJSON{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}})...)
	ctx := context.Background()
	if err := shiplogv1.RegisterIngestServiceHandlerServer(ctx, gw, svc.ingest); err != nil {
		return nil, err
	}
	if err := shiplogv1.RegisterQueryServiceHandlerServer(ctx, gw, svc.query); err != nil {
		return nil, err
	}
	if err := handleSearchJSON(gw, svc.query); err != nil {
		return nil, err
	}
	if err := shiplogv1.RegisterMetricsServiceHandlerServer(ctx, gw, svc.metrics); err != nil {
		return nil, err
	}
	return gw, nil
}

// newAlertsGateway is the grpc-gateway mux of the alert endpoints
// (alertsjson.go), with their JSON; each path needs its RPC's scope.
func (s *Server) newAlertsGateway(svc services) (*runtime.ServeMux, error) {
	gw := runtime.NewServeMux(s.gatewayOptions(newAlertsMarshaler())...)
	ctx := context.Background()
	if err := shiplogv1.RegisterQueryServiceHandlerServer(ctx, gw, svc.query); err != nil {
		return nil, err
	}
	if err := shiplogv1.RegisterAdminServiceHandlerServer(ctx, gw, svc.admin); err != nil {
		return nil, err
	}
	return gw, nil
}

// gatewayOptions are a gateway mux's options with marshaler m: shiplog's
// error shape and, with auth, the scope of each path's RPC (s.gwPaths).
func (s *Server) gatewayOptions(m runtime.Marshaler) []runtime.ServeMuxOption {
	mopts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, m),
		runtime.WithErrorHandler(errorHandler),
		// Path parameters are matched on the escaped path and unescaped
		// after: an id with "/" (shop/main/1234) arrives as one %2F-encoded
		// segment and must not be split into several.
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
	}
	if s.opts.Auth != nil {
		mopts = append(mopts, runtime.WithMiddlewares(s.opts.Auth.gatewayMiddleware(s.gwPaths)))
	}
	return mopts
}

// registerHTTP registers every HTTP route with the scope it needs.
func (s *Server) registerHTTP(core Core, ins *instruments, o *otlpServer, gw, alerts http.Handler) {
	rt, opts, log := s.routes, s.opts, s.log
	rt.handleFunc("GET /healthz", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	rt.handleFunc("GET /readyz", scopeOpen, func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if opts.Gatherer != nil {
		rt.handle("GET /metrics", ScopeQuery, promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	rt.handleFunc("/debug/pprof/", ScopeAdmin, pprof.Index)
	rt.handleFunc("/debug/pprof/profile", ScopeAdmin, pprof.Profile)
	rt.handleFunc("/debug/pprof/symbol", ScopeAdmin, pprof.Symbol)
	rt.handleFunc("/debug/pprof/trace", ScopeAdmin, pprof.Trace)
	rt.handleFunc("GET /v1/cluster", ScopeQuery, clusterHandler(core))
	rt.handle("GET /v1/logs:tail", ScopeQuery, tailHandler(core, log))
	rt.handle("GET /v1/logs:export", ScopeQuery, exportHandler(core))
	rt.handle("POST /v1/logs:write", ScopeIngest, newJSONWriteHandler(core, int64(opts.MaxRecvBytes)))
	rt.handle("POST /v1/logs:jsonl", ScopeIngest, newJSONLHandler(core, int64(opts.MaxRecvBytes)))
	for _, p := range alertPaths {
		rt.handle(p, scopeRPC, alerts) // the alert RPCs' bindings, with their JSON
	}
	promRulesHandlers(rt, core)
	registerEcosystem(rt, core, int64(opts.MaxRecvBytes), o) // OTLP/HTTP, Loki push, Elasticsearch bulk
	prom := &promAPI{core: core, log: log, ins: ins, parser: parser.NewParser(parser.Options{}), maxBytes: 4 * opts.MaxRecvBytes, maxBody: int64(opts.MaxRecvBytes), meta: o.meta}
	registerLokiRead(rt, core, log)
	prom.register(rt)
	prom.registerExtra(rt, s.ready.Load)
	rt.handle("/v1/", scopeRPC, gw) // the query limits apply in limitedQueries, below any HTTP method
	if opts.UI != nil {
		rt.handle("/", scopeOpen, opts.UI)
	} else {
		rt.handle("/", scopeRPC, gw) // the gateway has no path outside /v1/: 404
	}
}

func clusterHandler(core Core) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, ok := core.Backend.(ClusterReporter)
		if !ok {
			writeJSON(w, http.StatusOK, map[string]any{"enabled": false, "message": "a single node: started without --node and cluster flags"})
			return
		}
		st, err := c.ClusterStatus(r.Context())
		if err != nil {
			writeHTTPError(w, toStatus(err))
			return
		}
		writeJSON(w, http.StatusOK, st)
	}
}

// GRPCAddr and HTTPAddr are the bound addresses.
func (s *Server) GRPCAddr() string { return s.gl.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (s *Server) HTTPAddr() string { return s.hl.Addr().String() }

// Serve serves until ctx is done, then stops accepting, lets in-flight requests
// finish (up to ShutdownTimeout) and returns.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.gl) }()
	go func() {
		if err := s.http.Serve(s.hl); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	s.ready.Store(true)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	s.cancelBase()
	shutCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	_ = s.http.Shutdown(shutCtx)
	select {
	case <-done:
	case <-shutCtx.Done():
		s.grpc.Stop()
	}
	return err
}

// limitBody bounds every request body to n bytes, and its reading to timeout.
func limitBody(h http.Handler, n int64, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeHTTPError(w, &tooLarge{limit: n, msg: fmt.Sprintf("request body of %d bytes is over the limit of %d", r.ContentLength, n)})
			return
		}
		bodyDeadline(w, r, timeout)
		r.Body = http.MaxBytesReader(w, r.Body, n)
		h.ServeHTTP(w, r)
	})
}
