package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/shiplog/shiplog/ingest"
)

// Scopes a token may hold.
const (
	ScopeIngest = "ingest"
	ScopeQuery  = "query"
	ScopeAdmin  = "admin"
)

// AuthToken is one entry of the auth file. Only the SHA-256 of the token is kept.
type AuthToken struct {
	Name   string   `yaml:"name"`
	Scopes []string `yaml:"scopes"`
	SHA256 string   `yaml:"sha256"`
}

// Auth checks bearer tokens against the auth file.
type Auth struct {
	tokens []authEntry
}

type authEntry struct {
	name   string
	scopes []string
	sum    [32]byte
}

// LoadAuthFile reads the auth file: `tokens: [{name, scopes, sha256}]`.
func LoadAuthFile(path string) (*Auth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	var f struct {
		Tokens []AuthToken `yaml:"tokens"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	if len(f.Tokens) == 0 {
		return nil, fmt.Errorf("auth file %s: no tokens", path)
	}
	a := &Auth{}
	names := map[string]bool{}
	for i, t := range f.Tokens {
		if t.Name == "" {
			return nil, fmt.Errorf("auth file %s: token %d has no name", path, i+1)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("auth file %s: token name %q twice", path, t.Name)
		}
		names[t.Name] = true
		sum, err := hex.DecodeString(t.SHA256)
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("auth file %s: token %q: sha256 must be 64 hex digits", path, t.Name)
		}
		if len(t.Scopes) == 0 {
			return nil, fmt.Errorf("auth file %s: token %q has no scopes", path, t.Name)
		}
		for _, s := range t.Scopes {
			if s != ScopeIngest && s != ScopeQuery && s != ScopeAdmin {
				return nil, fmt.Errorf("auth file %s: token %q: unknown scope %q (want ingest, query or admin)", path, t.Name, s)
			}
		}
		e := authEntry{name: t.Name, scopes: t.Scopes}
		copy(e.sum[:], sum)
		a.tokens = append(a.tokens, e)
	}
	return a, nil
}

// TokenSHA256 is what the auth file keeps of a token.
func TokenSHA256(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

var (
	errNoToken   = errors.New("a bearer token is required (Authorization: Bearer <token>)")
	errBadToken  = errors.New("the bearer token is not valid")
	errNoScopeFn = func(scope string) error { return fmt.Errorf("the token lacks the %q scope", scope) }
)

// scopeAny is what a method needs that any valid token may call (gRPC
// reflection: it reveals the API's shape, not its data).
const scopeAny = "*"

// check returns the token's name when it holds scope (admin holds every
// scope; any valid token holds scopeAny).
func (a *Auth) check(token, scope string) (string, error) {
	if token == "" {
		return "", errNoToken
	}
	sum := sha256.Sum256([]byte(token))
	for _, e := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			if scope == scopeAny || slices.Contains(e.scopes, scope) || slices.Contains(e.scopes, ScopeAdmin) {
				return e.name, nil
			}
			return "", errNoScopeFn(scope)
		}
	}
	return "", errBadToken
}

// checkHTTP checks an Authorization header: a bearer token; or, as
// Elasticsearch clients send one, "ApiKey" with the token, or with
// base64("id:token"); or Basic with the token as the password.
func (a *Auth) checkHTTP(h, scope string) (string, error) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(h), " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "ApiKey") && cred != "":
		name, err := a.check(cred, scope)
		if errors.Is(err, errBadToken) {
			if dec, derr := base64.StdEncoding.DecodeString(cred); derr == nil {
				if _, key, ok := strings.Cut(string(dec), ":"); ok && key != "" {
					return a.check(key, scope)
				}
			}
		}
		return name, err
	case strings.EqualFold(scheme, "Basic") && cred != "":
		dec, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", errBadToken
		}
		_, pass, _ := strings.Cut(string(dec), ":")
		if pass == "" {
			return "", errBadToken
		}
		return a.check(pass, scope)
	}
	return a.check(bearer(h), scope)
}

func bearer(h string) string {
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// grpcScope is the scope a gRPC method needs; "" means open.
func grpcScope(method string) string {
	switch {
	case strings.HasPrefix(method, "/shiplog.v1.IngestService/"),
		strings.HasPrefix(method, "/shiplog.v1.MetricsService/"),
		strings.HasPrefix(method, "/opentelemetry.proto.collector."):
		return ScopeIngest
	case strings.HasPrefix(method, "/shiplog.v1.AdminService/"):
		return ScopeAdmin
	case strings.HasPrefix(method, "/grpc.reflection."):
		return scopeAny
	case strings.HasPrefix(method, "/grpc.health."):
		return ""
	}
	return ScopeQuery
}

// grpcCheck checks the call's token; the context it returns carries the
// token's name for ingest (an agent id stays with the token that first used it).
func (a *Auth) grpcCheck(ctx context.Context, method string) (context.Context, error) {
	scope := grpcScope(method)
	if scope == "" {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	if v := md.Get("authorization"); len(v) > 0 {
		tok = bearer(v[0])
	}
	name, err := a.check(tok, scope)
	if err != nil {
		if errors.Is(err, errNoToken) || errors.Is(err, errBadToken) {
			return ctx, status.Error(codes.Unauthenticated, err.Error())
		}
		return ctx, status.Error(codes.PermissionDenied, err.Error())
	}
	return ingest.WithSender(ctx, name), nil
}

// namedStream is a server stream whose context carries the token's name.
type namedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s namedStream) Context() context.Context { return s.ctx }

func (a *Auth) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := a.grpcCheck(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (a *Auth) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := a.grpcCheck(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, namedStream{ss, ctx})
	}
}

// httpScope is the scope an HTTP request needs; "" means open (health checks
// and the web UI's static files; the UI sends the token on its API calls).
func httpScope(r *http.Request) string {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz" || p == "/ready":
		return ""
	case p == "/-/reload" || strings.HasPrefix(p, "/debug/") || strings.HasPrefix(p, "/v1/admin/"):
		return ScopeAdmin
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && (p == "/_bulk" || esIndexBulk(p)):
		return ScopeIngest
	case r.Method == http.MethodPost && (p == "/v1/logs:write" || p == "/v1/logs:jsonl" || p == "/v1/logs" ||
		p == "/v1/metrics" || p == "/v1/metrics:push" || p == "/api/v1/write" || p == "/loki/api/v1/push" || strings.HasPrefix(p, "/otlp/")):
		return ScopeIngest
	case strings.HasPrefix(p, "/v1/") || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/loki/") || p == "/metrics" || p == "/federate":
		return ScopeQuery
	}
	return ""
}

func (a *Auth) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope := httpScope(r)
		if scope == "" {
			next.ServeHTTP(w, r)
			return
		}
		name, err := a.checkHTTP(r.Header.Get("Authorization"), scope)
		if err != nil {
			code, c := http.StatusForbidden, codes.PermissionDenied
			if errors.Is(err, errNoToken) || errors.Is(err, errBadToken) {
				code, c = http.StatusUnauthorized, codes.Unauthenticated
				w.Header().Set("WWW-Authenticate", `Bearer realm="shiplog"`)
			}
			writeJSON(w, code, errorBody{Code: int(c), Status: c.String(), Message: err.Error()})
			return
		}
		next.ServeHTTP(w, r.WithContext(ingest.WithSender(r.Context(), name)))
	})
}
