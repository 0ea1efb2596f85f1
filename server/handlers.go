package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

type ingestServer struct {
	shiplogv1.UnimplementedIngestServiceServer
	core Core
	log  *slog.Logger
	ins  *instruments
}

func (s *ingestServer) write(ctx context.Context, req *shiplogv1.PushRequest) (*shiplogv1.PushResponse, error) {
	release, err := s.core.Limits.ingest(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	b, err := toBatch(req)
	if err != nil {
		return nil, toStatus(err)
	}
	done := s.ins.batch("logs")
	res, err := s.core.Ingest.Ingest(ctx, &b)
	done()
	if err != nil {
		return nil, toStatus(err)
	}
	return &shiplogv1.PushResponse{Accepted: uint32(res.Accepted), Duplicates: uint32(res.Duplicates), AckedSeq: res.AckedSeq}, nil
}

func (s *ingestServer) Write(ctx context.Context, req *shiplogv1.PushRequest) (*shiplogv1.PushResponse, error) {
	return s.write(ctx, req)
}

// Push answers each batch, in order, once it is durable. Receiving runs one
// batch ahead of storing, so decoding overlaps with the store's work.
func (s *ingestServer) Push(stream grpc.BidiStreamingServer[shiplogv1.PushRequest, shiplogv1.PushResponse]) error {
	ctx := stream.Context()
	reqs := make(chan *shiplogv1.PushRequest, 2)
	recvErr := make(chan error, 1)
	go func() {
		defer close(reqs)
		for {
			req, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					recvErr <- err
				}
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()
	for req := range reqs {
		resp, err := s.write(ctx, req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	select {
	case err := <-recvErr:
		return err
	default:
		return nil
	}
}

type queryServer struct {
	shiplogv1.UnimplementedQueryServiceServer
	core Core
}

// farFuture is the default end of a search: later than any accepted record.
const farFuture = 48 * time.Hour

func parseRange(start, end string, defStart, defEnd time.Time, now time.Time) (model.TimeRange, error) {
	tr := model.TimeRange{Start: defStart.UnixNano(), End: defEnd.UnixNano()}
	var err error
	if start != "" {
		if tr.Start, err = query.ParseTime(start, now); err != nil {
			return tr, err
		}
	}
	if end != "" {
		if tr.End, err = query.ParseTime(end, now); err != nil {
			return tr, err
		}
	}
	if tr.Start >= tr.End {
		return tr, invalid("start %s is not before end %s", timeOf(tr.Start).Format(time.RFC3339Nano), timeOf(tr.End).Format(time.RFC3339Nano))
	}
	return tr, nil
}

// parseQueryLastDay parses a query and its range, the last 24 hours by
// default (histogram, stats, facets).
func parseQueryLastDay(qs, start, end string) (*query.Query, model.TimeRange, error) {
	q, err := query.Parse(qs)
	if err != nil {
		return nil, model.TimeRange{}, err
	}
	now := time.Now()
	tr, err := parseRange(start, end, now.Add(-24*time.Hour), now, now)
	return q, tr, err
}

func timeOf(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func (s *queryServer) Search(ctx context.Context, req *shiplogv1.SearchRequest) (*shiplogv1.SearchResponse, error) {
	res, err := s.searchPage(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &shiplogv1.SearchResponse{Records: recordsToProto(res.Records), NextCursor: res.NextCursor}
	out.Partial, out.MissingPartitions = coverage(res.Coverage)
	return out, nil
}

// searchPage is Search's page as the engine returns it (GET
// /v1/logs:search writes it as JSON without the protobuf messages:
// searchhttp.go).
func (s *queryServer) searchPage(ctx context.Context, req *shiplogv1.SearchRequest) (*query.SearchResult, error) {
	q, err := query.Parse(req.GetQ())
	if err != nil {
		return nil, toStatus(err)
	}
	now := time.Now()
	tr, err := parseRange(req.GetStart(), req.GetEnd(), time.Unix(0, 0), now.Add(farFuture), now)
	if err != nil {
		return nil, toStatus(err)
	}
	p := query.SearchParams{Query: q, Range: tr, Limit: int(req.GetLimit()), Cursor: req.GetCursor()}
	switch req.GetOrder() {
	case "", "desc":
	case "asc":
		p.Asc = true
	default:
		return nil, toStatus(invalid("order %q: want asc or desc", req.GetOrder()))
	}
	if req.GetLimit() < 0 {
		return nil, toStatus(invalid("limit must not be negative"))
	}
	res, err := s.core.Backend.Search(ctx, p)
	if err != nil {
		return nil, toStatus(err)
	}
	return res, nil
}

func (s *queryServer) Histogram(ctx context.Context, req *shiplogv1.HistogramRequest) (*shiplogv1.HistogramResponse, error) {
	q, tr, err := parseQueryLastDay(req.GetQ(), req.GetStart(), req.GetEnd())
	if err != nil {
		return nil, toStatus(err)
	}
	step, err := parseStep(req.GetStep())
	if err != nil {
		return nil, toStatus(err)
	}
	if step == 0 {
		step = niceStep(time.Duration(tr.End-tr.Start) / 60)
	}
	res, err := s.core.Backend.Histogram(ctx, q, tr, step)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &shiplogv1.HistogramResponse{Buckets: make([]*shiplogv1.Bucket, len(res.Buckets))}
	out.Partial, out.MissingPartitions = coverage(res.Coverage)
	var total uint64
	for i, b := range res.Buckets {
		out.Buckets[i] = &shiplogv1.Bucket{Time: timestamppb.New(timeOf(b.Start)), Count: uint32(b.Count)}
		total += uint64(b.Count)
	}
	out.Total = uint32(min(total, 1<<32-1))
	return out, nil
}

// niceStep rounds d up to a step a person would choose.
func niceStep(d time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
		time.Minute, 5 * time.Minute, 10 * time.Minute, 30 * time.Minute, time.Hour, 3 * time.Hour,
		6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour} {
		if d <= s {
			return s
		}
	}
	return 30 * 24 * time.Hour
}

// coverage renders what a cluster answer lacked as the responses' partial and
// missing_partitions fields.
func coverage(c query.Coverage) (bool, []int32) {
	m := c.Missing
	if len(m) == 0 {
		return false, nil
	}
	out := make([]int32, len(m))
	for i, p := range m {
		out[i] = int32(p)
	}
	return true, out
}
