package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Open a store, append one batch, find the lines of one service that hold a
// word, and read one back by its id after a restart.
func Example() {
	dir, err := os.MkdirTemp("", "shiplog-store-example-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	st, err := store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	api := model.Labels{Service: "api", Host: "web-1", BuildID: "b42"}
	res, err := st.Append(ctx, model.Batch{AgentID: "agent-1", Records: []model.Record{
		{Time: t0, Labels: api, Level: model.LevelInfo, Message: "GET /orders 200", Seq: 1},
		{Time: t0 + int64(time.Second), Labels: api, Level: model.LevelError, Message: "GET /orders timeout after 5s", Seq: 2},
		{Time: t0 + 2*int64(time.Second), Labels: model.Labels{Service: "db", Host: "db-1"}, Level: model.LevelWarn, Message: "slow query: timeout close", Seq: 3},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("accepted:", res.Accepted, "acked seq:", res.AckedSeq)

	// Candidates narrows by the chunks' metadata and index; the lines of
	// the chunks it returns are then checked one by one.
	tr := model.TimeRange{Start: t0, End: t0 + int64(time.Hour)}
	refs, err := store.CollectCandidates(st.Candidates(ctx, tr, store.And(store.Term(store.FieldService, "api"), store.WordTerm("timeout", false)), false))
	if err != nil {
		log.Fatal(err)
	}
	var found []model.Record
	for _, ref := range refs {
		lines, err := st.Load(ctx, ref, true)
		if err != nil {
			log.Fatal(err)
		}
		for i := 0; i < lines.Len(); i++ {
			r := lines.Record(i)
			if tr.Contains(r.Time) && r.Service == "api" && strings.Contains(r.Message, "timeout") {
				found = append(found, r)
			}
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Time < found[j].Time })
	for _, r := range found {
		fmt.Println(time.Unix(0, r.Time).UTC().Format(time.RFC3339), r.Level, r.Host, r.Message)
	}

	// Close seals the open chunks; a reopened store finds a line by its id.
	id := found[0].ID
	if err := st.Close(); err != nil {
		log.Fatal(err)
	}
	st, err = store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	r, err := st.Get(id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("after reopening:", r.Message)
	// Output:
	// accepted: 3 acked seq: 3
	// 2026-01-02T03:04:06Z error web-1 GET /orders timeout after 5s
	// after reopening: GET /orders timeout after 5s
}
