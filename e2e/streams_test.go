package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// getAuthJSON GETs path with a bearer token and decodes a 200 answer into v.
func (s *server) getAuthJSON(t testing.TB, tok, path string, params url.Values, v any) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.httpAddr+path+"?"+params.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			t.Fatalf("decode %s: %v\n%s", path, err, body)
		}
	}
	return resp.StatusCode, string(body)
}

// writeAs sends one batch with Write under tok.
func writeAs(cc *grpc.ClientConn, tok, agent string, recs ...*shiplogv1.Record) (*shiplogv1.PushResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if tok != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	return shiplogv1.NewIngestServiceClient(cc).Write(ctx, &shiplogv1.PushRequest{AgentId: agent,
		Defaults: &shiplogv1.Record{Service: "api", Host: "intruder"}, Records: recs})
}

// Issue 13, item 8: a token cannot poison another agent's seq. The attacker,
// with its own ingest token, sends seq 2^64-1 under the victim agent's id;
// before the fix every later line of the victim came back as a duplicate
// and was never stored. Now the attacker gets PermissionDenied (the id is
// bound to the victim's token, also after a restart), a jump past the
// window gets InvalidArgument, and all of the victim's lines are stored.
func TestSeqPoisoningRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	fleetTok, e1 := newToken(t, "fleet", "ingest")
	evilTok, e2 := newToken(t, "evil", "ingest")
	readTok, e3 := newToken(t, "reader", "query")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+e1+e2+e3), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, t.TempDir(), "--auth-file", authFile)
	spool := filepath.Join(t.TempDir(), "spool")
	ship := func(from, n int) {
		t.Helper()
		var in strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&in, "victim line %d\n", i)
		}
		cmd := exec.Command(binary, "agent", "--server", s.grpcAddr, "--token", fleetTok, "--spool", spool,
			"--service", "api", "--host", "victim", "--linger", "20ms", "--backoff-max", "200ms", "--shutdown-timeout", "30s")
		cmd.Stdin = strings.NewReader(in.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("agent: %v\n%s", err, out)
		}
	}
	ship(0, 50)
	idb, err := os.ReadFile(filepath.Join(spool, "agent_id"))
	if err != nil {
		t.Fatal(err)
	}
	victim := strings.TrimSpace(string(idb))

	cc := s.dial(t)
	poison := &shiplogv1.Record{Message: "poison", Seq: math.MaxUint64}
	_, err = writeAs(cc, evilTok, victim, poison)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), `"fleet"`) {
		t.Fatalf("another token under the victim's id: %v; want PermissionDenied naming the owner", err)
	}
	// Under an id of its own, the jump to 2^64-1 is refused too.
	_, err = writeAs(cc, evilTok, "evil-agent", poison)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "window") {
		t.Fatalf("seq 2^64-1 for a new agent: %v; want InvalidArgument naming the window", err)
	}
	if r, err := writeAs(cc, evilTok, "evil-agent", &shiplogv1.Record{Message: "evil 1", Seq: 1}); err != nil || r.Accepted != 1 {
		t.Fatalf("a normal first batch of the other token: %v %v", r, err)
	}

	// The binding is kept across a restart.
	s.stop()
	s.restart()
	cc = s.dial(t)
	if _, err = writeAs(cc, evilTok, victim, poison); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after a restart: %v; want PermissionDenied", err)
	}
	ship(50, 50)

	var r searchResp
	code, body := s.getAuthJSON(t, readTok, "/v1/logs:search", url.Values{"q": {"host:victim"}, "limit": {"1000"}}, &r)
	if code != 200 {
		t.Fatalf("search: %d %s", code, body)
	}
	seen := map[string]bool{}
	for _, rec := range r.Records {
		seen[rec.Message] = true
	}
	for i := range 100 {
		if !seen[fmt.Sprintf("victim line %d", i)] {
			t.Fatalf("victim line %d not stored (%d of 100 stored)", i, len(seen))
		}
	}
	if len(r.Records) != 100 {
		t.Fatalf("%d victim records, want 100", len(r.Records))
	}
}
