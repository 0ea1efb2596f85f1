package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// countingWriter keeps what is written and counts the writes.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// randomRecords makes n records of every shape the JSON must carry:
// escapes, invalid UTF-8, times before 1970 and at the ends of int64, every level and
// an unknown one, attributes out of order and with a key twice.
func randomRecords(rng *rand.Rand, n int) []model.Record {
	text := []string{"", "plain", `q"uo\te`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "é ü 日本語 🚀", "a\xffb", "\u2028", "a long run of plain words"}
	pick := func() string { return text[rng.IntN(len(text))] + text[rng.IntN(len(text))] }
	labels := []model.Labels{{Service: "api", Host: "h1", BuildID: "b-1", DeployID: "d-1"}, {Service: `s"q`, Host: "é"}, {}}
	recs := make([]model.Record, n)
	for i := range recs {
		r := &recs[i]
		r.ID = model.ID{Stream: rng.Uint64(), Day: rng.Uint32(), Line: rng.Uint32()}
		r.Time = []int64{0, -1, -1_500_000_001, 1767225600e9 + rng.Int64N(1e15), math.MaxInt64, math.MinInt64, rng.Int64()}[rng.IntN(7)]
		if rng.IntN(12) == 0 {
			r.Labels = model.Labels{Service: pick(), Host: pick(), BuildID: pick(), DeployID: pick()}
		} else {
			r.Labels = labels[rng.IntN(len(labels))]
		}
		r.Level = model.Level(rng.IntN(int(model.NumLevels) + 2))
		r.Message, r.TraceID, r.SpanID = pick(), pick(), pick()
		r.Seq = rng.Uint64() >> rng.IntN(64)
		for range rng.IntN(4) {
			r.Attrs = append(r.Attrs, model.Attr{Key: pick(), Value: pick()})
		}
		if rng.IntN(2) == 0 && len(r.Attrs) > 0 {
			r.Attrs = append(r.Attrs, model.Attr{Key: r.Attrs[0].Key, Value: "again"})
		}
	}
	return recs
}

// The page written straight from the engine's records has the bytes of the
// protobuf answer's JSON (appendSearchJSON), small or written in shares,
// and leaves the records as they were.
func TestSearchJSONOfPage(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	rng := rand.New(rand.NewPCG(5, 11))
	for _, n := range []int{0, 1, 7, 300, 4*parallelRecords + 3, 9000} {
		recs := randomRecords(rng, n)
		before := fmt.Sprint(recs)
		for _, c := range []query.Coverage{{}, {Missing: []int{3, 0, 17}}} {
			res := &query.SearchResult{Records: recs, NextCursor: []string{"", "next\x01é"}[n%2], Coverage: c}
			var w countingWriter
			writeSearchJSON(&w, res)
			resp := &shiplogv1.SearchResponse{Records: recordsToProto(recs), NextCursor: res.NextCursor}
			resp.Partial, resp.MissingPartitions = coverage(c)
			want := appendSearchJSON(nil, resp)
			if !bytes.Equal(w.Bytes(), want) {
				i := 0
				for i < min(w.Len(), len(want)) && w.Bytes()[i] == want[i] {
					i++
				}
				t.Fatalf("%d records: differs at byte %d:\ngot  %.300s\nwant %.300s", n, i, w.Bytes()[i:], want[i:])
			}
			if nshares := len(shares(n)) - 1; w.writes != nshares {
				t.Errorf("%d records: written in %d pieces, want one a share (%d)", n, w.writes, nshares)
			}
		}
		if fmt.Sprint(recs) != before {
			t.Fatalf("%d records: writing them changed them", n)
		}
	}
}

// searchGateways are two gateway muxes over one store: the generated
// handler of GET /v1/logs:search alone, and with handleSearchJSON.
func searchGateways(t *testing.T) (generated, ours *httptest.Server) {
	t.Helper()
	st := openTestStore(t)
	core := Core{Ingest: ingest.New(st, ingest.DefaultOptions(), nil, nil), Backend: query.NewLocal(st, query.DefaultOptions())}
	msgs := []string{"plain words", `q"uo\te`, "tab\tnew\nline", "é ü 日本語 🚀", "\u2028 x"}
	labels := []model.Labels{{Service: "api", Host: "h1", BuildID: "b-1", DeployID: "d-1"}, {Service: `s"q`, Host: "é"}, {Service: "svc"}}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var recs []model.Record
	for i := range 3000 {
		r := model.Record{Time: base + int64(i%1700)*int64(time.Second), Labels: labels[i%3], Level: model.Level(i % int(model.NumLevels)),
			Message: fmt.Sprintf("%s %d", msgs[i%len(msgs)], i), TraceID: []string{"", "t-1"}[i%2]}
		if i%4 == 0 {
			r.Attrs = []model.Attr{{Key: "k", Value: fmt.Sprint(i)}, {Key: "z", Value: "é"}}
		}
		recs = append(recs, r)
	}
	if _, err := core.Ingest.Ingest(context.Background(), &model.Batch{AgentID: "a", Records: recs}); err != nil {
		t.Fatal(err)
	}
	q := limitedQueries{s: &queryServer{core: core}}
	mk := func(withOurs bool) *httptest.Server {
		gw := gwruntime.NewServeMux((&Server{}).gatewayOptions(gatewayJSON{&gwruntime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}})...)
		if err := shiplogv1.RegisterQueryServiceHandlerServer(context.Background(), gw, q); err != nil {
			t.Fatal(err)
		}
		if withOurs {
			if err := handleSearchJSON(gw, q); err != nil {
				t.Fatal(err)
			}
		}
		srv := httptest.NewServer(gw)
		t.Cleanup(srv.Close)
		return srv
	}
	return mk(false), mk(true)
}

// GET /v1/logs:search answers as the generated gateway handler did: the
// same status, content type and bytes, for pages, errors, unknown
// parameters and a form body posted in its place.
func TestSearchHTTPAsGateway(t *testing.T) {
	gen, ours := searchGateways(t)
	r := "&start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z"
	for _, c := range []struct {
		method, query, body string
		header              []string
	}{
		{"GET", "q=" + r, "", nil},
		{"GET", "q=service:api&limit=10000&order=asc" + r, "", nil},
		{"GET", "q=service:api&limit=3&order=desc" + r, "", nil},
		{"GET", "q=plain&limit=700" + r, "", nil},
		{"GET", "limit=5&unknown=1&order=asc" + r, "", []string{"TE", "trailers"}},
		{"GET", "limit=-1", "", nil},
		{"GET", "limit=abc", "", nil},
		{"GET", "limit=10001", "", nil},
		{"GET", "order=sideways", "", nil},
		{"GET", "q=(unbalanced", "", nil},
		{"GET", "start=yesterday-ish", "", nil},
		{"GET", "cursor=!!!", "", nil},
		{"POST", "", "q=service:api&limit=4&order=asc" + r, []string{"Content-Type", "application/x-www-form-urlencoded"}},
	} {
		var answers [2]string
		for i, srv := range []*httptest.Server{gen, ours} {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			req, err := http.NewRequest(c.method, srv.URL+"/v1/logs:search?"+c.query, body)
			if err != nil {
				t.Fatal(err)
			}
			for k := 0; k+1 < len(c.header); k += 2 {
				req.Header.Set(c.header[k], c.header[k+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			answers[i] = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
		if answers[0] != answers[1] {
			t.Errorf("%s %s: answered\n%.600s\nwant (the generated handler's)\n%.600s", c.method, c.query, answers[1], answers[0])
		}
		if ok := strings.HasPrefix(answers[0], "200 "); ok != strings.Contains(answers[0], `"records":[{"id":`) &&
			!strings.HasPrefix(answers[0], "400 ") {
			t.Errorf("%s %s: neither records nor a bad request: %.300s", c.method, url.PathEscape(c.query), answers[0])
		}
	}
}

// BenchmarkSearchPageJSON writes the page of BenchmarkSearchPage straight
// from the records, as GET /v1/logs:search does.
func BenchmarkSearchPageJSON(b *testing.B) {
	recs := buildPageRecords()
	res := &query.SearchResult{Records: recs}
	b.ReportAllocs()
	for b.Loop() {
		writeSearchJSON(io.Discard, res)
	}
}
