package store

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lines, duplicates, chunks, chunkBytes, errors prometheus.Counter
	appendSeconds, sealSeconds, indexSeconds      prometheus.Histogram
	droppedDays                                   prometheus.Counter
	diskBytes                                     prometheus.Gauge
	streamsRefused                                prometheus.Counter
	evictedHeads                                  prometheus.Counter
	// chunkLines: the lines of each chunk sealed, by why it was sealed.
	chunkLines [numSealReasons]prometheus.Observer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		lines:      prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_lines_total", Help: "Log lines stored."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_duplicates_total", Help: "Records dropped as already stored (same agent and seq)."}),
		chunks:     prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_chunks_sealed_total", Help: "Chunks sealed into Badger."}),
		chunkBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_chunk_bytes_total", Help: "Compressed bytes of sealed chunks."}),
		errors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_errors_total", Help: "Background store errors (chunk writes, indexing, WAL truncation)."}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_store_append_seconds", Help: "Time to make one batch durable.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		sealSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_store_seal_seconds", Help: "Time to compress and write one chunk.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
		indexSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_store_index_batch_seconds", Help: "Time to add one batch of chunk documents to Bleve.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)}),
	}
	m.droppedDays = prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_retention_dropped_days_total", Help: "Day partitions dropped by retention."})
	m.diskBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_store_disk_bytes", Help: "Space the data directory takes on disk, as of the last measurement (every 30 s, and at each retention check)."})
	m.streamsRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_streams_refused_batches_total",
		Help: "Batches refused because they would open more new streams than --max-streams-per-day allows."})
	m.evictedHeads = prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_heads_evicted_total",
		Help: "Open chunks sealed early because the open chunks of all streams held more than their memory bound."})
	lines := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_store_sealed_chunk_lines",
		Help:    "Lines of each chunk sealed, by why it was sealed: full (the chunk's line or byte bound), evicted (the open chunks' memory bound), idle, age, wal (it pinned too old a WAL segment), close, replay.",
		Buckets: []float64{1, 16, 64, 256, 512, 768, 1023, 1024, 4096}}, []string{"reason"})
	for r, name := range sealReasonNames {
		m.chunkLines[r] = lines.WithLabelValues(name)
	}
	if reg != nil {
		reg.MustRegister(lines)
		reg.MustRegister(m.droppedDays, m.diskBytes, m.streamsRefused, m.evictedHeads)
		reg.MustRegister(m.lines, m.duplicates, m.chunks, m.chunkBytes, m.errors, m.appendSeconds, m.sealSeconds, m.indexSeconds)
	}
	return m
}
