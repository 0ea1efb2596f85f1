package server

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// The hand-written SearchResponse JSON reads as protojson's does, with the
// gateway's options, for records of every shape.
func TestSearchJSONAsProtojson(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	text := []string{"", "plain", `q"uo\te`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "é ü 日本語 🚀", "</script>&", "\u2028"}
	pick := func() string { return text[rng.IntN(len(text))] + text[rng.IntN(len(text))] }
	for i := 0; i < 300; i++ {
		resp := &shiplogv1.SearchResponse{NextCursor: pick(), Partial: rng.IntN(2) == 0}
		for range rng.IntN(3) {
			resp.MissingPartitions = append(resp.MissingPartitions, rng.Int32N(64)-3)
		}
		for range rng.IntN(4) {
			r := &shiplogv1.Record{Id: pick(), Service: pick(), Host: pick(), BuildId: pick(), DeployId: pick(), Level: pick(),
				Message: pick(), TraceId: pick(), SpanId: pick(), Seq: rng.Uint64() >> rng.IntN(64)}
			if rng.IntN(5) > 0 {
				nanos := []int32{0, 1, 120_000_000, 123_456_000, 999_999_999, 5_000}[rng.IntN(6)]
				r.Time = &timestamppb.Timestamp{Seconds: rng.Int64N(7e9), Nanos: nanos}
			}
			for range rng.IntN(3) {
				if r.Attributes == nil {
					r.Attributes = map[string]string{}
				}
				r.Attributes[pick()] = pick()
			}
			resp.Records = append(resp.Records, r)
		}
		checkAsProtojson(t, resp)
	}
	// Invalid UTF-8 (which protojson refuses to write) becomes U+FFFD.
	got, _ := gatewayJSON{}.Marshal(&shiplogv1.SearchResponse{Records: []*shiplogv1.Record{{Message: "a\xffb"}}})
	if !strings.Contains(string(got), `"message":"a`+"\ufffd"+`b"`) {
		t.Fatalf("invalid UTF-8: %s", got)
	}
}

// appendJSONStringRef is appendJSONString byte by byte: what the eight-byte
// scan must agree with.
func appendJSONStringRef(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= 0x20 && c < 0x7f && c != '"' && c != '\\':
			b = append(b, c)
		case c >= 0x80:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\ufffd"...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return append(b, '"')
}

// Strings of every byte that needs care, at every offset of the eight-byte
// scan, come out as the byte-by-byte reference writes them.
func TestAppendJSONString(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pieces := []string{"a", "Z", " ", "~", "\x00", "\x1f", "\x20", "\"", "\\", "\x7f", "\x80", "\xff", "é", "日", "🚀", "\n", "\t", "\xe6\x97"}
	for i := 0; i < 20000; i++ {
		var sb strings.Builder
		for range rng.IntN(30) {
			if rng.IntN(4) == 0 {
				sb.WriteString(pieces[rng.IntN(len(pieces))])
			} else {
				sb.WriteString("abcdefgh"[:1+rng.IntN(8)])
			}
		}
		s := sb.String()
		if got, want := appendJSONString(nil, s), appendJSONStringRef(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}

// The hand-written timestamps are time's, from 1970 to 9999, at the
// boundaries of days, months, leap years and centuries.
func TestAppendProtoTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	secs := []int64{0, 59, 86399, 86400, 951782400, 951868799, 4107542400, 4107628800, 253402300799, 253402300800, -1, -86401}
	for range 50000 {
		secs = append(secs, rng.Int64N(253402300800))
	}
	for _, sec := range secs {
		for _, nanos := range []int32{0, 1, 5_000, 120_000_000, 123_456_000, 999_999_999, rng.Int32N(1e9)} {
			got, want := appendProtoTime(nil, sec, nanos), appendProtoTimeSlow(nil, sec, nanos)
			if string(got) != string(want) {
				t.Fatalf("appendProtoTime(%d, %d) = %s, want %s", sec, nanos, got, want)
			}
			if _, err := time.Parse(time.RFC3339Nano, string(got)); err != nil && sec <= 253402300799 && sec >= 0 {
				t.Fatalf("%s: %v", got, err)
			}
		}
	}
}

// The size estimate holds a page of ordinary records without growing.
func TestSearchJSONSize(t *testing.T) {
	resp := &shiplogv1.SearchResponse{NextCursor: "c"}
	for i := range 1000 {
		resp.Records = append(resp.Records, &shiplogv1.Record{Id: "b9349b084c3a3d8f00004fe6000000e3", Service: "search", Host: "search-29a3b2",
			BuildId: "build-000523", DeployId: "deploy-b2a48685", Level: "error", Message: strings.Repeat("m", i%300),
			Time: &timestamppb.Timestamp{Seconds: 1767225600 + int64(i), Nanos: 10228611}, Seq: uint64(i) << 40,
			Attributes: map[string]string{"caller": "cmd/worker.go:68", "k": "v"}})
	}
	size := searchJSONSize(resp)
	got := appendSearchJSON(make([]byte, 0, size), resp)
	if len(got) > size || len(got) < size*3/4 {
		t.Fatalf("estimated %d bytes, wrote %d", size, len(got))
	}
}

// A page large enough to be converted and written in shares (several
// goroutines, parallelRecords each at least) comes out as protojson writes
// it, in order, and its records as toProto makes them one by one.
func TestSearchJSONShares(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	if b := shares(4*parallelRecords + 7); len(b) != 5 || b[0] != 0 || b[4] != 4*parallelRecords+7 {
		t.Fatalf("shares: %v", b)
	}
	recs := make([]model.Record, 3*parallelRecords+5)
	for i := range recs {
		recs[i] = model.Record{ID: model.ID{Stream: uint64(i) * 7919, Day: 20454, Line: uint32(i)},
			Time: int64(i-100) * 123_456_789, Labels: model.Labels{Service: "svc", Host: fmt.Sprintf("host-%d", i%7)}, Level: model.Level(i % 6),
			Message: fmt.Sprintf("line %d \"quoted\" é", i), Seq: uint64(i)}
		if i%3 == 0 {
			recs[i].Attrs = []model.Attr{{Key: "k", Value: strconv.Itoa(i)}}
		}
	}
	resp := &shiplogv1.SearchResponse{Records: recordsToProto(recs), NextCursor: "next"}
	for i := range recs {
		if want := toProtoOneByOne(&recs[i]); !proto.Equal(resp.Records[i], want) {
			t.Fatalf("record %d: %v, want %v", i, resp.Records[i], want)
		}
	}
	checkAsProtojson(t, resp)
}

// checkAsProtojson fails unless the gateway's JSON of resp reads as
// protojson's does with the gateway's options.
func checkAsProtojson(t *testing.T, resp *shiplogv1.SearchResponse) {
	t.Helper()
	want, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	got, err := gatewayJSON{}.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v\n%.2000s", err, got)
	}
	if !reflect.DeepEqual(w, g) {
		t.Fatalf("got  %.2000s\nwant %.2000s", got, want)
	}
}

// toProtoOneByOne is the conversion as it was written before pages were
// converted together: what recordsToProto must agree with.
func toProtoOneByOne(r *model.Record) *shiplogv1.Record {
	p := &shiplogv1.Record{Id: r.ID.String(), Time: timestamppb.New(time.Unix(0, r.Time).UTC()), Service: r.Service,
		Host: r.Host, BuildId: r.BuildID, DeployId: r.DeployID, Level: r.Level.String(), Message: r.Message,
		TraceId: r.TraceID, SpanId: r.SpanID, Seq: r.Seq}
	for _, a := range r.Attrs {
		if p.Attributes == nil {
			p.Attributes = map[string]string{}
		}
		p.Attributes[a.Key] = a.Value
	}
	return p
}

// buildPageRecords is one build's page as query a of the scale bench finds
// it: 3,601 lines of ~330 bytes.
func buildPageRecords() []model.Record {
	recs := make([]model.Record, 3601)
	for i := range recs {
		recs[i] = model.Record{ID: model.ID{Stream: uint64(i%40) * 7919, Day: 20454, Line: uint32(i)},
			Time: 1767225600e9 + int64(i)*23_456_789, Labels: model.Labels{Service: "search", Host: "search-3b982e",
				BuildID: "build-000123", DeployID: "deploy-ec24a3c5"}, Level: model.LevelInfo,
			Message: "GET /api/v2/reviews/327765 completed status=200 duration=105.9ms bytes=5160230 request_id=0ed42f1a3d4cbf37 caller=cmd/worker.go:68 trace_id=15ed626914296c07f26b4776913e4de2"}
	}
	return recs
}

// BenchmarkSearchPage converts and writes one build's page (query a of the
// scale bench: 3,601 lines of ~330 bytes).
func BenchmarkSearchPage(b *testing.B) {
	recs := buildPageRecords()
	b.ReportAllocs()
	for b.Loop() {
		resp := &shiplogv1.SearchResponse{Records: recordsToProto(recs)}
		if _, err := (gatewayJSON{}).Marshal(resp); err != nil {
			b.Fatal(err)
		}
	}
}
