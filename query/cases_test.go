package query_test

import (
	"bufio"
	"context"
	"errors"
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

// queryCase is one line of a testdata case file.
type queryCase struct {
	pos   string // file:line
	query string
	want  []uint64 // seqs of the matching records, sorted
	err   string   // when set, Parse must fail with an error containing it
}

// readCases reads every testdata/*.txt file but fixture.txt. A case is
// `query => seqs`, `query => none` or `query => error: text`; an empty query
// is written `=> seqs`.
func readCases(t testing.TB) []queryCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []queryCase
	for _, name := range files {
		if filepath.Base(name) == "fixture.txt" {
			continue
		}
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for ln := 1; sc.Scan(); ln++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			c := queryCase{pos: filepath.Base(name) + ":" + strconv.Itoa(ln)}
			i := strings.LastIndex(line, "=>")
			if i < 0 {
				t.Fatalf("%s: want `query => seqs`", c.pos)
			}
			c.query, line = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+2:])
			if msg, ok := strings.CutPrefix(line, "error:"); ok {
				c.err = strings.TrimSpace(msg)
			} else if c.want, err = parseSeqs(line); err != nil {
				t.Fatalf("%s: %v", c.pos, err)
			}
			out = append(out, c)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("no cases in testdata")
	}
	return out
}

// TestFixture loads testdata/fixture.txt into a store, some records sealed
// into Badger and Bleve and some still open in memory, and runs the cases of
// testdata/*.txt over it. Each case is checked by searching in both orders,
// whole and a page at a time, and by a histogram that must count the same
// records in the same buckets.
func TestFixture(t *testing.T) {
	sealed, open := readFixture(t)
	s := openStore(t, testOptions(4))
	e := query.New(s, query.DefaultOptions())
	appendRecords(t, s, sealed)
	waitIndexed(t, s, 0)
	t.Run("bloom", func(t *testing.T) { testIDLikeWordsUseBloom(t, s) })

	appendRecords(t, s, open)
	byseq := map[uint64]model.Record{}
	for _, r := range append(slices.Clone(sealed), open...) {
		byseq[r.Seq] = r
	}
	for _, c := range readCases(t) {
		t.Run(c.pos+" "+c.query, func(t *testing.T) { runCase(t, e, c, byseq) })
	}
	t.Run("id", func(t *testing.T) { testRecordID(t, e, len(byseq)) })
}

func runCase(t *testing.T, e *query.Engine, c queryCase, byseq map[uint64]model.Record) {
	q, err := query.Parse(c.query)
	if c.err != "" {
		if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, query.ErrBadQuery) {
			t.Fatalf("Parse(%q) = %v; want a bad query error containing %q", c.query, err, c.err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Parse(%q): %v", c.query, err)
	}
	for _, tc := range []struct {
		asc   bool
		limit int
	}{{true, 1000}, {false, 1000}, {true, 2}, {false, 3}} {
		recs := searchAll(t, e, q, everything, tc.asc, tc.limit)
		var got []uint64
		for i, r := range recs {
			got = append(got, r.Seq)
			if i > 0 {
				if d := less(recs[i-1], r); tc.asc && d >= 0 || !tc.asc && d <= 0 {
					t.Errorf("asc=%v limit=%d: records %d and %d out of order", tc.asc, tc.limit, recs[i-1].Seq, r.Seq)
				}
			}
			if want, ok := byseq[r.Seq]; !ok || want.Message != r.Message || want.Labels != r.Labels || want.Time != r.Time {
				t.Errorf("record seq %d came back as %+v", r.Seq, r)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Fatalf("asc=%v limit=%d: got seqs %v, want %v", tc.asc, tc.limit, got, c.want)
		}
	}

	// Live tail matches one record at a time: it must agree with search
	// (given the same reading of a:b, which the server resolves too).
	q = e.Resolve(q, everything)
	m := q.Matcher() // reused across records, as a tail does
	for seq, r := range byseq {
		if got := q.MatchRecord(&r); got != slices.Contains(c.want, seq) {
			t.Errorf("MatchRecord(seq %d) = %v", seq, got)
		}
		if got := m.Match(&r); got != slices.Contains(c.want, seq) {
			t.Errorf("Matcher().Match(seq %d) = %v", seq, got)
		}
	}

	step := time.Hour
	tr := model.TimeRange{Start: t0.Add(-time.Hour).UnixNano(), End: t0.Add(25 * time.Hour).UnixNano()}
	buckets, err := e.Histogram(context.Background(), q, tr, step)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, len(buckets))
	for _, seq := range c.want {
		want[(byseq[seq].Time-buckets[0].Start)/int64(step)]++
	}
	for i, b := range buckets {
		if b.Count != want[i] {
			t.Errorf("histogram bucket %s: %d, want %d", time.Unix(0, b.Start).UTC().Format(time.RFC3339), b.Count, want[i])
		}
	}
}

// testRecordID looks every record up by its id with id:<id>.
func testRecordID(t *testing.T, e *query.Engine, n int) {
	all := searchAll(t, e, mustParse(t, ""), everything, true, 1000)
	if len(all) != n {
		t.Fatalf("%d records, want %d", len(all), n)
	}
	for _, r := range all {
		got := searchAll(t, e, mustParse(t, "id:"+r.ID.String()), everything, false, 10)
		if len(got) != 1 || got[0].ID != r.ID || got[0].Seq != r.Seq {
			t.Errorf("id:%s: got %d records, want seq %d", r.ID, len(got), r.Seq)
		}
	}
	if got := searchAll(t, e, mustParse(t, "id:"+(model.ID{Stream: 1, Day: 2, Line: 3}).String()), everything, false, 10); len(got) != 0 {
		t.Errorf("unknown id matched %d records", len(got))
	}
}

// testIDLikeWordsUseBloom checks, over sealed and indexed chunks only, that
// id-like words narrow the chunks through their bloom filters and ordinary
// words and labels through Bleve.
func testIDLikeWordsUseBloom(t *testing.T, s *store.Store) {
	ctx := context.Background()
	all, err := store.CollectCandidates(s.Candidates(ctx, everything, mustParse(t, "").Cond(), false))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Fatalf("%d sealed chunks, want 8", len(all))
	}
	for _, tc := range []struct {
		q    string
		want int // chunks holding the word
	}{
		{"8f3a9c21", 2},   // api/web-1 lines 5-8, db/db-1
		{"8F3A9C21", 2},   // the same
		{"404711", 1},     // api/web-1 lines 5-8
		{"deadbeef42", 0}, // nowhere
		{"trace_id:4bf92f3577b34da6a3ce929d0e0e4736", 2},
		{"span_id:00f067aa0ba902b7", 1},
		{"request_id:req-7f3a9c21", 1}, // an id-like attribute value
		{"refused", 3},                 // Bleve: api/web-1 lines 1-4 and 9-12, day two
		{"status:500", 3},              // Bleve: api/web-1 lines 1-4, auth, day two
		{"service:db", 1},
		{"level:fatal", 2},
		{"service:api 8f3a9c21", 1},
		{"8f3a9c21 OR trace_id:4bf92f3577b34da6a3ce929d0e0e4736", 3},
	} {
		refs, err := store.CollectCandidates(s.Candidates(ctx, everything, mustParse(t, tc.q).Cond(), false))
		if err != nil {
			t.Fatal(err)
		}
		// A bloom filter lets a chunk through by mistake now and then.
		if len(refs) < tc.want || len(refs) > tc.want+1 {
			t.Errorf("%s: %d candidate chunks of %d; want %d", tc.q, len(refs), len(all), tc.want)
		}
	}
}
