package server

// GET /v1/logs:search is served on the gateway's mux in place of the
// generated handler (registered after it, on the same path: the gateway
// tries the newest first), so it keeps the gateway's middlewares (the
// path's scope), query parameters, form bodies and errors. What differs is
// the answer: the engine's page is written as JSON straight from its
// records, without the protobuf messages (a page of thousands of records
// allocated a megabyte of them), in pieces as it is written (the client
// reads the first records while the rest are encoded), from pooled
// buffers. The bytes are those of appendSearchJSON on the protobuf answer
// (TestSearchJSONOfPage).

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
	"github.com/shiplog/shiplog/query"
)

const searchPath = "/v1/logs:search"

// handleSearchJSON registers GET /v1/logs:search on gw, answered by q.
func handleSearchJSON(gw *runtime.ServeMux, q limitedQueries) error {
	noFilter := &utilities.DoubleArray{Encoding: map[string]int{}}
	return gw.HandlePath(http.MethodGet, searchPath, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		// As the generated handler (local_request_QueryService_Search_0).
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		var stream runtime.ServerTransportStream
		ctx = grpc.NewContextWithServerTransportStream(ctx, &stream)
		_, out := runtime.MarshalerForRequest(gw, r)
		actx, err := runtime.AnnotateIncomingContext(ctx, gw, r, "/shiplog.v1.QueryService/Search", runtime.WithHTTPPathPattern(searchPath))
		if err != nil {
			runtime.HTTPError(ctx, gw, out, w, r, err)
			return
		}
		var req shiplogv1.SearchRequest
		if err := r.ParseForm(); err != nil {
			runtime.HTTPError(actx, gw, out, w, r, status.Errorf(codes.InvalidArgument, "%v", err))
			return
		}
		if err := runtime.PopulateQueryParameters(&req, r.Form, noFilter); err != nil {
			runtime.HTTPError(actx, gw, out, w, r, status.Errorf(codes.InvalidArgument, "%v", err))
			return
		}
		res, err := q.searchPage(actx, &req)
		if err != nil {
			runtime.HTTPError(actx, gw, out, w, r, err)
			return
		}
		// As runtime.ForwardResponseMessage.
		if strings.Contains(strings.ToLower(r.Header.Get("TE")), "trailers") {
			w.Header().Set("Transfer-Encoding", "chunked")
		}
		w.Header().Set("Content-Type", out.ContentType(nil))
		writeSearchJSON(w, res)
	})
}

// flushBytes is how much of an answer is encoded before it is written.
const flushBytes = 64 << 10

// maxPooledJSON is the largest buffer kept for reuse.
const maxPooledJSON = 4 << 20

var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, flushBytes+4<<10); return &b }}

// writeSearchJSON writes res as appendSearchJSON writes its SearchResponse.
// The records' shares (eachShare) but the first are encoded concurrently,
// each into a buffer of its own; the first is written as it is encoded.
// A failed write (the client gone) ends the answer.
func writeSearchJSON(w io.Writer, res *query.SearchResult) {
	recs := res.Records
	bounds := shares(len(recs))
	parts := make([]*[]byte, len(bounds)-1)
	var wg sync.WaitGroup
	for i := 1; i < len(parts); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := jsonBufs.Get().(*[]byte)
			var enc recordJSON
			b := (*bp)[:0]
			for j := bounds[i]; j < bounds[i+1]; j++ {
				b = append(b, ',')
				b = enc.append(b, &recs[j])
			}
			*bp = b
			parts[i] = bp
		}()
	}
	bp := jsonBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"records":[`...)
	var enc recordJSON
	var err error
	for j := bounds[0]; j < bounds[1] && err == nil; j++ {
		if j > 0 {
			b = append(b, ',')
		}
		b = enc.append(b, &recs[j])
		if len(b) >= flushBytes {
			_, err = w.Write(b)
			b = b[:0]
		}
	}
	wg.Wait()
	for _, p := range parts[1:] {
		if err == nil && len(b) > 0 {
			_, err = w.Write(b)
		}
		b = b[:0]
		if err == nil {
			_, err = w.Write(*p)
		}
		putJSONBuf(p)
	}
	b = appendSearchTail(b, res.NextCursor, res.Coverage)
	if err == nil {
		w.Write(b) //nolint:errcheck // the client is gone: nothing to tell it
	}
	*bp = b
	putJSONBuf(bp)
}

func putJSONBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledJSON {
		*bp = (*bp)[:0]
		jsonBufs.Put(bp)
	}
}

// appendSearchTail appends what follows the records in appendSearchJSON.
func appendSearchTail(b []byte, cursor string, c query.Coverage) []byte {
	partial, missing := coverage(c)
	b = append(b, `],"next_cursor":`...)
	b = appendJSONString(b, cursor)
	b = append(b, `,"partial":`...)
	b = strconv.AppendBool(b, partial)
	b = append(b, `,"missing_partitions":[`...)
	for i, p := range missing {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(p), 10)
	}
	return append(b, "]}"...)
}
