package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

// Bad --otlp-build-attr, --otlp-deploy-attr and --promql-default-step are
// usage errors naming the flag, before anything starts.
func TestServerIngestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--otlp-build-attr", "service.version,,build.id"}, "--otlp-build-attr"},
		{[]string{"--otlp-deploy-attr", ""}, "--otlp-deploy-attr"},
		{[]string{"--otlp-build-attr", "a,b,c,d,e,f,g,h,i"}, "--otlp-build-attr"},
		{[]string{"--promql-default-step", "0s"}, "--promql-default-step"},
		{[]string{"--query-max-samples-read", "0"}, "--query-max-samples-read"},
		{[]string{"--open-chunks-memory", "100KiB"}, "--open-chunks-memory"},
		{[]string{"--seal-backlog-memory", "100KiB"}, "--seal-backlog-memory"},
	} {
		args := append([]string{"server", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}, c.args...)
		err := Run(context.Background(), args, io.Discard, io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(ue.msg, c.flag) {
			t.Errorf("%q: %v, want a usage error about %s", c.args, err, c.flag)
		}
	}
	if got, err := attrList("otlp-build-attr", " service.version , build_id"); err != nil || strings.Join(got, "|") != "service.version|build_id" {
		t.Errorf("attrList: %q %v", got, err)
	}
}
