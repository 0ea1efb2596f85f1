package cluster

import (
	"context"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// Stats and facets across nodes: each owner answers a partial over its
// partitions (every group, before the limit), which merge exactly: counts
// and sums add, min and max compare, quantile sketches and distinct sets
// merge. The asking node ranks and cuts the merged groups.

// answerAgg answers a stats or facets request over this node's partitions.
func (n *Node) answerAgg(ctx context.Context, l *local, req *rpcReq, resp *rpcResp, fail func(error) *rpcResp) *rpcResp {
	q, err := req.Q.Query()
	if err != nil {
		return fail(err)
	}
	eng := query.New(l, query.DefaultOptions())
	tr := model.TimeRange{Start: req.Start, End: req.End}
	if req.Op == "stats" {
		resp.Stats, err = eng.StatsPartial(ctx, query.StatsParams{Query: q, Range: tr, By: req.By, Aggs: req.Aggs, Step: time.Duration(req.Step), AlignStart: req.Align, Limit: req.Limit})
	} else {
		resp.Facets, err = eng.FacetsPartial(ctx, query.FacetsParams{Query: q, Range: tr, Fields: req.Fields, Limit: req.Limit})
	}
	if err != nil {
		return fail(err)
	}
	return resp
}

func specOf(q *query.Query) query.Spec {
	if q == nil {
		return query.Spec{}
	}
	return q.Spec()
}

// Stats implements query.Backend over the whole cluster.
func (n *Node) Stats(ctx context.Context, p query.StatsParams) (*query.StatsResult, error) {
	eng := query.New(nil, query.DefaultOptions())
	if _, err := eng.FinishStats(p); err != nil { // a bad request fails here, before the fan-out
		return nil, err
	}
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "stats", Q: specOf(p.Query), Start: p.Range.Start, End: p.Range.End,
		By: p.By, Aggs: p.Aggs, Step: int64(p.Step), Align: p.AlignStart, Limit: p.Limit}, nil)
	if err != nil {
		return nil, err
	}
	parts := make([]*query.StatsPartial, len(resps))
	for i, r := range resps {
		parts[i] = r.Stats
	}
	res, err := eng.FinishStats(p, parts...)
	if err != nil {
		return nil, err
	}
	res.Coverage = cov
	return res, nil
}

// Facets implements query.Backend over the whole cluster.
func (n *Node) Facets(ctx context.Context, p query.FacetsParams) (*query.FacetsResult, error) {
	eng := query.New(nil, query.DefaultOptions())
	if _, err := eng.FinishFacets(p); err != nil {
		return nil, err
	}
	resps, cov, err := n.fanout(ctx, rpcReq{Op: "facets", Q: specOf(p.Query), Start: p.Range.Start, End: p.Range.End,
		Fields: p.Fields, Limit: p.Limit}, nil)
	if err != nil {
		return nil, err
	}
	parts := make([]*query.FacetsPartial, len(resps))
	for i, r := range resps {
		parts[i] = r.Facets
	}
	res, err := eng.FinishFacets(p, parts...)
	if err != nil {
		return nil, err
	}
	res.Coverage = cov
	return res, nil
}
