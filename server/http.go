package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errorBody is the JSON of every HTTP error: the gRPC code as a number, its
// name, and what is wrong in words.
type errorBody struct {
	Code    int    `json:"code"`
	Status  string `json:"status,omitempty"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// errorStatus is the one place that maps an error to what an HTTP client is
// told: the error table's gRPC status (toStatus) and the matching HTTP
// status, with a body over a limit 413 and one too slow 408, in words a
// client can act on. Every HTTP error passes here; the writers differ only
// in shape: writeHTTPError (shiplog's), writeESError (Elasticsearch's),
// otlpHTTPError (OTLP's google.rpc.Status) and, for body errors,
// promBodyError (the Prometheus API's; its query errors keep Prometheus'
// own errorType and status, execError).
func errorStatus(err error) (*status.Status, int) {
	var (
		dtl *tooLarge
		mbe *http.MaxBytesError
		bte *bodyTimeoutError
	)
	switch {
	case errors.As(err, &dtl):
		return status.New(codes.ResourceExhausted, dtl.Error()), http.StatusRequestEntityTooLarge
	case errors.As(err, &mbe):
		return status.New(codes.ResourceExhausted, fmt.Sprintf("request body is over the limit of %d bytes", mbe.Limit)), http.StatusRequestEntityTooLarge
	case errors.As(err, &bte):
		return status.New(codes.DeadlineExceeded, bte.Error()), http.StatusRequestTimeout
	}
	st := status.Convert(toStatus(err))
	return st, runtime.HTTPStatusFromCode(st.Code())
}

// httpStatusOf is errorStatus, with a Retry-After header for the statuses
// a client should retry.
func httpStatusOf(w http.ResponseWriter, err error) (*status.Status, int) {
	st, code := errorStatus(err)
	retryAfter(w, code)
	return st, code
}

// retryAfter tells the client to retry a 429 or 503 after a second.
func retryAfter(w http.ResponseWriter, code int) {
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
}

// errorBodyOf is st in the one error shape of the HTTP API.
func errorBodyOf(st *status.Status, after ...string) errorBody {
	return errorBody{Code: int(st.Code()), Status: st.Code().String(), Message: st.Message() + strings.Join(after, "")}
}

// writeHTTPError answers err in the one error shape of the HTTP API, with the
// words of after (if any) after its message.
func writeHTTPError(w http.ResponseWriter, err error, after ...string) {
	st, code := httpStatusOf(w, err)
	writeJSON(w, code, errorBodyOf(st, after...))
}

// errorHandler renders gateway errors as errorBody with the matching HTTP status.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || strings.Contains(err.Error(), "http: request body too large") {
		writeHTTPError(w, &tooLarge{msg: "request body is over the limit"})
		return
	}
	st := status.Convert(toStatus(err))
	msg := st.Message()
	if st.Code() == codes.DeadlineExceeded && r.Context().Err() != nil {
		msg = "the query took longer than its time limit: narrow it down (time range, labels)"
	}
	if st.Code() == codes.InvalidArgument && r.Method == http.MethodPost && !ours(msg) {
		// The gateway could not decode the body.
		msg = "malformed JSON body: " + strings.TrimSpace(strings.TrimPrefix(msg, "proto:"))
	}
	writeHTTPError(w, status.Error(st.Code(), msg))
}

func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, fmt.Sprintf("internal error in %s", info.FullMethod))
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, fmt.Sprintf("internal error in %s", info.FullMethod))
			}
		}()
		return h(srv, ss)
	}
}

// ours reports whether an InvalidArgument message came from shiplog's own
// validation (rather than from decoding the request body).
func ours(msg string) bool {
	for _, e := range errorTable {
		if e.code == codes.InvalidArgument && strings.HasPrefix(msg, e.err.Error()) {
			return true
		}
	}
	return false
}
