package store

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/shiplog/shiplog/model"
)

// TestHeadArena checks that every string and attribute list handed out
// keeps its value while the arena grows past many blocks, long values too.
func TestHeadArena(t *testing.T) {
	var a headArena
	type kept struct {
		s     string
		want  string
		attrs []model.Attr
		wantA []model.Attr
	}
	var all []kept
	for i := range 3000 {
		src := []byte(fmt.Sprintf("line %d %s", i, strings.Repeat("x", i%97)))
		if i%500 == 0 {
			src = []byte(strings.Repeat("long", arenaMaxText)) // a block of its own
		}
		want := string(src)
		var attrs []model.Attr
		for j := range i % 5 {
			attrs = append(attrs, model.Attr{Key: fmt.Sprint("k", j), Value: fmt.Sprint("v", i, "-", j)})
		}
		if i%700 == 0 {
			for j := range arenaMaxAttrs {
				attrs = append(attrs, model.Attr{Key: "many", Value: fmt.Sprint(j)})
			}
		}
		wantA := append([]model.Attr(nil), attrs...)
		k := kept{s: a.str(string(src)), want: want, attrs: a.attrList(attrs), wantA: wantA}
		clear(src) // the source may be reused: the copy must not change
		for j := range attrs {
			attrs[j] = model.Attr{}
		}
		all = append(all, k)
	}
	if a.str("") != "" || a.attrList(nil) != nil {
		t.Fatal("empty values are not empty")
	}
	for i, k := range all {
		if k.s != k.want {
			t.Fatalf("string %d changed: %.40q, want %.40q", i, k.s, k.want)
		}
		if fmt.Sprint(k.attrs) != fmt.Sprint(k.wantA) || (len(k.wantA) == 0) != (k.attrs == nil) {
			t.Fatalf("attributes %d changed: %v, want %v", i, k.attrs, k.wantA)
		}
		if len(k.attrs) > 0 && cap(k.attrs) != len(k.attrs) {
			t.Fatalf("attributes %d: capacity %d past length %d (an append would write into the next list)", i, cap(k.attrs), len(k.attrs))
		}
	}
}

// TestStreamIDOneCall checks StreamID against the streamed hash it was
// first written as (stream ids are on disk), with labels short and long.
func TestStreamIDOneCall(t *testing.T) {
	ref := func(l model.Labels) uint64 {
		var d xxhash.Digest
		d.Reset()
		for i, v := range []string{l.Service, l.Host, l.BuildID, l.DeployID} {
			if i > 0 {
				_, _ = d.Write([]byte{0})
			}
			_, _ = d.WriteString(v)
		}
		return d.Sum64()
	}
	for _, l := range []model.Labels{
		{},
		{Service: "api"},
		{Service: "api", Host: "h-1", BuildID: "b1", DeployID: "d1"},
		{Service: strings.Repeat("s", 100), Host: strings.Repeat("h", 100), BuildID: strings.Repeat("b", 53)},
		{Service: strings.Repeat("s", 100), Host: strings.Repeat("h", 100), BuildID: strings.Repeat("b", 54)},
		{Service: strings.Repeat("s", 300), Host: "h"},
	} {
		if got, want := StreamID(l), ref(l); got != want {
			t.Errorf("StreamID(%.20v) = %x, want %x", l, got, want)
		}
	}
}
