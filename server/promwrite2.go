package server

// Prometheus remote write 2.0 (io.prometheus.write.v2.Request): series name
// their labels, metadata and exemplar labels by index into the request's
// symbols table. As the 2.0 specification asks, a series that cannot be
// taken (bad symbol references, no samples) is refused with a 400 naming
// the first, the others stored; the answer's X-Prometheus-Remote-Write-
// *-Written headers count what was stored. Exemplars are not stored.

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	writev2 "github.com/prometheus/prometheus/prompb/io/prometheus/write/v2"

	"github.com/shiplog/shiplog/model"
)

// Response headers of remote write 2.0.
const (
	rwWrittenSamples    = "X-Prometheus-Remote-Write-Samples-Written"
	rwWrittenHistograms = "X-Prometheus-Remote-Write-Histograms-Written"
	rwWrittenExemplars  = "X-Prometheus-Remote-Write-Exemplars-Written"
)

// rw2Batch is a converted 2.0 request.
type rw2Batch struct {
	series            []model.Series
	meta              []rw2Meta
	floats, hists     int   // samples and histograms in series
	refused, refusedN int   // series refused, and their samples
	firstRefusal      error // why the first was refused
}

type rw2Meta struct {
	name string
	m    metricMeta
}

func (b *rw2Batch) refuse(n int, err error) {
	if b.refused == 0 {
		b.firstRefusal = err
	}
	b.refused++
	b.refusedN += n
}

func (a *promAPI) remoteWriteV2(w http.ResponseWriter, r *http.Request, raw []byte) {
	var req writev2.Request
	if err := req.Unmarshal(raw); err != nil {
		writeRW2Stats(w, 0, 0)
		writePromError(w, promBadData(fmt.Errorf("body is not an io.prometheus.write.v2.Request: %w", err)))
		return
	}
	b, err := seriesFromRemoteWriteV2(&req)
	if err != nil {
		writeRW2Stats(w, 0, 0)
		writePromError(w, promWriteError(err))
		return
	}
	for _, m := range b.meta {
		a.meta.add(m.name, m.m)
	}
	res, err := a.ins.storeMetricsHeld(r.Context(), a.core, b.series)
	floats, hists := b.floats, b.hists
	if dropped := b.floats + b.hists - (res.Accepted + res.Duplicates); dropped > 0 {
		// The store counts samples of both kinds; the split of what it
		// dropped is not known, so histograms are counted written first.
		written := res.Accepted + res.Duplicates
		hists = min(hists, written)
		floats = written - hists
	}
	writeRW2Stats(w, floats, hists)
	if err != nil {
		writePromError(w, promWriteError(err))
		return
	}
	if b.refused > 0 {
		writePromError(w, promBadData(invalid("%d series (%d samples) were refused, the rest stored; the first: %v", b.refused, b.refusedN, b.firstRefusal)))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeRW2Stats(w http.ResponseWriter, floats, hists int) {
	h := w.Header()
	h.Set(rwWrittenSamples, strconv.Itoa(floats))
	h.Set(rwWrittenHistograms, strconv.Itoa(hists))
	h.Set(rwWrittenExemplars, "0")
}

// seriesFromRemoteWriteV2 converts a 2.0 request. A series with bad symbol
// references, no metric name or no samples is refused (counted in the
// batch), and so are native histograms that are not valid; a timestamp
// before 1970 fails the whole request, as in 1.0.
func seriesFromRemoteWriteV2(req *writev2.Request) (*rw2Batch, error) {
	b := &rw2Batch{series: make([]model.Series, 0, len(req.Timeseries))}
	syms := req.Symbols
	for i := range req.Timeseries {
		ts := &req.Timeseries[i]
		n := len(ts.Samples) + len(ts.Histograms)
		ls, err := rw2Labels(ts.LabelsRefs, syms)
		if err != nil {
			b.refuse(n, fmt.Errorf("series %d: %w", i, err))
			continue
		}
		if n == 0 {
			b.refuse(0, fmt.Errorf("series %d %s: no samples or histograms", i, model.LabelsString(ls)))
			continue
		}
		if m, ok, err := rw2Metadata(ts, syms, ls); err != nil {
			b.refuse(n, fmt.Errorf("series %d %s: %w", i, model.LabelsString(ls), err))
			continue
		} else if ok {
			b.meta = append(b.meta, m)
		}
		sr := model.Series{Labels: ls, Samples: make([]model.Sample, len(ts.Samples))}
		for j, s := range ts.Samples {
			if s.Timestamp < 0 {
				return nil, invalid("series %d %s: timestamp %d is before 1970", i, model.LabelsString(ls), s.Timestamp)
			}
			sr.Samples[j] = model.Sample{T: s.Timestamp, V: s.Value}
		}
		for j := range ts.Histograms {
			h := &ts.Histograms[j]
			if h.Timestamp < 0 {
				return nil, invalid("series %d %s: timestamp %d is before 1970", i, model.LabelsString(ls), h.Timestamp)
			}
			hs, err := nativeHistogram(h.Timestamp, h)
			if err != nil {
				b.refuse(1, fmt.Errorf("series %d %s: native histogram at %d: %w", i, model.LabelsString(ls), h.Timestamp, err))
				continue
			}
			sr.Histograms = append(sr.Histograms, hs)
		}
		if len(sr.Samples)+len(sr.Histograms) == 0 {
			continue
		}
		b.floats += len(sr.Samples)
		b.hists += len(sr.Histograms)
		b.series = append(b.series, sr)
	}
	return b, nil
}

// rw2Labels resolves label references (name, value pairs) against the
// symbols table; labels with empty values are left out, and the result is
// sorted.
func rw2Labels(refs []uint32, syms []string) ([]model.Label, error) {
	if len(refs)%2 != 0 {
		return nil, fmt.Errorf("labels_refs has an odd length (%d): want name, value pairs", len(refs))
	}
	ls := make([]model.Label, 0, len(refs)/2)
	hasName := false
	for i := 0; i < len(refs); i += 2 {
		nr, vr := refs[i], refs[i+1]
		if uint64(nr) >= uint64(len(syms)) || uint64(vr) >= uint64(len(syms)) {
			return nil, fmt.Errorf("label reference %d=%d is outside the symbols table (%d symbols)", nr, vr, len(syms))
		}
		if syms[vr] == "" {
			continue
		}
		if syms[nr] == model.MetricNameLabel {
			hasName = true
		}
		ls = append(ls, model.Label{Name: syms[nr], Value: syms[vr]})
	}
	if !hasName {
		return nil, fmt.Errorf("no metric name (label %s)", model.MetricNameLabel)
	}
	model.SortLabels(ls)
	for i := 1; i < len(ls); i++ {
		if ls[i].Name == ls[i-1].Name {
			return nil, fmt.Errorf("label %s appears twice", ls[i].Name)
		}
	}
	return ls, nil
}

// rw2Metadata is a series' metadata, under its metric family's name; ok is
// false when the series carries none.
func rw2Metadata(ts *writev2.TimeSeries, syms []string, ls []model.Label) (rw2Meta, bool, error) {
	md := ts.Metadata
	if md.Type == writev2.Metadata_METRIC_TYPE_UNSPECIFIED && md.HelpRef == 0 && md.UnitRef == 0 {
		return rw2Meta{}, false, nil
	}
	if uint64(md.HelpRef) >= uint64(len(syms)) || uint64(md.UnitRef) >= uint64(len(syms)) {
		return rw2Meta{}, false, fmt.Errorf("metadata help_ref %d or unit_ref %d is outside the symbols table (%d symbols)", md.HelpRef, md.UnitRef, len(syms))
	}
	typ := "unknown"
	if md.Type != writev2.Metadata_METRIC_TYPE_UNSPECIFIED {
		typ = strings.ToLower(strings.TrimPrefix(md.Type.String(), "METRIC_TYPE_"))
	}
	var name string
	for _, l := range ls {
		if l.Name == model.MetricNameLabel {
			name = l.Value
		}
	}
	return rw2Meta{name: metaFamily(name, typ), m: metricMeta{Type: typ, Help: syms[md.HelpRef], Unit: syms[md.UnitRef]}}, true, nil
}
