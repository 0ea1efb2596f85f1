package query

import (
	"testing"
	"unicode/utf8"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// FuzzMatchOwnText: a message matches the phrase of its own words (in place
// for ASCII, through store.Tokens otherwise), a phrase of a part of them, and
// the word-by-word matcher agrees with the tokens the index holds.
func FuzzMatchOwnText(f *testing.F) {
	for _, s := range []string{"GET /users done", "\x1b[33mwarning:\x1b[0m unused", "日本語テキスト", "Ελληνικά ΚΕΊΜΕΝΟΣ", "naïve—Test", "東京test1日本", "warn\x1b[0ming"} {
		f.Add(s, 1)
	}
	f.Fuzz(func(t *testing.T, msg string, cut int) {
		toks := store.Tokens(nil, msg)
		if len(toks) == 0 {
			return
		}
		wide := make([]bool, len(toks))
		i := 0
		store.EachToken(msg, func(_ string, w bool) { wide[i] = w; i++ })
		l := &store.Lines{Meta: &store.ChunkMeta{Count: 1}, Msgs: []string{msg}, Times: []int64{0}, Levels: []model.Level{0},
			Traces: []string{""}, Spans: []string{""}, Attrs: [][]model.Attr{nil}, Seqs: []uint64{0}}
		if !(wordsNode{toks: toks, wide: wide}).match(l, 0) {
			t.Fatalf("%q does not match its own words %q", msg, toks)
		}
		k := cut % len(toks)
		if k < 0 {
			k = -k
		}
		if !(wordsNode{toks: toks[k:], wide: wide[k:]}).match(l, 0) {
			t.Fatalf("%q does not match its words from %d: %q", msg, k, toks[k:])
		}
		if !utf8.ValidString(msg) || model.HasANSI(msg) {
			return // Bleve's parser reads UTF-8; escaping " and \ would change an escape sequence
		}
		q, err := Parse(`"` + escapePhrase(msg) + `"`)
		if err == nil && !q.MatchRecord(&model.Record{Message: msg}) {
			t.Fatalf("%q does not match the phrase query of itself", msg)
		}
	})
}

// escapePhrase makes s safe inside "..." for Bleve's parser.
func escapePhrase(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			out = append(out, ' ')
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}
