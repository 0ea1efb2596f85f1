package server

// OpenTelemetry (OTLP) ingest: the collector's LogsService and MetricsService
// over gRPC, and OTLP/HTTP (POST /v1/logs, POST /v1/metrics) in protobuf or
// JSON, gzip-compressed or not. Answers follow the OTLP specification:
// partial_success counts the records refused; 400 for data that cannot be
// decoded; 429 and 503, with Retry-After, for what the client should retry.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may send gzip
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

type otlpServer struct {
	core  Core
	log   *slog.Logger
	meta  *metaStore
	names *otlpNames
}

type otlpLogsService struct {
	collogspb.UnimplementedLogsServiceServer
	o *otlpServer
}

type otlpMetricsService struct {
	colmetricspb.UnimplementedMetricsServiceServer
	o *otlpServer
}

func registerOTLPGRPC(gs grpc.ServiceRegistrar, o *otlpServer) {
	collogspb.RegisterLogsServiceServer(gs, otlpLogsService{o: o})
	colmetricspb.RegisterMetricsServiceServer(gs, otlpMetricsService{o: o})
}

func (s otlpLogsService) Export(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	resp, err := s.o.exportLogs(ctx, req)
	return resp, toStatus(err)
}

func (s otlpMetricsService) Export(ctx context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	resp, err := s.o.exportMetrics(ctx, req)
	return resp, toStatus(err)
}

func (o *otlpServer) exportLogs(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	release, err := o.core.Limits.ingest(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return o.exportLogsHeld(ctx, req)
}

// exportLogsHeld is exportLogs for a caller that holds an ingest slot.
func (o *otlpServer) exportLogsHeld(ctx context.Context, req *collogspb.ExportLogsServiceRequest) (*collogspb.ExportLogsServiceResponse, error) {
	var res stored
	recs := o.names.logs(req, &res)
	if err := storeRecords(ctx, o.core.Ingest, recs, &res); err != nil {
		return nil, err
	}
	resp := &collogspb.ExportLogsServiceResponse{}
	if res.Rejected > 0 {
		resp.PartialSuccess = &collogspb.ExportLogsPartialSuccess{RejectedLogRecords: int64(res.Rejected), ErrorMessage: otlpRejected(&res)}
	}
	return resp, nil
}

func (o *otlpServer) exportLogsHTTP(ctx context.Context, body []byte, isJSON bool) (proto.Message, error) {
	req := &collogspb.ExportLogsServiceRequest{}
	if err := otlpUnmarshal(body, isJSON, req); err != nil {
		return nil, err
	}
	return o.exportLogsHeld(ctx, req)
}

func (o *otlpServer) exportMetricsHTTP(ctx context.Context, body []byte, isJSON bool) (proto.Message, error) {
	req := &colmetricspb.ExportMetricsServiceRequest{}
	if err := otlpUnmarshal(body, isJSON, req); err != nil {
		return nil, err
	}
	return o.exportMetricsHeld(ctx, req)
}

// otlpHTTPHandler serves one OTLP/HTTP signal: it reads the (maybe gzipped)
// body, then takes an ingest slot, decompresses the body and has export
// decode and store it, and answers in the request's encoding.
func otlpHTTPHandler(o *otlpServer, maxBody int64, export func(context.Context, []byte, bool) (proto.Message, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		var isJSON bool
		switch ct {
		case "application/x-protobuf", "application/protobuf":
		case "application/json":
			isJSON = true
		default:
			otlpHTTPError(w, false, http.StatusUnsupportedMediaType,
				invalid("Content-Type %q is not supported: want application/x-protobuf or application/json", r.Header.Get("Content-Type")))
			return
		}
		enc, err := contentEncoding(r)
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		mem := o.core.Limits.bodyMem()
		defer mem.release()
		raw, err := mem.readRaw(r, maxBody)
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		release, err := o.core.Limits.ingest(r.Context())
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		defer release()
		body, err := mem.decode(enc, raw, maxBody)
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		if enc != "" {
			mem.give(int64(cap(raw)))
		}
		resp, err := export(r.Context(), body, isJSON)
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		var out []byte
		if isJSON {
			out, err = protojson.Marshal(resp)
			w.Header().Set("Content-Type", "application/json")
		} else {
			out, err = proto.Marshal(resp)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}
		if err != nil {
			otlpHTTPError(w, isJSON, 0, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
	})
}

// otlpHTTPError answers err as a google.rpc.Status in the request's encoding
// (JSON: shiplog's error body, which has Status's code and message). code 0
// means the status the error table gives.
func otlpHTTPError(w http.ResponseWriter, isJSON bool, code int, err error) {
	st, c := httpStatusOf(w, err)
	if code == 0 {
		code = c
	}
	if isJSON {
		writeJSON(w, code, errorBodyOf(st))
		return
	}
	b, _ := proto.Marshal(st.Proto())
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// otlpUnmarshal decodes an OTLP request body in protobuf or in OTLP's JSON.
func otlpUnmarshal(body []byte, isJSON bool, m proto.Message) error {
	if !isJSON {
		if err := proto.Unmarshal(body, m); err != nil {
			return invalid("malformed protobuf body: %v", err)
		}
		return nil
	}
	b, err := otlpJSONIDs(body)
	if err != nil {
		return invalid("malformed JSON body: %v", err)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, m); err != nil {
		return invalid("malformed OTLP JSON body: %s", strings.TrimSpace(strings.TrimPrefix(err.Error(), "proto:")))
	}
	return nil
}

// otlpIDFields are the JSON fields OTLP encodes as hex, where protobuf's JSON
// mapping has base64.
var otlpIDFields = map[string]bool{
	"traceId": true, "spanId": true, "parentSpanId": true,
	"trace_id": true, "span_id": true, "parent_span_id": true,
}

// otlpJSONIDs rewrites the hex trace and span ids of OTLP JSON to the base64
// protojson expects. Everything else passes through unchanged (numbers keep
// their text).
func otlpJSONIDs(body []byte) ([]byte, error) {
	if !bytes.Contains(body, []byte("Id\"")) && !bytes.Contains(body, []byte("_id\"")) {
		return body, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	if err := fixIDs(v, 0); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func fixIDs(v any, depth int) error {
	if depth > 100 {
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && otlpIDFields[k] {
				raw, err := hex.DecodeString(s)
				if err != nil {
					return fmt.Errorf("%s %.40q is not hex", k, s)
				}
				x[k] = base64.StdEncoding.EncodeToString(raw)
				continue
			}
			if err := fixIDs(e, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range x {
			if err := fixIDs(e, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}
