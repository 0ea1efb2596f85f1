package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// maxBenchLine is the longest input line the bench takes.
const maxBenchLine = 64 << 20

// readJSONL reads every record of r (one JSON object a line, as gen_logs.py
// writes them) with the server's own decoder, ingest.JSONLReader, so the
// bench reads its input as /v1/logs:jsonl would, and converts each for the
// gRPC push. Labels and attribute keys are interned: 2M records share a few
// hundred of them. Errors name the line.
func readJSONL(r io.Reader) ([]*shiplogv1.Record, error) {
	jr := ingest.NewJSONLReader(r, nil, maxBenchLine)
	in := interner{}
	recs := make([]*shiplogv1.Record, 0, 1<<16)
	for {
		rec, line, err := jr.Next()
		if errors.Is(err, io.EOF) {
			return recs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		recs = append(recs, in.proto(&rec))
	}
}

type interner map[string]string

func (in interner) s(v string) string {
	if w, ok := in[v]; ok {
		return w
	}
	in[v] = v
	return v
}

// proto is r as a push carries it: its level only when the line gave one
// (the server detects the rest from the message, as for any client).
func (in interner) proto(r *model.Record) *shiplogv1.Record {
	p := &shiplogv1.Record{
		Time:     timestamppb.New(time.Unix(0, r.Time).UTC()),
		Service:  in.s(r.Service),
		Host:     in.s(r.Host),
		BuildId:  in.s(r.BuildID),
		DeployId: in.s(r.DeployID),
		Message:  r.Message,
		TraceId:  r.TraceID,
		SpanId:   r.SpanID,
	}
	if r.Level != model.LevelUnset {
		p.Level = in.s(r.Level.String())
	}
	if len(r.Attrs) > 0 {
		p.Attributes = make(map[string]string, len(r.Attrs))
		for _, a := range r.Attrs {
			p.Attributes[in.s(a.Key)] = a.Value
		}
	}
	return p
}

// buildBatches deals records out in batches of size batch, round-robin over conns
// senders. Sender c uses agent_id agentPrefix-c and numbers its records 1, 2, 3 ...
// in the order it sends them, so every record has a distinct (agent_id, seq).
func buildBatches(recs []*shiplogv1.Record, batch, conns int, agentPrefix string) [][]*shiplogv1.PushRequest {
	out := make([][]*shiplogv1.PushRequest, conns)
	seq := make([]uint64, conns)
	for i, b := 0, 0; i < len(recs); i, b = i+batch, b+1 {
		end := min(i+batch, len(recs))
		c := b % conns
		part := recs[i:end:end]
		for _, r := range part {
			seq[c]++
			r.Seq = seq[c]
		}
		out[c] = append(out[c], &shiplogv1.PushRequest{
			AgentId: fmt.Sprintf("%s-%d", agentPrefix, c),
			Records: part,
		})
	}
	return out
}

// expectation is FILE.expect.json written by gen_logs.py.
type expectation struct {
	N         int     `json:"n"`
	RawBytes  int64   `json:"raw_bytes"`
	FirstTime string  `json:"first_time"`
	SpanHours float64 `json:"span_hours"`
	ABuild    struct {
		BuildID string `json:"build_id"`
		Count   int    `json:"count"`
	} `json:"a_build"`
	DistinctHosts int `json:"distinct_hosts"`
	BRareWord     struct {
		Word  string `json:"word"`
		Count int    `json:"count"`
	} `json:"b_rare_word"`
	CLevelError struct {
		Count int `json:"count"`
	} `json:"c_level_error"`
	DErrorsPerMinute struct {
		Buckets int `json:"buckets"`
		Sum     int `json:"sum"`
	} `json:"d_errors_per_minute"`
	EVanishedHost struct {
		Host         string `json:"host"`
		HostLines    int    `json:"host_lines"`
		ExpectedRows int    `json:"expected_rows"`
		LastTime     string `json:"last_time"`
	} `json:"e_vanished_host"`
}
