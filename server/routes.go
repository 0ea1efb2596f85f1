package server

// Every HTTP route and every gRPC method is registered with the scope a
// token needs to call it: routes through router.handle, gRPC services
// through scopedRegistrar, and the grpc-gateway's paths take the scope of
// the RPC they call (gatewayScopes, read off the google.api.http
// annotations). A route or method registered without a scope cannot be
// reached with auth on: deny by default.

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The scopes a route may be registered with besides a token's own
// (ScopeIngest, ScopeQuery, ScopeAdmin).
const (
	// scopeOpen needs no token (health checks, the web UI's static files,
	// the probes Elasticsearch shippers send before they authenticate).
	scopeOpen = "open"
	// scopeAny needs a valid token of any scope (gRPC reflection: it
	// reveals the API's shape, not its data).
	scopeAny = "*"
	// scopeRPC marks the grpc-gateway's route: each of its paths needs
	// the scope of the RPC it calls, checked in the gateway's middleware.
	scopeRPC = "rpc"
)

func validScope(s string) bool {
	switch s {
	case ScopeIngest, ScopeQuery, ScopeAdmin, scopeOpen, scopeAny, scopeRPC:
		return true
	}
	return false
}

// router is the HTTP API's mux with the scope of each of its routes.
type router struct {
	mux    *http.ServeMux
	scopes map[string]string // by pattern
	// front are the routes the mux's patterns cannot express, tried first.
	front []frontRoute
}

// frontRoute is a route matched by a function (POST /{index}/_bulk would
// overlap /v1/ as a mux pattern).
type frontRoute struct {
	name  string
	scope string
	match func(*http.Request) bool
	h     http.Handler
}

func newRouter() *router {
	return &router{mux: http.NewServeMux(), scopes: map[string]string{}}
}

// handle registers h at pattern (a net/http ServeMux pattern), callable with scope.
func (rt *router) handle(pattern, scope string, h http.Handler) {
	if !validScope(scope) {
		panic(fmt.Sprintf("route %q: scope %q is not one of ingest, query, admin, open, *, rpc", pattern, scope))
	}
	rt.mux.Handle(pattern, h) // panics on a pattern registered twice
	rt.scopes[pattern] = scope
}

func (rt *router) handleFunc(pattern, scope string, h func(http.ResponseWriter, *http.Request)) {
	rt.handle(pattern, scope, http.HandlerFunc(h))
}

// handleFront registers h for the requests match accepts, before the mux.
func (rt *router) handleFront(name, scope string, match func(*http.Request) bool, h http.Handler) {
	if !validScope(scope) {
		panic(fmt.Sprintf("route %q: scope %q is not one of ingest, query, admin, open, *, rpc", name, scope))
	}
	rt.front = append(rt.front, frontRoute{name: name, scope: scope, match: match, h: h})
}

// lookup returns the scope of r's route. ok is false when no route of ours
// matches (the mux then answers 404 or 405 itself, found false) or when the
// mux matched a pattern registered without a scope (found true: refused).
func (rt *router) lookup(r *http.Request) (scope string, found, ok bool) {
	for _, f := range rt.front {
		if f.match(r) {
			return f.scope, true, true
		}
	}
	_, pattern := rt.mux.Handler(r)
	if pattern == "" {
		return "", false, false
	}
	scope, ok = rt.scopes[pattern]
	return scope, true, ok
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for _, f := range rt.front {
		if f.match(r) {
			f.h.ServeHTTP(w, r)
			return
		}
	}
	rt.mux.ServeHTTP(w, r)
}

// routes lists every route with its scope (front routes by name).
func (rt *router) routes() map[string]string {
	out := make(map[string]string, len(rt.scopes)+len(rt.front))
	for p, s := range rt.scopes {
		out[p] = s
	}
	for _, f := range rt.front {
		out[f.name] = f.scope
	}
	return out
}

// rpcScopes is the scope of every registered gRPC method, by full name
// (/package.Service/Method).
type rpcScopes map[string]string

// scopedRegistrar registers gRPC services whose every method needs scope.
type scopedRegistrar struct {
	*grpc.Server
	scope  string
	scopes rpcScopes
}

func (r scopedRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if !validScope(r.scope) || r.scope == scopeRPC {
		panic(fmt.Sprintf("service %s: scope %q is not one of ingest, query, admin, open, *", desc.ServiceName, r.scope))
	}
	for _, m := range desc.Methods {
		r.scopes["/"+desc.ServiceName+"/"+m.MethodName] = r.scope
	}
	for _, s := range desc.Streams {
		r.scopes["/"+desc.ServiceName+"/"+s.StreamName] = r.scope
	}
	r.Server.RegisterService(desc, impl)
}

// with is a registrar of services callable with scope.
func (s rpcScopes) with(gs *grpc.Server, scope string) scopedRegistrar {
	return scopedRegistrar{Server: gs, scope: scope, scopes: s}
}

// gatewayVar is a path variable without a template, as an HTTP rule
// writes it ({id}); the gateway's Pattern.String writes it {id=*}.
var gatewayVar = regexp.MustCompile(`\{([^}=]+)\}`)

// gatewayScopes maps each grpc-gateway path template (as the gateway's
// runtime.Pattern prints it) to the scope of the RPC it calls, from the
// google.api.http annotations of the registered services. Two RPCs of
// different scopes on one path are an error.
func gatewayScopes(rpcs rpcScopes) (map[string]string, error) {
	out := map[string]string{}
	for full, scope := range rpcs {
		svc, method, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			continue // not a service of ours with descriptors in the registry
		}
		sd, ok := d.(protoreflect.ServiceDescriptor)
		if !ok {
			continue
		}
		md := sd.Methods().ByName(protoreflect.Name(method))
		if md == nil {
			continue
		}
		rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		for _, b := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			path := gatewayVar.ReplaceAllString(httpRulePath(b), "{$1=*}")
			if prev, dup := out[path]; dup && prev != scope {
				return nil, fmt.Errorf("gateway path %s: two RPCs of scopes %s and %s", path, prev, scope)
			}
			out[path] = scope
		}
	}
	return out, nil
}

func httpRulePath(b *annotations.HttpRule) string {
	switch p := b.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return p.Get
	case *annotations.HttpRule_Post:
		return p.Post
	case *annotations.HttpRule_Put:
		return p.Put
	case *annotations.HttpRule_Delete:
		return p.Delete
	case *annotations.HttpRule_Patch:
		return p.Patch
	case *annotations.HttpRule_Custom:
		return p.Custom.GetPath()
	}
	return ""
}
