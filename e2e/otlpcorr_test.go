package e2e

import (
	"context"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// TestOTLPCorrelation, with the OpenTelemetry Go SDK's exporters: the
// build and deploy come from the attributes --otlp-build-attr and
// --otlp-deploy-attr name (here service.version, and deploy_id), on records
// and on series; a resource with no service.name is unknown_service; OTLP
// metrics get Prometheus' target_info series and their metadata.
func TestOTLPCorrelation(t *testing.T) {
	s := startServer(t, t.TempDir(), "--otlp-build-attr", "service.version,build_id", "--otlp-deploy-attr", "deploy_id")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	emit := func(res *resource.Resource, msg string) {
		exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint(s.httpAddr), otlploghttp.WithInsecure())
		if err != nil {
			t.Fatal(err)
		}
		lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewSimpleProcessor(exp)))
		var r otellog.Record
		r.SetTimestamp(time.Now())
		r.SetSeverity(otellog.SeverityInfo)
		r.SetBody(attribute.StringValue(msg))
		lp.Logger("corr").Emit(ctx, r)
		if err := lp.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	emit(resource.NewWithAttributes("", attribute.String("service.name", "corr-api"), attribute.String("service.version", "1.4.2"),
		attribute.String("build_id", "b-ignored"), attribute.String("deploy_id", "d-9")), "correlated line")
	emit(resource.NewWithAttributes("", attribute.String("host.name", "h-anon")), "anonymous line")

	recs := waitRecords(t, s, `build_id:"1.4.2" AND deploy_id:d-9`, 1)
	if r := recs[0]; r.Service != "corr-api" || r.Message != "correlated line" || r.Attributes["build_id"] != "b-ignored" || r.Attributes["service.version"] != "" {
		t.Errorf("correlated record: %+v", r)
	}
	if recs := waitRecords(t, s, "service:unknown_service", 1); recs[0].Host != "h-anon" {
		t.Errorf("record with no service: %+v", recs[0])
	}

	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(s.grpcAddr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))),
		sdkmetric.WithResource(resource.NewWithAttributes("", attribute.String("service.name", "corr-api"), attribute.String("service.instance.id", "i-1"),
			attribute.String("service.version", "1.4.2"), attribute.String("deploy_id", "d-9"), attribute.String("k8s.pod.name", "api-7"))))
	c, err := mp.Meter("corr").Int64Counter("orders.placed")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 3)
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitPromValue(t, s, `orders_placed_total{job="corr-api",instance="i-1",build_id="1.4.2",deploy_id="d-9"}`, "3")
	waitPromValue(t, s, `target_info{job="corr-api",instance="i-1",k8s_pod_name="api-7",service_version="1.4.2"}`, "1")
	// The usual join of target_info's labels onto a series.
	waitPromValue(t, s, `orders_placed_total * on (job, instance) group_left (k8s_pod_name) target_info{k8s_pod_name="api-7"}`, "3")
	var md struct {
		Data map[string][]struct{ Type string } `json:"data"`
	}
	if code, body := s.getJSON(t, "/api/v1/metadata", url.Values{"metric": {"orders_placed_total"}}, &md); code != 200 ||
		len(md.Data["orders_placed_total"]) != 1 || md.Data["orders_placed_total"][0].Type != "counter" {
		t.Errorf("metadata: %d %s", code, body)
	}
}
