package query_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// A search gives each sealed chunk's text buffers back for reuse once it has
// copied its hits: the records of one search stay whole while later
// searches decompress other chunks into those buffers.
func TestSearchReleasesChunks(t *testing.T) {
	var recs []model.Record
	for i := 0; i < 4200; i++ { // 1,400 lines a host: every chunk sealed
		msg := fmt.Sprintf("request %d done in %dms", i, i%97)
		switch i % 50 {
		case 7:
			msg = fmt.Sprintf("transaction %d aborted: deadlock detected", i)
		case 31:
			msg = fmt.Sprintf("disk %d nearly full: quota exceeded", i)
		}
		recs = append(recs, model.Record{Labels: model.Labels{Service: "s", Host: fmt.Sprintf("h%d", i%3)}, Time: int64(i+1) * 1e9,
			Level: model.LevelInfo, Seq: uint64(i + 1), Message: msg, TraceID: fmt.Sprintf("trace-%d", i),
			Attrs: []model.Attr{{Key: "n", Value: fmt.Sprint(i)}}})
	}
	s := loadGenerated(t, recs, 200)
	e := query.New(s, query.DefaultOptions())
	first := searchAll(t, e, mustParse(t, "deadlock"), everything, true, 1000)
	if len(first) != 84 {
		t.Fatalf("%d records hold deadlock, want 84", len(first))
	}
	want := make([]string, len(first))
	for i, r := range first {
		want[i] = fmt.Sprintf("%s|%s|%v", r.Message, r.TraceID, r.Attrs)
	}
	for range 5 {
		if got := searchAll(t, e, mustParse(t, "quota"), everything, true, 1000); len(got) != 84 {
			t.Fatalf("%d records hold quota, want 84", len(got))
		}
	}
	for i, r := range first {
		got := fmt.Sprintf("%s|%s|%v", r.Message, r.TraceID, r.Attrs)
		if got != want[i] || !strings.Contains(r.Message, "deadlock") || r.TraceID != fmt.Sprintf("trace-%d", r.Seq-1) {
			t.Fatalf("record %d changed after later searches: %q, was %q", i, got, want[i])
		}
	}
}
