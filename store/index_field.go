package store

import (
	"bytes"
	"unsafe"

	bindex "github.com/blevesearch/bleve_index_api"
)

// termsField is a Bleve field of terms chunkTokens made already, joined by
// NUL bytes: it indexes what a TextField with sepAnalyzer indexes (the same
// terms, length and options) without a Token for each term, a string made
// of each for the frequency map and a TokenFreq allocated for each (a third
// of the indexers' work and allocations went there).
type termsField struct {
	name   string
	value  []byte // never written once built: terms are slices of it
	length int
	freqs  bindex.TokenFrequencies
}

func newTermsField(name string, value []byte) *termsField {
	return &termsField{name: name, value: value}
}

func (f *termsField) Name() string                         { return f.name }
func (f *termsField) ArrayPositions() []uint64             { return nil }
func (f *termsField) Options() bindex.FieldIndexingOptions { return docFieldOptions }
func (f *termsField) Value() []byte                        { return f.value }
func (f *termsField) NumPlainTextBytes() uint64            { return uint64(len(f.value)) }
func (f *termsField) EncodedFieldType() byte               { return 't' }
func (f *termsField) AnalyzedLength() int                  { return f.length }

func (f *termsField) AnalyzedTokenFrequencies() bindex.TokenFrequencies { return f.freqs }

func (f *termsField) Size() int {
	return int(unsafe.Sizeof(*f)) + len(f.name) + len(f.value) + f.length*int(unsafe.Sizeof(bindex.TokenFreq{}))
}

// Analyze cuts the value at NUL bytes as sepAnalyzer does. With
// SkipFreqNorm and no term vectors a term's entry is its bytes alone.
func (f *termsField) Analyze() {
	n := bytes.Count(f.value, []byte{sep}) + 1
	f.freqs = make(bindex.TokenFrequencies, n)
	slab := make([]bindex.TokenFreq, n)
	f.length = 0
	for rest := f.value; ; {
		i := bytes.IndexByte(rest, sep)
		term := rest
		if i >= 0 {
			term = rest[:i:i]
		}
		if len(term) > 0 {
			f.length++
			key := unsafe.String(unsafe.SliceData(term), len(term))
			if _, ok := f.freqs[key]; !ok {
				tf := &slab[0]
				slab = slab[1:]
				tf.Term = term
				f.freqs[key] = tf
			}
		}
		if i < 0 {
			return
		}
		rest = rest[i+1:]
	}
}
