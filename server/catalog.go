package server

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

func ts(ns int64) *timestamppb.Timestamp {
	if ns == 0 {
		return nil
	}
	return timestamppb.New(timeOf(ns))
}

func levelCounts(l *query.Levels) *shiplogv1.LevelCounts {
	c := func(lv model.Level) uint32 { return uint32(min(l[lv], 1<<32-1)) }
	return &shiplogv1.LevelCounts{Trace: c(model.LevelTrace), Debug: c(model.LevelDebug), Info: c(model.LevelInfo),
		Warn: c(model.LevelWarn), Error: c(model.LevelError), Fatal: c(model.LevelFatal)}
}

func runsProto(g *query.Group) []*shiplogv1.Run {
	rs := g.Runs
	out := make([]*shiplogv1.Run, len(rs))
	for i := range rs {
		r := &rs[i]
		p := &shiplogv1.Run{Host: r.Host, Service: r.Service, Command: r.Command, Start: ts(r.Start), End: ts(r.End),
			Status: g.RunStates[i], ExitCode: int32(r.ExitCode)}
		if r.Finished && r.End > r.Start {
			p.DurationSeconds = time.Duration(r.End - r.Start).Seconds()
		}
		out[i] = p
	}
	return out
}

func buildProto(g *query.Group) *shiplogv1.Build {
	b := &shiplogv1.Build{
		BuildId: g.ID, Services: g.Services, Hosts: g.Hosts, DeployIds: g.Others,
		FirstTime: ts(g.First), LastTime: ts(g.Last), Lines: uint32(min(g.Lines(), 1<<32-1)), Levels: levelCounts(&g.Levels),
		Status: g.Status, Start: ts(g.Start), End: ts(g.End), ExitCode: int32(g.ExitCode), Runs: runsProto(g), HostLines: hostLines(g),
	}
	if g.End > g.Start && g.Start > 0 {
		b.DurationSeconds = time.Duration(g.End - g.Start).Seconds()
	}
	return b
}

func hostLines(g *query.Group) map[string]uint32 {
	out := make(map[string]uint32, len(g.HostLines))
	for h, n := range g.HostLines {
		out[h] = uint32(min(n, 1<<32-1))
	}
	return out
}

func hostProto(h *query.Host) *shiplogv1.Host {
	p := &shiplogv1.Host{
		Host: h.Host, Service: h.Service, FirstSeen: ts(h.First), LastSeen: ts(h.Last), BuildId: h.BuildID, DeployId: h.DeployID,
		BuildIds: h.BuildIDs, DeployIds: h.DeployIDs, Lines: uint32(min(h.Levels.Total(), 1<<32-1)), Levels: levelCounts(&h.Levels), State: h.State,
	}
	for _, a := range h.Agents {
		p.Agents = append(p.Agents, agentProto(&a))
	}
	return p
}

func agentProto(a *store.AgentInfo) *shiplogv1.Agent {
	return &shiplogv1.Agent{AgentId: a.ID, AckedSeq: a.AckedSeq, Received: a.Received, Duplicates: a.Duplicates,
		Gaps: a.Gaps, Dropped: a.Dropped, Closed: a.Closed, LastSeen: ts(a.LastSeen)}
}

// page cuts a list by an opaque offset token.
func page[T any](items []T, size int32, token string) ([]T, string, error) {
	off := 0
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err == nil {
			off, err = strconv.Atoi(string(b))
		}
		if err != nil || off < 0 {
			return nil, "", invalid("page_token %q is not one this server gave out", token)
		}
	}
	if size < 0 || size > 1000 {
		return nil, "", invalid("page_size must be between 1 and 1000")
	}
	if size == 0 {
		size = 100
	}
	if off > len(items) {
		off = len(items)
	}
	end := min(off+int(size), len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return items[off:end], next, nil
}

// filterGroups keeps the groups of service (when given) whose lines meet
// [start, end) (when given) and that pass also (when not nil).
func filterGroups(groups []*query.Group, service, start, end string, also func(*query.Group) bool) ([]*query.Group, error) {
	var tr *model.TimeRange
	if start != "" || end != "" {
		now := time.Now()
		r, err := parseRange(start, end, time.Unix(0, 0), now.Add(farFuture), now)
		if err != nil {
			return nil, err
		}
		tr = &r
	}
	var keep []*query.Group
	for _, g := range groups {
		if service != "" && !slices.Contains(g.Services, service) || tr != nil && !tr.Overlaps(g.First, g.Last) || also != nil && !also(g) {
			continue
		}
		keep = append(keep, g)
	}
	return keep, nil
}

func (s *queryServer) ListBuilds(ctx context.Context, req *shiplogv1.ListBuildsRequest) (*shiplogv1.ListBuildsResponse, error) {
	switch req.GetStatus() {
	case "", "running", "passed", "failed", "lost", "unknown":
	default:
		return nil, toStatus(invalid("status %q: want running, passed, failed, lost or unknown", req.GetStatus()))
	}
	cat, err := s.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	keep, err := filterGroups(query.BuildsAt(cat, s.core.SilentAfter, time.Now()), req.GetService(), req.GetStart(), req.GetEnd(),
		func(g *query.Group) bool { return req.GetStatus() == "" || g.Status == req.GetStatus() })
	if err != nil {
		return nil, toStatus(err)
	}
	items, next, err := page(keep, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.ListBuildsResponse{NextPageToken: next}
	out.Partial, out.MissingPartitions = coverage(cat.Coverage)
	for _, g := range items {
		out.Builds = append(out.Builds, buildProto(g))
	}
	return out, nil
}

func (s *queryServer) GetBuild(ctx context.Context, req *shiplogv1.GetBuildRequest) (*shiplogv1.Build, error) {
	cat, err := s.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	for _, g := range query.BuildsAt(cat, s.core.SilentAfter, time.Now()) {
		if g.ID == req.GetBuildId() {
			b := buildProto(g)
			b.Partial, b.MissingPartitions = coverage(cat.Coverage)
			return b, nil
		}
	}
	return nil, toStatus(fmt.Errorf("build %q: %w", req.GetBuildId(), store.ErrNotFound))
}

func (s *queryServer) deployProto(all []*query.Group, g *query.Group) *shiplogv1.Deploy {
	d := &shiplogv1.Deploy{
		DeployId: g.ID, Services: g.Services, Hosts: g.Hosts, BuildIds: g.Others, FirstTime: ts(g.First), LastTime: ts(g.Last),
		Lines: uint32(min(g.Lines(), 1<<32-1)), Levels: levelCounts(&g.Levels), ErrorRate: g.ErrorRate(), Status: g.Status, Runs: runsProto(g),
		HostLines: hostLines(g),
	}
	if p := query.Previous(all, g); p != nil {
		d.PreviousDeployId, d.PreviousErrorRate = p.ID, p.ErrorRate()
	}
	for i := range g.HostLives {
		d.HostLives = append(d.HostLives, hostProto(&g.HostLives[i]))
	}
	return d
}

func (s *queryServer) ListDeploys(ctx context.Context, req *shiplogv1.ListDeploysRequest) (*shiplogv1.ListDeploysResponse, error) {
	cat, err := s.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	all := query.Deploys(cat, s.core.SilentAfter, time.Now())
	keep, err := filterGroups(all, req.GetService(), req.GetStart(), req.GetEnd(), nil)
	if err != nil {
		return nil, toStatus(err)
	}
	items, next, err := page(keep, req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.ListDeploysResponse{NextPageToken: next}
	out.Partial, out.MissingPartitions = coverage(cat.Coverage)
	for _, g := range items {
		out.Deploys = append(out.Deploys, s.deployProto(all, g))
	}
	return out, nil
}

func (s *queryServer) GetDeploy(ctx context.Context, req *shiplogv1.GetDeployRequest) (*shiplogv1.Deploy, error) {
	cat, err := s.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	all := query.Deploys(cat, s.core.SilentAfter, time.Now())
	for _, g := range all {
		if g.ID == req.GetDeployId() {
			d := s.deployProto(all, g)
			d.Partial, d.MissingPartitions = coverage(cat.Coverage)
			return d, nil
		}
	}
	return nil, toStatus(fmt.Errorf("deploy %q: %w", req.GetDeployId(), store.ErrNotFound))
}

func (s *queryServer) ListHosts(ctx context.Context, req *shiplogv1.ListHostsRequest) (*shiplogv1.ListHostsResponse, error) {
	now := time.Now()
	f := query.HostFilter{Service: req.GetService(), State: req.GetState(), DeployID: req.GetDeployId(), BuildID: req.GetBuildId()}
	switch f.State {
	case "", query.StateLive, query.StateSilent, query.StateClosed:
	default:
		return nil, toStatus(invalid("state %q: want live, silent or closed", f.State))
	}
	if req.GetAliveAt() != "" {
		t, err := query.ParseTime(req.GetAliveAt(), now)
		if err != nil {
			return nil, toStatus(err)
		}
		f.AliveAt = t
	}
	limit := int(req.GetLimit())
	switch {
	case limit == 0:
		limit = defaultHostsPage
	case limit < 0 || limit > maxHostsPage:
		return nil, toStatus(invalid("limit %d: want 1 to %d hosts a page", limit, maxHostsPage))
	}
	after, err := hostCursor(req.GetCursor())
	if err != nil {
		return nil, toStatus(err)
	}
	cat, err := s.core.Backend.Catalog(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	p := query.PageHosts(cat, f, after, limit, s.core.SilentAfter, now)
	out := &shiplogv1.ListHostsResponse{Hosts: make([]*shiplogv1.Host, len(p.Hosts)), Total: uint32(p.Total),
		StateCounts: make(map[string]uint32, len(p.States))}
	out.Partial, out.MissingPartitions = coverage(cat.Coverage)
	for i := range p.Hosts {
		out.Hosts[i] = hostProto(&p.Hosts[i])
	}
	for st, n := range p.States {
		out.StateCounts[st] = uint32(n)
	}
	if p.More {
		last := p.Hosts[len(p.Hosts)-1]
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(last.Service + "\x00" + last.Host))
	}
	return out, nil
}

// Pages of ListHosts.
const (
	defaultHostsPage = 1000
	maxHostsPage     = 10000
)

// hostCursor reads a ListHosts cursor: the (service, host) a page ended with.
func hostCursor(c string) (*store.HostKey, error) {
	if c == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(c)
	svc, host, ok := strings.Cut(string(b), "\x00")
	if err != nil || !ok {
		return nil, invalid("cursor %q is not one this server gave out", c)
	}
	return &store.HostKey{Service: svc, Host: host}, nil
}

func (s *queryServer) Context(ctx context.Context, req *shiplogv1.ContextRequest) (*shiplogv1.ContextResponse, error) {
	id, err := model.ParseID(req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	p := query.ContextParams{ID: id, Before: int(req.GetBefore()), After: int(req.GetAfter()), Cross: req.GetCross(),
		Window: 5 * time.Second, CrossLimit: int(req.GetCrossLimit()), Scope: req.GetScope(),
		CrossBefore: int(req.GetCrossBefore()), CrossAfter: int(req.GetCrossAfter())}
	if p.Before == 0 && p.After == 0 {
		p.Before, p.After = 10, 10
	}
	if p.CrossLimit == 0 {
		p.CrossLimit = 200
	}
	if w := req.GetWindow(); w != "" {
		if p.Window, err = model.ParseDuration(w); err != nil {
			return nil, toStatus(invalid("window %q: want a duration such as 5s", w))
		}
	}
	res, err := s.core.Backend.Context(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.ContextResponse{Record: toProto(&res.Record)}
	cov := res.Coverage
	if p.Cross {
		if err := s.crossOmitted(ctx, &cov, res, out); err != nil {
			return nil, toStatus(err)
		}
	}
	out.Partial, out.MissingPartitions = coverage(cov)
	for _, l := range []struct {
		src []model.Record
		dst *[]*shiplogv1.Record
	}{{res.Before, &out.Before}, {res.After, &out.After}, {res.Cross, &out.Cross}} {
		for i := range l.src {
			*l.dst = append(*l.dst, toProto(&l.src[i]))
		}
	}
	return out, nil
}

// crossOmitted fills a cross context's scope, window and cursors, and counts
// the lines of other hosts in the window that its cross lines leave out
// (adding to cov what those counts lacked).
func (s *queryServer) crossOmitted(ctx context.Context, cov *query.Coverage, res *query.ContextResult, out *shiplogv1.ContextResponse) error {
	out.Scope, out.CrossQuery = res.Scope, res.ScopeQuery
	out.WindowStart, out.WindowEnd = timestamppb.New(timeOf(res.Window.Start)), timestamppb.New(timeOf(res.Window.End))
	out.CrossBeforeCursor, out.CrossAfterCursor = res.BeforeCursor, res.AfterCur
	others := "-" + query.QuoteTerm("host", res.Record.Host)
	if res.ScopeQuery != "" {
		others = res.ScopeQuery + " " + others
	}
	q, err := query.Parse(others)
	if err != nil {
		return err
	}
	// count: lines of other hosts in [a, b), less those of cross at b-1 (a
	// page can end part-way through one nanosecond).
	count := func(a, b int64, edge int64) (uint32, error) {
		if b <= a {
			return 0, nil
		}
		h, err := s.core.Backend.Histogram(ctx, q, model.TimeRange{Start: a, End: b}, time.Duration(b-a))
		if err != nil {
			return 0, err
		}
		cov.Add(h.Coverage.Missing...)
		n := 0
		for _, b := range h.Buckets {
			n += b.Count
		}
		for i := range res.Cross {
			if res.Cross[i].Time == edge && res.Cross[i].Host != res.Record.Host {
				n--
			}
		}
		return uint32(max(n, 0)), nil
	}
	split := 0 // cross lines before the record
	for split < len(res.Cross) && query.Ahead(&res.Cross[split], &res.Record, true) {
		split++
	}
	if res.MoreBefore {
		first := &res.Record
		if split > 0 {
			first = &res.Cross[0]
		}
		if out.CrossOmittedBefore, err = count(res.Window.Start, first.Time+1, first.Time); err != nil {
			return err
		}
	}
	if res.MoreAfter {
		last := &res.Record
		if split < len(res.Cross) {
			last = &res.Cross[len(res.Cross)-1]
		}
		n, err := count(last.Time, res.Window.End, last.Time)
		if err != nil {
			return err
		}
		out.CrossOmittedAfter = n
	}
	return nil
}
