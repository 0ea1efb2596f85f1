package query_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

func ExampleParse() {
	q, err := query.Parse(`level:error AND (service:api OR service:auth) -"health check"`)
	if err != nil {
		panic(err)
	}
	fmt.Println(q)

	r := model.Record{Labels: model.Labels{Service: "auth"}, Level: model.LevelError, Message: "token refresh failed"}
	fmt.Println(q.MatchRecord(&r))
	r.Message = "Health check failed"
	fmt.Println(q.MatchRecord(&r))

	_, err = query.Parse("level:loud")
	fmt.Println(err)
	fmt.Println(errors.Is(err, query.ErrBadQuery))
	// Output:
	// level:error AND (service:api OR service:auth) -"health check"
	// true
	// false
	// bad query: unknown level "loud" (want trace, debug, info, warn, error or fatal)
	// true
}

func ExampleEngine_Search() {
	dir, err := os.MkdirTemp("", "shiplog-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(dir, store.DefaultOptions(), nil, nil)
	if err != nil {
		panic(err)
	}
	defer st.Close()

	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var b model.Batch
	for i, msg := range []string{"GET /users 200", "connection refused by db-1", "GET /orders 200", "connection refused again"} {
		b.Records = append(b.Records, model.Record{
			Time:    t0.Add(time.Duration(i) * time.Second).UnixNano(),
			Labels:  model.Labels{Service: "api", Host: "web-1"},
			Message: msg,
		})
	}
	if _, err := st.Append(context.Background(), b); err != nil {
		panic(err)
	}

	e := query.New(st, query.DefaultOptions())
	q, err := query.Parse("refused service:api")
	if err != nil {
		panic(err)
	}
	p := query.SearchParams{Query: q, Range: model.TimeRange{Start: t0.UnixNano(), End: t0.Add(time.Hour).UnixNano()}, Limit: 1}
	for {
		res, err := e.Search(context.Background(), p)
		if err != nil {
			panic(err)
		}
		for _, r := range res.Records {
			fmt.Println(time.Unix(0, r.Time).UTC().Format(time.TimeOnly), r.Message)
		}
		if res.NextCursor == "" {
			break
		}
		p.Cursor = res.NextCursor
	}
	// Output:
	// 12:00:03 connection refused again
	// 12:00:01 connection refused by db-1
}
