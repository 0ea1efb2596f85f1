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

// httpStatusOf maps err through the error table to an HTTP status, with a
// Retry-After header for the statuses a client should retry (429, 503).
func httpStatusOf(w http.ResponseWriter, err error) (*status.Status, int) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return status.New(codes.ResourceExhausted, err.Error()), http.StatusRequestEntityTooLarge
	}
	st := status.Convert(toStatus(err))
	code := runtime.HTTPStatusFromCode(st.Code())
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	return st, code
}

// writeHTTPError answers err in the one error shape of the HTTP API, with the
// words of after (if any) after its message.
func writeHTTPError(w http.ResponseWriter, err error, after ...string) {
	st, code := httpStatusOf(w, err)
	msg := st.Message()
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		msg = fmt.Sprintf("request body is over the limit of %d bytes", mbe.Limit)
	}
	writeJSON(w, code, errorBody{Code: int(st.Code()), Status: st.Code().String(), Message: msg + strings.Join(after, "")})
}

// errorHandler renders gateway errors as errorBody with the matching HTTP status.
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || strings.Contains(err.Error(), "http: request body too large") {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Code: int(codes.ResourceExhausted), Status: codes.ResourceExhausted.String(),
			Message: "request body is over the limit"})
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
