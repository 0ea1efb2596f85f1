package server

// POST /v1/logs:write and POST /v1/logs:jsonl, decoded by ingest's JSON
// decoder (~0.6 us a record) rather than by grpc-gateway and protojson (~4.5
// us a record, more than the store's work).

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

const (
	jsonlChunk     = 1000 // records of a JSON-lines body handed to Ingest at once
	jsonlMaxErrors = 100  // line errors listed in an answer (all are counted)
	// jsonlMaxLine bounds one line: far above ingest's MaxLineBytes, so that
	// a huge message is cut and marked by ingest rather than refused here.
	jsonlMaxLine = 16 << 20
)

// jsonWriteResponse is PushResponse as protojson renders it (uint64 as a string).
type jsonWriteResponse struct {
	Accepted   int    `json:"accepted"`
	Duplicates int    `json:"duplicates"`
	AckedSeq   string `json:"acked_seq"`
}

// newJSONWriteHandler serves POST /v1/logs:write: a Push batch in JSON,
// gzip-compressed or not, answered as Push answers it.
func newJSONWriteHandler(core Core, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc, err := contentEncoding(r)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		// The body is read before a slot is taken (a slow sender holds
		// none), and decoded holding one.
		mem := core.Limits.bodyMem()
		defer mem.release()
		bp := jsonBodyBufs.Get().(*[]byte)
		defer putJSONBodyBuf(bp)
		if err := mem.take(int64(cap(*bp))); err != nil {
			writeHTTPError(w, err)
			return
		}
		raw, err := mem.readAll((*bp)[:0], r.Body, maxBody)
		if err != nil {
			writeHTTPError(w, bodyReadError(err))
			return
		}
		*bp = raw[:0]
		release, err := core.Limits.ingest(r.Context())
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		defer release()
		body, err := mem.decode(enc, raw, maxBody)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		b, _, err := ingest.DecodeBatchJSON(body) // b carries closing, dropped and run too
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		res, err := core.Ingest.Ingest(r.Context(), &b)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, jsonWriteResponse{Accepted: res.Accepted, Duplicates: res.Duplicates, AckedSeq: strconv.FormatUint(res.AckedSeq, 10)})
	})
}

type jsonlResponse struct {
	Accepted   int             `json:"accepted"`
	Duplicates int             `json:"duplicates"`
	Rejected   int             `json:"rejected"`
	Errors     []jsonLineError `json:"errors"`
}

type jsonLineError struct {
	Line    int    `json:"line"`
	Message string `json:"message"`
}

func (a *jsonlResponse) reject(line int, err error) {
	a.Rejected++
	if len(a.Errors) < jsonlMaxErrors {
		a.Errors = append(a.Errors, jsonLineError{Line: line, Message: jsonLineMessage(err)})
	}
}

// jsonLineMessage is err without what the line number already says.
func jsonLineMessage(err error) string {
	var je *ingest.JSONError
	if errors.As(err, &je) {
		return fmt.Sprintf("byte %d: %s", je.Offset, je.Msg)
	}
	msg := strings.TrimPrefix(err.Error(), ingest.ErrInvalid.Error()+": ")
	return strings.TrimPrefix(msg, "record 0: ")
}

// newJSONLHandler serves POST /v1/logs:jsonl: one record a line, gzip-
// compressed or not, the query parameters service, host, build_id and
// deploy_id filling what a record leaves empty. Records are stored in chunks
// as they are read; bad lines are counted and listed (the first
// jsonlMaxErrors of them) without holding back the good ones. The answer is
// 200 unless every line was bad (400), or reading or storing failed part way,
// which is reported as an error after what was stored before.
func newJSONLHandler(core Core, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := jsonRequestBody(w, r, maxBody)
		if err != nil {
			writeHTTPError(w, err)
			return
		}
		defer body.Close()
		// The bytes read since the last chunk was stored are held in the
		// body budget: the records of a chunk and the line being read.
		mem := core.Limits.bodyMem()
		defer mem.release()
		q := r.URL.Query()
		def := &model.Record{Labels: model.Labels{Service: q.Get("service"), Host: q.Get("host"), BuildID: q.Get("build_id"), DeployID: q.Get("deploy_id")}}
		jr := ingest.NewJSONLReader(budgetReader{body, mem}, def, int(min(maxBody, jsonlMaxLine)))
		defer jr.Close()
		ans := jsonlResponse{Errors: []jsonLineError{}}
		var recs []model.Record
		var lines []int
		var chunk *jsonlChunkBuf // recs' and lines' memory, from a pool
		defer func() {
			if chunk != nil {
				putJSONLChunk(chunk, recs, lines)
			}
		}()
		flush := func() error {
			if len(recs) == 0 {
				return nil
			}
			release, err := core.Limits.ingest(r.Context())
			if err != nil {
				return err
			}
			defer release()
			err = ingestJSONLines(r, core, &model.Batch{Records: recs, TextChecked: jr.TextChecked()}, lines, &ans)
			// The sinks keep nothing of a batch's records once it is
			// stored (the store copies what it keeps, the tail hub and
			// the cluster copy what they send): the next chunk reuses them.
			recs, lines = recs[:0], lines[:0]
			return err
		}
		for {
			if len(recs) == 0 {
				mem.release() // nothing read so far is held
			}
			rec, line, err := jr.Next()
			if err == io.EOF {
				break
			}
			if errors.Is(err, ingest.ErrInvalid) {
				ans.reject(line, err)
				continue
			}
			if err == nil {
				if chunk == nil {
					chunk = jsonlChunks.Get().(*jsonlChunkBuf)
					recs, lines = chunk.recs, chunk.lines
				}
				recs, lines = append(recs, rec), append(lines, line)
				if len(recs) < jsonlChunk {
					continue
				}
				err = flush()
			} else if ferr := flush(); ferr != nil {
				err = ferr
			}
			if err != nil {
				writeHTTPError(w, err, fmt.Sprintf(" (after line %d, with %d records stored)", line, ans.Accepted))
				return
			}
		}
		if err := flush(); err != nil {
			writeHTTPError(w, err, fmt.Sprintf(" (%d records stored before)", ans.Accepted))
			return
		}
		code := http.StatusOK
		if ans.Accepted+ans.Duplicates == 0 && ans.Rejected > 0 {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, ans)
	})
}

// jsonlChunkBuf is the memory of a chunk of records, reused from request
// to request.
type jsonlChunkBuf struct {
	recs  []model.Record
	lines []int
}

var jsonlChunks = sync.Pool{New: func() any {
	return &jsonlChunkBuf{recs: make([]model.Record, 0, jsonlChunk), lines: make([]int, 0, jsonlChunk)}
}}

// putJSONLChunk returns c's memory, recs and lines, to the pool.
func putJSONLChunk(c *jsonlChunkBuf, recs []model.Record, lines []int) {
	clear(recs[:cap(recs)]) // hold none of the records' strings
	c.recs, c.lines = recs[:0], lines[:0]
	jsonlChunks.Put(c)
}

// ingestJSONLines stores recs. When Ingest refuses them for what they are
// (refusesRecords: invalid, or new streams over the limit), it stores
// each half on its own, down to single records, which are then rejected:
// one bad record costs the others no more than a few calls.
func ingestJSONLines(r *http.Request, core Core, b *model.Batch, lines []int, ans *jsonlResponse) error {
	recs := b.Records
	if len(recs) == 0 {
		return nil
	}
	res, err := core.Ingest.Ingest(r.Context(), b)
	switch {
	case err == nil:
		ans.Accepted += res.Accepted
		ans.Duplicates += res.Duplicates
		return nil
	case !refusesRecords(err):
		return err
	case len(recs) == 1:
		ans.reject(lines[0], err)
		return nil
	}
	h := len(recs) / 2
	if err := ingestJSONLines(r, core, &model.Batch{Records: recs[:h], TextChecked: b.TextChecked}, lines[:h], ans); err != nil {
		return err
	}
	return ingestJSONLines(r, core, &model.Batch{Records: recs[h:], TextChecked: b.TextChecked}, lines[h:], ans)
}

// jsonRequestBody is the request's body, limited to maxBody bytes before and
// after gzip decompression.
func jsonRequestBody(w http.ResponseWriter, r *http.Request, maxBody int64) (io.ReadCloser, error) {
	body := http.MaxBytesReader(w, r.Body, maxBody)
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, gzipBodyError(err)
		}
		return http.MaxBytesReader(w, gzipBodyReader{zr, body}, maxBody), nil
	default:
		return nil, invalid("Content-Encoding %q is not supported (want gzip or none)", enc)
	}
}

// budgetReader reserves in mem every byte read from r.
type budgetReader struct {
	r   io.Reader
	mem *bodyMem
}

func (b budgetReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		if e := b.mem.take(int64(n)); e != nil {
			return 0, e
		}
	}
	return n, err
}

type gzipBodyReader struct {
	zr   *gzip.Reader
	body io.Closer
}

func (g gzipBodyReader) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	if err != nil && err != io.EOF {
		err = gzipBodyError(err)
	}
	return n, err
}

func (g gzipBodyReader) Close() error { return g.body.Close() }

func gzipBodyError(err error) error {
	var mbe *http.MaxBytesError
	var bte *bodyTimeoutError
	if errors.As(err, &mbe) || errors.As(err, &bte) {
		return err
	}
	return invalid("gzip body: %v", err)
}

var jsonBodyBufs = sync.Pool{New: func() any { return new([]byte) }}

func putJSONBodyBuf(b *[]byte) {
	if cap(*b) <= 8<<20 {
		*b = (*b)[:0]
		jsonBodyBufs.Put(b)
	}
}
