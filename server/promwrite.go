package server

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/prompb"

	"github.com/shiplog/shiplog/model"
)

// Remote write message types (the proto parameter of the Content-Type).
const (
	rwMsgV1 = "prometheus.WriteRequest"
	rwMsgV2 = "io.prometheus.write.v2.Request"
)

// remoteWriteMsg is the message type a request's Content-Type names: no
// Content-Type, or no proto parameter, is remote write 1.0.
func remoteWriteMsg(r *http.Request) (string, *promError) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return rwMsgV1, nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/x-protobuf" {
		return "", &promError{typ: "bad_data", code: http.StatusUnsupportedMediaType,
			err: fmt.Errorf("content type %q: want application/x-protobuf (Prometheus remote write 1.0 or 2.0)", ct)}
	}
	switch p := params["proto"]; p {
	case "", rwMsgV1:
		return rwMsgV1, nil
	case rwMsgV2:
		return rwMsgV2, nil
	default:
		return "", &promError{typ: "bad_data", code: http.StatusUnsupportedMediaType,
			err: fmt.Errorf("remote write message %q is not supported: send %s (remote write 1.0) or %s (2.0)", p, rwMsgV1, rwMsgV2)}
	}
}

// remoteWrite takes Prometheus remote write 1.0 (a snappy-compressed
// prompb.WriteRequest) and 2.0 (io.prometheus.write.v2.Request, with its
// symbols table and per-series metadata). It answers 204 once the samples
// are durable; bad input is a 400 in the Prometheus API's error format,
// which senders do not retry. Native histograms are stored with the floats;
// metadata is kept for /api/v1/metadata. 2.0 answers carry the
// X-Prometheus-Remote-Write-*-Written headers.
func (a *promAPI) remoteWrite(w http.ResponseWriter, r *http.Request) {
	if a.core.Metrics == nil {
		writePromError(w, &promError{typ: "unavailable", code: http.StatusServiceUnavailable, err: errNoMetrics})
		return
	}
	msg, perr := remoteWriteMsg(r)
	if perr != nil {
		writePromError(w, perr)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "snappy") {
		writePromError(w, &promError{typ: "bad_data", code: http.StatusUnsupportedMediaType,
			err: fmt.Errorf("content encoding %q: want snappy", enc)})
		return
	}
	// The body is read before a slot is taken (a slow sender holds none),
	// and decoded holding one.
	mem := a.core.Limits.bodyMem()
	defer mem.release()
	body, err := mem.readRaw(r, a.maxBody)
	if err != nil {
		writePromError(w, promBodyError(err))
		return
	}
	release, err := a.core.Limits.ingest(r.Context())
	if err != nil {
		writePromError(w, promWriteError(err))
		return
	}
	defer release()
	raw, err := mem.unsnappy(body, int64(a.maxBytes))
	if err != nil {
		writePromError(w, promBodyError(err))
		return
	}
	mem.give(int64(cap(body)))
	if msg == rwMsgV2 {
		a.remoteWriteV2(w, r, raw)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		writePromError(w, promBadData(fmt.Errorf("body is not a prometheus.WriteRequest: %w", err)))
		return
	}
	series, badHist, err := seriesFromRemoteWrite(&req)
	if err != nil {
		writePromError(w, promWriteError(err))
		return
	}
	for _, m := range req.Metadata {
		a.meta.add(m.MetricFamilyName, metricMeta{Type: strings.ToLower(m.Type.String()), Help: m.Help, Unit: m.Unit})
	}
	if _, err := a.ins.storeMetricsHeld(r.Context(), a.core, series); err != nil {
		writePromError(w, promWriteError(err))
		return
	}
	if badHist != nil {
		// The rest is stored; a 400 tells the sender not to resend.
		writePromError(w, promWriteError(badHist))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// promBodyError maps an error of reading or decoding a body to the
// Prometheus API's: a body over a limit or too slow has errorStatus's
// status and words; the rest is promWriteError's.
func promBodyError(err error) *promError {
	var mbe *http.MaxBytesError
	var bte *bodyTimeoutError
	if errors.As(err, &mbe) || errors.As(err, &bte) {
		st, code := errorStatus(err)
		return &promError{typ: "bad_data", code: code, err: errors.New(st.Message())}
	}
	return promWriteError(err)
}

// seriesFromRemoteWrite converts a write request. Native histograms that
// are not valid are left out, so that the rest of the batch, floats
// included, is stored; badHist then says how many and why.
func seriesFromRemoteWrite(req *prompb.WriteRequest) (_ []model.Series, badHist, _ error) {
	var bad int
	out := make([]model.Series, 0, len(req.Timeseries))
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		if len(ts.Samples) == 0 && len(ts.Histograms) == 0 {
			continue
		}
		ls := make([]model.Label, 0, len(ts.Labels))
		for _, l := range ts.Labels {
			ls = append(ls, model.Label{Name: l.Name, Value: l.Value})
		}
		sr := model.Series{Labels: ls, Samples: make([]model.Sample, len(ts.Samples))}
		for j, s := range ts.Samples {
			if s.Timestamp < 0 {
				return nil, nil, invalid("series %d %s: timestamp %d is before 1970", i, model.LabelsString(ls), s.Timestamp)
			}
			sr.Samples[j] = model.Sample{T: s.Timestamp, V: s.Value}
		}
		for j := range ts.Histograms {
			h := &ts.Histograms[j]
			if h.Timestamp < 0 {
				return nil, nil, invalid("series %d %s: timestamp %d is before 1970", i, model.LabelsString(ls), h.Timestamp)
			}
			hs, err := nativeHistogram(h.Timestamp, h)
			if err != nil {
				if bad == 0 {
					badHist = fmt.Errorf("series %d %s: native histogram at %d: %w", i, model.LabelsString(ls), h.Timestamp, err)
				}
				bad++
				continue
			}
			sr.Histograms = append(sr.Histograms, hs)
		}
		if len(sr.Samples) == 0 && len(sr.Histograms) == 0 {
			continue
		}
		out = append(out, sr)
	}
	if bad > 0 {
		badHist = invalid("%d native histograms were not valid and were dropped, the rest of the batch stored; the first: %v", bad, badHist)
	}
	return out, badHist, nil
}

// remoteHistogram is a native histogram of remote write 1.0 or 2.0.
type remoteHistogram interface {
	IsFloatHistogram() bool
	ToIntHistogram() *histogram.Histogram
	ToFloatHistogram() *histogram.FloatHistogram
}

// nativeHistogram converts and validates a remote-write histogram.
func nativeHistogram(t int64, h remoteHistogram) (model.HistogramSample, error) {
	hs := model.HistogramSample{T: t}
	if h.IsFloatHistogram() {
		hs.FH = h.ToFloatHistogram()
		return hs, hs.FH.Validate()
	}
	hs.H = h.ToIntHistogram()
	return hs, hs.H.Validate()
}
