package main

// -mode otlp: the same batches as OTLP/gRPC LogsService/Export requests, as an
// OpenTelemetry SDK or Collector sends them: one ResourceLogs per stream
// (service.name, host.name, cicd.pipeline.run.id, deployment.id), the level as
// a SeverityNumber, the message as a string body.

import (
	"context"
	"fmt"
	"sync"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

var severityOf = map[string]logspb.SeverityNumber{
	"trace": logspb.SeverityNumber_SEVERITY_NUMBER_TRACE, "debug": logspb.SeverityNumber_SEVERITY_NUMBER_DEBUG,
	"info": logspb.SeverityNumber_SEVERITY_NUMBER_INFO, "warn": logspb.SeverityNumber_SEVERITY_NUMBER_WARN,
	"error": logspb.SeverityNumber_SEVERITY_NUMBER_ERROR, "fatal": logspb.SeverityNumber_SEVERITY_NUMBER_FATAL,
}

func otlpString(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// buildOTLP turns each Push batch into an export request of the same records.
func buildOTLP(perConn [][]*shiplogv1.PushRequest) [][]*collogspb.ExportLogsServiceRequest {
	type stream struct{ service, host, build, deploy string }
	out := make([][]*collogspb.ExportLogsServiceRequest, len(perConn))
	for c, batches := range perConn {
		for _, b := range batches {
			req := &collogspb.ExportLogsServiceRequest{}
			byStream := map[stream]*logspb.ScopeLogs{}
			for _, r := range b.Records {
				k := stream{r.GetService(), r.GetHost(), r.GetBuildId(), r.GetDeployId()}
				sl := byStream[k]
				if sl == nil {
					var attrs []*commonpb.KeyValue
					for _, a := range [][2]string{{"service.name", k.service}, {"host.name", k.host},
						{"cicd.pipeline.run.id", k.build}, {"deployment.id", k.deploy}} {
						if a[1] != "" {
							attrs = append(attrs, otlpString(a[0], a[1]))
						}
					}
					sl = &logspb.ScopeLogs{}
					byStream[k] = sl
					req.ResourceLogs = append(req.ResourceLogs, &logspb.ResourceLogs{
						Resource: &resourcepb.Resource{Attributes: attrs}, ScopeLogs: []*logspb.ScopeLogs{sl}})
				}
				lr := &logspb.LogRecord{
					TimeUnixNano:   uint64(r.GetTime().AsTime().UnixNano()),
					SeverityNumber: severityOf[r.GetLevel()],
					Body:           &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: r.GetMessage()}},
				}
				for k, v := range r.GetAttributes() {
					lr.Attributes = append(lr.Attributes, otlpString(k, v))
				}
				sl.LogRecords = append(sl.LogRecords, lr)
			}
			out[c] = append(out[c], req)
		}
	}
	return out
}

// ingestOTLP sends reqs[c] over connection c, inflight Export calls at a time,
// and checks that no record was rejected.
func ingestOTLP(ctx context.Context, addr string, reqs [][]*collogspb.ExportLogsServiceRequest, inflight int, start func()) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := make([]collogspb.LogsServiceClient, len(reqs))
	for c := range reqs {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return 0, err
		}
		defer cc.Close()
		clients[c] = collogspb.NewLogsServiceClient(cc)
		if _, err := clients[c].Export(ctx, &collogspb.ExportLogsServiceRequest{}, grpc.WaitForReady(true)); err != nil {
			return 0, fmt.Errorf("connection %d: empty export: %w", c, err)
		}
	}
	errs := make([]error, len(reqs)*inflight)
	var wg sync.WaitGroup
	start()
	t0 := time.Now()
	for c := range reqs {
		for w := range inflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(reqs[c]); i += inflight {
					resp, err := clients[c].Export(ctx, reqs[c][i])
					if err == nil && resp.GetPartialSuccess().GetRejectedLogRecords() != 0 {
						err = fmt.Errorf("%d records rejected: %s", resp.GetPartialSuccess().GetRejectedLogRecords(), resp.GetPartialSuccess().GetErrorMessage())
					}
					if err != nil {
						errs[c*inflight+w] = fmt.Errorf("connection %d request %d: %w", c, i, err)
						cancel()
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	return time.Since(t0), firstErr(errs)
}
