package store

import (
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/shiplog/shiplog/model"
)

// TestEncodingsGolden pins the bytes of every on-disk encoding (chunks,
// metas, WAL batches, agent, run and series values, metric chunk values):
// restructuring the encoders must not change a byte of what is on disk.
// The hashes were taken from the encoders as they were before internal/wire.
func TestEncodingsGolden(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	enc := map[string][]byte{}
	for _, n := range []int{0, 1, 5, 300} {
		l := randLines(rng, n)
		tv, cv := encodeChunkVersion(l, nil, 2) // as versions before 3 wrote it
		_, cv3 := encodeChunkVersion(l, chunkTokensFor(l, 3), 3)
		_, cv4 := encodeChunkVersion(l, chunkTokensFor(l, 4), 4)
		_, cv5 := encodeChunkVersion(l, chunkTokensFor(l, 5), 5)
		tv2, cv6 := encodeChunk(l) // lengths kept when a message holds a NUL
		nonul := *l
		nonul.Msgs = make([]string, len(l.Msgs))
		for i, m := range l.Msgs {
			nonul.Msgs[i] = strings.ReplaceAll(m, "\x00", " ")
		}
		_, cv6s := encodeChunk(&nonul) // messages followed by NULs
		l.Meta.Notable = buildNotable(l)
		enc["chunk t "+itoa(n)] = tv
		enc["chunk c "+itoa(n)] = cv
		enc["chunk c3 "+itoa(n)] = cv3
		enc["chunk t2 "+itoa(n)] = tv2
		enc["chunk c4 "+itoa(n)] = cv4
		enc["chunk c5 "+itoa(n)] = cv5
		enc["chunk c6 "+itoa(n)] = cv6
		enc["chunk c6 sep "+itoa(n)] = cv6s
		enc["meta "+itoa(n)] = encodeMeta(l.Meta)
	}
	// Three message blocks, with word filters (one block has none).
	l1100 := randLines(rand.New(rand.NewPCG(9, 10)), 1100)
	_, enc["chunk c3 1100"] = encodeChunkVersion(l1100, chunkTokensFor(l1100, 3), 3)
	enc["wal 0"] = walPayload(walBatch(0))
	enc["wal 20"] = walPayload(walBatch(20))
	enc["wal no agent"] = walPayload(model.Batch{Records: walBatch(3).Records})
	enc["agent"] = encodeAgent(nil, &AgentInfo{AckedSeq: 1 << 40, Received: 7, Duplicates: 1, Gaps: 2, Dropped: 3, Closed: true,
		ClosedAt: -5, LastSeen: 1_770_000_000_000_000_000, Hosts: []HostKey{{"api", "web-1"}, {"", "é"}}, Sender: "10.0.0.1:5"})
	enc["run"] = encodeRun(&model.Run{BuildID: "b", DeployID: "d", Service: "s", Host: "h", Command: []string{"sh", "-c", ""},
		Start: 1, End: -2, Finished: true, ExitCode: -3})
	enc["series labels"] = encodeSeriesLabels([]model.Label{{Name: "__name__", Value: "up"}, {Name: "job", Value: "x"}})
	enc["chunk value"] = encodeChunkValue(chunkenc.EncXOR, 100, 1<<33, []byte{0, 1, 2, 3})
	enc["day words"] = encodeDayWords([]string{"caller", "completed", "status", "é"})
	enc["segments value"] = encodeSegmentsValue(100, 5000, []MetricChunk{{MinT: 100, MaxT: 200, Data: []byte{0, 1, 9}}, {MinT: 300, MaxT: 5000, Data: []byte{0, 2}}})
	want := map[string]string{
		"agent":            "6e80294fcf4324af",
		"chunk c 000":      "20645fdd3a7b5315",
		"chunk c 001":      "f11d3c4be3dd1c8a",
		"chunk c 005":      "f6a35603b4808ec7",
		"chunk c 300":      "cb7c1e765588c289",
		"chunk c3 000":     "bc0679398595f5a5",
		"chunk c3 001":     "0c6646181b2179cd",
		"chunk c3 005":     "763c1ef31dfecd9e",
		"chunk c3 300":     "98bc571add0b7a3a",
		"chunk c3 1100":    "d0969675e865f77e",
		"chunk c4 000":     "72c2b5e1b8ae694c",
		"chunk c4 001":     "125a9d371c1e1d68",
		"chunk c4 005":     "43a20aec970d5453",
		"chunk c4 300":     "edc8d9a435a08908",
		"chunk c5 000":     "434605c470a7a867",
		"chunk c5 001":     "680948d84c106e1a",
		"chunk c5 005":     "22ac78692d6c1df1",
		"chunk c5 300":     "d917ebaa1cb72f7a",
		"chunk c6 000":     "d3aef891ada03112",
		"chunk c6 001":     "955586f66ad92ac5",
		"chunk c6 005":     "9017219e6d3551a4",
		"chunk c6 300":     "c40673d677120858",
		"chunk c6 sep 000": "d3aef891ada03112",
		"chunk c6 sep 001": "955586f66ad92ac5",
		"chunk c6 sep 005": "65432f7176a837a5",
		"chunk c6 sep 300": "674f73ceeddb7261",
		"chunk t2 000":     "c959221e896b266f",
		"chunk t2 001":     "e095ebe1e01e3fb0",
		"chunk t2 005":     "d66855e44ec57bbe",
		"chunk t2 300":     "74ca1d5c6ecce22a",
		"chunk t 000":      "bdb5ce7f94e4e552",
		"chunk t 001":      "c651e3d2927faf6a",
		"chunk t 005":      "e5e1b3f4b209b063",
		"chunk t 300":      "4c0bcf886e816ed8",
		"chunk value":      "0d8dc18017619cb4",
		"day words":        "dd0328198729ec64",
		"meta 000":         "a21a18085fe91c11",
		"meta 001":         "7a10abe4aab03686",
		"meta 005":         "449b147461c492ca",
		"meta 300":         "30301ec4a4e28224",
		"run":              "56e447bf2fc29ad7",
		"segments value":   "9f8419ff511d2245",
		"series labels":    "54420f53a9352c5e",
		"wal 0":            "7c7450c0793ae406",
		"wal 20":           "3fdf3654cd7fd696",
		"wal no agent":     "1826122771e5a59b",
	}
	for name, b := range enc {
		sum := sha256.Sum256(b)
		got := hex.EncodeToString(sum[:8])
		if w, ok := want[name]; !ok {
			t.Errorf("%q: no golden hash; got %s", name, got)
		} else if got != w {
			t.Errorf("%q: encoding changed: sha256 %s, want %s", name, got, w)
		}
	}
}

func itoa(n int) string {
	return string(rune('0'+n/100%10)) + string(rune('0'+n/10%10)) + string(rune('0'+n%10))
}
