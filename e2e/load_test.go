package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// loadDuration is SHIPLOG_LOAD_SECONDS (default 60).
func loadDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SHIPLOG_LOAD_SECONDS"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 {
			t.Fatalf("SHIPLOG_LOAD_SECONDS=%q: want a positive number of seconds", v)
		}
		return time.Duration(n * float64(time.Second))
	}
	return 60 * time.Second
}

var loadWords = []string{"request", "handled", "timeout", "upstream", "cache", "miss", "retry", "connection", "refused", "user", "login", "payment"}

// loadRecord is record seq of agent: a mix of levels, services, builds and words.
func loadRecord(agent string, seq uint64, now time.Time) *shiplogv1.Record {
	lvl := "info"
	switch {
	case seq%50 == 0:
		lvl = "error"
	case seq%10 == 0:
		lvl = "warn"
	case seq%7 == 0:
		lvl = "debug"
	}
	st := "200"
	if lvl == "error" {
		st = "503"
	}
	return &shiplogv1.Record{Time: timestamppb.New(now), Service: "load", Host: agent, BuildId: fmt.Sprintf("load-build-%d", seq/100000),
		Level: lvl, Attributes: map[string]string{"status": st},
		Message: fmt.Sprintf("%s %s %s id=%s took %dms seq=%d", loadWords[seq%12], loadWords[(seq/12)%12], loadWords[(seq/144)%12], hexID(int(seq)), seq%997, seq)}
}

// TestLoad ingests as fast as the server acks over 4 Push streams and 2 HTTP
// writers while 2 clients query, for SHIPLOG_LOAD_SECONDS (60). It asserts that
// every acked record is stored (no more, no less) and that no error but
// ResourceExhausted (backpressure, retried) occurred, and reports rates,
// latencies and the server's peak RSS on a "LOAD:" line. It asserts nothing
// about timing.
func TestLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	dur := loadDuration(t)
	s := startServer(t, t.TempDir()+"/data")
	cc := dialNew(t, s)
	base := "http://" + s.httpAddr
	began := time.Now()
	stop := make(chan struct{})
	var errs tally // by kind; "backpressure" is expected
	pushLat, writeLat := &latencies{}, &latencies{}
	qLat := map[string]*latencies{"search": {}, "histogram": {}, "hosts": {}, "builds": {}}
	var wg sync.WaitGroup

	// gRPC: 4 agents, batches of 1000, 4 unanswered per stream (the benchmark's settings).
	gps := make([]*agentPusher, 4)
	for i := range gps {
		p := &agentPusher{agent: fmt.Sprintf("load-g%d", i), window: 4, lat: pushLat}
		gps[i] = p
		wg.Add(1)
		go func() {
			defer wg.Done()
			gen := func() *shiplogv1.PushRequest {
				now := time.Now()
				return p.batch(1000, func(seq uint64) *shiplogv1.Record { return loadRecord(p.agent, seq, now) })
			}
			for failures := 0; ; failures++ {
				err := p.run(cc, stop, gen, nil)
				if err == nil {
					return
				}
				if failures > 100 {
					t.Errorf("%s: giving up after %d failed streams: %v", p.agent, failures, err)
					return
				}
				// The stream failed: a new one sends the unanswered tail again.
				if isBackpressure(err) {
					errs.add("backpressure")
					time.Sleep(min(retryDelay(err, 100*time.Millisecond), time.Second))
				} else {
					errs.add("push:" + errKind(err))
					t.Logf("%s: %v", p.agent, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	// HTTP: 2 agents posting batches of 500 to /v1/logs:write.
	var httpAcked [2]atomic.Uint64
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: time.Minute}
	for i := range httpAcked {
		agent := fmt.Sprintf("load-h%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seq uint64
			for {
				select {
				case <-stop:
					return
				default:
				}
				body, last := httpBatch(agent, seq, 500)
				seq = last
				for attempt := 0; ; attempt++ {
					if attempt > 100 {
						t.Errorf("%s: giving up on the batch ending at seq %d after %d attempts", agent, last, attempt)
						return
					}
					start := time.Now()
					resp, err := hc.Post(base+"/v1/logs:write", "application/json", bytes.NewReader(body))
					if err != nil {
						errs.add("write:transport")
						t.Logf("%s: %v", agent, err)
						time.Sleep(100 * time.Millisecond)
						continue
					}
					var ans struct {
						Accepted   int    `json:"accepted"`
						Duplicates int    `json:"duplicates"`
						AckedSeq   string `json:"acked_seq"`
						Message    string `json:"message"`
					}
					derr := json.NewDecoder(resp.Body).Decode(&ans)
					resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
						errs.add("backpressure")
						d, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
						time.Sleep(min(time.Duration(max(d, 0))*time.Second+50*time.Millisecond, time.Second))
						continue
					}
					if resp.StatusCode != 200 || derr != nil {
						errs.add(fmt.Sprintf("write:http%d", resp.StatusCode))
						t.Logf("%s: %d %s %v", agent, resp.StatusCode, ans.Message, derr)
						time.Sleep(100 * time.Millisecond)
						continue
					}
					writeLat.add(time.Since(start))
					acked, _ := strconv.ParseUint(ans.AckedSeq, 10, 64)
					if ans.Accepted+ans.Duplicates != 500 || acked < last || (attempt == 0 && ans.Duplicates != 0) {
						errs.add("write:bad-answer")
						t.Errorf("%s: batch ending at seq %d (attempt %d) answered %+v", agent, last, attempt, ans)
					}
					httpAcked[i].Store(max(httpAcked[i].Load(), acked))
					break
				}
			}
		}()
	}

	// Queries: 2 clients, in turn search, histogram, hosts, builds.
	var queries atomic.Int64
	var slowMu sync.Mutex
	var slowest time.Duration
	var slowestQ string
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			qs := []string{"", "level:error", "timeout AND upstream", "host:load-g1 AND level:warn", "status:>=500", "/refus(ed|al)/", "id=" + hexID(4242)}
			for n := i; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var kind, path string
				var params url.Values
				switch n % 4 {
				case 0:
					kind, path, params = "search", "/v1/logs:search", url.Values{"q": {qs[(n/4)%len(qs)]}, "start": {"5m"}, "limit": {"100"}}
				case 1:
					kind, path, params = "histogram", "/v1/logs:histogram", url.Values{"q": {qs[(n/4)%len(qs)]}, "start": {"5m"}}
				case 2:
					kind, path = "hosts", "/v1/hosts"
				case 3:
					kind, path = "builds", "/v1/builds"
				}
				start := time.Now()
				code, body, err := httpGet(hc, base, path, params)
				switch {
				case err != nil:
					errs.add("query:transport")
					t.Logf("%s %v: %v", kind, params, err)
				case code == http.StatusTooManyRequests:
					errs.add("backpressure")
					time.Sleep(100 * time.Millisecond)
				case code != 200:
					errs.add(fmt.Sprintf("query:%s:http%d", kind, code))
					t.Logf("%s %v: %d %.300s", kind, params, code, body)
				default:
					d := time.Since(start)
					qLat[kind].add(d)
					queries.Add(1)
					slowMu.Lock()
					if d > slowest {
						slowest, slowestQ = d, kind+" "+params.Encode()
					}
					slowMu.Unlock()
				}
			}
		}()
	}

	// The server's memory, sampled.
	var peakRSS atomic.Int64
	rssDone := make(chan struct{})
	go func() {
		defer close(rssDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			peakRSS.Store(max(peakRSS.Load(), procStatusKB(s.pid(), "VmRSS")))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()

	time.Sleep(dur)
	close(stop)
	drainStart := time.Now()
	wg.Wait()
	<-rssDone
	elapsed := time.Since(began)
	drain := time.Since(drainStart)
	hwm := procStatusKB(s.pid(), "VmHWM")

	// Acked against stored, per agent.
	from, to := began.Add(-time.Minute), time.Now().Add(time.Minute)
	var acked, stored, grpcAcked, httpAck uint64
	var mismatch []string
	check := func(agent string, a uint64) {
		n := uint64(s.histogramTotal(t, "host:"+agent, from, to))
		acked += a
		stored += n
		if n != a {
			mismatch = append(mismatch, fmt.Sprintf("%s acked %d stored %d", agent, a, n))
		}
	}
	for _, p := range gps {
		p.mu.Lock()
		for _, b := range p.bad {
			t.Errorf("%s: %s", p.agent, b)
		}
		a, left := p.acked, len(p.pending)
		p.mu.Unlock()
		if left != 0 {
			t.Errorf("%s: %d batches never answered", p.agent, left)
		}
		grpcAcked += a
		check(p.agent, a)
	}
	for i := range httpAcked {
		httpAck += httpAcked[i].Load()
		check(fmt.Sprintf("load-h%d", i), httpAcked[i].Load())
	}
	all := uint64(s.histogramTotal(t, "service:load", from, to))

	allQ := &latencies{}
	for _, l := range qLat {
		l.mu.Lock()
		allQ.d = append(allQ.d, l.d...)
		l.mu.Unlock()
	}
	unexpected := errs.totalExcept("backpressure")
	secs := dur.Seconds()
	line := fmt.Sprintf("LOAD: seconds=%.0f acked=%d stored=%d equal=%v rate=%.0f/s grpc_acked=%d http_acked=%d "+
		"push_batches=%d push_p50=%s push_p99=%s write_batches=%d write_p50=%s write_p99=%s "+
		"queries=%d query_p50=%s query_p99=%s search_p99=%s histogram_p99=%s hosts_p99=%s builds_p99=%s "+
		"backpressure=%d unexpected_errors=%d errors=%s peak_rss_mib=%d sampled_rss_mib=%d drain=%s took=%s",
		secs, acked, stored, acked == stored && all == stored, float64(acked)/secs, grpcAcked, httpAck,
		pushLat.n(), ms(pushLat.pct(50)), ms(pushLat.pct(99)), writeLat.n(), ms(writeLat.pct(50)), ms(writeLat.pct(99)),
		queries.Load(), ms(allQ.pct(50)), ms(allQ.pct(99)), ms(qLat["search"].pct(99)), ms(qLat["histogram"].pct(99)),
		ms(qLat["hosts"].pct(99)), ms(qLat["builds"].pct(99)),
		errs.get("backpressure"), unexpected, errs.String(), hwm>>10, peakRSS.Load()>>10, drain.Round(time.Millisecond), elapsed.Round(time.Second))
	t.Log(line)
	if !testing.Verbose() {
		fmt.Println(line) // greppable in plain `go test` output too
	}
	for kind, l := range qLat {
		t.Logf("latency %-9s %s", kind, l.summary())
	}
	t.Logf("slowest query: %s in %s", slowestQ, ms(slowest))
	t.Logf("latency push      %s", pushLat.summary())
	t.Logf("latency write     %s", writeLat.summary())

	if len(mismatch) > 0 || all != stored {
		t.Errorf("acked and stored differ: %s; service:load holds %d\n%s", strings.Join(mismatch, "; "), all, s.logProblems(20))
	}
	if acked == 0 {
		t.Error("nothing was acked")
	}
	if unexpected > 0 {
		t.Errorf("unexpected errors: %s\n%s", errs.String(), s.logProblems(20))
	}
}

// httpBatch is the JSON of a /v1/logs:write batch of n records of agent after
// seq, and the last seq in it.
func httpBatch(agent string, seq uint64, n int) ([]byte, uint64) {
	type rec struct {
		Time       string            `json:"time"`
		Service    string            `json:"service"`
		Host       string            `json:"host"`
		BuildID    string            `json:"build_id"`
		Level      string            `json:"level"`
		Message    string            `json:"message"`
		Seq        string            `json:"seq"`
		Attributes map[string]string `json:"attributes"`
	}
	b := struct {
		AgentID string `json:"agent_id"`
		Records []rec  `json:"records"`
	}{AgentID: agent, Records: make([]rec, n)}
	now := time.Now()
	for i := range b.Records {
		seq++
		r := loadRecord(agent, seq, now)
		b.Records[i] = rec{Time: now.UTC().Format(time.RFC3339Nano), Service: r.Service, Host: r.Host, BuildID: r.BuildId,
			Level: r.Level, Message: r.Message, Seq: strconv.FormatUint(seq, 10), Attributes: r.Attributes}
	}
	out, _ := json.Marshal(b)
	return out, seq
}
