package server

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

type testToken string

func (t testToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (testToken) RequireTransportSecurity() bool { return false }

// With auth on, gRPC reflection needs a valid token (of any scope).
func TestReflectionNeedsToken(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	yaml := "tokens:\n  - name: agent\n    scopes: [ingest]\n    sha256: " + TokenSHA256("ingest-token") + "\n"
	if err := os.WriteFile(authFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := LoadAuthFile(authFile)
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.HTTPAddr, o.GRPCAddr, o.Auth = "127.0.0.1:0", "127.0.0.1:0", auth
	srv, err := New(Core{}, o, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	list := func(tok string) ([]string, error) {
		cc, err := grpc.NewClient(srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(testToken(tok)))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := rpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
		if err != nil {
			return nil, err
		}
		// A refused stream may end the Send with io.EOF; Recv has the status.
		_ = st.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}})
		resp, err := st.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, nil
	}
	for _, tok := range []string{"", "wrong"} {
		if _, err := list(tok); status.Code(err) != codes.Unauthenticated {
			t.Fatalf("reflection with token %q: %v, want Unauthenticated", tok, err)
		}
	}
	names, err := list("ingest-token")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range names {
		found = found || n == "shiplog.v1.QueryService"
	}
	if !found {
		t.Fatalf("services listed: %v", names)
	}
}

// An HTTP token may come as a bearer token, as an Elasticsearch API key
// (raw, or base64 of id:token), or as Basic auth's password.
func TestCheckHTTPForms(t *testing.T) {
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	yaml := "tokens:\n  - name: beats\n    scopes: [ingest]\n    sha256: " + TokenSHA256("tok-1") + "\n"
	if err := os.WriteFile(authFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := LoadAuthFile(authFile)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		h  string
		ok bool
	}{
		{"Bearer tok-1", true},
		{"ApiKey tok-1", true},
		{"apikey " + b64("filebeat:tok-1"), true},
		{"Basic " + b64("elastic:tok-1"), true},
		{"Basic " + b64("tok-1:"), false},
		{"Basic " + b64("elastic:wrong"), false},
		{"Basic not-base64!", false},
		{"ApiKey " + b64("id:wrong"), false},
		{"ApiKey", false},
		{"", false},
	} {
		name, err := auth.checkHTTP(c.h, ScopeIngest)
		if (err == nil) != c.ok || (c.ok && name != "beats") {
			t.Errorf("%q: %q %v, want ok=%v", c.h, name, err, c.ok)
		}
	}
}
