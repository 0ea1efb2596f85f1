package server

import (
	"context"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// maxListParam bounds a comma-separated list parameter (by, agg, fields)
// before it is split.
const maxListParam = 4096

// splitList splits a comma-separated parameter, dropping empty items.
func splitList(name, s string) ([]string, error) {
	if len(s) > maxListParam {
		return nil, invalid("%s is longer than %d bytes", name, maxListParam)
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out, nil
}

// parseStep reads an optional step parameter.
func parseStep(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	step, err := model.ParseDuration(s)
	if err != nil || step <= 0 || step > 100*365*24*time.Hour {
		return 0, invalid("step %q: want a positive duration such as 1m", s)
	}
	return step, nil
}

func (s *queryServer) Stats(ctx context.Context, req *shiplogv1.StatsRequest) (*shiplogv1.StatsResponse, error) {
	q, tr, err := parseQueryLastDay(req.GetQ(), req.GetStart(), req.GetEnd())
	if err != nil {
		return nil, toStatus(err)
	}
	p := query.StatsParams{Query: q, Range: tr, Limit: int(req.GetLimit())}
	if req.GetLimit() < 0 {
		return nil, toStatus(invalid("limit must not be negative"))
	}
	if p.By, err = splitList("by", req.GetBy()); err != nil {
		return nil, toStatus(err)
	}
	if len(req.GetAgg()) > maxListParam {
		return nil, toStatus(invalid("agg is longer than %d bytes", maxListParam))
	}
	for _, a := range query.SplitAggs(req.GetAgg()) {
		if a = strings.TrimSpace(a); a == "" {
			return nil, toStatus(invalid("agg %q has an empty aggregate", req.GetAgg()))
		}
		p.Aggs = append(p.Aggs, a)
	}
	if p.Step, err = parseStep(req.GetStep()); err != nil {
		return nil, toStatus(err)
	}
	res, err := s.core.Backend.Stats(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.StatsResponse{Groups: make([]*shiplogv1.StatsGroup, len(res.Groups)), Total: float64(res.Total),
		Other: float64(res.Other), Skipped: float64(res.Skipped), OtherGroups: float64(res.OtherGroups)}
	out.Partial, out.MissingPartitions = coverage(res.Coverage)
	for i, g := range res.Groups {
		pg := &shiplogv1.StatsGroup{Labels: g.Labels, Count: float64(g.Count)}
		if len(g.Values) > 0 {
			pg.Values = make(map[string]float64, len(g.Values))
			for k, v := range g.Values {
				if !math.IsNaN(v) && !math.IsInf(v, 0) {
					pg.Values[k] = v
				}
			}
		}
		for _, b := range g.Buckets {
			pg.Buckets = append(pg.Buckets, &shiplogv1.Bucket{Time: timestamppb.New(timeOf(b.Start)), Count: uint32(b.Count)})
		}
		out.Groups[i] = pg
	}
	return out, nil
}

func (s *queryServer) Facets(ctx context.Context, req *shiplogv1.FacetsRequest) (*shiplogv1.FacetsResponse, error) {
	q, tr, err := parseQueryLastDay(req.GetQ(), req.GetStart(), req.GetEnd())
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetLimit() < 0 {
		return nil, toStatus(invalid("limit must not be negative"))
	}
	p := query.FacetsParams{Query: q, Range: tr, Limit: int(req.GetLimit())}
	if p.Fields, err = splitList("fields", req.GetFields()); err != nil {
		return nil, toStatus(err)
	}
	res, err := s.core.Backend.Facets(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.FacetsResponse{Fields: make([]*shiplogv1.Facet, len(res.Fields)), Total: float64(res.Total)}
	out.Partial, out.MissingPartitions = coverage(res.Coverage)
	for i, f := range res.Fields {
		pf := &shiplogv1.Facet{Name: f.Name, Distinct: float64(f.Distinct), Count: float64(f.Count), Capped: f.Capped,
			Values: make([]*shiplogv1.FacetValue, len(f.Values))}
		for k, v := range f.Values {
			pf.Values[k] = &shiplogv1.FacetValue{Value: v.Value, Count: float64(v.Count)}
		}
		out.Fields[i] = pf
	}
	return out, nil
}
