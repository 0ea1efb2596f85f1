package server

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// The hand-written SearchResponse JSON reads as protojson's does, with the
// gateway's options, for records of every shape.
func TestSearchJSONAsProtojson(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	text := []string{"", "plain", `q"uo\te`, "tab\tnew\nline\r", "\x00\x01\x1f\x7f", "é ü 日本語 🚀", "</script>&", "\u2028"}
	pick := func() string { return text[rng.IntN(len(text))] + text[rng.IntN(len(text))] }
	mo := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}
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
		want, err := mo.Marshal(resp)
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
			t.Fatalf("not JSON: %v\n%s", err, got)
		}
		if !reflect.DeepEqual(w, g) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	}
	// Invalid UTF-8 (which protojson refuses to write) becomes U+FFFD.
	got, _ := gatewayJSON{}.Marshal(&shiplogv1.SearchResponse{Records: []*shiplogv1.Record{{Message: "a\xffb"}}})
	if !strings.Contains(string(got), `"message":"a`+"\ufffd"+`b"`) {
		t.Fatalf("invalid UTF-8: %s", got)
	}
}
