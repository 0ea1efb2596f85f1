package store

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
)

// refChunkTokens is chunkTokens written plainly, with sets of strings: the
// fast version must give the same terms and the same bloom filter.
func refChunkTokens(l *Lines) (words, heads, attrs []string, bl *bloom) {
	w, ids, a := map[string]struct{}{}, map[string]struct{}{}, map[string]struct{}{}
	for _, msg := range l.Msgs {
		EachToken(msg, func(tok string, _ bool) {
			if IsIDLike(tok) {
				ids[tok] = struct{}{}
			} else {
				w[tok] = struct{}{}
			}
		})
	}
	for _, as := range l.Attrs {
		for _, at := range as {
			if attrInBloom(at.Value) {
				ids[attrToken(at.Key, at.Value)] = struct{}{}
			} else {
				a[attrToken(at.Key, at.Value)] = struct{}{}
			}
		}
	}
	for i := range l.Msgs {
		if l.Traces[i] != "" {
			ids[FieldTrace+"="+l.Traces[i]] = struct{}{}
		}
		if l.Spans[i] != "" {
			ids[FieldSpan+"="+l.Spans[i]] = struct{}{}
		}
	}
	h := map[string]struct{}{}
	bl = newBloom(len(ids))
	for t := range ids {
		bl.add(t)
		if hd := idHead(t); hd != "" && !strings.Contains(t, "=") {
			h[hd] = struct{}{}
		}
	}
	sorted := func(m map[string]struct{}) []string {
		out := setToSlice(m)
		slices.Sort(out)
		return out
	}
	return sorted(w), sorted(h), sorted(a), bl
}

func TestChunkTokensMatchesReference(t *testing.T) {
	recs := benchBatches(1)[0].Records
	recs[0].Message = "Ünïcode Straße 東京都 \x1b[31mERROR\x1b[0m order=ORD12345 order=ORD12345 0"
	recs[2].Message = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq abcdefghijklmnopqrstuvwxyzabcdefghijklmno X1 AB12 abc1 Ab1 _Q_ a1b2c3"
	recs[1].Attrs = append(recs[1].Attrs, model.Attr{Key: "k", Value: strings.Repeat("v", 100)}, model.Attr{Key: "nul", Value: "a\x00b"})
	l := &Lines{Meta: &ChunkMeta{Count: uint32(len(recs))}}
	for _, r := range recs {
		l.Msgs = append(l.Msgs, r.Message)
		l.Attrs = append(l.Attrs, r.Attrs)
		l.Traces = append(l.Traces, r.TraceID)
		l.Spans = append(l.Spans, r.SpanID)
	}
	ct := chunkTokens(l)
	words, heads, attrs, bl := refChunkTokens(l)
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"words", ct.words, words}, {"heads", ct.heads, heads}, {"attrs", ct.attrs, attrs}} {
		slices.Sort(c.got)
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %d terms, want %d", c.name, len(c.got), len(c.want))
		}
	}
	if string(ct.bloom.marshal()) != string(bl.marshal()) {
		t.Errorf("bloom filters differ (%d vs %d bytes)", len(ct.bloom.bits), len(bl.bits))
	}
	if !ct.bloom.mayContain("ord12345") || !ct.bloom.mayContain(attrToken("k", strings.Repeat("v", 100))) {
		t.Error("bloom misses a token")
	}
	if got, _ := distinct([]uint64{5, 0, 5, 7, 0, 9, 7}, nil); !slices.Equal(got, []uint64{5, 0, 7, 9}) {
		t.Errorf("distinct: %v", got)
	}
}

// TestBloomBitsAsModulo checks that the filters set the bits the plain
// modulo of their layout names (fastMod), for sizes of every kind, and that
// fastMod is a % d.
func TestBloomBitsAsModulo(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, d := range []uint32{1, 2, 3, 7, 64, 1000, 4096, 65535, 1<<31 - 1, 1 << 31, 1<<32 - 1} {
		mod := modMagic(d)
		for _, a := range []uint32{0, 1, d - 1, d, d + 1, 1<<32 - 1, rng.Uint32(), rng.Uint32()} {
			if got := fastMod(a, mod, d); got != a%d {
				t.Fatalf("fastMod(%d, %d) = %d, want %d", a, d, got, a%d)
			}
		}
	}
	for _, n := range []int{1, 3, 100, 777, 5000} {
		for _, bpk := range []int{blockBloomBits, bloomBitsPerKey} {
			b := newBloomBits(n, bpk)
			want := make([]byte, len(b.bits))
			m := uint32(len(want) * 8)
			for range n {
				h := rng.Uint64()
				b.addHash(h)
				for i := uint32(0); i < uint32(b.k); i++ {
					bit := (uint32(h) + i*uint32(h>>32)) % m
					want[bit>>3] |= 1 << (bit & 7)
				}
			}
			if string(b.bits) != string(want) {
				t.Fatalf("%d keys of %d bits: filter differs from the modulo's", n, bpk)
			}
			if u := unmarshalBloom(b.marshal()); u.mod != 0 || !u.mayContain("x") && b.mayContain("x") {
				t.Fatal("read back filter differs")
			}
		}
	}
}

// FuzzChunkTokens checks the terms of a chunk of msg (and of its
// upper-cased copy) against refChunkTokens.
func FuzzChunkTokens(f *testing.F) {
	for _, s := range []string{"", "a", "GET /api/v2/reviews/327765 completed status=200 duration=105.9ms",
		"Ünïcode Straße 東京都 \x1b[31mERROR\x1b[0m order=ORD12345 x_y_z", strings.Repeat("abcdefgh", 9) + " Z9",
		"0123456789abcdefghij0123456789abcdefghij0123456789abcdefghij0123456789a", "\xff\x80_~`@[{/:\x00\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		l := &Lines{Meta: &ChunkMeta{Count: 2}, Msgs: []string{msg, strings.ToUpper(msg)}, Traces: []string{"", ""}, Spans: []string{"", ""}, Attrs: make([][]model.Attr, 2)}
		ct := chunkTokens(l)
		words, heads, _, bl := refChunkTokens(l)
		slices.Sort(ct.words)
		slices.Sort(ct.heads)
		if !slices.Equal(ct.words, words) || !slices.Equal(ct.heads, heads) || string(ct.bloom.marshal()) != string(bl.marshal()) {
			t.Fatalf("terms of %q: words %q, want %q; heads %q, want %q", msg, ct.words, words, ct.heads, heads)
		}
	})
}
