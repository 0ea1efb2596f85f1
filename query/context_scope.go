package query

import (
	"context"
	"slices"
	"strings"

	"github.com/shiplog/shiplog/model"
)

// Scopes of a context request's cross lines.
const (
	ScopeDeploy  = "deploy"
	ScopeBuild   = "build"
	ScopeService = "service"
	ScopeAll     = "all"
)

// QuoteTerm writes field:"value" for a query string, with value's quotes
// and backslashes escaped: it matches value exactly, whatever it holds.
func QuoteTerm(field, value string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return field + `:"` + r.Replace(value) + `"`
}

// ContextScope resolves a scope for record r ("" picks its deploy, else its
// build, else its service) and returns it with its query string (empty for
// every line). A scope r has no value for (a build of a line with no
// build_id) falls back the same way.
func ContextScope(r *model.Record, scope string) (string, string) {
	if scope == "" || scope == ScopeDeploy && r.DeployID == "" || scope == ScopeBuild && r.BuildID == "" {
		switch {
		case scope != ScopeBuild && r.DeployID != "":
			scope = ScopeDeploy
		case r.BuildID != "":
			scope = ScopeBuild
		default:
			scope = ScopeService
		}
	}
	switch scope {
	case ScopeDeploy:
		return scope, QuoteTerm("deploy_id", r.DeployID)
	case ScopeBuild:
		return scope, QuoteTerm("build_id", r.BuildID)
	case ScopeService:
		return scope, QuoteTerm("service", r.Service)
	}
	return ScopeAll, ""
}

// crossContext fills res's cross lines: the lines of the other hosts of the
// scope just before and just after the record, within the window, and what
// the window holds beyond them.
func crossContext(ctx context.Context, s Searcher, res *ContextResult, p ContextParams) error {
	rec := &res.Record
	scope, sq := ContextScope(rec, p.Scope)
	others := "-" + QuoteTerm("host", rec.Host)
	if sq != "" {
		others = sq + " " + others
	}
	q, err := Parse(others)
	if err != nil {
		return err
	}
	w := int64(p.Window)
	win := model.TimeRange{Start: rec.Time - w, End: rec.Time + w + 1}
	cur := Cursor(rec)
	res.Scope, res.ScopeQuery, res.Window = scope, sq, win
	res.BeforeCursor, res.AfterCur = cur, cur
	if p.CrossBefore > 0 {
		r, err := s.Search(ctx, SearchParams{Query: q, Range: win, Limit: p.CrossBefore, Cursor: cur})
		if err != nil {
			return err
		}
		res.Cross = append(res.Cross, r.Records...)
		slices.Reverse(res.Cross)
		res.Coverage.Add(r.Coverage.Missing...)
		res.MoreBefore = r.NextCursor != ""
		if len(r.Records) > 0 {
			res.BeforeCursor = Cursor(&r.Records[len(r.Records)-1])
		}
	}
	if p.CrossAfter > 0 {
		r, err := s.Search(ctx, SearchParams{Query: q, Range: win, Limit: p.CrossAfter, Cursor: cur, Asc: true})
		if err != nil {
			return err
		}
		res.Cross = append(res.Cross, r.Records...)
		res.Coverage.Add(r.Coverage.Missing...)
		res.MoreAfter = r.NextCursor != ""
		if len(r.Records) > 0 {
			res.AfterCur = Cursor(&r.Records[len(r.Records)-1])
		}
	}
	return nil
}
