package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// instruments are the server's own metrics: how long batches take to store,
// and how long HTTP requests and unary gRPC calls (queries among them) take.
type instruments struct {
	batches *prometheus.HistogramVec
	http    *prometheus.HistogramVec
	grpc    *prometheus.HistogramVec
}

var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newInstruments(reg prometheus.Registerer) *instruments {
	ins := &instruments{
		batches: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_ingest_batch_seconds",
			Help: "Time to validate and store one batch, by signal (logs, metrics).", Buckets: latencyBuckets}, []string{"signal"}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_http_request_duration_seconds",
			Help: "HTTP requests by route and status code (streams until they end).", Buckets: latencyBuckets}, []string{"route", "code"}),
		grpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_grpc_request_duration_seconds",
			Help: "Unary gRPC calls by method and status code.", Buckets: latencyBuckets}, []string{"method", "code"}),
	}
	if reg != nil {
		reg.MustRegister(ins.batches, ins.http, ins.grpc)
	}
	return ins
}

// batch starts timing one batch; call the result when it is stored.
func (ins *instruments) batch(signal string) func() {
	start := time.Now()
	return func() { ins.batches.WithLabelValues(signal).Observe(time.Since(start).Seconds()) }
}

func (ins *instruments) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		ins.grpc.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
		return resp, err
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets streaming handlers (live tail) flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (ins *instruments) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		rt := "unmatched" // unknown paths must not grow the label set
		if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			rt = route(r)
		}
		ins.http.WithLabelValues(rt, strconv.Itoa(code)).Observe(time.Since(start).Seconds())
	})
}

// route names the API route of a request with few enough values to be a
// label: ids in paths are replaced, the web UI is one route.
func route(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/v1/label/"):
		return "/api/v1/label/{name}/values"
	case strings.HasPrefix(p, "/loki/api/v1/label/"):
		return "/loki/api/v1/label/{name}/values"
	case strings.HasPrefix(p, "/api/"), strings.HasPrefix(p, "/loki/"), strings.HasPrefix(p, "/otlp/"):
		if len(p) > 64 {
			return "other"
		}
		return p
	case strings.HasPrefix(p, "/v1/builds/"):
		return "/v1/builds/{build_id}"
	case strings.HasPrefix(p, "/v1/deploys/"):
		return "/v1/deploys/{deploy_id}"
	case strings.HasPrefix(p, "/v1/logs/"):
		return "/v1/logs/{id}:context"
	case strings.HasPrefix(p, "/v1/admin/"):
		return "/v1/admin"
	case strings.HasPrefix(p, "/v1/"):
		if len(p) > 64 || strings.Count(p, "/") > 2 {
			return "other"
		}
		return p
	case p == "/metrics", p == "/healthz", p == "/readyz", p == "/-/reload", p == "/-/healthy", p == "/-/ready", p == "/federate":
		return p
	case p == "/_bulk", esIndexBulk(p):
		return "/_bulk"
	case strings.HasPrefix(p, "/_"):
		return "/_elasticsearch"
	case strings.HasPrefix(p, "/debug/"):
		return "/debug"
	}
	return "ui"
}
