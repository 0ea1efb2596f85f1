package server

// POST /api/v1/read: Prometheus remote read. A snappy-compressed
// prompb.ReadRequest asks for the samples of some selectors over a time
// range; the answer is a snappy-compressed prompb.ReadResponse (SAMPLES,
// what Prometheus 2.x asks for) or, when the client accepts only that,
// STREAMED_XOR_CHUNKS: length-prefixed, CRC-checked ChunkedReadResponse
// frames of XOR (and histogram) chunks, as Prometheus' own read handler
// writes them. A SAMPLES answer holds at most remoteReadMaxSamples samples.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/http"
	"slices"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"

	"github.com/shiplog/shiplog/metrics"
)

const (
	// remoteReadMaxSamples bounds a SAMPLES answer (Prometheus'
	// --storage.remote.read-sample-limit is 5e7; this one is built in memory).
	remoteReadMaxSamples = 5_000_000
	// remoteReadMaxQueries bounds the queries of one request.
	remoteReadMaxQueries = 64
	// remoteReadFrameBytes is the size a streamed frame is cut at, as
	// Prometheus' --storage.remote.read-max-bytes-in-frame.
	remoteReadFrameBytes = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (a *promAPI) remoteRead(w http.ResponseWriter, r *http.Request) {
	if a.core.Metrics == nil {
		http.Error(w, errNoMetrics.Error(), http.StatusServiceUnavailable)
		return
	}
	mem := a.core.Limits.bodyMem()
	defer mem.release()
	body, err := mem.readRaw(r, a.maxBody)
	if err != nil {
		http.Error(w, promBodyError(err).Error(), promBodyError(err).code)
		return
	}
	raw, err := mem.unsnappy(body, a.maxBody)
	if err != nil {
		http.Error(w, err.Error(), promBodyError(err).code)
		return
	}
	var req prompb.ReadRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, "body is not a prometheus.ReadRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	if slices.Contains(req.Queries, nil) {
		http.Error(w, "a query of the read request is empty", http.StatusBadRequest)
		return
	}
	if len(req.Queries) > remoteReadMaxQueries {
		http.Error(w, fmt.Sprintf("%d queries in one read request, over the limit of %d", len(req.Queries), remoteReadMaxQueries), http.StatusBadRequest)
		return
	}
	ctx, release, ok := a.plainQuerySlot(w, r)
	if !ok {
		return
	}
	defer release()
	streamed := len(req.AcceptedResponseTypes) > 0 && !slices.Contains(req.AcceptedResponseTypes, prompb.ReadRequest_SAMPLES)
	if streamed {
		if !slices.Contains(req.AcceptedResponseTypes, prompb.ReadRequest_STREAMED_XOR_CHUNKS) {
			http.Error(w, fmt.Sprintf("none of the response types %v is supported: want SAMPLES or STREAMED_XOR_CHUNKS", req.AcceptedResponseTypes), http.StatusBadRequest)
			return
		}
		a.remoteReadStreamed(ctx, w, &req)
		return
	}
	resp, code, err := a.remoteReadSamples(ctx, &req)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	out, err := resp.Marshal()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Header().Set("Content-Encoding", "snappy")
	_, _ = w.Write(s2.EncodeSnappy(nil, out))
}

// readQuery opens a querier for q and selects its series.
func (a *promAPI) readQuery(ctx context.Context, q *prompb.Query, sorted bool) (storage.SeriesSet, func(), error) {
	ms, err := readMatchers(q.Matchers)
	if err != nil {
		return nil, nil, err
	}
	qr, err := a.core.Metrics.Queryable.Querier(q.StartTimestampMs, q.EndTimestampMs)
	if err != nil {
		return nil, nil, err
	}
	hints := &storage.SelectHints{Start: q.StartTimestampMs, End: q.EndTimestampMs}
	if h := q.Hints; h != nil {
		hints = &storage.SelectHints{Start: h.StartMs, End: h.EndMs, Step: h.StepMs, Func: h.Func, Grouping: h.Grouping, Range: h.RangeMs, By: h.By}
	}
	return qr.Select(ctx, sorted, hints, ms...), func() { _ = qr.Close() }, nil
}

func (a *promAPI) remoteReadSamples(ctx context.Context, req *prompb.ReadRequest) (*prompb.ReadResponse, int, error) {
	resp := &prompb.ReadResponse{Results: make([]*prompb.QueryResult, len(req.Queries))}
	total := 0
	for i, q := range req.Queries {
		set, closeFn, err := a.readQuery(ctx, q, false)
		if err != nil {
			return nil, http.StatusBadRequest, err
		}
		res := &prompb.QueryResult{}
		var it chunkenc.Iterator
		for set.Next() {
			s := set.At()
			ts := &prompb.TimeSeries{Labels: prompb.FromLabels(s.Labels(), nil)}
			it = s.Iterator(it)
			for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
				if total++; total > remoteReadMaxSamples {
					closeFn()
					return nil, http.StatusBadRequest, fmt.Errorf("exceeded sample limit (%d): narrow the time range or the selectors", remoteReadMaxSamples)
				}
				switch vt {
				case chunkenc.ValFloat:
					t, v := it.At()
					ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t, Value: v})
				case chunkenc.ValHistogram:
					t, h := it.AtHistogram(nil)
					ts.Histograms = append(ts.Histograms, prompb.FromIntHistogram(t, h))
				case chunkenc.ValFloatHistogram:
					t, fh := it.AtFloatHistogram(nil)
					ts.Histograms = append(ts.Histograms, prompb.FromFloatHistogram(t, fh))
				}
			}
			if err := it.Err(); err != nil {
				closeFn()
				return nil, http.StatusInternalServerError, err
			}
			res.Timeseries = append(res.Timeseries, ts)
		}
		err = set.Err()
		closeFn()
		if err != nil {
			return nil, readErrorCode(err), err
		}
		resp.Results[i] = res
	}
	return resp, 0, nil
}

func (a *promAPI) remoteReadStreamed(ctx context.Context, w http.ResponseWriter, req *prompb.ReadRequest) {
	w.Header().Set("Content-Type", "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse")
	rc := http.NewResponseController(w)
	for i, q := range req.Queries {
		set, closeFn, err := a.readQuery(ctx, q, true)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		err = streamChunks(w, rc, int64(i), set)
		closeFn()
		if err != nil {
			// Frames may be out already: the client sees a broken stream.
			http.Error(w, err.Error(), readErrorCode(err))
			return
		}
	}
}

// streamChunks writes each series of set as ChunkedReadResponse frames.
func streamChunks(w http.ResponseWriter, rc *http.ResponseController, index int64, set storage.SeriesSet) error {
	var it chunks.Iterator
	for set.Next() {
		s := set.At()
		lbls := prompb.FromLabels(s.Labels(), nil)
		it = storage.NewSeriesToChunkEncoder(s).Iterator(it)
		var chks []prompb.Chunk
		size := 0
		for more := it.Next(); more; {
			m := it.At()
			c := prompb.Chunk{MinTimeMs: m.MinTime, MaxTimeMs: m.MaxTime, Type: prompb.Chunk_Encoding(m.Chunk.Encoding()), Data: m.Chunk.Bytes()}
			chks = append(chks, c)
			size += c.Size()
			more = it.Next()
			if size < remoteReadFrameBytes && more {
				continue
			}
			resp := &prompb.ChunkedReadResponse{ChunkedSeries: []*prompb.ChunkedSeries{{Labels: lbls, Chunks: chks}}, QueryIndex: index}
			b, err := resp.Marshal()
			if err != nil {
				return err
			}
			if err := writeFrame(w, b); err != nil {
				return err
			}
			_ = rc.Flush()
			chks, size = chks[:0], 0
		}
		if err := it.Err(); err != nil {
			return err
		}
	}
	return set.Err()
}

// writeFrame writes one frame of a chunked read answer: the length as a
// uvarint, the CRC-32 (Castagnoli) of the data, big-endian, and the data.
func writeFrame(w http.ResponseWriter, b []byte) error {
	var hdr [binary.MaxVarintLen64 + 4]byte
	n := binary.PutUvarint(hdr[:], uint64(len(b)))
	binary.BigEndian.PutUint32(hdr[n:], crc32.Checksum(b, castagnoli))
	if _, err := w.Write(hdr[:n+4]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readMatchers converts remote read's label matchers.
func readMatchers(ms []*prompb.LabelMatcher) ([]*labels.Matcher, error) {
	out := make([]*labels.Matcher, 0, len(ms))
	for _, m := range ms {
		var t labels.MatchType
		switch m.Type {
		case prompb.LabelMatcher_EQ:
			t = labels.MatchEqual
		case prompb.LabelMatcher_NEQ:
			t = labels.MatchNotEqual
		case prompb.LabelMatcher_RE:
			t = labels.MatchRegexp
		case prompb.LabelMatcher_NRE:
			t = labels.MatchNotRegexp
		default:
			return nil, fmt.Errorf("invalid matcher type %d", m.Type)
		}
		lm, err := labels.NewMatcher(t, m.Name, m.Value)
		if err != nil {
			return nil, fmt.Errorf("matcher %s: %w", m.Name, err)
		}
		out = append(out, lm)
	}
	if len(out) == 0 {
		return nil, errors.New("a query needs at least one matcher")
	}
	return out, nil
}

// readErrorCode is the HTTP status of an error reading series: over a
// limit is the client's to fix (400), the rest is the server's.
func readErrorCode(err error) int {
	if errors.Is(err, metrics.ErrLimit) {
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// plainQuerySlot takes a query slot for the endpoints Prometheus answers in
// plain text (remote read, /federate): without one, 429 with Retry-After.
func (a *promAPI) plainQuerySlot(w http.ResponseWriter, r *http.Request) (context.Context, func(), bool) {
	ctx, release, err := a.core.Limits.query(r.Context())
	if err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return nil, nil, false
	}
	return ctx, release, true
}
