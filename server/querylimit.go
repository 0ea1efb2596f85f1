package server

import (
	"context"

	"google.golang.org/grpc"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

// limitedQueries is the QueryService as both gRPC and the HTTP gateway serve
// it: every method takes a query slot and runs under the query timeout (a live
// tail takes a tail slot instead), exactly once, whatever reached it — gRPC,
// a GET, or a POST with a form body, which grpc-gateway serves as the GET.
//
// A method added to the service and not listed here answers Unimplemented
// (TestQueryServiceMethodsLimited catches it).
type limitedQueries struct {
	shiplogv1.UnimplementedQueryServiceServer
	s  *queryServer
	lm *Limiter
}

// limited runs h under a query slot and the query timeout.
func limited[Req, Resp any](ctx context.Context, lm *Limiter, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	ctx, release, err := lm.query(ctx)
	if err != nil {
		var zero Resp
		return zero, err
	}
	defer release()
	resp, err := h(ctx, req)
	return resp, lm.queryError(ctx, err)
}

func (l limitedQueries) Search(ctx context.Context, r *shiplogv1.SearchRequest) (*shiplogv1.SearchResponse, error) {
	return limited(ctx, l.lm, r, l.s.Search)
}

// searchPage is Search's page before its conversion to protobuf (GET
// /v1/logs:search, searchhttp.go), under the same slot and timeout.
func (l limitedQueries) searchPage(ctx context.Context, r *shiplogv1.SearchRequest) (*query.SearchResult, error) {
	return limited(ctx, l.lm, r, l.s.searchPage)
}

func (l limitedQueries) Histogram(ctx context.Context, r *shiplogv1.HistogramRequest) (*shiplogv1.HistogramResponse, error) {
	return limited(ctx, l.lm, r, l.s.Histogram)
}

func (l limitedQueries) Stats(ctx context.Context, r *shiplogv1.StatsRequest) (*shiplogv1.StatsResponse, error) {
	return limited(ctx, l.lm, r, l.s.Stats)
}

func (l limitedQueries) Facets(ctx context.Context, r *shiplogv1.FacetsRequest) (*shiplogv1.FacetsResponse, error) {
	return limited(ctx, l.lm, r, l.s.Facets)
}

func (l limitedQueries) Context(ctx context.Context, r *shiplogv1.ContextRequest) (*shiplogv1.ContextResponse, error) {
	return limited(ctx, l.lm, r, l.s.Context)
}

func (l limitedQueries) ListBuilds(ctx context.Context, r *shiplogv1.ListBuildsRequest) (*shiplogv1.ListBuildsResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListBuilds)
}

func (l limitedQueries) GetBuild(ctx context.Context, r *shiplogv1.GetBuildRequest) (*shiplogv1.Build, error) {
	return limited(ctx, l.lm, r, l.s.GetBuild)
}

func (l limitedQueries) ListDeploys(ctx context.Context, r *shiplogv1.ListDeploysRequest) (*shiplogv1.ListDeploysResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListDeploys)
}

func (l limitedQueries) GetDeploy(ctx context.Context, r *shiplogv1.GetDeployRequest) (*shiplogv1.Deploy, error) {
	return limited(ctx, l.lm, r, l.s.GetDeploy)
}

func (l limitedQueries) ListHosts(ctx context.Context, r *shiplogv1.ListHostsRequest) (*shiplogv1.ListHostsResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListHosts)
}

func (l limitedQueries) ListAlerts(ctx context.Context, r *shiplogv1.ListAlertsRequest) (*shiplogv1.ListAlertsResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListAlerts)
}

func (l limitedQueries) ListAlertRules(ctx context.Context, r *shiplogv1.ListAlertRulesRequest) (*shiplogv1.ListAlertRulesResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListAlertRules)
}

func (l limitedQueries) ListAlertHistory(ctx context.Context, r *shiplogv1.ListAlertHistoryRequest) (*shiplogv1.ListAlertHistoryResponse, error) {
	return limited(ctx, l.lm, r, l.s.ListAlertHistory)
}

// Tail takes a tail slot for as long as the stream lasts.
func (l limitedQueries) Tail(r *shiplogv1.TailRequest, stream grpc.ServerStreamingServer[shiplogv1.TailResponse]) error {
	release, err := l.lm.tail()
	if err != nil {
		return err
	}
	defer release()
	return l.s.Tail(r, stream)
}
