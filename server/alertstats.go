package server

import (
	"context"
	"fmt"
	"math"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
)

// Bounds of a logs rule's grouping: the groups read from one count, and the
// groups (of those past the threshold) whose shared build and deploy are
// looked up for links.
const (
	alertMaxGroups    = query.MaxStatsLimit
	alertMaxLinkFetch = 200
)

// statsGroups counts a logs rule's by: groups exactly with the stats engine
// (no sampling: a quiet group beside a flood is counted as exactly as the
// flood), with the rule's agg: as each group's value, and for the groups
// the rule keeps, the build and deploy their lines share, from a count of
// the group by build_id and deploy_id.
func statsGroups(ctx context.Context, e query.Backend, q *query.Query, tr model.TimeRange, lq alert.LogsQuery) ([]alert.LogsGroup, error) {
	p := query.StatsParams{Query: q, Range: tr, By: lq.By, Limit: alertMaxGroups}
	if lq.Agg != "" {
		p.Aggs = []string{lq.Agg}
	}
	res, err := e.Stats(ctx, p)
	if err != nil {
		return nil, err
	}
	if res.Coverage.Partial() {
		return nil, fmt.Errorf("%w: partitions %v have no live owner, or an owner behind what was acked, right now; not evaluated", model.ErrUnavailable, res.Coverage.Missing)
	}
	if res.OtherGroups > 0 {
		return nil, fmt.Errorf("%w: by: %v makes more than %d groups; narrow the query or group by fewer fields", query.ErrTooManyGroups, lq.By, alertMaxGroups)
	}
	if len(res.Groups) == 0 && len(lq.By) == 0 {
		res.Groups = []query.StatsGroup{{Labels: map[string]string{}}}
	}
	out := make([]alert.LogsGroup, 0, len(res.Groups))
	fetched := 0
	for _, sg := range res.Groups {
		g := alert.LogsGroup{Labels: sg.Labels, Count: float64(sg.Count), Value: math.NaN()}
		if g.Labels == nil {
			g.Labels = map[string]string{}
		}
		if v, ok := sg.Values[lq.Agg]; ok && lq.Agg != "" {
			g.Value = v
		}
		var nq *query.Query
		g.Query, nq = narrow(lq.Query, lq.By, g.Labels)
		v := g.Count
		if lq.Agg != "" {
			v = g.Value
		}
		if sg.Count > 0 && nq != nil && (lq.Keep == nil || lq.Keep(v)) && fetched < alertMaxLinkFetch {
			fetched++
			if g.BuildID, g.DeployID, err = sharedBuild(ctx, e, nq, tr); err != nil {
				return nil, err
			}
		}
		out = append(out, g)
	}
	return out, nil
}

// sharedBuild returns the build and the deploy every line matching q has,
// each "" when the lines have several (or none).
func sharedBuild(ctx context.Context, e query.Backend, q *query.Query, tr model.TimeRange) (build, deploy string, err error) {
	for _, f := range []struct {
		name string
		dst  *string
	}{{"build_id", &build}, {"deploy_id", &deploy}} {
		res, err := e.Stats(ctx, query.StatsParams{Query: q, Range: tr, By: []string{f.name}, Limit: 2})
		if err != nil {
			return "", "", err
		}
		if len(res.Groups) == 1 && res.Other == 0 {
			*f.dst = res.Groups[0].Labels[f.name]
		}
	}
	return build, deploy, nil
}
