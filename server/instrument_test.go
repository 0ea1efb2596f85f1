package server

import (
	"net/http/httptest"
	"testing"
)

// Paths that carry a name or an id fold into one route label, so a client
// cannot grow /metrics' label set with made-up names.
func TestRouteLabelsFoldNames(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v1/label/job/values":           "/api/v1/label/{name}/values",
		"/loki/api/v1/label/anything/values": "/loki/api/v1/label/{name}/values",
		"/v1/builds/shop%2Fmain%2F1":         "/v1/builds/{build_id}",
		"/v1/logs/abc:context":               "/v1/logs/{id}:context",
		"/myindex/_bulk":                     "/_bulk",
	} {
		if got := route(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
	}
}
