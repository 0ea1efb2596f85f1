package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/web"
)

// scopeTokens are the tokens of routeServer's auth file, one per scope.
var scopeTokens = map[string]string{ScopeIngest: "ingest-token", ScopeQuery: "query-token", ScopeAdmin: "admin-token"}

func scopeAuth(t testing.TB) *Auth {
	t.Helper()
	yaml := "tokens:\n"
	for scope, tok := range scopeTokens {
		yaml += "  - name: " + scope + "\n    scopes: [" + scope + "]\n    sha256: " + TokenSHA256(tok) + "\n"
	}
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := LoadAuthFile(authFile)
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

// routeServer is a served Server over a real store, with auth (one token
// per scope), /metrics and, when ui, the web UI.
func routeServer(t testing.TB, ui bool) *Server {
	t.Helper()
	st := openAlertStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	o := DefaultOptions()
	o.HTTPAddr, o.GRPCAddr, o.Auth = "127.0.0.1:0", "127.0.0.1:0", scopeAuth(t)
	o.Gatherer = prometheus.NewRegistry()
	if ui {
		o.UI = web.Handler()
	}
	hub := NewHub(DefaultHubOptions())
	core := Core{Ingest: ingest.New(TailSink{Next: st, Hub: hub}, ingest.DefaultOptions(), nil, nil), Backend: query.NewLocal(st, query.DefaultOptions()),
		Hub: hub, Limits: NewLimiter(context.Background(), DefaultLimits(), nil)}
	srv, err := New(core, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv
}

// call sends method path with token (none: "") and returns the status and
// the body's first KiB; it does not wait for a streamed answer's end.
func call(t testing.TB, base, method, path, token string, hdr ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b := make([]byte, 1024)
	n, _ := io.ReadAtLeast(resp.Body, b, 1)
	return resp.StatusCode, string(b[:n])
}

// TestEveryRouteAndRPCHasAScope walks every registered HTTP route, every
// method of every registered gRPC service and every grpc-gateway path, and
// fails when one has no scope, or not the one it should have.
func TestEveryRouteAndRPCHasAScope(t *testing.T) {
	srv := routeServer(t, true)
	routes := srv.routes.routes()
	if len(routes) < 50 {
		t.Fatalf("only %d routes: %v", len(routes), routes)
	}
	for p, scope := range routes {
		if !validScope(scope) {
			t.Errorf("route %s: scope %q", p, scope)
		}
	}
	// gRPC: what today's services need, by service.
	want := map[string]string{
		"shiplog.v1.IngestService": ScopeIngest, "shiplog.v1.MetricsService": ScopeIngest,
		"opentelemetry.proto.collector.logs.v1.LogsService":       ScopeIngest,
		"opentelemetry.proto.collector.metrics.v1.MetricsService": ScopeIngest,
		"shiplog.v1.QueryService":                                 ScopeQuery, "shiplog.v1.AdminService": ScopeAdmin,
		"grpc.reflection.v1.ServerReflection": scopeAny, "grpc.reflection.v1alpha.ServerReflection": scopeAny,
	}
	methods := 0
	for svc, info := range srv.grpc.GetServiceInfo() {
		if _, ok := want[svc]; !ok {
			t.Errorf("service %s: no expected scope in this test", svc)
		}
		for _, m := range info.Methods {
			methods++
			full := "/" + svc + "/" + m.Name
			if scope, ok := srv.rpcs[full]; !ok || scope != want[svc] {
				t.Errorf("%s: scope %q (registered %v), want %q", full, scope, ok, want[svc])
			}
		}
	}
	if methods != len(srv.rpcs) || len(want) != len(srv.grpc.GetServiceInfo()) {
		t.Errorf("%d methods served, %d with scopes; %d services, want %d", methods, len(srv.rpcs), len(srv.grpc.GetServiceInfo()), len(want))
	}
	// The gateway: every path of every RPC, with the RPC's scope.
	for p, scope := range map[string]string{
		"/v1/logs:search": ScopeQuery, "/v1/logs/{id=*}:context": ScopeQuery, "/v1/builds/{build_id=*}": ScopeQuery,
		"/v1/build": ScopeQuery, "/v1/deploy": ScopeQuery, "/v1/hosts": ScopeQuery, "/v1/logs:tail": ScopeQuery,
		"/v1/logs:write": ScopeIngest, "/v1/metrics:push": ScopeIngest,
	} {
		if srv.gwPaths[p] != scope {
			t.Errorf("gateway path %s: scope %q, want %q", p, srv.gwPaths[p], scope)
		}
	}
	// Each gateway path is found by the gateway's middleware: a token of
	// another scope is refused for lacking the path's scope (a path the
	// middleware did not know would be refused as having none).
	base := "http://" + srv.HTTPAddr()
	vars := regexp.MustCompile(`\{[^}]*\}`)
	for p, scope := range srv.gwPaths {
		if !validScope(scope) || scope == scopeRPC || scope == scopeOpen {
			t.Errorf("gateway path %s: scope %q", p, scope)
			continue
		}
		method, other := http.MethodGet, ScopeIngest
		if scope == ScopeIngest {
			method, other = http.MethodPost, ScopeQuery
		}
		path := vars.ReplaceAllString(p, "x")
		if path == "/v1/logs:write" || path == "/v1/logs:tail" {
			continue // served by the mux's own handlers (TestRouteScopes)
		}
		code, body := call(t, base, method, path, scopeTokens[other])
		if code != http.StatusForbidden || !strings.Contains(body, `lacks the \"`+scope+`\" scope`) {
			t.Errorf("%s %s with a %s token: %d %s", method, path, other, code, body)
		}
	}
}

// TestRouteScopes: each route needs what it needed when scopes were path
// prefixes: no token is 401, a token of another scope 403, its own scope
// (or admin) gets to the handler; open routes need none.
func TestRouteScopes(t *testing.T) {
	base := "http://" + routeServer(t, true).HTTPAddr()
	cases := []struct {
		method, path, scope string
		stream              bool // answered with a stream: only refusals are checked
		hdr                 []string
	}{
		{"GET", "/healthz", scopeOpen, false, nil},
		{"GET", "/readyz", scopeOpen, false, nil},
		{"GET", "/ready", scopeOpen, false, nil},
		{"GET", "/-/healthy", scopeOpen, false, nil},
		{"HEAD", "/-/ready", scopeOpen, false, nil},
		{"GET", "/", scopeOpen, false, []string{"Accept", "text/html"}},
		{"GET", "/", scopeOpen, false, []string{"Accept", "application/json"}}, // Elasticsearch's root
		{"GET", "/search", scopeOpen, false, nil},
		{"GET", "/_license", scopeOpen, false, nil},
		{"GET", "/_cluster/health", scopeOpen, false, nil},
		{"PUT", "/_index_template/logs", scopeOpen, false, nil},
		{"GET", "/metrics", ScopeQuery, false, nil},
		{"GET", "/v1/cluster", ScopeQuery, false, nil},
		{"GET", "/v1/logs:search?q=x", ScopeQuery, false, nil},
		{"GET", "/v1/logs:stats", ScopeQuery, false, nil},
		{"GET", "/v1/hosts", ScopeQuery, false, nil},
		{"GET", "/v1/builds/b-1", ScopeQuery, false, nil},
		{"GET", "/v1/logs:export?q=x", ScopeQuery, false, nil},
		{"GET", "/v1/logs:tail?q=x", ScopeQuery, true, nil},
		{"GET", "/v1/alerts", ScopeQuery, false, nil},
		{"GET", "/v1/alerts/history", ScopeQuery, false, nil},
		{"GET", "/api/v1/rules", ScopeQuery, false, nil},
		{"GET", "/api/v1/query?query=1", ScopeQuery, false, nil},
		{"POST", "/api/v1/read", ScopeQuery, false, nil},
		{"GET", "/api/v1/no_such_endpoint", ScopeQuery, false, nil},
		{"GET", "/federate", ScopeQuery, false, nil},
		{"GET", "/loki/api/v1/labels", ScopeQuery, false, nil},
		{"GET", "/loki/api/v1/status/buildinfo", ScopeQuery, false, nil},
		{"GET", "/loki/api/v1/tail?query={service=\"a\"}", ScopeQuery, true, nil},
		{"POST", "/v1/logs:write", ScopeIngest, false, nil},
		{"POST", "/v1/logs:jsonl", ScopeIngest, false, nil},
		{"POST", "/v1/logs", ScopeIngest, false, nil},
		{"POST", "/v1/metrics", ScopeIngest, false, nil},
		{"POST", "/v1/metrics:push", ScopeIngest, false, nil},
		{"POST", "/api/v1/write", ScopeIngest, false, nil},
		{"POST", "/loki/api/v1/push", ScopeIngest, false, nil},
		{"POST", "/_bulk", ScopeIngest, false, nil},
		{"PUT", "/_bulk", ScopeIngest, false, nil},
		{"POST", "/logs-app/_bulk", ScopeIngest, false, nil},
		{"POST", "/-/reload", ScopeAdmin, false, nil},
		{"PUT", "/-/reload", ScopeAdmin, false, nil},
		{"GET", "/debug/pprof/", ScopeAdmin, false, nil},
		{"GET", "/debug/pprof/symbol", ScopeAdmin, false, nil},
	}
	for _, c := range cases {
		name := c.method + " " + c.path
		if c.scope == scopeOpen {
			if code, body := call(t, base, c.method, c.path, "", c.hdr...); code == 401 || code == 403 {
				t.Errorf("%s with no token: %d %s", name, code, body)
			}
			continue
		}
		if code, body := call(t, base, c.method, c.path, "", c.hdr...); code != 401 {
			t.Errorf("%s with no token: %d %s, want 401", name, code, body)
		}
		if code, _ := call(t, base, c.method, c.path, "wrong", c.hdr...); code != 401 {
			t.Errorf("%s with a wrong token: %d, want 401", name, code)
		}
		for scope, tok := range scopeTokens {
			ok := scope == c.scope || scope == ScopeAdmin
			if ok && c.stream {
				continue
			}
			code, body := call(t, base, c.method, c.path, tok, c.hdr...)
			if refused := code == 401 || code == 403; refused == ok {
				t.Errorf("%s with a %s token: %d %s", name, scope, code, body)
			}
			if !ok {
				var e errorBody
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Status != "PermissionDenied" || !strings.Contains(e.Message, c.scope) {
					t.Errorf("%s with a %s token: %s", name, scope, body)
				}
			}
		}
	}
}

// A path no route matches is answered 404 as the mux answers it, with no
// token asked for and no handler of ours run.
func TestUnknownPathIsNotFound(t *testing.T) {
	base := "http://" + routeServer(t, false).HTTPAddr()
	for _, p := range []string{"/nope", "/v1/nope", "/v1/admin/backup", "/otlp/v1/logs"} {
		if code, body := call(t, base, "GET", p, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s, want 404", p, code, body)
		}
	}
}

// A route or an RPC that was not registered with a scope is refused even
// though its handler exists: deny by default.
func TestUnscopedIsRefused(t *testing.T) {
	auth := scopeAuth(t)
	rt := newRouter()
	rt.handleFunc("GET /scoped", scopeOpen, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	rt.mux.HandleFunc("GET /unscoped", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "leaked") })
	hs := httptest.NewServer(auth.middleware(rt, rt))
	defer hs.Close()
	if code, body := call(t, hs.URL, "GET", "/scoped", ""); code != 200 || body != "ok" {
		t.Errorf("scoped: %d %s", code, body)
	}
	for _, tok := range []string{"", scopeTokens[ScopeAdmin]} {
		if code, body := call(t, hs.URL, "GET", "/unscoped", tok); code != http.StatusNotFound || strings.Contains(body, "leaked") {
			t.Errorf("unscoped with token %q: %d %s", tok, code, body)
		}
	}
	for _, bad := range []string{"", "none", "query "} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("scope %q accepted", bad)
				}
			}()
			rt.handleFunc("GET /bad"+bad, bad, http.NotFound)
		}()
	}

	// gRPC: the health service registered straight on the server, not
	// through a scopedRegistrar, is refused to an admin token.
	scopes := rpcScopes{}
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.unary(scopes)), grpc.ChainStreamInterceptor(auth.stream(scopes)))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(testToken(scopeTokens[ScopeAdmin])))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "without a scope") {
		t.Fatalf("unscoped RPC: %v, want PermissionDenied", err)
	}
	// Registered through the registrar, open, it answers.
	gs2 := grpc.NewServer(grpc.ChainUnaryInterceptor(auth.unary(scopes)))
	healthpb.RegisterHealthServer(scopes.with(gs2, scopeOpen), health.NewServer())
	lis2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs2.Serve(lis2) }()
	defer gs2.Stop()
	cc2, err := grpc.NewClient(lis2.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	if _, err := healthpb.NewHealthClient(cc2).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("open RPC: %v", err)
	}
}
