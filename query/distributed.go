package query

import (
	"context"
	"slices"
	"sort"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// What a query engine spread over several nodes needs from this package: a
// query form that crosses the network, the global order of records and its
// cursors. (An answer says what it lacks in its Coverage, backend.go.)

// Spec is a query in a form that travels between nodes.
type Spec struct {
	Q         string `json:"q,omitempty"`          // a query string, for Parse
	Service   string `json:"service,omitempty"`    // with Same: the context query
	Host      string `json:"host,omitempty"`       // with Same or OtherHost
	Same      bool   `json:"same,omitempty"`       // lines of one service and host
	OtherHost bool   `json:"other_host,omitempty"` // lines of every host but Host
}

// Spec returns the query's travelling form.
func (q *Query) Spec() Spec {
	if q.spec != nil {
		return *q.spec
	}
	return Spec{Q: q.src}
}

// Query rebuilds the query a Spec describes.
func (s Spec) Query() (*Query, error) {
	switch {
	case s.Same:
		return sameHost(s.Service, s.Host), nil
	case s.OtherHost:
		return otherHosts(s.Host), nil
	}
	return Parse(s.Q)
}

// sameHost matches the lines of one service and host (the context query).
func sameHost(service, host string) *Query {
	q := &Query{src: "context", root: andNode{labelNode{store.FieldService, service}, labelNode{store.FieldHost, host}},
		spec: &Spec{Same: true, Service: service, Host: host}}
	q.cond = q.root.cond()
	return q
}

// otherHosts matches the lines of every host but one (context's cross view).
func otherHosts(host string) *Query {
	q := &Query{src: "cross", root: notNode{labelNode{store.FieldHost, host}}, spec: &Spec{OtherHost: true, Host: host}}
	q.cond = q.root.cond()
	return q
}

// Cursor is the cursor that continues a search after r.
func Cursor(r *model.Record) string { return encodeCursor(position{t: r.Time, id: r.ID}) }

// Ahead reports whether a comes before b in a search's order (newest first
// unless asc): time, then id.
func Ahead(a, b *model.Record, asc bool) bool {
	return better(position{t: a.Time, id: a.ID}, position{t: b.Time, id: b.ID}, asc)
}

// Page is one searcher's answer to a page request: its records in order and
// whether it has more after the last.
type Page struct {
	Records []model.Record
	More    bool
}

// MergePages merges pages that answered the same SearchParams into one
// page of at most limit records. A searcher with More may hold records
// after its last one, so the merged page stops there too; the next cursor
// continues from the merged page's last record.
func MergePages(pages []Page, limit int, asc bool) *SearchResult {
	var all []model.Record
	var horizon *model.Record
	more := false
	for i := range pages {
		p := &pages[i]
		all = append(all, p.Records...)
		if p.More {
			more = true
			if len(p.Records) > 0 {
				last := &p.Records[len(p.Records)-1]
				if horizon == nil || Ahead(last, horizon, asc) {
					horizon = last
				}
			}
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return Ahead(&all[i], &all[j], asc) })
	all = slices.CompactFunc(all, func(a, b model.Record) bool { return a.ID == b.ID && a.Time == b.Time })
	if horizon != nil {
		k := sort.Search(len(all), func(i int) bool { return Ahead(horizon, &all[i], asc) })
		if k < len(all) {
			all, more = all[:k], true
		}
	}
	if len(all) > limit {
		all, more = all[:limit], true
	}
	res := &SearchResult{Records: all}
	if more && len(all) > 0 {
		res.NextCursor = Cursor(&all[len(all)-1])
	}
	return res
}

// Searcher answers one page of a search.
type Searcher interface {
	Search(ctx context.Context, p SearchParams) (*SearchResult, error)
}

// ContextOver is Engine.Context over any searcher and getter (a cluster's).
func ContextOver(ctx context.Context, s Searcher, g Getter, p ContextParams, maxLimit int) (*ContextResult, error) {
	if p.Before < 0 || p.After < 0 || p.Before > maxLimit || p.After > maxLimit {
		return nil, badf("before and after must be between 0 and %d", maxLimit)
	}
	if p.Cross {
		if p.Window <= 0 || p.Window > time.Hour {
			return nil, badf("window must be between 0 and 1h")
		}
		if p.CrossLimit <= 0 || p.CrossLimit > maxLimit {
			return nil, badf("cross_limit must be between 1 and %d", maxLimit)
		}
		if p.CrossBefore < 0 || p.CrossAfter < 0 || p.CrossBefore+p.CrossAfter > p.CrossLimit {
			return nil, badf("cross_before and cross_after must be at least 0 and together at most cross_limit (%d)", p.CrossLimit)
		}
		if p.CrossBefore == 0 && p.CrossAfter == 0 {
			p.CrossBefore = p.CrossLimit / 2
			p.CrossAfter = p.CrossLimit - p.CrossBefore
		}
		switch p.Scope {
		case "", ScopeDeploy, ScopeBuild, ScopeService, ScopeAll:
		default:
			return nil, badf("scope %q: want deploy, build, service or all", p.Scope)
		}
	}
	rec, err := g.Get(p.ID)
	if err != nil {
		return nil, err
	}
	res := &ContextResult{Record: rec}
	same := sameHost(rec.Service, rec.Host)
	cur := Cursor(&rec)
	all := model.TimeRange{Start: 0, End: 1<<63 - 1}
	if p.Before > 0 {
		r, err := s.Search(ctx, SearchParams{Query: same, Range: all, Limit: p.Before, Cursor: cur})
		if err != nil {
			return nil, err
		}
		res.Before = r.Records
		slices.Reverse(res.Before)
		res.Coverage.Add(r.Coverage.Missing...)
	}
	if p.After > 0 {
		r, err := s.Search(ctx, SearchParams{Query: same, Range: all, Limit: p.After, Cursor: cur, Asc: true})
		if err != nil {
			return nil, err
		}
		res.After = r.Records
		res.Coverage.Add(r.Coverage.Missing...)
	}
	if p.Cross {
		if err := crossContext(ctx, s, res, p); err != nil {
			return nil, err
		}
	}
	return res, nil
}
