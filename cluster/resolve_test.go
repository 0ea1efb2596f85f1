package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// TestClusterResolve: a live tail's field:value terms are read as a single
// node reads them: as a field when some partition, on any node, has the
// attribute in the range, and as text when none has.
func TestClusterResolve(t *testing.T) {
	nodes := startTestCluster(t, 2, 4, 5*time.Second)
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	// One agent's lines carry the attribute; they land on one partition, so
	// at least one node learns of it only from the other.
	b := model.Batch{AgentID: "agent-status"}
	for s := 1; s <= 10; s++ {
		b.Records = append(b.Records, model.Record{Time: base.Add(time.Duration(s) * time.Second).UnixNano(), Level: model.LevelInfo, Seq: uint64(s),
			Labels: model.Labels{Service: "svc", Host: "h1"}, Message: "served", Attrs: []model.Attr{{Key: "status", Value: fmt.Sprint(200 + s%2*300)}}})
	}
	if res, err := nodes[0].Append(context.Background(), b); err != nil || res.Accepted != len(b.Records) {
		t.Fatalf("append: %+v %v", res, err)
	}
	tr := model.TimeRange{Start: base.UnixNano(), End: base.Add(time.Hour).UnixNano()}
	textLine := &model.Record{Message: "gave up: reason:timeout and status:500 in the text"}
	attrLine := &model.Record{Message: "served", Attrs: []model.Attr{{Key: "status", Value: "500"}}}
	for _, n := range nodes {
		for _, c := range []struct {
			q                 string
			wantText, wantAtt bool
		}{
			{"reason:timeout", true, false}, // no partition has "reason": text
			{"status:500", false, true},     // one partition has "status": a field
		} {
			q, err := query.Parse(c.q)
			if err != nil {
				t.Fatal(err)
			}
			if c.wantText && q.MatchRecord(textLine) {
				t.Fatalf("%q as written matches the text line: the test would prove nothing", c.q)
			}
			r := n.Resolve(q, tr)
			if got := r.MatchRecord(textLine); got != c.wantText {
				t.Errorf("%s: %q resolved matches %q: %v, want %v", n.Name(), c.q, textLine.Message, got, c.wantText)
			}
			if got := r.MatchRecord(attrLine); got != c.wantAtt {
				t.Errorf("%s: %q resolved matches the line with status=500: %v, want %v", n.Name(), c.q, got, c.wantAtt)
			}
		}
	}
}
