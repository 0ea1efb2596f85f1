package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestSpoolEntryGolden pins the bytes of a spool file, and reads them back:
// restructuring the encoder must not change a byte on disk.
func TestSpoolEntryGolden(t *testing.T) {
	meta := &entryMeta{ID: 7, FirstSeq: 1, LastSeq: 300, Records: 300, NextSeq: 301, Dropped: 2,
		Positions: map[string]Position{}}
	b := encodeEntry(meta, []byte{0x0a, 0x03, 'a', 'g', 't'})
	sum := sha256.Sum256(b)
	if got, want := hex.EncodeToString(sum[:8]), "45363c04dfa2112d"; got != want {
		t.Errorf("spool entry: sha256 %s, want %s", got, want)
	}
	req, err := decodeEntry(b)
	if err != nil || req.GetAgentId() != "agt" {
		t.Fatalf("decode: %v, %v", req, err)
	}
}
