package ingest

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// TestJSONLBlocksKeepValues decodes many records whose strings and
// attribute lists share blocks (and some too long for one), then checks
// every record still holds what its line said, and that an attribute list
// grown past its length does not write into its neighbour's.
func TestJSONLBlocksKeepValues(t *testing.T) {
	var in strings.Builder
	const n = 3000
	for i := range n {
		msg := fmt.Sprintf("message %d %s", i, strings.Repeat("m", i%50))
		if i%400 == 0 {
			msg = strings.Repeat("long", jsonBlockBytes/8) // a block of its own
		}
		fmt.Fprintf(&in, `{"service":"s","message":%q,"trace_id":"t%d","attributes":{"a":"%d","b":"x%d"}}`+"\n", msg, i, i, i)
	}
	jr := NewJSONLReader(strings.NewReader(in.String()), nil, 0)
	var recs []model.Record
	for {
		r, _, err := jr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	recs[0].Attrs = append(recs[0].Attrs, model.Attr{Key: "c", Value: "grown"})
	for i, r := range recs {
		want := fmt.Sprintf("message %d %s", i, strings.Repeat("m", i%50))
		if i%400 == 0 {
			want = strings.Repeat("long", jsonBlockBytes/8)
		}
		wantAttrs := fmt.Sprint([]model.Attr{{Key: "a", Value: fmt.Sprint(i)}, {Key: "b", Value: fmt.Sprint("x", i)}})
		if i == 0 {
			wantAttrs = fmt.Sprint([]model.Attr{{Key: "a", Value: "0"}, {Key: "b", Value: "x0"}, {Key: "c", Value: "grown"}})
		}
		if r.Message != want || r.TraceID != fmt.Sprint("t", i) || fmt.Sprint(r.Attrs) != wantAttrs {
			t.Fatalf("record %d: %.30q %q %v", i, r.Message, r.TraceID, r.Attrs)
		}
	}
}
