package store

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	lines, duplicates, chunks, chunkBytes, errors prometheus.Counter
	appendSeconds, sealSeconds, indexSeconds      prometheus.Histogram
	droppedDays                                   prometheus.Counter
	diskBytes                                     prometheus.Gauge
	streamsRefused                                prometheus.Counter
	evictedHeads                                  prometheus.Counter
	backlogWaits                                  prometheus.Counter
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
	m.backlogWaits = prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_store_seal_backlog_waits_total",
		Help: "Appends held back because the chunks waiting to be sealed held more than --seal-backlog-memory."})
	lines := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_store_sealed_chunk_lines",
		Help:    "Lines of each chunk sealed, by why it was sealed: full (the chunk's line or byte bound), evicted (the open chunks' memory bound), idle, age, wal (it pinned too old a WAL segment), close, replay.",
		Buckets: []float64{1, 16, 64, 256, 512, 1024, 1536, 2047, 2048, 4096}}, []string{"reason"})
	for r, name := range sealReasonNames {
		m.chunkLines[r] = lines.WithLabelValues(name)
	}
	if reg != nil {
		reg.MustRegister(lines)
		reg.MustRegister(m.droppedDays, m.diskBytes, m.streamsRefused, m.evictedHeads, m.backlogWaits)
		reg.MustRegister(m.lines, m.duplicates, m.chunks, m.chunkBytes, m.errors, m.appendSeconds, m.sealSeconds, m.indexSeconds)
	}
	return m
}

// readLocked is a gauge's value read under the store's read lock.
func (s *Store) readLocked(read func() int) func() float64 {
	return func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(read())
	}
}

// registerQueueGauges registers gauges of the work queued between ingest
// and Badger and Bleve: heads waiting to be sealed (moved out of the open
// heads' bound, in memory until written) and chunks sealed but not yet
// searchable through their day's index.
func (s *Store) registerQueueGauges(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_open_chunks",
			Help: "Open chunks (heads) taking lines."},
			s.readLocked(func() int { return len(s.heads) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_open_chunk_bytes",
			Help: "Memory of the open chunks taking lines, as --open-chunks-memory counts it."},
			s.readLocked(func() int { return int(s.headBytes) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_sealing_chunks",
			Help: "Open chunks queued or being written to Badger (no longer counted by --open-chunks-memory)."},
			func() float64 { return float64(s.sealingChunks.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_sealing_bytes",
			Help: "Memory of the open chunks queued or being written to Badger, counted as --open-chunks-memory counts it."},
			func() float64 { return float64(s.sealingBytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_index_queue_chunks",
			Help: "Sealed chunks whose documents wait for the Bleve indexer."},
			func() float64 { return float64(len(s.indexCh)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "shiplog_store_unindexed_chunks",
			Help: "Sealed chunks not yet searchable through their day's index (queries scan them)."},
			s.readLocked(func() int { return len(s.unindexed) })),
	)
}
