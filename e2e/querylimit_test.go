package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// hostilePatterns cost tens of milliseconds a line over slowLines' messages
// and never match: a search of them scans every line.
var hostilePatterns = []string{`/[a-j ]{1000}[k-z]/`, `/[a-j ]{300}[k-z]/`, `/([a-j ]{2,3}){100}[k-z]/`}

// writeSlowLines stores n lines of 2,000 characters of [a-j ].
func writeSlowLines(t *testing.T, s *server, n int) {
	t.Helper()
	cc := s.dial(t)
	msg := strings.Repeat("abcdefghij ", 182)[:2000]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for done := 0; done < n; {
		req := &shiplogv1.PushRequest{}
		for i := 0; i < 500 && done < n; i, done = i+1, done+1 {
			req.Records = append(req.Records, &shiplogv1.Record{Time: timestamppb.New(time.Now().Add(-time.Minute)),
				Service: "slow", Host: fmt.Sprintf("h%d", done%4), Message: msg})
		}
		if _, err := shiplogv1.NewIngestServiceClient(cc).Write(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQueryLimitsEveryRoute: with --query-timeout 2s and
// --max-concurrent-queries 2, searches by POST with a form body (which the
// gateway serves as the GET) are limited like GETs, and a search whose
// pattern makes every line slow ends with 504 soon after the timeout, over
// GET, POST and gRPC alike.
func TestQueryLimitsEveryRoute(t *testing.T) {
	s := startServer(t, t.TempDir(), "--query-timeout", "2s", "--max-concurrent-queries", "2")
	writeSlowLines(t, s, 3000)
	base := "http://" + s.httpAddr + "/v1/logs:search"
	hc := &http.Client{Timeout: 60 * time.Second} // old main: minutes

	search := func(method, q string) (int, string, time.Duration) {
		form := url.Values{"q": {q}, "start": {"24h"}, "limit": {"10"}}
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, base, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, base+"?"+form.Encode(), nil)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err.Error(), time.Since(start)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), time.Since(start)
	}

	// A cheap POST search works (the form body is read as the query).
	if code, body, _ := search(http.MethodPost, "service:slow"); code != 200 || !strings.Contains(body, `"records"`) {
		t.Fatalf("POST form search: %d %s", code, body)
	}

	// Beyond the limit: eight hostile POST searches at once. Two run and end
	// with 504; the others wait for a slot up to the timeout and get 429 (or,
	// when a slot frees just in time, 504 for what is left of their time).
	const n = 8
	codes8 := make([]int, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var body string
			codes8[i], body, took[i] = search(http.MethodPost, hostilePatterns[0])
			if codes8[i] != http.StatusTooManyRequests && codes8[i] != http.StatusGatewayTimeout {
				t.Errorf("POST search %d: %d %.200s after %s, want 429 or 504", i, codes8[i], body, took[i])
			}
		}()
	}
	wg.Wait()
	var n429, n504 int
	var longest time.Duration
	for i, c := range codes8 {
		switch c {
		case http.StatusTooManyRequests:
			n429++
		case http.StatusGatewayTimeout:
			n504++
		}
		longest = max(longest, took[i])
	}
	t.Logf("%d concurrent POST searches: %d got 429, %d got 504, the longest took %s", n, n429, n504, longest)
	if n429 == 0 || n504 == 0 {
		t.Errorf("%d concurrent POST searches over a limit of 2: %d got 429, %d got 504; want some of each", n, n429, n504)
	}
	if longest > 15*time.Second {
		t.Errorf("a POST search took %s with --query-timeout 2s", longest)
	}

	// One at a time, each hostile pattern ends with 504 (DeadlineExceeded),
	// one over each route.
	client := shiplogv1.NewQueryServiceClient(s.dial(t))
	for i, p := range hostilePatterns {
		route := []string{http.MethodGet, http.MethodPost, "gRPC"}[i%3]
		var (
			code int
			body string
			d    time.Duration
		)
		if route == "gRPC" {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			start := time.Now()
			_, err := client.Search(ctx, &shiplogv1.SearchRequest{Q: p, Start: "24h", Limit: 10})
			cancel()
			d, body = time.Since(start), status.Convert(err).Message()
			if status.Code(err) == codes.DeadlineExceeded {
				code = http.StatusGatewayTimeout
			}
		} else {
			code, body, d = search(route, p)
		}
		t.Logf("%s %s: %d after %s (overrun %s)", route, p, code, d.Round(time.Millisecond), (d - 2*time.Second).Round(time.Millisecond))
		if code != http.StatusGatewayTimeout || !strings.Contains(body, "--query-timeout") {
			t.Errorf("%s search %s: %d %.200s, want 504 (DeadlineExceeded) naming --query-timeout", route, p, code, body)
		}
		if d > 15*time.Second {
			t.Errorf("%s search %s took %s with --query-timeout 2s", route, p, d)
		}
	}
}
