package server

// What the ecosystem's protocols (OTLP, the Loki push API, syslog) share: they
// convert to model.Record and store through the Ingester, record by record
// where need be, so that one bad record does not cost the others.

import (
	"context"
	"strings"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// ecoChunk is how many records of one request go to Ingest at once: well
// under ingest's MaxRecords, large enough to cost the store one write.
const ecoChunk = 10000

// stored counts the outcome of storing converted records.
type stored struct {
	Accepted, Duplicates, Rejected int
	FirstReject                    error // why the first rejected record was refused
	Done                           int   // records handled (stored or refused), a prefix of those given
	// OnReject, when set, hears of each record storeRecords refuses (its
	// index among those given) and why.
	OnReject func(i int, err error)
}

func (s *stored) reject(n int, err error) {
	s.Rejected += n
	s.Done += n
	if s.FirstReject == nil {
		s.FirstReject = err
	}
}

// storeRecords stores recs through the Ingester in chunks. When Ingest refuses
// a chunk for its records (refusesRecords: invalid, or new streams over the
// limit), each half is stored on its own, down to single records,
// which are then counted as rejected. It returns an error only for what is
// not the records' fault (store failures, cancellation); what was counted
// before it is stored.
func storeRecords(ctx context.Context, in *ingest.Ingester, recs []model.Record, res *stored) error {
	for off := 0; off < len(recs); off += ecoChunk {
		n := min(len(recs)-off, ecoChunk)
		if err := storeBisect(ctx, in, recs[off:off+n], off, res); err != nil {
			return err
		}
	}
	return nil
}

func storeBisect(ctx context.Context, in *ingest.Ingester, recs []model.Record, off int, res *stored) error {
	if len(recs) == 0 {
		return nil
	}
	r, err := in.Ingest(ctx, &model.Batch{Records: recs})
	switch {
	case err == nil:
		res.Accepted += r.Accepted
		res.Duplicates += r.Duplicates
		res.Done += len(recs)
		return nil
	case !refusesRecords(err):
		return err
	case len(recs) == 1:
		res.reject(1, err)
		if res.OnReject != nil {
			res.OnReject(off, err)
		}
		return nil
	}
	h := len(recs) / 2
	if err := storeBisect(ctx, in, recs[:h], off, res); err != nil {
		return err
	}
	return storeBisect(ctx, in, recs[h:], off+h, res)
}

// rejectMessage is the reason a record was refused, without ingest's
// "invalid input: record 0:" preamble (the record number is of a sub-batch).
func rejectMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), ingest.ErrInvalid.Error()+": ")
	return strings.TrimPrefix(msg, "record 0: ")
}

// registerEcosystem adds the OTLP/HTTP, Loki push and Elasticsearch
// endpoints (the OTLP gRPC services: registerOTLPGRPC).
func registerEcosystem(rt *router, core Core, maxBody int64, o *otlpServer) {
	rt.handle("POST /v1/logs", ScopeIngest, otlpHTTPHandler(o, maxBody, o.exportLogsHTTP))
	rt.handle("POST /v1/metrics", ScopeIngest, otlpHTTPHandler(o, maxBody, o.exportMetricsHTTP))
	rt.handle("POST /loki/api/v1/push", ScopeIngest, lokiPushHandler(core, maxBody))
	registerES(rt, core, maxBody)
}
