package query_test

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// t0 is the time offsets in testdata/fixture.txt count from.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// everything is a time range holding every record of every test.
var everything = model.TimeRange{Start: 0, End: math.MaxInt64}

// testOptions are store options that make several chunks out of few records
// and never seal in the background while a test runs.
func testOptions(chunkLines int) store.Options {
	o := store.DefaultOptions()
	o.ChunkMaxLines = chunkLines
	o.ChunkMaxAge = time.Hour
	o.Maintenance = time.Hour
	o.BadgerMemTable = 8 << 20
	o.BadgerCache = 8 << 20
	return o
}

// openStore opens a store in a fresh directory, closed when the test ends.
func openStore(t testing.TB, o store.Options) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), o, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendRecords(t testing.TB, s *store.Store, recs []model.Record) {
	t.Helper()
	for len(recs) > 0 {
		n := min(len(recs), 10000)
		res, err := s.Append(context.Background(), model.Batch{Records: slices.Clone(recs[:n])})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != n {
			t.Fatalf("append: accepted %d of %d", res.Accepted, n)
		}
		recs = recs[n:]
	}
}

// waitIndexed waits until every full chunk of s is sealed and indexed in
// Bleve, leaving openHeads open ones. Open and unindexed chunks are
// candidates for any word; indexed ones only for the words they hold, so a
// word found nowhere has only the open heads left as candidates then.
//
// (The test does not close and reopen the store instead: see
// TestReopenSeveralDays in store/reopen_test.go.)
func waitIndexed(t testing.TB, s *store.Store, openHeads int) {
	t.Helper()
	c := store.Term(store.FieldWord, "nosuchwordanywhere")
	deadline := time.Now().Add(20 * time.Second)
	for {
		refs, err := store.CollectCandidates(s.Candidates(context.Background(), everything, c, false))
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) == openHeads {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks still open or unindexed", len(refs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readFixture reads testdata/fixture.txt: the records to seal and those to
// leave open.
func readFixture(t testing.TB) (sealed, open []model.Record) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "fixture.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cur *[]model.Record
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case line == "sealed:":
			cur = &sealed
			continue
		case line == "open:":
			cur = &open
			continue
		}
		if cur == nil {
			t.Fatalf("fixture.txt:%d: record before sealed: or open:", ln)
		}
		head, msg, ok := strings.Cut(line, "|")
		f := strings.Fields(head)
		if !ok || len(f) < 9 {
			t.Fatalf("fixture.txt:%d: want seq time service host build deploy level trace span [k=v...] | message", ln)
		}
		seq, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			t.Fatalf("fixture.txt:%d: seq: %v", ln, err)
		}
		off, err := time.ParseDuration(f[1])
		if err != nil {
			t.Fatalf("fixture.txt:%d: time: %v", ln, err)
		}
		dash := func(s string) string {
			if s == "-" {
				return ""
			}
			return s
		}
		lv, ok := model.ParseLevel(dash(f[6]))
		if !ok {
			t.Fatalf("fixture.txt:%d: level %q", ln, f[6])
		}
		r := model.Record{
			Time:    t0.Add(off).UnixNano(),
			Labels:  model.Labels{Service: f[2], Host: f[3], BuildID: f[4], DeployID: f[5]},
			Level:   lv,
			TraceID: dash(f[7]),
			SpanID:  dash(f[8]),
			Message: strings.TrimSpace(msg),
			Seq:     seq,
		}
		for _, kv := range f[9:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("fixture.txt:%d: attribute %q is not key=value", ln, kv)
			}
			r.Attrs = append(r.Attrs, model.Attr{Key: k, Value: v})
		}
		slices.SortFunc(r.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
		*cur = append(*cur, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return sealed, open
}

// parseSeqs reads "1 3-5 9" (or "none") as a sorted list of seqs.
func parseSeqs(s string) ([]uint64, error) {
	var out []uint64
	if strings.TrimSpace(s) == "none" {
		return out, nil
	}
	for _, f := range strings.Fields(s) {
		a, b, isRange := strings.Cut(f, "-")
		lo, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seq %q: %v", f, err)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.ParseUint(b, 10, 64); err != nil || hi < lo {
				return nil, fmt.Errorf("range %q", f)
			}
		}
		for v := lo; v <= hi; v++ {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// searchAll pages through every match of q in tr, limit records at a time.
func searchAll(t testing.TB, e *query.Engine, q *query.Query, tr model.TimeRange, asc bool, limit int) []model.Record {
	t.Helper()
	var out []model.Record
	cursor := ""
	for page := 0; ; page++ {
		if page > 100000 {
			t.Fatal("search does not end")
		}
		res, err := e.Search(context.Background(), query.SearchParams{Query: q, Range: tr, Limit: limit, Cursor: cursor, Asc: asc})
		if err != nil {
			t.Fatalf("search %q page %d: %v", q, page, err)
		}
		if len(res.Records) > limit {
			t.Fatalf("search %q: page of %d records, limit %d", q, len(res.Records), limit)
		}
		out = append(out, res.Records...)
		if res.NextCursor == "" {
			return out
		}
		if len(res.Records) == 0 {
			t.Fatalf("search %q: empty page with a cursor", q)
		}
		cursor = res.NextCursor
	}
}

func mustParse(t testing.TB, s string) *query.Query {
	t.Helper()
	q, err := query.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return q
}

// less orders records as a search does: by time, then id.
func less(a, b model.Record) int {
	if a.Time != b.Time {
		if a.Time < b.Time {
			return -1
		}
		return 1
	}
	return a.ID.Compare(b.ID)
}

// genOptions describe generated records: ticks evenly spaced instants from
// start, at each of which every stream logs one record (so timestamps are
// shared across streams), and stream 0 a second one every dupEvery ticks.
type genOptions struct {
	start    time.Time
	ticks    int
	step     time.Duration
	streams  int
	services int
	dupEvery int
	shuffle  bool   // append in a random order (chunks then overlap in time)
	seed     uint64 // of the shuffle
}

// generate returns the records in the order to append them, each with the id
// the store will give it (line numbers count per stream and day in append
// order).
func generate(g genOptions) []model.Record {
	levels := []model.Level{model.LevelInfo, model.LevelInfo, model.LevelWarn, model.LevelError, model.LevelDebug, model.LevelInfo, model.LevelUnset}
	var out []model.Record
	add := func(k, i int, msg string) {
		r := model.Record{
			Time: g.start.Add(time.Duration(k) * g.step).UnixNano(),
			Labels: model.Labels{
				Service:  fmt.Sprintf("svc-%d", i%g.services),
				Host:     fmt.Sprintf("host-%d", i),
				BuildID:  fmt.Sprintf("build-%06d", i%3),
				DeployID: fmt.Sprintf("deploy-%04d", i%2),
			},
			Level:   levels[(k+i)%len(levels)],
			Message: msg,
			Attrs:   []model.Attr{{Key: "n", Value: strconv.Itoa(k)}, {Key: "status", Value: "200"}},
			Seq:     uint64(len(out) + 1),
		}
		if (k+i)%4 == 0 {
			r.Attrs[1].Value = "500"
		}
		out = append(out, r)
	}
	for k := 0; k < g.ticks; k++ {
		for i := 0; i < g.streams; i++ {
			msg := fmt.Sprintf("GET /api/v1/items/%d from host-%d took %dms", k, i, (k*7+i)%250)
			if k%3 == 0 {
				msg += " alpha"
			}
			if (k+i)%5 == 0 {
				msg += fmt.Sprintf(" request_id=%08x", k*7919+i)
			}
			add(k, i, msg)
		}
		if g.dupEvery > 0 && k%g.dupEvery == 0 {
			add(k, 0, fmt.Sprintf("tick %d again", k))
		}
	}
	if g.shuffle {
		rng := rand.New(rand.NewPCG(g.seed, 1))
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	next := map[[2]uint64]uint32{}
	for i := range out {
		r := &out[i]
		st, day := store.StreamID(r.Labels), model.Day(r.Time)
		k := [2]uint64{st, uint64(day)}
		r.ID = model.ID{Stream: st, Day: day, Line: next[k]}
		next[k]++
	}
	return out
}

// openHeads is the number of chunks left open after appending recs with
// chunks of chunkLines lines.
func openHeads(recs []model.Record, chunkLines int) int {
	n := map[[2]uint64]int{}
	for _, r := range recs {
		n[[2]uint64{r.ID.Stream, uint64(r.ID.Day)}]++
	}
	open := 0
	for _, c := range n {
		if c%chunkLines != 0 {
			open++
		}
	}
	return open
}

// loadGenerated appends recs to a fresh store and waits until every full
// chunk is sealed and indexed.
func loadGenerated(t testing.TB, recs []model.Record, chunkLines int) *store.Store {
	t.Helper()
	s := openStore(t, testOptions(chunkLines))
	appendRecords(t, s, recs)
	waitIndexed(t, s, openHeads(recs, chunkLines))
	return s
}

func hasWord(msg, word string) bool {
	return slices.Contains(store.Tokens(nil, msg), word)
}

func attrNum(r model.Record, key string) (float64, bool) {
	v, ok := r.Attr(key)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}

func level(r model.Record) model.Level {
	if r.Level == model.LevelUnset {
		return model.LevelInfo
	}
	return r.Level
}
