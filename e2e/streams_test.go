package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// streamsWriteAs sends one batch with Write under tok.
func streamsWriteAs(cc *grpc.ClientConn, tok, agent string, recs ...*shiplogv1.Record) (*shiplogv1.PushResponse, error) {
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
	_, err = streamsWriteAs(cc, evilTok, victim, poison)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), `"fleet"`) {
		t.Fatalf("another token under the victim's id: %v; want PermissionDenied naming the owner", err)
	}
	// Under an id of its own, the jump to 2^64-1 is refused too.
	_, err = streamsWriteAs(cc, evilTok, "evil-agent", poison)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "window") {
		t.Fatalf("seq 2^64-1 for a new agent: %v; want InvalidArgument naming the window", err)
	}
	if r, err := streamsWriteAs(cc, evilTok, "evil-agent", &shiplogv1.Record{Message: "evil 1", Seq: 1}); err != nil || r.Accepted != 1 {
		t.Fatalf("a normal first batch of the other token: %v %v", r, err)
	}

	// The binding is kept across a restart.
	s.stop()
	s.restart()
	cc = s.dial(t)
	if _, err = streamsWriteAs(cc, evilTok, victim, poison); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after a restart: %v; want PermissionDenied", err)
	}
	ship(50, 50)

	var r searchResp
	code, body := s.getJSONAs(t, readTok, "/v1/logs:search", url.Values{"q": {"host:victim"}, "limit": {"1000"}}, &r)
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

// Issue 13, item 3 (streams): 50,000 distinct hosts against
// --max-streams-per-day 2000. Before the fix every host opened a stream and
// the server's memory grew with them; now the batches that would open
// streams over the limit are refused whole with ResourceExhausted naming
// the flag, streams already known keep working, /metrics shows the gauges,
// and the server's peak RSS stays bounded. /v1/hosts then walks page by
// page, every host exactly once; start=0 (item 13) is the epoch, not now.
func TestStreamLimitAndHostPages(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	const limit, hosts, perBatch = 2000, 50000, 1000
	s := startServer(t, t.TempDir(), "--max-streams-per-day", fmt.Sprint(limit))
	cc := s.dial(t)
	rss0 := procStatusKB(s.pid(), "VmRSS")
	t0 := time.Now().Add(-time.Minute)
	batch := func(from, n int) *shiplogv1.PushRequest {
		req := &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "fleet", Level: "info"}}
		for i := from; i < from+n; i++ {
			req.Records = append(req.Records, &shiplogv1.Record{Host: fmt.Sprintf("h%05d", i), Message: "hello from a new host",
				Time: timestamppb.New(t0.Add(time.Duration(i) * time.Microsecond))})
		}
		return req
	}
	var (
		mu                sync.Mutex
		accepted, refused int
		acceptedFrom      []int
		otherErrs         []error
	)
	work := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for from := range work {
				_, err := streamsWrite(cc, batch(from, perBatch))
				mu.Lock()
				switch {
				case err == nil:
					accepted++
					acceptedFrom = append(acceptedFrom, from)
				case status.Code(err) == codes.ResourceExhausted && strings.Contains(status.Convert(err).Message(), "--max-streams-per-day"):
					refused++
				default:
					otherErrs = append(otherErrs, err)
				}
				mu.Unlock()
			}
		}()
	}
	for from := 0; from < hosts; from += perBatch {
		work <- from
	}
	close(work)
	wg.Wait()
	hwm := procStatusKB(s.pid(), "VmHWM")
	t.Logf("%d distinct hosts, limit %d: %d batches accepted, %d refused; RSS %d MiB at start, peak %d MiB",
		hosts, limit, accepted, refused, rss0>>10, hwm>>10)
	if len(otherErrs) > 0 || accepted != limit/perBatch || refused != hosts/perBatch-accepted {
		t.Fatalf("accepted %d, refused %d, other errors %v; want %d accepted, the rest refused naming the flag",
			accepted, refused, otherErrs, limit/perBatch)
	}
	// Streams already known keep working, a new one is still refused.
	if _, err := streamsWrite(cc, batch(acceptedFrom[0], perBatch)); err != nil {
		t.Fatalf("known streams: %v", err)
	}
	if _, err := streamsWrite(cc, batch(hosts, 1)); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("one new stream over the limit: %v", err)
	}
	// JSON lines (no agent seq, so no safe retry): the line of the known
	// stream is stored, the new stream's line refused, naming the limit.
	jl := fmt.Sprintf(`{"service":"fleet","host":"h%05d","message":"known"}`+"\n"+`{"service":"fleet","host":"brand-new","message":"new"}`+"\n", acceptedFrom[0])
	resp, err := http.Post("http://"+s.httpAddr+"/v1/logs:jsonl", "application/x-ndjson", strings.NewReader(jl))
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(jb), `"accepted":1`) || !strings.Contains(string(jb), `"rejected":1`) ||
		!strings.Contains(string(jb), "--max-streams-per-day") {
		t.Fatalf("jsonl, a known and a new stream: %d %s", resp.StatusCode, jb)
	}
	if hwm > 256<<10 {
		t.Fatalf("peak RSS %d MiB: memory grows with refused streams", hwm>>10)
	}
	_, m := s.getJSON(t, "/metrics", nil, nil)
	for _, want := range []string{fmt.Sprintf("shiplog_store_new_streams_today %d", limit), fmt.Sprintf("shiplog_store_streams_limit %d", limit),
		"shiplog_store_streams_refused_batches_total ", "shiplog_store_active_streams "} {
		if !strings.Contains(m, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}

	// Every host once, a page at a time.
	seen := map[string]int{}
	p := url.Values{"limit": {"300"}, "service": {"fleet"}}
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		var r struct {
			Hosts []struct {
				Host, State string
			}
			NextCursor string `json:"next_cursor"`
			Total      int    `json:"total"`
		}
		if code, body := s.getJSON(t, "/v1/hosts", p, &r); code != 200 || r.Total != limit || len(r.Hosts) > 300 {
			t.Fatalf("hosts page %d: %d, total %d, %d hosts\n%.300s", pages, code, r.Total, len(r.Hosts), body)
		}
		for _, h := range r.Hosts {
			seen[h.Host]++
		}
		if r.NextCursor == "" {
			break
		}
		p.Set("cursor", r.NextCursor)
	}
	if len(seen) != limit {
		t.Fatalf("%d hosts walked, want %d", len(seen), limit)
	}
	for h, n := range seen {
		if n != 1 {
			t.Fatalf("host %s on %d pages", h, n)
		}
	}
	for _, bad := range []url.Values{{"limit": {"20000"}}, {"cursor": {"not-a-cursor"}}, {"state": {"zombie"}}} {
		if code, _ := s.getJSON(t, "/v1/hosts", bad, nil); code != 400 {
			t.Fatalf("/v1/hosts?%s: %d, want 400", bad.Encode(), code)
		}
	}
	var none struct{ Total int }
	if s.getJSON(t, "/v1/hosts", url.Values{"service": {"fleet"}, "state": {"closed"}}, &none); none.Total != 0 {
		t.Fatalf("closed fleet hosts: %d", none.Total)
	}

	// Item 13: start=0 is the Unix epoch (it was "now", which hid every line).
	var r searchResp
	host := fmt.Sprintf("h%05d", acceptedFrom[0])
	if code, body := s.getJSON(t, "/v1/logs:search", url.Values{"q": {"host:" + host}, "start": {"0"}}, &r); code != 200 || len(r.Records) != 3 {
		t.Fatalf("start=0: %d, %d records (want the host's 3)\n%.300s", code, len(r.Records), body)
	}
}

// streamsWrite sends one batch with Write, without a token.
func streamsWrite(cc *grpc.ClientConn, req *shiplogv1.PushRequest) (*shiplogv1.PushResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return shiplogv1.NewIngestServiceClient(cc).Write(ctx, req)
}

// The hosts view reads /v1/hosts a page at a time (1,000 hosts each, up to
// 10,000, then more on a click; not tried here: 10,000 rows take a browser
// ~10 s); the counts come from the server.
func TestUIHostPages(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end, in a browser")
	}
	const n = 1500
	s := startServer(t, t.TempDir())
	cc := s.dial(t)
	for from := 0; from < n; from += 1000 {
		req := &shiplogv1.PushRequest{Defaults: &shiplogv1.Record{Service: "fleet", Level: "info"}}
		for i := from; i < min(from+1000, n); i++ {
			req.Records = append(req.Records, &shiplogv1.Record{Host: fmt.Sprintf("h%05d", i), Message: "up"})
		}
		if _, err := streamsWrite(cc, req); err != nil {
			t.Fatal(err)
		}
	}
	u := newUI(t, 1280, 860)
	u.dir = t.ArtifactDir()
	u.base = "http://" + s.httpAddr
	u.open(t, "/hosts")
	u.wait(t, "every host, from two pages", `document.querySelectorAll('tbody tr').length === 1500 && /1,500 of 1,500 · 1,500 live/.test(document.querySelector('.count').innerText) && !document.querySelector('main button')`)
	rows := eval[[]string](t, u, `[...document.querySelectorAll('tbody tr td:first-child')].map(e => e.innerText)`)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct hosts in %d rows", len(seen), len(rows))
	}
	if ex := u.exceptions(); len(ex) > 0 {
		t.Fatalf("JavaScript exceptions: %v", ex)
	}
}
