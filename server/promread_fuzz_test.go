package server

import (
	"testing"

	"github.com/prometheus/prometheus/prompb"
)

// FuzzRemoteReadRequest: any body either is refused or decodes into
// queries whose matchers convert or are refused, without panicking.
func FuzzRemoteReadRequest(f *testing.F) {
	seed, _ := (&prompb.ReadRequest{Queries: []*prompb.Query{{StartTimestampMs: 1, EndTimestampMs: 2, Matchers: []*prompb.LabelMatcher{
		{Type: prompb.LabelMatcher_EQ, Name: "__name__", Value: "up"}, {Type: prompb.LabelMatcher_RE, Name: "job", Value: "a|b"}}}},
		AcceptedResponseTypes: []prompb.ReadRequest_ResponseType{prompb.ReadRequest_STREAMED_XOR_CHUNKS}}).Marshal()
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var req prompb.ReadRequest
		if err := req.Unmarshal(body); err != nil {
			return
		}
		for _, q := range req.Queries {
			if q == nil {
				continue
			}
			ms, err := readMatchers(q.Matchers)
			if err == nil && len(ms) != len(q.Matchers) {
				t.Fatalf("%d matchers for %d", len(ms), len(q.Matchers))
			}
		}
	})
}
