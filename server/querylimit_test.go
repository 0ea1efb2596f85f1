package server

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// TestQueryServiceMethodsLimited calls every method of the QueryService, as
// gRPC and the HTTP gateway both do, with every query (and tail) slot taken:
// each must answer ResourceExhausted. A method left out of limitedQueries
// answers Unimplemented and fails here.
func TestQueryServiceMethodsLimited(t *testing.T) {
	lm := NewLimiter(context.Background(), Limits{QueryTimeout: 50 * time.Millisecond, MaxConcurrentQueries: 1, MaxTails: 1}, nil)
	_, release, err := lm.query(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	releaseTail, err := lm.tail()
	if err != nil {
		t.Fatal(err)
	}
	defer releaseTail()

	var srv shiplogv1.QueryServiceServer = limitedQueries{s: &queryServer{}, lm: lm}
	v := reflect.ValueOf(srv)
	for _, m := range shiplogv1.QueryService_ServiceDesc.Methods {
		t.Run(m.MethodName, func(t *testing.T) {
			fn := v.MethodByName(m.MethodName)
			req := reflect.New(fn.Type().In(1).Elem())
			out := fn.Call([]reflect.Value{reflect.ValueOf(context.Background()), req})
			err, _ := out[1].Interface().(error)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("%s with every query slot taken: %v, want ResourceExhausted", m.MethodName, err)
			}
		})
	}
	for _, m := range shiplogv1.QueryService_ServiceDesc.Streams {
		t.Run(m.StreamName, func(t *testing.T) {
			fn := v.MethodByName(m.StreamName)
			req := reflect.New(fn.Type().In(0).Elem())
			out := fn.Call([]reflect.Value{req, reflect.Zero(fn.Type().In(1))})
			err, _ := out[0].Interface().(error)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("%s with every tail slot taken: %v, want ResourceExhausted", m.StreamName, err)
			}
		})
	}
}

// TestQueryTimeoutAnswer: a query that runs out of --query-timeout answers
// DeadlineExceeded in words; one whose client went away does not.
func TestQueryTimeoutAnswer(t *testing.T) {
	lm := NewLimiter(context.Background(), Limits{QueryTimeout: 20 * time.Millisecond}, nil)
	slow := func(ctx context.Context, _ *struct{}) (*struct{}, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	_, err := limited(context.Background(), lm, nil, slow)
	if st, _ := status.FromError(err); st.Code() != codes.DeadlineExceeded || !strings.Contains(st.Message(), "--query-timeout") {
		t.Errorf("timed out query: %v, want DeadlineExceeded naming --query-timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = limited(ctx, lm, nil, slow)
	if status.Code(err) == codes.DeadlineExceeded || status.Code(err) == codes.ResourceExhausted {
		t.Errorf("cancelled query: %v, want Canceled", err)
	}
}
