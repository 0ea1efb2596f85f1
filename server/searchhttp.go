package server

// GET /v1/logs:search is served on the gateway's mux in place of the
// generated handler (registered after it, on the same path: the gateway
// tries the newest first), so it keeps the gateway's middlewares (the
// path's scope), query parameters, form bodies and errors. What differs is
// the answer: the engine's page is written as JSON straight from its
// records, without the protobuf messages (a page of thousands of records
// allocated a megabyte of them), a share at a time (the client reads the
// first share of the records while the others are encoded), from pooled
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

// maxPooledJSON is the largest buffer kept for reuse.
const maxPooledJSON = 4 << 20

var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// writeSearchJSON writes res as appendSearchJSON writes its SearchResponse.
// The records' shares (eachShare) are encoded concurrently, each into a
// buffer of its own, and written in order as they are done: the first
// while the others are still being encoded. (Written in smaller pieces, the
// answer took longer: the client's reads then compete with the encoding
// for the cores.) A failed write (the client gone) ends the answer.
func writeSearchJSON(w io.Writer, res *query.SearchResult) {
	recs := res.Records
	bounds := shares(len(recs))
	parts := make([]*[]byte, len(bounds)-1)
	done := make([]chan struct{}, len(parts))
	encode := func(i int) {
		bp := jsonBufs.Get().(*[]byte)
		b := (*bp)[:0]
		if i == 0 {
			b = append(b, `{"records":[`...)
		}
		var enc recordJSON
		for j := bounds[i]; j < bounds[i+1]; j++ {
			if j > 0 {
				b = append(b, ',')
			}
			b = enc.append(b, &recs[j])
		}
		if i == len(parts)-1 {
			b = appendSearchTail(b, res.NextCursor, res.Coverage)
		}
		*bp = b
		parts[i] = bp
	}
	for i := 1; i < len(parts); i++ {
		done[i] = make(chan struct{})
		go func() {
			defer close(done[i])
			encode(i)
		}()
	}
	encode(0)
	var err error
	for i := range parts {
		if i > 0 {
			<-done[i]
		}
		bp := parts[i]
		if err == nil {
			_, err = w.Write(*bp)
		}
		putJSONBuf(bp)
	}
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
