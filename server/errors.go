package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/query"
	"github.com/shiplog/shiplog/store"
)

// errorTable is the one place where errors of the core become gRPC codes (and,
// through grpc-gateway, HTTP statuses: InvalidArgument 400, NotFound 404,
// ResourceExhausted 429, Unavailable 503, Internal 500).
var errorTable = []struct {
	err  error
	code codes.Code
}{
	{ingest.ErrInvalid, codes.InvalidArgument},
	{query.ErrBadQuery, codes.InvalidArgument},
	{model.ErrBadID, codes.InvalidArgument},
	{errInvalid, codes.InvalidArgument},
	{store.ErrNotFound, codes.NotFound},
	{store.ErrClosed, codes.Unavailable},
	{model.ErrUnavailable, codes.Unavailable},
	{store.ErrNoSpace, codes.ResourceExhausted},
	{store.ErrStreamLimit, codes.ResourceExhausted},
	{store.ErrAgentBound, codes.PermissionDenied},
	{store.ErrSeqJump, codes.InvalidArgument},
	{errSeriesLimit, codes.ResourceExhausted},
	{query.ErrTooManyGroups, codes.ResourceExhausted},
	{store.ErrReadOnly, codes.ResourceExhausted}, // opened on a full disk
	{alert.ErrInvalidRules, codes.FailedPrecondition},
	{alert.ErrBadRequest, codes.InvalidArgument},
	{errNoAlerting, codes.Unimplemented},
	{errNoMetrics, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// refusesRecords reports whether err refuses records of a batch for what
// they are, so that the ingest routes without agent seq numbers (JSON lines,
// OTLP, Loki, Elasticsearch bulk) split the batch down to the records at
// fault and store the others: invalid records, and records of new streams
// over --max-streams-per-day (a retry of the whole request would store
// again what it had stored, and the new streams stay refused until 00:00 UTC).
func refusesRecords(err error) bool {
	return errors.Is(err, ingest.ErrInvalid) || errors.Is(err, store.ErrStreamLimit)
}

// errInvalid marks request errors found by the handlers themselves.
var errInvalid = errors.New("invalid request")

// toStatus maps err through errorTable; anything unknown is Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return status.Error(e.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}
