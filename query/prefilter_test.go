package query_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// A /regexp/ on the message is prefiltered by its literal prefix over the
// chunk's lower-cased message block: the answers stay those of the regexp,
// case-sensitive or not, ASCII or not, across sealed and open chunks.
func TestRegexpLiteralPrefilter(t *testing.T) {
	words := []string{"Deadlock found", "deadlock", "no lock here", "ÄRGER mit Ärger", "nodeadlocks", "DEADLOCK!"}
	var recs []model.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, model.Record{Labels: model.Labels{Service: "s", Host: "h"}, Time: int64(i+1) * 1e9,
			Level: model.LevelInfo, Seq: uint64(i + 1), Message: fmt.Sprintf("%d %s", i, words[i%len(words)])})
	}
	s := loadGenerated(t, recs, 16)
	e := query.New(s, query.DefaultOptions())
	for _, re := range []string{`Deadlock`, `deadlock`, `(?i)DEADLOCK`, `Är`, `ÄRGER mit`, `lock h`, `dead.ock`} {
		rx := regexp.MustCompile(re)
		want := 0
		for _, r := range recs {
			if rx.MatchString(r.Message) {
				want++
			}
		}
		got := searchAll(t, e, mustParse(t, "/"+strings.ReplaceAll(re, "/", `\/`)+"/"), everything, true, 1000)
		if len(got) != want || want == 0 {
			t.Errorf("/%s/: %d records, want %d", re, len(got), want)
		}
		for _, r := range got {
			if !rx.MatchString(r.Message) {
				t.Errorf("/%s/ matched %q", re, r.Message)
			}
		}
	}
}
