package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// TestCodecGolden pins the bytes of the batch codec (the replicated log's
// format): restructuring the encoder must not change a byte on the wire. The
// hashes were taken from the encoder as it was before internal/wire.
func TestCodecGolden(t *testing.T) {
	want := map[string]string{
		"agent only":      "d0d59d47a0037ebe",
		"closing":         "a9b13d5e8a79ab10",
		"empty":           "957b88b12730e646",
		"many records":    "cfc433c5cb971f3c",
		"max level":       "58a370e758599975",
		"negative times":  "fdb0854253ab55d8",
		"one record":      "9cf78fa5e4815647",
		"run exit limits": "30ca2feecc770647",
		"run finished":    "792fe56df112f10c",
		"run max exit":    "7a85780f62bdb45c",
		"run started":     "60c0af0688db89e9",
		"zero record":     "1e6b310f1ab4c32e",
	}
	for name, b := range codecBatches() {
		sum := sha256.Sum256(encodeBatch(nil, &b))
		got := hex.EncodeToString(sum[:8])
		if w, ok := want[name]; !ok {
			t.Errorf("%q: no golden hash; got %s", name, got)
		} else if got != w {
			t.Errorf("%q: encoding changed: sha256 %s, want %s", name, got, w)
		}
	}
}

// BenchmarkDecodeBatch decodes a 300-record batch message.
func BenchmarkDecodeBatch(b *testing.B) {
	bt := codecBatches()["many records"]
	enc := encodeBatch(nil, &bt)
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := decodeBatch(enc); err != nil {
			b.Fatal(err)
		}
	}
}
