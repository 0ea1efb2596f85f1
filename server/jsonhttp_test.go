package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// newJSONTestServer serves both handlers over a real store, as server.go
// wires them.
func newJSONTestServer(t testing.TB, maxBody int64) (*httptest.Server, Core) {
	t.Helper()
	st := openTestStore(t)
	core := Core{Ingest: ingest.New(st, ingest.DefaultOptions(), nil, nil), Backend: query.NewLocal(st, query.DefaultOptions())}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/logs:write", newJSONWriteHandler(core, maxBody))
	mux.Handle("POST /v1/logs:jsonl", newJSONLHandler(core, maxBody))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, core
}

func postJSON(t testing.TB, url string, body io.Reader, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func gzipOf(t testing.TB, s string) io.Reader {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

func searchStored(t testing.TB, core Core, q string) []model.Record {
	t.Helper()
	pq, err := query.Parse(q)
	if err != nil {
		t.Fatal(err)
	}
	res, err := core.Backend.Search(context.Background(), query.SearchParams{Query: pq, Asc: true, Limit: 10000,
		Range: model.TimeRange{Start: 0, End: time.Now().Add(farFuture).UnixNano()}})
	if err != nil {
		t.Fatal(err)
	}
	return res.Records
}

func TestJSONWrite(t *testing.T) {
	srv, core := newJSONTestServer(t, 1<<20)
	url := srv.URL + "/v1/logs:write"
	now := time.Now().UTC()
	body := fmt.Sprintf(`{"agent_id":"ag-1","defaults":{"service":"web","host":"h1","attributes":{"env":"prod","region":"eu"}},
		"records":[
			{"time":%q,"level":"ERR","message":"boom","seq":1,"attributes":{"region":"us"}},
			{"time":%q,"msg":"two","host":"h2","seq":"2","pid":42},
			{"message":"three","seq":3,"trace_id":"t-1"}],
		"closing":true,"dropped":7}`, now.Format(time.RFC3339Nano), now.Add(time.Millisecond).Format(time.RFC3339Nano))
	code, got := postJSON(t, url, strings.NewReader(body))
	if want := `{"accepted":3,"duplicates":0,"acked_seq":"3"}`; code != 200 || got != want {
		t.Fatalf("%d %s, want 200 %s", code, got, want)
	}
	// Resent: nothing stored twice.
	code, got = postJSON(t, url, strings.NewReader(body))
	if want := `{"accepted":0,"duplicates":3,"acked_seq":"3"}`; code != 200 || got != want {
		t.Fatalf("resent: %d %s, want 200 %s", code, got, want)
	}
	recs := searchStored(t, core, "service:web")
	if len(recs) != 3 {
		t.Fatalf("stored %d records, want 3: %+v", len(recs), recs)
	}
	byMsg := map[string]model.Record{}
	for _, r := range recs {
		byMsg[r.Message] = r
	}
	boom := byMsg["boom"]
	if boom.Level != model.LevelError || boom.Host != "h1" || boom.Time != now.UnixNano() || boom.Seq != 1 {
		t.Errorf("boom stored as %+v", boom)
	}
	if v, _ := boom.Attr("region"); v != "us" {
		t.Errorf("the record's attribute should win: region=%q", v)
	}
	if v, _ := boom.Attr("env"); v != "prod" {
		t.Errorf("default attribute missing: env=%q", v)
	}
	if two := byMsg["two"]; two.Host != "h2" || two.Level != model.LevelInfo {
		t.Errorf("two stored as %+v", two)
	} else if v, _ := two.Attr("pid"); v != "42" {
		t.Errorf("pid=%q", v)
	}
	if three := byMsg["three"]; three.TraceID != "t-1" || three.Time == 0 {
		t.Errorf("three stored as %+v", three)
	}

	// Compressed.
	code, got = postJSON(t, url, gzipOf(t, `{"records":[{"service":"gz","message":"zipped"}]}`), "Content-Encoding", "gzip")
	if code != 200 || got != `{"accepted":1,"duplicates":0,"acked_seq":"0"}` {
		t.Fatalf("gzip: %d %s", code, got)
	}
	if recs := searchStored(t, core, "service:gz"); len(recs) != 1 || recs[0].Message != "zipped" {
		t.Fatalf("gzip: stored %+v", recs)
	}
}

func TestJSONWriteErrors(t *testing.T) {
	srv, core := newJSONTestServer(t, 4096)
	url := srv.URL + "/v1/logs:write"
	for _, tt := range []struct {
		body   string
		header []string
		code   int
		msg    string
	}{
		{body: `{"records":[{"mess`, code: 400, msg: "unterminated string"},
		{body: `{"records":[{"message":"x","time":"yesterday"}]}`, code: 400, msg: `record 0: time "yesterday"`},
		{body: "{\"records\":[{\"message\":\"\xff\"}]}", code: 400, msg: "not valid UTF-8"},
		{body: `{"recordz":[]}`, code: 400, msg: `unknown field "recordz"`},
		{body: `{"records":[{},{"level":"loud"}]}`, code: 400, msg: `record 1: unknown level "loud"`},
		{body: `{"records":[{},{"time":"2000-01-01T00:00:00Z"}]}`, code: 400, msg: "record 1: time 2000-01-01T00:00:00Z is outside the accepted window"},
		{body: `{"records":[{"message":"` + strings.Repeat("x", 5000) + `"}]}`, code: 413, msg: "request body is over the limit of 4096 bytes"},
		{body: `{}`, header: []string{"Content-Encoding", "br"}, code: 400, msg: `Content-Encoding "br" is not supported`},
		{body: `{}`, header: []string{"Content-Encoding", "gzip"}, code: 400, msg: "gzip body"},
	} {
		code, got := postJSON(t, url, strings.NewReader(tt.body), tt.header...)
		var e errorBody
		if err := json.Unmarshal([]byte(got), &e); err != nil {
			t.Fatalf("%.60s: answer %s: %v", tt.body, got, err)
		}
		if code != tt.code || !strings.Contains(e.Message, tt.msg) {
			t.Errorf("%.60s: %d %s, want %d and a message with %q", tt.body, code, got, tt.code, tt.msg)
		}
		if wantCode := map[int]int{400: 3, 413: 8}[tt.code]; e.Code != wantCode || e.Status == "" {
			t.Errorf("%.60s: code %d status %q, want %d", tt.body, e.Code, e.Status, wantCode)
		}
	}
	// A gzip bomb is stopped at the limit too.
	code, got := postJSON(t, url, gzipOf(t, `{"records":[{"message":"`+strings.Repeat("x", 1<<20)+`"}]}`), "Content-Encoding", "gzip")
	if code != 413 {
		t.Errorf("gzip over the limit: %d %s", code, got)
	}
	if recs := searchStored(t, core, ""); len(recs) != 0 {
		t.Fatalf("bad batches stored %d records", len(recs))
	}
}

func TestJSONL(t *testing.T) {
	srv, core := newJSONTestServer(t, 1<<20)
	url := srv.URL + "/v1/logs:jsonl?service=svc&host=h&build_id=b-1&deploy_id=d-1"
	now := time.Now().UTC()
	body := strings.Join([]string{
		fmt.Sprintf(`{"time":%q,"level":"warn","message":"first"}`, now.Format(time.RFC3339Nano)), // 1
		``,                                       // 2: blank
		`{"message":"bad level","level":"loud"}`, // 3
		`not json`,                               // 4
		`{"message":"own host","host":"other","status":200}`,        // 5
		`{"message":"too old","time":"2000-01-01T00:00:00Z"}`,       // 6: refused by ingest
		fmt.Sprintf(`{"time":%d,"msg":"numeric time"}`, now.Unix()), // 7
		`{"message":"last, without a newline"}`,                     // 8
	}, "\n")
	for _, gz := range []bool{false, true} {
		var code int
		var got string
		if gz {
			code, got = postJSON(t, url, gzipOf(t, body), "Content-Encoding", "gzip")
		} else {
			code, got = postJSON(t, url, strings.NewReader(body))
		}
		var ans jsonlResponse
		if err := json.Unmarshal([]byte(got), &ans); err != nil {
			t.Fatal(got, err)
		}
		want := jsonlResponse{Accepted: 4, Rejected: 3, Errors: []jsonLineError{
			{Line: 3, Message: `byte 31: unknown level "loud" (want trace, debug, info, warn, error or fatal)`},
			{Line: 4, Message: `byte 0: unexpected 'n', want an object`},
			{Line: 6, Message: "time 2000-01-01T00:00:00Z is outside the accepted window (730d before to 1d after the server's clock)"},
		}}
		if code != 200 || fmt.Sprint(ans) != fmt.Sprint(want) {
			t.Fatalf("gzip %v: %d %s\nwant %+v", gz, code, got, want)
		}
	}
	recs := searchStored(t, core, "service:svc")
	if len(recs) != 8 {
		t.Fatalf("stored %d records, want 8", len(recs))
	}
	for _, r := range recs {
		if r.BuildID != "b-1" || r.DeployID != "d-1" || (r.Host != "h" && r.Message != "own host") {
			t.Errorf("defaults not applied: %+v", r)
		}
	}
	if recs := searchStored(t, core, `host:other`); len(recs) != 2 {
		t.Errorf("host:other: %d records", len(recs))
	} else if v, _ := recs[0].Attr("status"); v != "200" {
		t.Errorf("status=%q", v)
	}
}

// TestJSONLUTF8 checks that the Ingester's UTF-8 check, skipped for the
// lines' strings (the decoder checked them: model.Batch.TextChecked), still
// refuses a default from the URL that is not valid UTF-8.
func TestJSONLUTF8(t *testing.T) {
	srv, core := newJSONTestServer(t, 1<<20)
	body := "{\"message\":\"caf\u00e9 ok\"}\n{\"message\":\"bad \xff\"}\n"
	code, got := postJSON(t, srv.URL+"/v1/logs:jsonl?service=utf", strings.NewReader(body))
	if code != 200 || !strings.Contains(got, `"accepted":1,`) || !strings.Contains(got, `"line":2,"message":"byte 16: string is not valid UTF-8"`) {
		t.Fatalf("lines: %d %s", code, got)
	}
	code, got = postJSON(t, srv.URL+"/v1/logs:jsonl?service=utf&host=%FF", strings.NewReader(body))
	if code != 400 || !strings.Contains(got, "host is not valid UTF-8") {
		t.Fatalf("a default: %d %s", code, got)
	}
	if recs := searchStored(t, core, "service:utf"); len(recs) != 1 || recs[0].Message != "caf\u00e9 ok" {
		t.Fatalf("stored %+v", recs)
	}
}

func TestJSONLChunksAndLimits(t *testing.T) {
	srv, core := newJSONTestServer(t, 1<<20)
	url := srv.URL + "/v1/logs:jsonl?service=many"

	// 2,500 lines over three chunks; in the second, a line that ingest
	// refuses, and 150 bad lines of which 100 are listed.
	var sb strings.Builder
	for i := 1; i <= 2500; i++ {
		switch {
		case i == 1500:
			sb.WriteString(`{"message":"old","time":"2001-01-01T00:00:00Z"}`)
		case i > 2000 && i <= 2150:
			sb.WriteString(`{"message":`)
		default:
			fmt.Fprintf(&sb, `{"message":"line %d"}`, i)
		}
		sb.WriteByte('\n')
	}
	code, got := postJSON(t, url, strings.NewReader(sb.String()))
	var ans jsonlResponse
	if err := json.Unmarshal([]byte(got), &ans); err != nil {
		t.Fatal(got, err)
	}
	if code != 200 || ans.Accepted != 2349 || ans.Rejected != 151 || len(ans.Errors) != 100 || ans.Errors[0].Line != 1500 || ans.Errors[1].Line != 2001 {
		t.Fatalf("%d accepted %d rejected %d, %d errors, first %+v", code, ans.Accepted, ans.Rejected, len(ans.Errors), ans.Errors[:2])
	}
	if recs := searchStored(t, core, "service:many"); len(recs) != 2349 {
		t.Fatalf("stored %d records", len(recs))
	}

	// Every line bad: 400, with the answer.
	code, got = postJSON(t, url, strings.NewReader("[]\n{\"level\":\"loud\"}\n"))
	if code != 400 || got != `{"accepted":0,"duplicates":0,"rejected":2,"errors":[{"line":1,"message":"byte 0: unexpected '[', want an object"},{"line":2,"message":"byte 9: unknown level \"loud\" (want trace, debug, info, warn, error or fatal)"}]}` {
		t.Fatalf("all bad: %d %s", code, got)
	}
	// An empty body is fine.
	code, got = postJSON(t, url, strings.NewReader("\n"))
	if code != 200 || got != `{"accepted":0,"duplicates":0,"rejected":0,"errors":[]}` {
		t.Fatalf("empty: %d %s", code, got)
	}
}

func TestJSONLOverLimit(t *testing.T) {
	srv, core := newJSONTestServer(t, 64<<10)
	url := srv.URL + "/v1/logs:jsonl?service=big"
	// A streamed body (no Content-Length) longer than the limit: the lines
	// read before are stored, and the answer says how many.
	var sb strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&sb, `{"message":"line %d"}`+"\n", i)
	}
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.Copy(pw, strings.NewReader(sb.String()))
		_ = pw.Close()
	}()
	code, got := postJSON(t, url, pr)
	var e errorBody
	if err := json.Unmarshal([]byte(got), &e); err != nil {
		t.Fatal(got, err)
	}
	var line, stored int
	if _, err := fmt.Sscanf(e.Message, "request body is over the limit of 65536 bytes (after line %d, with %d records stored)", &line, &stored); code != 413 || err != nil {
		t.Fatalf("%d %s", code, got)
	}
	if recs := searchStored(t, core, "service:big"); len(recs) != stored || stored < 1000 || line != stored {
		t.Fatalf("stored %d records; the answer says %d, after line %d", len(recs), stored, line)
	}
}

// BenchmarkWriteDecode compares decoding a 1,000-record Push batch in JSON
// the gateway's way (protojson, then toBatch) with DecodeBatchJSON.
func BenchmarkWriteDecode(b *testing.B) {
	const n = 1000
	req := &shiplogv1.PushRequest{AgentId: "bench"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		req.Records = append(req.Records, &shiplogv1.Record{
			Time: timestamppb.New(t0.Add(time.Duration(i) * 1234567 * time.Nanosecond)), Service: "checkout", Host: fmt.Sprintf("checkout-%06x", i%3),
			BuildId: "build-000123", DeployId: "deploy-0badf00d", Level: "info",
			Message: fmt.Sprintf(`GET /api/v1/users/%d completed status=200 duration=12.3ms bytes=%d request_id=%016x error="none" caller=internal/handler.go:412`, i*7919, i*31, i*104729),
		})
	}
	data, err := protojson.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r shiplogv1.PushRequest
			if err := protojson.Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			if _, err := toBatch(&r); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
	b.Run("DecodeBatchJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ingest.DecodeBatchJSON(data); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	})
}
