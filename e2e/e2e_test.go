package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// dataset describes the records the test pushes, so answers can be computed.
type rec struct {
	seq     uint64
	t       time.Time
	service string
	host    string
	level   string
	msg     string
	status  string
}

func makeRecords(n int, t0 time.Time, seq0 uint64) []rec {
	out := make([]rec, n)
	for i := range out {
		r := rec{seq: seq0 + uint64(i), t: t0.Add(time.Duration(i) * 250 * time.Millisecond)}
		r.service = []string{"api", "worker"}[i%2]
		r.host = fmt.Sprintf("web-%d", i%3+1)
		r.level, r.status = "info", "200"
		r.msg = fmt.Sprintf("request %d handled in %dms id=%s", i, i%97, hexID(i))
		if i%7 == 0 {
			r.level, r.status = "error", "500"
			r.msg = fmt.Sprintf("connection refused to db-1:5432 after %d retries", i%5)
		}
		out[i] = r
	}
	return out
}

// hexID is an id-like token (it goes to the bloom filters).
func hexID(i int) string { return fmt.Sprintf("%08x", uint32(i)*2654435761) }

func toBatches(recs []rec, agent string, size int) []*shiplogv1.PushRequest {
	var out []*shiplogv1.PushRequest
	for i := 0; i < len(recs); i += size {
		b := &shiplogv1.PushRequest{AgentId: agent, Defaults: &shiplogv1.Record{BuildId: "build-7", Attributes: map[string]string{"env": "test"}}}
		for _, r := range recs[i:min(i+size, len(recs))] {
			b.Records = append(b.Records, &shiplogv1.Record{
				Time: timestamppb.New(r.t), Service: r.service, Host: r.host, Level: r.level,
				Message: r.msg, Seq: r.seq, Attributes: map[string]string{"status": r.status},
			})
		}
		out = append(out, b)
	}
	return out
}

func count(recs []rec, f func(r rec) bool) int {
	n := 0
	for _, r := range recs {
		if f(r) {
			n++
		}
	}
	return n
}

func TestServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir() + "/data"
	s := startServer(t, dir)
	cc := s.dial(t)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(10 * time.Minute)
	recs := makeRecords(12000, t0, 1)
	batches := toBatches(recs, "e2e-agent", 1000)

	resps := pushAll(t, cc, batches)
	for i, r := range resps {
		if r.Accepted != 1000 || r.Duplicates != 0 || r.AckedSeq != uint64((i+1)*1000) {
			t.Fatalf("batch %d answer %v", i, r)
		}
	}
	// A batch sent again (as after a reconnect) is not stored twice.
	again := pushAll(t, cc, batches[3:4])
	if again[0].Accepted != 0 || again[0].Duplicates != 1000 || again[0].AckedSeq != 12000 {
		t.Fatalf("resent batch answer %v", again[0])
	}

	all := url.Values{"limit": {"1000"}}
	t.Run("paging both orders", func(t *testing.T) {
		desc := s.searchAll(t, all)
		if len(desc) != 12000 {
			t.Fatalf("desc: %d records", len(desc))
		}
		asc := s.searchAll(t, url.Values{"limit": {"1000"}, "order": {"asc"}})
		if len(asc) != 12000 {
			t.Fatalf("asc: %d records", len(asc))
		}
		seen := map[string]bool{}
		for i, id := range desc {
			if seen[id] {
				t.Fatalf("id %s twice", id)
			}
			seen[id] = true
			if asc[len(asc)-1-i] != id {
				t.Fatalf("asc is not desc reversed at %d", i)
			}
		}
	})
	t.Run("order and content", func(t *testing.T) {
		var r searchResp
		s.getJSON(t, "/v1/logs:search", url.Values{"limit": {"5"}}, &r)
		if len(r.Records) != 5 || r.NextCursor == "" {
			t.Fatalf("first page: %d records, cursor %q", len(r.Records), r.NextCursor)
		}
		last := recs[len(recs)-1]
		got := r.Records[0]
		if !got.Time.Equal(last.t) || got.Message != last.msg || got.Service != last.service || got.Host != last.host ||
			got.BuildID != "build-7" || got.Attributes["env"] != "test" || got.Attributes["status"] != last.status || got.Seq != strconv.FormatUint(last.seq, 10) {
			t.Fatalf("newest record %+v, want %+v", got, last)
		}
		for i := 1; i < len(r.Records); i++ {
			if r.Records[i].Time.After(r.Records[i-1].Time) {
				t.Fatal("not newest first")
			}
		}
	})
	queries := []struct {
		q    string
		want func(r rec) bool
	}{
		{"level:error", func(r rec) bool { return r.level == "error" }},
		{`"connection refused" -host:web-1`, func(r rec) bool { return strings.Contains(r.msg, "connection refused") && r.host != "web-1" }},
		{"service:worker AND status:500", func(r rec) bool { return r.service == "worker" && r.status == "500" }},
		{"service:api OR host:web-2", func(r rec) bool { return r.service == "api" || r.host == "web-2" }},
		{"handled AND NOT (host:web-1 OR host:web-3)", func(r rec) bool { return strings.Contains(r.msg, "handled") && r.host == "web-2" }},
		{"id=" + hexID(4321), func(r rec) bool { return strings.HasSuffix(r.msg, "id="+hexID(4321)) }},
		{"retries build_id:build-7 env:test", func(r rec) bool { return strings.Contains(r.msg, "retries") }},
		{"status:>=500", func(r rec) bool { return r.status == "500" }},
		{"handl*", func(r rec) bool { return strings.Contains(r.msg, "handled") }},
		{"build_id:other", func(r rec) bool { return false }},
	}
	for _, c := range queries {
		t.Run("query "+c.q, func(t *testing.T) {
			want := count(recs, c.want)
			got := s.searchAll(t, url.Values{"q": {c.q}, "limit": {"2000"}})
			if len(got) != want {
				t.Fatalf("%q: %d records, want %d", c.q, len(got), want)
			}
		})
	}
	t.Run("time range", func(t *testing.T) {
		start, end := t0.Add(10*time.Minute), t0.Add(20*time.Minute)
		want := count(recs, func(r rec) bool { return !r.t.Before(start) && r.t.Before(end) && r.level == "error" })
		got := s.searchAll(t, url.Values{"q": {"level:error"}, "start": {start.Format(time.RFC3339)}, "end": {end.Format(time.RFC3339)}, "limit": {"100"}})
		if len(got) != want || want == 0 {
			t.Fatalf("range: %d records, want %d", len(got), want)
		}
		// "3h" is a duration back from now: everything.
		if got := s.searchAll(t, url.Values{"start": {"3h"}, "limit": {"10000"}}); len(got) != 12000 {
			t.Fatalf("start=3h: %d", len(got))
		}
	})
	t.Run("histogram", func(t *testing.T) {
		var h struct {
			Buckets []struct {
				Time  time.Time `json:"time"`
				Count int       `json:"count"`
			} `json:"buckets"`
			Total int `json:"total"`
		}
		code, body := s.getJSON(t, "/v1/logs:histogram", url.Values{"q": {"level:error"}, "start": {t0.Format(time.RFC3339)},
			"end": {t0.Add(time.Hour).Format(time.RFC3339)}, "step": {"10m"}}, &h)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		if len(h.Buckets) != 6 {
			t.Fatalf("%d buckets", len(h.Buckets))
		}
		sum := 0
		for _, b := range h.Buckets {
			want := count(recs, func(r rec) bool {
				return r.level == "error" && !r.t.Before(b.Time) && r.t.Before(b.Time.Add(10*time.Minute))
			})
			if b.Count != want {
				t.Fatalf("bucket %s: %d, want %d", b.Time, b.Count, want)
			}
			sum += b.Count
		}
		if h.Total != sum {
			t.Fatalf("total %d, buckets sum to %d", h.Total, sum)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		badInput(t, s)
	})

	// Push one more batch and SIGKILL the server the moment it is acked.
	more := makeRecords(500, t0.Add(time.Hour+30*time.Minute), 12001)
	resp := pushAll(t, cc, toBatches(more, "e2e-agent", 500))
	if resp[0].Accepted != 500 {
		t.Fatalf("last batch %v", resp[0])
	}
	s.kill()
	s.restart()
	checkExactlyOnce(t, s, 12500)

	// A clean stop and start keeps everything too.
	s.stop()
	s.restart()
	checkExactlyOnce(t, s, 12500)
}

// checkExactlyOnce reads every record and checks seqs 1..n are each present once.
func checkExactlyOnce(t *testing.T, s *server, n int) {
	t.Helper()
	seqs := map[string]int{}
	p := url.Values{"limit": {"5000"}, "q": {"-service:big"}}
	for {
		var r searchResp
		code, body := s.getJSON(t, "/v1/logs:search", p, &r)
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		for _, x := range r.Records {
			seqs[x.Seq]++
		}
		if r.NextCursor == "" {
			break
		}
		p.Set("cursor", r.NextCursor)
	}
	if len(seqs) != n {
		t.Fatalf("%d distinct records after restart, want %d", len(seqs), n)
	}
	for i := 1; i <= n; i++ {
		if c := seqs[strconv.Itoa(i)]; c != 1 {
			t.Fatalf("seq %d stored %d times", i, c)
		}
	}
}

func badInput(t *testing.T, s *server) {
	cc := s.dial(t)
	client := shiplogv1.NewIngestServiceClient(cc)
	ctx := context.Background()

	_, err := client.Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "x", Time: timestamppb.New(time.Now().AddDate(30, 0, 0))}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "time") {
		t.Fatalf("far-future time: %v", err)
	}
	_, err = client.Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "x", Time: timestamppb.New(time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC))}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("1999 time: %v", err)
	}
	_, err = client.Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "x", Level: "loud"}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "level") {
		t.Fatalf("bad level: %v", err)
	}
	// Invalid UTF-8 cannot be marshalled by the Go client; write the wire bytes by hand.
	var rec []byte
	rec = protowire.AppendTag(rec, 8, protowire.BytesType) // Record.message
	rec = protowire.AppendBytes(rec, []byte("bad \xff\xfe bytes"))
	var raw []byte
	raw = protowire.AppendTag(raw, 3, protowire.BytesType) // PushRequest.records
	raw = protowire.AppendBytes(raw, rec)
	err = cc.Invoke(ctx, "/shiplog.v1.IngestService/Write", rawMessage(raw), new(rawMessage), forceRaw())
	if c := status.Code(err); c != codes.InvalidArgument && c != codes.Internal {
		t.Fatalf("invalid UTF-8 over gRPC: %v", err)
	}
	if !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("invalid UTF-8 error does not say so: %v", err)
	}
	// A multi-megabyte message is cut and marked, not refused.
	big := strings.Repeat("x", 3<<20)
	r, err := client.Write(ctx, &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "huge " + big, Service: "big"}}})
	if err != nil || r.Accepted != 1 {
		t.Fatalf("3 MB record: %v %v", r, err)
	}
	var sr searchResp
	s.getJSON(t, "/v1/logs:search", url.Values{"q": {"service:big"}}, &sr)
	if len(sr.Records) != 1 || sr.Records[0].Attributes["truncated"] != "true" || len(sr.Records[0].Message) != 256<<10 {
		t.Fatalf("big record stored as %d records, truncated=%q", len(sr.Records), sr.Records[0].Attributes["truncated"])
	}

	post := func(body string) (int, map[string]any) {
		resp, err := http.Post("http://"+s.httpAddr+"/v1/logs:write", "application/json", bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, body := range []string{`{"records":[{"mess`, `{"records":[{"message":"x","time":"yesterday"}]}`, "{\"records\":[{\"message\":\"\xff\"}]}", `{"recordz":[]}`} {
		code, m := post(body)
		if code != 400 || m["message"] == "" || m["message"] == nil {
			t.Fatalf("POST %q: %d %v", body, code, m)
		}
	}
	for _, q := range []url.Values{{"q": {"level:loud"}}, {"q": {`"unterminated`}}, {"q": {"a AND"}}, {"start": {"tomorrow-ish"}}, {"order": {"sideways"}}, {"cursor": {"!!"}}, {"limit": {"100000"}}} {
		code, body := s.getJSON(t, "/v1/logs:search", q, nil)
		var m map[string]any
		_ = json.Unmarshal([]byte(body), &m)
		if code != 400 || m["message"] == nil || m["message"] == "" {
			t.Fatalf("search %v: %d %s", q, code, body)
		}
	}
	// The server still serves, with the earlier data intact.
	if got := s.searchAll(t, url.Values{"q": {"level:error"}, "limit": {"5000"}}); len(got) == 0 {
		t.Fatal("no data after bad input")
	}
	ids := s.searchAll(t, url.Values{"limit": {"10000"}, "q": {"-service:big"}})
	sort.Strings(ids)
	if len(ids) != 12000 {
		t.Fatalf("after bad input: %d records", len(ids))
	}
}
