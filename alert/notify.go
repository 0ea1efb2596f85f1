package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/prometheus/client_golang/prometheus"
)

// NotifierOptions configure a Notifier.
type NotifierOptions struct {
	// Now is the clock of repeat intervals (default time.Now).
	Now func() time.Time
	// Client posts notifications (default: http.Client with Timeout).
	Client *http.Client
	// Timeout bounds one request.
	Timeout time.Duration
	// ExternalURL is the web UI's address (externalURL of webhook bodies).
	ExternalURL string
	// Store keeps the notification log across restarts (nil: in memory).
	Store StateStore
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// delivery (doubling from Min up to Max; retries go on until it succeeds
	// or the notification is no longer needed).
	MinBackoff, MaxBackoff time.Duration
	// StaleAfter: a rule's notification not refreshed by an evaluation for
	// this long (its rule was removed) is dropped instead of repeated.
	StaleAfter time.Duration
	// ResendDelay is how often an Alertmanager receiver is told again of
	// alerts still firing, unless the receiver sets resend_interval
	// (Prometheus' --rules.alert.resend-delay).
	ResendDelay time.Duration
	// ExternalLabels are added to alerts sent to Alertmanager, as Prometheus
	// adds its external labels.
	ExternalLabels map[string]string
	// Metrics, when set, are the metrics the Notifier records (see
	// Options.Metrics); NewNotifier's reg is then not used.
	Metrics *Metrics
}

// DefaultNotifierOptions returns the Notifier's defaults.
func DefaultNotifierOptions() NotifierOptions {
	return NotifierOptions{
		Now:         time.Now,
		Timeout:     10 * time.Second,
		MinBackoff:  time.Second,
		MaxBackoff:  time.Minute,
		StaleAfter:  time.Hour,
		ResendDelay: time.Minute,
	}
}

// Notifier delivers notifications: one queue and goroutine per receiver, so a
// slow or failing receiver delays only itself. What each receiver was last
// told of each rule (the notification log) decides what is new; it is saved
// in the StateStore, so a restart does not send again what was sent.
type Notifier struct {
	opts   NotifierOptions
	log    *slog.Logger
	met    *notifierMetrics
	store  StateStore
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	queues map[string]*queue      // by receiver name
	nflog  map[string]*nflogEntry // by nflog key (receiver and group key)
	// refused is the last permanent refusal logged for each receiver, so
	// that the same one is logged once.
	refused map[string]string
}

// nflogRetention is how long a notification log entry outlives its last
// delivery (a rule still firing refreshes it every repeat interval).
const nflogRetention = 7 * 24 * time.Hour

// nflogEntry is what a receiver was last told of a rule.
type nflogEntry struct {
	Firing []string  `json:"firing"` // fingerprints notified as firing
	SentAt time.Time `json:"sent_at"`
}

// queue holds the latest notification of each rule for one receiver.
type queue struct {
	wake chan struct{}

	mu      sync.Mutex
	idle    *sync.Cond // signalled when handled catches up with handed
	recv    Receiver
	pending map[string]*pendingNote // by group key
	handed  uint64                  // notifications handed over
	handled uint64                  // of them, dealt with (sent or not needed)
}

type pendingNote struct {
	n  *Notification
	at time.Time // when it was handed over
}

// NewNotifier returns a Notifier, reading the notification log from opts.Store.
func NewNotifier(log *slog.Logger, reg prometheus.Registerer, opts NotifierOptions) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := DefaultNotifierOptions()
	if opts.Now == nil {
		opts.Now = d.Now
	}
	if opts.Timeout <= 0 {
		opts.Timeout = d.Timeout
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = d.MinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(d.MaxBackoff, opts.MinBackoff)
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = d.StaleAfter
	}
	if opts.ResendDelay <= 0 {
		opts.ResendDelay = d.ResendDelay
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: opts.Timeout}
	}
	opts.ExternalURL = strings.TrimRight(opts.ExternalURL, "/")
	n := &Notifier{opts: opts, log: log, store: opts.Store, queues: map[string]*queue{}, nflog: map[string]*nflogEntry{}, refused: map[string]string{}}
	if n.store == nil {
		n.store = newMemStore()
	}
	all, err := n.store.AlertStates()
	if err != nil {
		return nil, fmt.Errorf("read notification log: %w", err)
	}
	for k, v := range all {
		if !strings.HasPrefix(k, keyNflog) {
			continue
		}
		var e nflogEntry
		if json.Unmarshal(v, &e) != nil || opts.Now().Sub(e.SentAt) > nflogRetention {
			// Unreadable, or of a rule long gone (or renamed): forget it.
			if err := n.store.PutAlertState(k, nil); err != nil {
				return nil, fmt.Errorf("drop notification log entry: %w", err)
			}
			continue
		}
		n.nflog[k] = &e
	}
	if opts.Metrics != nil {
		n.met = opts.Metrics.notifier
	} else {
		n.met = newNotifierMetrics(reg)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Notify queues n for each of its receivers and returns at once (a NotifyFunc).
func (nt *Notifier) Notify(_ context.Context, n *Notification) {
	now := nt.opts.Now()
	for _, r := range n.Receivers {
		q := nt.queue(r)
		if q == nil {
			return // closed
		}
		q.mu.Lock()
		q.recv = r
		q.pending[n.GroupKey] = &pendingNote{n: n, at: now}
		q.handed++
		q.mu.Unlock()
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

func (nt *Notifier) queue(r Receiver) *queue {
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if nt.ctx.Err() != nil {
		return nil
	}
	q := nt.queues[r.Name]
	if q == nil {
		q = &queue{wake: make(chan struct{}, 1), recv: r, pending: map[string]*pendingNote{}}
		q.idle = sync.NewCond(&q.mu)
		nt.queues[r.Name] = q
		nt.wg.Add(1)
		go nt.run(q)
	}
	return q
}

// Close stops the receivers' goroutines (a delivery in flight is abandoned).
func (nt *Notifier) Close() {
	nt.mu.Lock()
	nt.cancel()
	for _, q := range nt.queues {
		q.mu.Lock()
		q.idle.Broadcast() // release Flush
		q.mu.Unlock()
	}
	nt.mu.Unlock()
	nt.wg.Wait()
}

func (nt *Notifier) run(q *queue) {
	defer nt.wg.Done()
	for {
		select {
		case <-nt.ctx.Done():
			return
		case <-q.wake:
		}
		q.mu.Lock()
		handed := q.handed
		keys := make([]string, 0, len(q.pending))
		for k := range q.pending {
			keys = append(keys, k)
		}
		q.mu.Unlock()
		sort.Strings(keys)
		for _, k := range keys {
			if !nt.deliver(q, k) {
				return
			}
		}
		q.mu.Lock()
		q.handled = handed
		q.idle.Broadcast()
		q.mu.Unlock()
	}
}

// Flush waits until every notification handed over so far has been dealt
// with: sent (after retries), or found to hold nothing new.
func (nt *Notifier) Flush() {
	nt.mu.Lock()
	qs := make([]*queue, 0, len(nt.queues))
	for _, q := range nt.queues {
		qs = append(qs, q)
	}
	nt.mu.Unlock()
	for _, q := range qs {
		q.mu.Lock()
		for q.handled < q.handed && nt.ctx.Err() == nil {
			q.idle.Wait()
		}
		q.mu.Unlock()
	}
}

// retryBackoff gives the waits between retries of a failed notification:
// MinBackoff·2ⁿ capped at MaxBackoff, without jitter.
func retryBackoff(o NotifierOptions) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: o.MinBackoff, Multiplier: 2, MaxInterval: o.MaxBackoff}
}

// deliver sends what is new of one rule to q's receiver, retrying with
// backoff. It returns false when the Notifier is closing.
func (nt *Notifier) deliver(q *queue, key string) bool {
	bo := retryBackoff(nt.opts)
	for attempt := 0; ; attempt++ {
		q.mu.Lock()
		p, recv := q.pending[key], q.recv
		q.mu.Unlock()
		if p == nil {
			return true
		}
		now := nt.opts.Now()
		lk := keyNflog + recv.Name + "/" + key
		nt.mu.Lock()
		e := nt.nflog[lk]
		nt.mu.Unlock()
		alerts, firing, drop := toSend(p, e, now, nt.opts.StaleAfter, nt.repeatOf(recv, p.n))
		done := func() bool {
			if drop {
				q.mu.Lock()
				if q.pending[key] == p {
					delete(q.pending, key)
				}
				q.mu.Unlock()
			}
			return true
		}
		if alerts == nil {
			return done()
		}
		start := time.Now()
		err := nt.send(recv, p.n, alerts, now)
		nt.met.latency.WithLabelValues(recv.Name).Observe(time.Since(start).Seconds())
		if err == nil {
			nt.met.sent.WithLabelValues(recv.Name, recv.Kind()).Inc()
			nt.record(lk, firing, now)
			nt.accepted(recv)
			return done()
		}
		if nt.ctx.Err() != nil {
			return false
		}
		nt.met.failed.WithLabelValues(recv.Name).Inc()
		var se *statusError
		if errors.As(err, &se) && se.permanent() {
			// The receiver refuses this body: sending it again will not
			// help. Noted as told (so it is not resent until something
			// changes or the repeat is due), logged once, counted.
			nt.met.refused.WithLabelValues(recv.Name).Inc()
			nt.refusedOnce(recv, p.n.Rule, err)
			nt.record(lk, firing, now)
			return done()
		}
		wait := bo.NextBackOff()
		if se != nil && se.retryAfter > wait {
			wait = min(se.retryAfter, nt.opts.MaxBackoff)
		}
		nt.log.Warn("notification failed; retrying", "receiver", recv.Name, "rule", p.n.Rule, "attempt", attempt+1, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-nt.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		nt.met.retries.WithLabelValues(recv.Name).Inc()
	}
}

// repeatOf is how often r is told again of alerts still firing: an
// Alertmanager's resend interval, or the group's repeat interval.
func (nt *Notifier) repeatOf(r Receiver, n *Notification) time.Duration {
	if r.Kind() != "alertmanager" {
		return n.RepeatInterval
	}
	if r.ResendInterval > 0 {
		return r.ResendInterval
	}
	return nt.opts.ResendDelay
}

// refusedOnce logs a permanent refusal, once for the same receiver and message.
func (nt *Notifier) refusedOnce(r Receiver, rule string, err error) {
	nt.mu.Lock()
	same := nt.refused[r.Name] == err.Error()
	nt.refused[r.Name] = err.Error()
	nt.mu.Unlock()
	if same {
		nt.log.Debug("notification refused again; not retried", "receiver", r.Name, "rule", rule, "err", err)
		return
	}
	nt.log.Error("notification refused by the receiver (a 4xx answer): not retried; fix the receiver or the rule",
		"receiver", r.Name, "kind", r.Kind(), "rule", rule, "err", err)
}

// accepted forgets a receiver's refusal once it takes a notification.
func (nt *Notifier) accepted(r Receiver) {
	nt.mu.Lock()
	msg, was := nt.refused[r.Name]
	delete(nt.refused, r.Name)
	nt.mu.Unlock()
	if was {
		nt.log.Info("receiver accepts notifications again", "receiver", r.Name, "refused_before", msg)
	}
}

// statusError is a receiver's non-2xx answer.
type statusError struct {
	kind       string
	status     string
	code       int
	msg        string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s answered %s: %s", e.kind, e.status, e.msg)
}

// permanent: a 4xx other than 408 (timeout) and 429 (too many requests)
// says the request itself is wrong; resending it cannot succeed.
func (e *statusError) permanent() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests
}

// toSend decides what of p to send given what the receiver was last told:
// every firing alert, and the resolved ones it was told were firing, when an
// alert is newly firing, one resolved, or the repeat interval has passed.
// alerts is nil when nothing is to be sent; drop says p has nothing left to
// say (no firing alert, or stale).
func toSend(p *pendingNote, e *nflogEntry, now time.Time, staleAfter, repeat time.Duration) (alerts []Alert, firing []string, drop bool) {
	if now.Sub(p.at) > staleAfter {
		return nil, nil, true
	}
	told := map[string]bool{}
	if e != nil {
		for _, fp := range e.Firing {
			told[fp] = true
		}
	}
	var out []Alert
	newFiring, newResolved := false, false
	for _, a := range p.n.Alerts {
		switch {
		case a.State == StateFiring:
			firing = append(firing, a.Fingerprint)
			out = append(out, a)
			newFiring = newFiring || !told[a.Fingerprint]
		case a.Resolved() && told[a.Fingerprint]:
			out = append(out, a)
			newResolved = true
		}
	}
	drop = len(firing) == 0
	if repeat <= 0 {
		repeat = 4 * time.Hour
	}
	due := len(firing) > 0 && e != nil && now.Sub(e.SentAt) >= repeat
	if !newFiring && !newResolved && !due {
		return nil, firing, drop
	}
	return out, firing, drop
}

// record notes a delivery in the notification log.
func (nt *Notifier) record(key string, firing []string, now time.Time) {
	nt.mu.Lock()
	var v []byte
	if len(firing) == 0 {
		delete(nt.nflog, key)
	} else {
		e := &nflogEntry{Firing: firing, SentAt: now}
		nt.nflog[key] = e
		v, _ = json.Marshal(e)
	}
	nt.mu.Unlock()
	if err := nt.store.PutAlertState(key, v); err != nil {
		nt.log.Error("notification log not saved", "key", key, "err", err)
	}
}

// send posts one notification to r.
func (nt *Notifier) send(r Receiver, n *Notification, alerts []Alert, now time.Time) error {
	var body any
	switch r.Kind() {
	case "slack":
		body = slackMessage(n, alerts, now)
	case "alertmanager":
		body = alertmanagerMessage(n, alerts, now, nt.repeatOf(r, n), nt.opts.ExternalLabels, nt.opts.ExternalURL)
	default:
		body = webhookMessage(r, n, alerts, nt.opts.ExternalURL)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // URLs keep their & as is
	if err := enc.Encode(body); err != nil {
		return err
	}
	b := buf.Bytes()
	ctx, cancel := context.WithTimeout(nt.ctx, nt.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "shiplog")
	resp, err := nt.opts.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		se := &statusError{kind: r.Kind(), status: resp.Status, code: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := strconv.Atoi(s); err == nil && secs > 0 {
				se.retryAfter = time.Duration(secs) * time.Second
			}
		}
		return se
	}
	return nil
}

type notifierMetrics struct {
	sent                     *prometheus.CounterVec
	failed, retries, refused *prometheus.CounterVec
	latency                  *prometheus.HistogramVec
}

func newNotifierMetrics(reg prometheus.Registerer) *notifierMetrics {
	m := &notifierMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shiplog_notifications_total",
			Help: "Notifications delivered, by receiver and kind (webhook, slack)."}, []string{"receiver", "kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shiplog_notification_requests_failed_total",
			Help: "Notification requests that failed (each is retried with backoff)."}, []string{"receiver"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shiplog_notifications_refused_total",
			Help: "Notifications a receiver refused with a 4xx (other than 408 and 429): logged and not retried."}, []string{"receiver"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shiplog_notification_retries_total",
			Help: "Notification requests retried after a failure."}, []string{"receiver"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "shiplog_notification_request_duration_seconds",
			Help: "Time of one notification request.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 8)}, []string{"receiver"}),
	}
	if reg != nil {
		reg.MustRegister(m.sent, m.failed, m.retries, m.refused, m.latency)
	}
	return m
}
