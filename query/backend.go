package query

import (
	"context"
	"slices"
	"time"

	"github.com/shiplog/shiplog/model"
)

// Backend is what the read side of the server (HTTP, gRPC, the Loki API,
// export and alert rules) asks of the stored logs: one node's store (Local)
// or a cluster's partitions (cluster.Node). Every answer says in its value
// what it could not include (its Coverage), the way a Prometheus SeriesSet
// carries its warnings.
type Backend interface {
	Search(ctx context.Context, p SearchParams) (*SearchResult, error)
	Histogram(ctx context.Context, q *Query, tr model.TimeRange, step time.Duration) (*HistogramResult, error)
	// Context looks the record up itself (by p.ID) and reads around it.
	Context(ctx context.Context, p ContextParams) (*ContextResult, error)
	// Catalog is the streams, agents and runs the builds, deploys and hosts
	// views are made of, as of now.
	Catalog(ctx context.Context) (*CatalogResult, error)
	Stats(ctx context.Context, p StatsParams) (*StatsResult, error)
	Facets(ctx context.Context, p FacetsParams) (*FacetsResult, error)
	// Resolve reads q's a:b terms as a search over tr would (live tail
	// matches arriving records with the query it returns).
	Resolve(q *Query, tr model.TimeRange) *Query
}

// Coverage says what an answer could not include: in cluster mode the
// partitions with no owner, whose owner did not answer, or whose owner was
// still behind what had been acked when the query started. The zero value is
// a whole answer (a single node's always is).
type Coverage struct {
	Missing []int // partitions, sorted, each once
}

// Partial reports whether partitions are missing from the answer.
func (c Coverage) Partial() bool { return len(c.Missing) > 0 }

// Add records partitions the answer lacks.
func (c *Coverage) Add(parts ...int) {
	if len(parts) == 0 {
		return
	}
	c.Missing = append(c.Missing, parts...)
	slices.Sort(c.Missing)
	c.Missing = slices.Compact(c.Missing)
}

// HistogramResult is a histogram's buckets, oldest first.
type HistogramResult struct {
	Buckets  []Bucket
	Coverage Coverage
}

// CatalogResult is the catalog one request reads.
type CatalogResult struct {
	Catalog
	Coverage Coverage
}

// LocalStore is what Local reads: chunks, the catalog and records by id (a
// *store.Store).
type LocalStore interface {
	Store
	Catalog
	Getter
}

// Local is the Backend over one node's store: its answers are always whole.
type Local struct {
	eng *Engine
	st  LocalStore
}

// NewLocal returns the Backend over st.
func NewLocal(st LocalStore, opts Options) *Local {
	return &Local{eng: New(st, opts), st: st}
}

// Search implements Backend.
func (l *Local) Search(ctx context.Context, p SearchParams) (*SearchResult, error) {
	return l.eng.Search(ctx, p)
}

// Histogram implements Backend.
func (l *Local) Histogram(ctx context.Context, q *Query, tr model.TimeRange, step time.Duration) (*HistogramResult, error) {
	b, err := l.eng.Histogram(ctx, q, tr, step)
	if err != nil {
		return nil, err
	}
	return &HistogramResult{Buckets: b}, nil
}

// Context implements Backend.
func (l *Local) Context(ctx context.Context, p ContextParams) (*ContextResult, error) {
	return l.eng.Context(ctx, l.st, p)
}

// Catalog implements Backend.
func (l *Local) Catalog(context.Context) (*CatalogResult, error) {
	return &CatalogResult{Catalog: l.st}, nil
}

// Stats implements Backend.
func (l *Local) Stats(ctx context.Context, p StatsParams) (*StatsResult, error) {
	return l.eng.Stats(ctx, p)
}

// Facets implements Backend.
func (l *Local) Facets(ctx context.Context, p FacetsParams) (*FacetsResult, error) {
	return l.eng.Facets(ctx, p)
}

// Resolve implements Backend.
func (l *Local) Resolve(q *Query, tr model.TimeRange) *Query { return l.eng.Resolve(q, tr) }
