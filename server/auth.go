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

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
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

// grpcCheck checks the call's token against the scope method was
// registered with (none: refused); the context it returns carries the
// token's name for ingest (an agent id stays with the token that first used it).
func (a *Auth) grpcCheck(ctx context.Context, scopes rpcScopes, method string) (context.Context, error) {
	scope, ok := scopes[method]
	if !ok {
		return ctx, status.Errorf(codes.PermissionDenied, "%s was registered without a scope", method)
	}
	if scope == scopeOpen {
		return ctx, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	var tok string
	if v := md.Get("authorization"); len(v) > 0 {
		tok = bearer(v[0])
	}
	name, err := a.check(tok, scope)
	if err != nil {
		return ctx, authStatus(err)
	}
	return ingest.WithSender(ctx, name), nil
}

// authStatus is the status of a refused token: Unauthenticated when there
// is none or it is not valid, PermissionDenied when it lacks the scope.
func authStatus(err error) error {
	if errors.Is(err, errNoToken) || errors.Is(err, errBadToken) {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	return status.Error(codes.PermissionDenied, err.Error())
}

// namedStream is a server stream whose context carries the token's name.
type namedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s namedStream) Context() context.Context { return s.ctx }

func (a *Auth) unary(scopes rpcScopes) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := a.grpcCheck(ctx, scopes, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func (a *Auth) stream(scopes rpcScopes) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := a.grpcCheck(ss.Context(), scopes, info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, namedStream{ss, ctx})
	}
}

// authorize checks r's token against scope; when it is refused, it answers
// 401 or 403 and returns false. The request it returns carries the token's
// name for ingest.
func (a *Auth) authorize(w http.ResponseWriter, r *http.Request, scope string) (*http.Request, bool) {
	if scope == scopeOpen {
		return r, true
	}
	name, err := a.checkHTTP(r.Header.Get("Authorization"), scope)
	if err != nil {
		err = authStatus(err)
		if status.Code(err) == codes.Unauthenticated {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shiplog"`)
		}
		writeHTTPError(w, err)
		return r, false
	}
	return r.WithContext(ingest.WithSender(r.Context(), name)), true
}

// middleware checks each request against the scope its route was
// registered with. A path no route matches is left to the mux's 404 or 405
// (no handler of ours runs); a route without a scope is refused. The
// gateway's route (scopeRPC) is checked by gatewayMiddleware.
func (a *Auth) middleware(rt *router, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, found, ok := rt.lookup(r)
		switch {
		case !found:
			next.ServeHTTP(w, r)
			return
		case !ok:
			writeHTTPError(w, status.Errorf(codes.NotFound, "%s %s: no route", r.Method, r.URL.Path))
			return
		case scope == scopeRPC:
			next.ServeHTTP(w, r)
			return
		}
		r, ok = a.authorize(w, r, scope)
		if ok {
			next.ServeHTTP(w, r)
		}
	})
}

// gatewayMiddleware checks each grpc-gateway request against the scope of
// the RPC its path calls (paths: gatewayScopes); a path not there is refused.
func (a *Auth) gatewayMiddleware(paths map[string]string) runtime.Middleware {
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
			pat, _ := runtime.HTTPPattern(r.Context())
			scope, ok := paths[pat.String()]
			if !ok {
				writeHTTPError(w, status.Errorf(codes.PermissionDenied, "%s %s: the API path has no scope", r.Method, r.URL.Path))
				return
			}
			if r, ok = a.authorize(w, r, scope); ok {
				next(w, r, params)
			}
		}
	}
}
