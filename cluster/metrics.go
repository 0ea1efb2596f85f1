package cluster

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

type instruments struct {
	published      prometheus.Counter
	publishErrors  prometheus.Counter
	publishSeconds prometheus.Histogram
	applied        prometheus.Counter
	corrupt        prometheus.Counter
	readWait       prometheus.Histogram
	streamsRefused prometheus.Counter
}

var (
	descOwned   = prometheus.NewDesc("shiplog_cluster_partition_owned", "1 when this node owns the partition (holds its lease).", []string{"partition"}, nil)
	descReady   = prometheus.NewDesc("shiplog_cluster_partition_ready", "1 when this node owns the partition and has caught up with its stream.", []string{"partition"}, nil)
	descApplied = prometheus.NewDesc("shiplog_cluster_partition_applied_sequence", "Last stream sequence of the partition stored by this node.", []string{"partition"}, nil)
	descLag     = prometheus.NewDesc("shiplog_cluster_partition_lag_messages", "Batches of an owned partition published but not yet stored by this node.", []string{"partition"}, nil)
	descNodes   = prometheus.NewDesc("shiplog_cluster_nodes", "Live nodes in the cluster, as of the last lease round.", nil, nil)
	descAlerts  = prometheus.NewDesc("shiplog_cluster_alerts_leader", "1 when this node holds the alert evaluation lease.", nil, nil)
	descStreams = prometheus.NewDesc("shiplog_cluster_streams_today", "Distinct streams written through this node this UTC day, counted against --max-streams-per-day.", nil, nil)
)

func newInstruments(n *Node, reg prometheus.Registerer) *instruments {
	ins := &instruments{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_cluster_published_records_total",
			Help: "Records published to the replicated log by this node (acked by a quorum)."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_cluster_publish_errors_total",
			Help: "Batches the replicated log did not ack in time (answered Unavailable)."}),
		publishSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_cluster_publish_seconds",
			Help: "Time from a batch's arrival to the log's quorum ack.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_cluster_applied_records_total",
			Help: "Records consumed from owned partitions into this node's stores."}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_cluster_corrupt_messages_total",
			Help: "Log messages that did not decode and were skipped."}),
		readWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "shiplog_cluster_read_wait_seconds",
			Help:    "Added latency of cluster queries asked of this node for read after ack: taking the streams' last sequences, then the longest wait of an owner to store up to them.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		streamsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_cluster_streams_refused_batches_total",
			Help: "Batches refused by this node because they would take the streams written through it today past --max-streams-per-day."}),
	}
	if reg != nil {
		reg.MustRegister(ins.published, ins.publishErrors, ins.publishSeconds, ins.applied, ins.corrupt, ins.readWait, ins.streamsRefused, collector{n})
	}
	return ins
}

type collector struct{ n *Node }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOwned, descReady, descApplied, descLag, descNodes, descAlerts, descStreams} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, p := range c.n.parts {
		l := strconv.Itoa(p.id)
		owned := p.owned.Load()
		ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, b(owned), l)
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, b(owned && p.ready.Load()), l)
		ch <- prometheus.MustNewConstMetric(descApplied, prometheus.GaugeValue, float64(p.applied.Load()), l)
		if owned {
			lag := int64(p.last.Load()) - int64(p.applied.Load())
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(max(lag, 0)), l)
		}
	}
	if peers := c.n.peers.Load(); peers != nil {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(len(*peers)))
	}
	ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.GaugeValue, b(c.n.alertRev.Load() != 0))
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(c.n.gate.streamsToday()))
}
