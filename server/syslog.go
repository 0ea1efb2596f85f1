package server

// The syslog listener (--syslog ADDR): TCP and UDP on the same port, RFC 5424
// and RFC 3164 messages (parsed by ingest.ParseSyslog), octet-counting and
// newline framing on TCP; and (--syslog-tls ADDR) syslog over TLS, RFC 5425:
// the same stream of octet-counted messages inside TLS, served by the same
// connection handler. Messages are batched, by count and a short linger,
// into the Ingester. Syslog has no acks: a TCP sender is slowed down while the
// store is behind (its connection is not read), UDP datagrams are dropped by
// the kernel.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shiplog/shiplog/ingest"
	"github.com/shiplog/shiplog/model"
)

// SyslogOptions tune the syslog listener.
type SyslogOptions struct {
	Addr            string        // HOST:PORT for both TCP and UDP ("": none)
	TLSAddr         string        // HOST:PORT for syslog over TLS, RFC 5425 ("": none)
	TLS             *tls.Config   // for TLSAddr: the server's certificate (and client CA)
	BatchSize       int           // records handed to Ingest at once
	Linger          time.Duration // longest a record waits for its batch to fill
	MaxMessageBytes int           // longer messages are cut (TCP) or dropped by the kernel (UDP)
	MaxConns        int           // TCP connections at once; when full, the longest idle is closed for a new one
	IdleTimeout     time.Duration // a TCP connection that sends nothing for this long is closed
	Now             func() time.Time
}

// syslogEvictIdle is how long a connection must have sent nothing to be closed
// for a new one when MaxConns are open: one in the middle of a message is not.
const syslogEvictIdle = time.Second

// DefaultSyslogOptions returns the listener's defaults.
func DefaultSyslogOptions() SyslogOptions {
	return SyslogOptions{BatchSize: 1000, Linger: 100 * time.Millisecond, MaxMessageBytes: 64 << 10, MaxConns: 1024,
		IdleTimeout: 5 * time.Minute, Now: time.Now}
}

// Syslog receives syslog messages over TCP and UDP.
type Syslog struct {
	opts SyslogOptions
	in   *ingest.Ingester
	log  *slog.Logger
	tl   net.Listener   // nil without Addr
	ul   net.PacketConn // nil without Addr
	sl   net.Listener   // TLS; nil without TLSAddr
	recs chan model.Record

	mu    sync.Mutex
	conns map[*syslogConn]struct{}

	malformedLog throttle
	connLog      throttle
	droppedLog   throttle

	messages  *prometheus.CounterVec
	malformed prometheus.Counter
	dropped   prometheus.Counter
	connGauge prometheus.Gauge
}

// ListenSyslog binds opts.Addr on TCP, then UDP on the same port.
func ListenSyslog(in *ingest.Ingester, opts SyslogOptions, log *slog.Logger, reg prometheus.Registerer) (*Syslog, error) {
	d := DefaultSyslogOptions()
	if opts.BatchSize <= 0 {
		opts.BatchSize = d.BatchSize
	}
	if opts.Linger <= 0 {
		opts.Linger = d.Linger
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = d.MaxMessageBytes
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = d.MaxConns
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = d.IdleTimeout
	}
	if opts.Now == nil {
		opts.Now = d.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Syslog{opts: opts, in: in, log: log.With("component", "syslog"), recs: make(chan model.Record, 4*opts.BatchSize),
		conns: map[*syslogConn]struct{}{},
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shiplog_syslog_messages_total",
			Help: "Syslog messages received, by transport."}, []string{"transport"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_syslog_malformed_total",
			Help: "Syslog messages that could not be parsed (dropped)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "shiplog_syslog_dropped_total",
			Help: "Parsed syslog messages not stored: refused by validation or lost to a store error."}),
		connGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "shiplog_syslog_connections",
			Help: "Open syslog TCP connections."}),
	}
	s.malformedLog.every, s.droppedLog.every, s.connLog.every = 10*time.Second, 10*time.Second, 10*time.Second
	if reg != nil {
		reg.MustRegister(s.messages, s.malformed, s.dropped, s.connGauge)
	}
	if opts.Addr == "" && opts.TLSAddr == "" {
		return nil, errors.New("syslog: no address to listen on")
	}
	if opts.TLSAddr != "" && opts.TLS == nil {
		return nil, errors.New("syslog: --syslog-tls needs a TLS certificate (--tls-cert and --tls-key)")
	}
	var err error
	if opts.Addr != "" {
		if s.tl, err = net.Listen("tcp", opts.Addr); err != nil {
			return nil, fmt.Errorf("listen --syslog %s (tcp): %w", opts.Addr, err)
		}
		host, _, _ := net.SplitHostPort(opts.Addr)
		_, port, _ := net.SplitHostPort(s.tl.Addr().String())
		if s.ul, err = net.ListenPacket("udp", net.JoinHostPort(host, port)); err != nil {
			_ = s.tl.Close()
			return nil, fmt.Errorf("listen --syslog %s (udp): %w", opts.Addr, err)
		}
	}
	if opts.TLSAddr != "" {
		l, err := net.Listen("tcp", opts.TLSAddr)
		if err != nil {
			s.closeListeners()
			return nil, fmt.Errorf("listen --syslog-tls %s: %w", opts.TLSAddr, err)
		}
		cfg := opts.TLS.Clone()
		cfg.NextProtos = nil // not HTTP
		s.sl = tls.NewListener(l, cfg)
	}
	return s, nil
}

func (s *Syslog) closeListeners() {
	if s.tl != nil {
		_ = s.tl.Close()
	}
	if s.ul != nil {
		_ = s.ul.Close()
	}
	if s.sl != nil {
		_ = s.sl.Close()
	}
}

// Addr is the bound address (the same port for TCP and UDP); "" without one.
func (s *Syslog) Addr() string {
	if s.tl == nil {
		return ""
	}
	return s.tl.Addr().String()
}

// TLSAddr is the bound address of syslog over TLS; "" without one.
func (s *Syslog) TLSAddr() string {
	if s.sl == nil {
		return ""
	}
	return s.sl.Addr().String()
}

// Serve receives until ctx is done, then closes the listeners and every
// connection, stores what was received and returns.
func (s *Syslog) Serve(ctx context.Context) error {
	var readers sync.WaitGroup
	if s.tl != nil {
		readers.Add(2)
		go func() { defer readers.Done(); s.serveUDP() }()
		go func() { defer readers.Done(); s.acceptTCP(s.tl, &readers) }()
	}
	if s.sl != nil {
		readers.Add(1)
		go func() { defer readers.Done(); s.acceptTCP(s.sl, &readers) }()
	}
	done := make(chan struct{})
	go func() { defer close(done); s.batch(context.WithoutCancel(ctx)) }()
	<-ctx.Done()
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	readers.Wait()
	close(s.recs)
	<-done
	return nil
}

func (s *Syslog) serveUDP() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := s.ul.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("udp read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.messages.WithLabelValues("udp").Inc()
		s.handle(buf[:n], from.String(), false)
	}
}

// acceptTCP serves l: the TCP listener, or the TLS one (RFC 5425).
func (s *Syslog) acceptTCP(l net.Listener, readers *sync.WaitGroup) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("tcp accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		sc := &syslogConn{Conn: c, idle: s.opts.IdleTimeout}
		sc.last.Store(time.Now().UnixNano())
		s.mu.Lock()
		var evict *syslogConn
		if len(s.conns) >= s.opts.MaxConns {
			if evict = s.longestIdle(); evict == nil {
				s.mu.Unlock()
				if n, ok := s.connLog.allow(); ok {
					s.log.Warn("too many syslog connections, none idle: closing a new one", "remote", c.RemoteAddr().String(), "max", s.opts.MaxConns, "suppressed", n)
				}
				_ = c.Close()
				continue
			}
			delete(s.conns, evict)
			s.connGauge.Dec()
		}
		s.conns[sc] = struct{}{}
		s.mu.Unlock()
		if evict != nil {
			_ = evict.Close()
			if n, ok := s.connLog.allow(); ok {
				s.log.Warn("too many syslog connections: closed the longest idle for a new one", "closed", evict.RemoteAddr().String(),
					"idle", time.Since(time.Unix(0, evict.last.Load())).Round(time.Second), "max", s.opts.MaxConns, "suppressed", n)
			}
		}
		s.connGauge.Inc()
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.serveConn(sc)
		}()
	}
}

// longestIdle is the connection that has sent nothing for the longest, if
// that is at least syslogEvictIdle; s.mu is held.
func (s *Syslog) longestIdle() *syslogConn {
	var oldest *syslogConn
	var at int64
	for c := range s.conns {
		if l := c.last.Load(); oldest == nil || l < at {
			oldest, at = c, l
		}
	}
	if oldest == nil || time.Since(time.Unix(0, at)) < syslogEvictIdle {
		return nil
	}
	return oldest
}

// syslogConn is a syslog TCP connection that is closed when it sends nothing
// for idle, and knows when it last sent.
type syslogConn struct {
	net.Conn
	idle time.Duration
	last atomic.Int64 // Unix ns of the last read that brought bytes (or of the accept)
}

func (c *syslogConn) Read(p []byte) (int, error) {
	if c.idle > 0 {
		_ = c.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (s *Syslog) serveConn(c *syslogConn) {
	defer func() {
		s.mu.Lock()
		if _, ok := s.conns[c]; ok { // not if closed for a new one
			delete(s.conns, c)
			s.connGauge.Dec()
		}
		s.mu.Unlock()
		_ = c.Close()
	}()
	transport := "tcp"
	if _, ok := c.Conn.(*tls.Conn); ok {
		transport = "tls"
	}
	r := ingest.NewSyslogReader(c, s.opts.MaxMessageBytes)
	for {
		msg, err := r.Next()
		if err != nil {
			if errors.Is(err, ingest.ErrSyslogFrame) {
				s.malformed.Inc()
				s.logMalformed(c.RemoteAddr().String(), err, nil)
			}
			return
		}
		s.messages.WithLabelValues(transport).Inc()
		s.handle(msg, c.RemoteAddr().String(), r.Truncated())
	}
}

// handle parses one message (cut to MaxMessageBytes if truncated) and
// queues its record.
func (s *Syslog) handle(msg []byte, from string, truncated bool) {
	rec, err := ingest.ParseSyslog(msg, s.opts.Now())
	if err != nil {
		s.malformed.Inc()
		s.logMalformed(from, err, msg)
		return
	}
	if truncated {
		rec.Attrs = append(rec.Attrs, model.Attr{Key: ingest.TruncatedAttr, Value: "true"})
		slices.SortStableFunc(rec.Attrs, func(a, b model.Attr) int { return strings.Compare(a.Key, b.Key) })
	}
	s.recs <- rec
}

func (s *Syslog) logMalformed(from string, err error, msg []byte) {
	if n, ok := s.malformedLog.allow(); ok {
		s.log.Warn("malformed syslog message dropped", "from", from, "err", err, "message", fmt.Sprintf("%.200q", msg), "suppressed", n)
	}
}

// batch hands records to Ingest BatchSize at a time, or Linger after the
// first of a batch arrived, until recs is closed.
func (s *Syslog) batch(ctx context.Context) {
	buf := make([]model.Record, 0, s.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(buf) > 0 {
			s.store(ctx, buf)
			buf = make([]model.Record, 0, s.opts.BatchSize)
		}
	}
	for {
		select {
		case rec, ok := <-s.recs:
			if !ok {
				flush()
				return
			}
			if len(buf) == 0 {
				timer.Reset(s.opts.Linger)
			}
			if buf = append(buf, rec); len(buf) >= s.opts.BatchSize {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// store stores a batch, retrying store errors for a while (the senders wait
// meanwhile); records refused as invalid are dropped and counted.
func (s *Syslog) store(ctx context.Context, recs []model.Record) {
	var lost int
	var err, why error
	// 100ms, 200ms, ... between the tries, six in all.
	bo := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, Multiplier: 2, MaxInterval: time.Minute}
	for attempt := 0; ; attempt++ {
		var res stored
		err = storeRecords(ctx, s.in, recs, &res)
		lost += res.Rejected
		if why == nil {
			why = res.FirstReject
		}
		recs = recs[res.Done:] // what was handled before an error stays handled
		if err == nil || attempt == 5 {
			break
		}
		time.Sleep(bo.NextBackOff())
	}
	if err != nil {
		lost += len(recs)
		why = err
	}
	if lost == 0 {
		return
	}
	s.dropped.Add(float64(lost))
	if n, ok := s.droppedLog.allow(); ok {
		s.log.Warn("syslog records dropped", "count", lost, "err", why, "suppressed", n)
	}
}

// throttle lets a log line through at most once per every; allow returns how
// many were held back since the last one let through.
type throttle struct {
	every      time.Duration
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (t *throttle) allow() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if !t.last.IsZero() && now.Sub(t.last) < t.every {
		t.suppressed++
		return 0, false
	}
	n := t.suppressed
	t.last, t.suppressed = now, 0
	return n, true
}
