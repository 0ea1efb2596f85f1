package store

import (
	"fmt"
	"sort"
	"testing"

	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/document"
	index "github.com/blevesearch/bleve_index_api"
)

// sepAnalyzer cuts a field value at NUL bytes: how chunk documents were
// analyzed before termsField, kept as its reference.
type sepAnalyzer struct{}

func (sepAnalyzer) Analyze(b []byte) analysis.TokenStream {
	ts := make(analysis.TokenStream, 0, 8)
	start, pos := 0, 1
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == sep {
			if i > start {
				ts = append(ts, &analysis.Token{Start: start, End: i, Term: b[start:i], Position: pos, Type: analysis.AlphaNumeric})
				pos++
			}
			start = i + 1
		}
	}
	return ts
}

// TestTermsField checks that a termsField indexes what a TextField with
// sepAnalyzer does: the same terms, length and options.
func TestTermsField(t *testing.T) {
	for _, v := range []string{
		"a", "error\x00warn", "x\x00\x00y\x00", "\x00lead", "dup\x00b\x00dup\x00dup", "",
		"k=v\x00k2=v 2\x00caf\u00e9\x00\u65e5\u672c",
	} {
		tf := document.NewTextFieldCustom(FieldWord, nil, []byte(v), docFieldOptions, sepAnalyzer{})
		tf.Analyze()
		f := newTermsField(FieldWord, []byte(v))
		f.Analyze()
		if f.AnalyzedLength() != tf.AnalyzedLength() {
			t.Errorf("%q: length %d, want %d", v, f.AnalyzedLength(), tf.AnalyzedLength())
		}
		if got, want := freqString(f.AnalyzedTokenFrequencies()), freqString(tf.AnalyzedTokenFrequencies()); got != want {
			t.Errorf("%q: terms %s, want %s", v, got, want)
		}
		if f.Options() != tf.Options() || f.Name() != tf.Name() || f.EncodedFieldType() != tf.EncodedFieldType() || f.NumPlainTextBytes() != tf.NumPlainTextBytes() {
			t.Errorf("%q: field properties differ", v)
		}
	}
}

func freqString(tfs index.TokenFrequencies) string {
	var out []string
	for k, tf := range tfs {
		out = append(out, fmt.Sprintf("%s:%s:%d:%d", k, tf.Term, tf.Frequency(), len(tf.Locations)))
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}
