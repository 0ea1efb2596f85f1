package store

import (
	"unsafe"

	"github.com/shiplog/shiplog/model"
)

// headArena holds the text of a head's lines (messages, trace and span ids,
// attribute values) and their attribute lists back to back in a few blocks,
// instead of in the allocation each decoded record brought. A head's lines
// arrive among those of hundreds of other streams, so their records lie far
// apart in the heap; sealing reads every byte of them, and did so a cache
// miss a line. In the arena they are read in order, and the records they
// came in are garbage as soon as the batch is stored (one long-lived block
// of text for the collector to mark instead of a record a line).
//
// Blocks are only appended to and never reused: strings handed out stay
// valid (and unchanged) while anything holds them. A head is written under
// the store lock, so the arena needs no lock of its own.
type headArena struct {
	text  []byte       // the current text block
	attrs []model.Attr // the current attribute block
}

// Block sizes: a head of a line or two costs little; larger heads move to
// bigger blocks, whose unused tail stays small beside what the head holds.
const (
	arenaMinText  = 512
	arenaMaxText  = 16 << 10
	arenaMinAttrs = 8
	arenaMaxAttrs = 512
)

// str returns a copy of s in the arena.
func (a *headArena) str(s string) string {
	if s == "" {
		return ""
	}
	if len(a.text)+len(s) > cap(a.text) {
		if len(s) > arenaMaxText/4 {
			// A long one gets a block of its own; the current block stays.
			b := []byte(s)
			return unsafe.String(unsafe.SliceData(b), len(b))
		}
		n := min(max(2*cap(a.text), arenaMinText), arenaMaxText)
		a.text = make([]byte, 0, max(n, len(s)))
	}
	start := len(a.text)
	a.text = append(a.text, s...)
	return unsafe.String(&a.text[start], len(s)) // never written again
}

// attrList returns a copy of as (its values copied too) in the arena; nil
// when as is empty. Keys are kept as they are: decoders intern them.
func (a *headArena) attrList(as []model.Attr) []model.Attr {
	if len(as) == 0 {
		return nil
	}
	if len(a.attrs)+len(as) > cap(a.attrs) {
		if len(as) > arenaMaxAttrs/4 {
			out := make([]model.Attr, len(as))
			for i, at := range as {
				out[i] = model.Attr{Key: at.Key, Value: a.str(at.Value)}
			}
			return out
		}
		n := min(max(2*cap(a.attrs), arenaMinAttrs), arenaMaxAttrs)
		a.attrs = make([]model.Attr, 0, max(n, len(as)))
	}
	start := len(a.attrs)
	for _, at := range as {
		a.attrs = append(a.attrs, model.Attr{Key: at.Key, Value: a.str(at.Value)})
	}
	return a.attrs[start:len(a.attrs):len(a.attrs)]
}
