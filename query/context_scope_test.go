package query

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
)

// A cross context is centred on the record, keeps to its scope (its deploy
// by default), says whether more lines lie beyond each side and gives
// cursors to read on.
func TestContextCrossScope(t *testing.T) {
	var recs []model.Record
	g := mapGetter{}
	for i := range 60 {
		r := drec(int64(i/3), uint64(1+i%3), uint32(i))
		r.DeployID = "d/1"
		if i%3 == 2 {
			r.DeployID, r.BuildID, r.Service = "", "ci-9", "ci" // another build at the same moments
		}
		recs = append(recs, r)
		g[r.ID] = r
	}
	target := recs[30] // second 10, h1
	s := &memSearcher{recs: recs}
	res, err := ContextOver(context.Background(), s, g, ContextParams{ID: target.ID, Cross: true, Window: 5 * time.Second, CrossLimit: 10, CrossBefore: 3, CrossAfter: 4}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if res.Scope != ScopeDeploy || res.ScopeQuery != `deploy_id:"d/1"` {
		t.Fatalf("scope %q %q", res.Scope, res.ScopeQuery)
	}
	var before, after int
	for _, r := range res.Cross {
		if r.Host != "h2" {
			t.Fatalf("cross line of %s (%s): outside the deploy or the record's own host", r.Host, r.Service)
		}
		if Ahead(&r, &target, true) {
			before++
		} else {
			after++
		}
	}
	if before != 3 || after != 4 || !res.MoreBefore || !res.MoreAfter {
		t.Fatalf("before %d after %d more %v/%v, want 3/4 and more on both sides", before, after, res.MoreBefore, res.MoreAfter)
	}
	// Reading on from the before cursor gives the scope's earlier lines.
	q, _ := Parse(res.ScopeQuery)
	more, err := s.Search(context.Background(), SearchParams{Query: q, Range: res.Window, Limit: 100, Cursor: res.BeforeCursor})
	if err != nil || len(more.Records) == 0 || !Ahead(&more.Records[0], &res.Cross[0], true) {
		t.Fatalf("reading on: %v %v", more, err)
	}
	// Widened to every service, the CI build joins in.
	res, err = ContextOver(context.Background(), s, g, ContextParams{ID: target.ID, Cross: true, Window: 5 * time.Second, CrossLimit: 10, Scope: ScopeAll}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, r := range res.Cross {
		hosts[r.Host] = true
	}
	if !hosts["h3"] || len(res.Cross) != 10 {
		t.Fatalf("scope all: %d lines from %v", len(res.Cross), hosts)
	}
	for _, p := range []ContextParams{
		{ID: target.ID, Cross: true, Window: time.Second, CrossLimit: 10, Scope: "planet"},
		{ID: target.ID, Cross: true, Window: time.Second, CrossLimit: 10, CrossBefore: 8, CrossAfter: 8},
		{ID: target.ID, Cross: true, Window: time.Second, CrossLimit: 10, CrossBefore: -1},
	} {
		if _, err := ContextOver(context.Background(), s, g, p, 1000); !errors.Is(err, ErrBadQuery) {
			t.Errorf("%+v: %v, want ErrBadQuery", p, err)
		}
	}
	// A record with no deploy: its build, else its service.
	if sc, q := ContextScope(&recs[2], ""); sc != ScopeBuild || q != `build_id:"ci-9"` {
		t.Fatalf("scope of a build line: %s %s", sc, q)
	}
	if sc, q := ContextScope(&model.Record{Labels: model.Labels{Service: `a"b\`}}, ScopeDeploy); sc != ScopeService || q != `service:"a\"b\\"` {
		t.Fatalf("scope of a bare line: %s %s", sc, q)
	}
	if _, err := Parse(QuoteTerm("service", `a"b\`)); err != nil {
		t.Fatal(err)
	}
}
