package agent

import (
	"errors"
	"testing"
)

// FuzzDecodeEntry: a damaged spool file is errCorrupt, never a panic.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(&entryMeta{ID: 1, FirstSeq: 1, LastSeq: 2, Records: 2}, []byte{0x0a, 0x01, 'a'}))
	f.Add(encodeEntry(&entryMeta{}, nil))
	f.Add([]byte(spoolMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := decodeEntry(b); err != nil && !errors.Is(err, errCorrupt) {
			t.Fatalf("error %v is not errCorrupt", err)
		}
	})
}
