package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// TestSlowTailsDoNotSlowIngest: 100 slow live tails (costly patterns, and
// tails that never read, over HTTP and gRPC) are open while writes of 1,000
// records go on: the writes complete as they did without them, the server's
// memory stays bounded, and a tail beyond --max-tails is refused. A normal
// tail gets every line while it keeps up.
func TestSlowTailsDoNotSlowIngest(t *testing.T) {
	s := startServer(t, t.TempDir(), "--max-tails", "101")
	cc := s.dial(t)
	client := shiplogv1.NewIngestServiceClient(cc)
	msg := strings.Repeat("abcdefghij ", 182)[:2000] // slow for /[a-j ]{1000}[k-z]/
	write := func(service string, n int) time.Duration {
		t.Helper()
		req := &shiplogv1.PushRequest{}
		now := timestamppb.Now()
		for i := range n {
			req.Records = append(req.Records, &shiplogv1.Record{Time: now, Service: service, Host: "h1", Message: fmt.Sprintf("%d %s", i, msg)})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		start := time.Now()
		if _, err := client.Write(ctx, req); err != nil {
			t.Fatalf("write of %d records to %s: %v after %s", n, service, err, time.Since(start))
		}
		return time.Since(start)
	}
	writes := func(label string) []time.Duration {
		var ds []time.Duration
		for range 10 {
			ds = append(ds, write("load", 1000))
		}
		slices.Sort(ds)
		t.Logf("%s: 10 writes of 1,000 records: median %s, max %s", label, ms(ds[5]), ms(ds[9]))
		return ds
	}
	tailURL := func(q string) string { return "http://" + s.httpAddr + "/v1/logs:tail?q=" + url.QueryEscape(q) }

	// A normal tail, there all along, reading everything it is sent.
	normal, err := http.Get(tailURL("service:normal"))
	if err != nil {
		t.Fatal(err)
	}
	defer normal.Body.Close()
	var normalLines, normalDropped atomic.Int64
	go func() {
		sc := bufio.NewScanner(normal.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"dropped"`) {
				normalDropped.Add(1)
			} else if strings.Contains(sc.Text(), `"id"`) {
				normalLines.Add(1)
			}
		}
	}()
	// The server subscribes just after the answer's headers.
	waitFor(t, s, "the normal tail subscribed", func() bool { return s.metric(t, "shiplog_tails") >= 1 })
	for range 5 {
		write("normal", 1000)
	}
	for deadline := time.Now().Add(20 * time.Second); normalLines.Load() < 5000 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if normalLines.Load() != 5000 || normalDropped.Load() != 0 {
		t.Errorf("the normal tail got %d of 5000 records (%d drop notices)", normalLines.Load(), normalDropped.Load())
	}

	before := writes("no slow tails")
	rssBefore := procStatusKB(s.pid(), "VmRSS")

	// 100 slow tails: 40 with a costly pattern that read, 30 of everything
	// that never read (HTTP), 30 with a costly pattern that never read (gRPC).
	hostile := `/[a-j ]{1000}[k-z]/`
	for range 40 {
		resp, err := http.Get(tailURL(hostile))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		go func() {
			b := make([]byte, 64<<10)
			for {
				if _, err := resp.Body.Read(b); err != nil {
					return
				}
			}
		}()
	}
	for range 30 {
		rawHTTP(t, s.httpAddr, "GET /v1/logs:tail?q= HTTP/1.1\r\nHost: shiplog\r\n\r\n")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	qc := shiplogv1.NewQueryServiceClient(s.dial(t))
	for range 30 {
		if _, err := qc.Tail(ctx, &shiplogv1.TailRequest{Q: hostile}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, s, "101 tails subscribed", func() bool { return s.metric(t, "shiplog_tails") >= 101 })

	// Beyond --max-tails (101): refused, over HTTP and gRPC.
	if resp, err := http.Get(tailURL("")); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("tail 102 over HTTP: %d, want 429", resp.StatusCode)
		}
	}
	st, err := qc.Tail(ctx, &shiplogv1.TailRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("tail 102 over gRPC: %v, want ResourceExhausted", err)
	}

	if code, body, err := httpGet(http.DefaultClient, "http://"+s.httpAddr, "/metrics", nil); err != nil || code != 200 || !strings.Contains(string(body), "\nshiplog_tails 101\n") {
		t.Errorf("/metrics: %d %v, want shiplog_tails 101", code, err)
	}
	after := writes("100 slow tails")
	rssAfter := procStatusKB(s.pid(), "VmRSS")
	t.Logf("server RSS %d MiB before the slow tails, %d MiB after 10,000 records with them", rssBefore>>10, rssAfter>>10)
	if rssAfter > 1<<20 {
		t.Errorf("server RSS %d MiB with 100 slow tails: not bounded", rssAfter>>10)
	}
	t.Logf("ingest latency: median %s with no slow tail, %s with 100", ms(before[5]), ms(after[5]))
}
