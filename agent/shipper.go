package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// Tags are the labels and attributes every record of an agent carries (sent
// once per batch as PushRequest.defaults).
type Tags struct {
	Service  string
	Host     string
	BuildID  string
	DeployID string
	Attrs    map[string]string
}

func (t Tags) proto() *shiplogv1.Record {
	r := &shiplogv1.Record{Service: t.Service, Host: t.Host, BuildId: t.BuildID, DeployId: t.DeployID}
	if len(t.Attrs) > 0 {
		r.Attributes = make(map[string]string, len(t.Attrs))
		for k, v := range t.Attrs {
			r.Attributes[k] = v
		}
	}
	return r
}

// Options configure a Shipper.
type Options struct {
	Servers []string // gRPC addresses; the sender moves to the next after a failure
	Dir     string   // spool directory
	Tags    Tags

	SpoolMaxBytes   int64 // oldest batches are dropped beyond this
	MemoryMaxBytes  int64 // spooled batches also kept in memory, to save rereading them
	Fsync           bool  // fsync each spooled batch (survives power loss, slower)
	BatchMaxRecords int
	BatchMaxBytes   int
	Linger          time.Duration // a batch waits at most this long for more records
	Window          int           // batches in flight on the stream
	BackoffMin      time.Duration
	BackoffMax      time.Duration
	AckTimeout      time.Duration // no answer for this long: the connection is dead
	ConnectTimeout  time.Duration // a connection attempt taking longer fails: the next server is tried
	DialOptions     []grpc.DialOption
}

// DefaultOptions returns the agent's defaults (no servers, no directory).
func DefaultOptions() Options {
	return Options{
		SpoolMaxBytes:   256 << 20,
		MemoryMaxBytes:  32 << 20,
		BatchMaxRecords: 5000,
		BatchMaxBytes:   1 << 20,
		Linger:          200 * time.Millisecond,
		Window:          4,
		BackoffMin:      100 * time.Millisecond,
		BackoffMax:      5 * time.Second,
		AckTimeout:      30 * time.Second,
		ConnectTimeout:  5 * time.Second,
	}
}

// UndeliveredError says how much a Shipper could not deliver before Close's
// deadline. The records stay in the spool for the next Shipper on it.
type UndeliveredError struct {
	Records int    // records still in the spool
	Dropped uint64 // records dropped (spool full, unreadable lines) in all
	Dir     string
	LastErr error // the last delivery error, if any
}

func (e *UndeliveredError) Error() string {
	msg := fmt.Sprintf("%d records not delivered (they stay in spool %s)", e.Records, e.Dir)
	if e.Records == 0 {
		msg = "the server did not acknowledge the closing batch"
	}
	if e.LastErr != nil {
		msg += "; last error: " + e.LastErr.Error()
	}
	return msg
}

// Stats are a Shipper's counters.
type Stats struct {
	Added   uint64 // records given to Add
	Acked   uint64 // records answered by the server (stored or duplicate)
	Pending int    // records in the spool, not yet acked
	Dropped uint64 // records dropped, in all (persisted across restarts); the server is told
	// Lost counts records this Shipper took and then dropped: the spool was
	// full, the server refused their batch as invalid, or its file was damaged.
	Lost uint64
	// Unparsed counts lines dropped before they became records (AddDropped).
	Unparsed uint64
	LastErr  error
}

// Shipper batches records, spools them and sends them. Its methods are safe
// for concurrent use.
type Shipper struct {
	opts     Options
	log      *slog.Logger
	sp       *spool
	defaults *shiplogv1.Record

	mu         sync.Mutex
	cur        []*shiplogv1.Record
	curBytes   int
	curPos     map[string]Position // positions reached by the records in cur
	lingerGen  uint64
	closed     bool // Add ignores records
	closing    bool // the sender says goodbye once the spool is empty
	closeAcked bool
	changed    chan struct{} // closed (and replaced) whenever the spool shrinks
	added      uint64
	acked      uint64
	lost       uint64
	unparsed   uint64
	lastErr    error

	// The sender's own: in an outage (logged once), the last server that
	// answered, and how many answers it has had.
	down     bool
	server   string
	answered uint64
	wake     chan struct{}
	stopSend context.CancelFunc
	done     chan struct{}
}

// Open opens (or creates) the spool in opts.Dir and starts the sender.
func Open(opts Options, log *slog.Logger) (*Shipper, error) {
	d := DefaultOptions()
	if opts.SpoolMaxBytes <= 0 {
		opts.SpoolMaxBytes = d.SpoolMaxBytes
	}
	if opts.MemoryMaxBytes <= 0 {
		opts.MemoryMaxBytes = d.MemoryMaxBytes
	}
	if opts.BatchMaxRecords <= 0 {
		opts.BatchMaxRecords = d.BatchMaxRecords
	}
	if opts.BatchMaxBytes <= 0 {
		opts.BatchMaxBytes = d.BatchMaxBytes
	}
	if opts.Linger <= 0 {
		opts.Linger = d.Linger
	}
	if opts.Window <= 0 {
		opts.Window = d.Window
	}
	if opts.BackoffMin <= 0 {
		opts.BackoffMin = d.BackoffMin
	}
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = max(d.BackoffMax, opts.BackoffMin)
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = d.AckTimeout
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = d.ConnectTimeout
	}
	if len(opts.Servers) == 0 {
		return nil, errors.New("agent: no server address")
	}
	if slices.Contains(opts.Servers, "") {
		return nil, errors.New("agent: empty server address")
	}
	if opts.Dir == "" {
		return nil, errors.New("agent: no spool directory")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sp, err := openSpool(opts.Dir, opts.SpoolMaxBytes, opts.MemoryMaxBytes, opts.Fsync, log)
	if err != nil {
		return nil, err
	}
	s := &Shipper{
		opts: opts, log: log, sp: sp, defaults: opts.Tags.proto(),
		curPos: map[string]Position{}, changed: make(chan struct{}),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if n := sp.pendingRecords(); n > 0 || len(sp.entries) > 0 {
		log.Info("spool holds unacked batches from before: resending them", "spool", opts.Dir, "records", n, "batches", len(sp.entries))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSend = cancel
	go s.sendLoop(ctx)
	s.kick()
	return s, nil
}

// AgentID is the persistent id of this spool's agent.
func (s *Shipper) AgentID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sp.agentID
}

// Dir is the spool directory.
func (s *Shipper) Dir() string { return s.opts.Dir }

// Position returns the saved position of the followed file path: how far its
// lines are in the spool.
func (s *Shipper) Position(path string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.sp.state.Positions[path]
	return p, ok
}

// Add numbers r (it sets r.Seq) and queues it. pos, when not nil, is where its
// source file stands once r is spooled. r must not be changed afterwards.
func (s *Shipper) Add(r *shiplogv1.Record, pos *Position) {
	size := len(r.Message) + 48
	for k, v := range r.Attributes {
		size += len(k) + len(v) + 4
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if len(s.cur) > 0 && s.curBytes+size > s.opts.BatchMaxBytes {
		s.sealLocked()
	}
	r.Seq = s.sp.state.NextSeq
	s.sp.state.NextSeq++
	s.added++
	s.cur = append(s.cur, r)
	s.curBytes += size
	if pos != nil {
		s.curPos[pos.Path] = *pos
	}
	switch {
	case len(s.cur) >= s.opts.BatchMaxRecords || s.curBytes >= s.opts.BatchMaxBytes:
		s.sealLocked()
	case len(s.cur) == 1:
		gen := s.lingerGen
		time.AfterFunc(s.opts.Linger, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.lingerGen == gen {
				s.sealLocked()
			}
		})
	}
}

// AddDropped counts n records dropped before they reached the Shipper (lines
// that could not be parsed); the total goes to the server.
func (s *Shipper) AddDropped(n int) {
	s.mu.Lock()
	s.sp.state.Dropped += uint64(n)
	s.unparsed += uint64(n)
	s.mu.Unlock()
}

// Report queues a run report (shiplog run's start or end of a command).
func (s *Shipper) Report(run *shiplogv1.RunReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.sealLocked()
	s.appendLocked(&shiplogv1.PushRequest{AgentId: s.sp.agentID, Defaults: s.defaults, Run: run}, s.sp.state.NextSeq-1, s.sp.state.NextSeq-1, 0)
}

// sealLocked moves the current batch into the spool.
func (s *Shipper) sealLocked() {
	s.lingerGen++
	if len(s.cur) == 0 {
		return
	}
	for k, v := range s.curPos {
		s.sp.state.Positions[k] = v
	}
	clear(s.curPos)
	req := &shiplogv1.PushRequest{AgentId: s.sp.agentID, Defaults: s.defaults, Records: s.cur}
	first, last, n := s.cur[0].Seq, s.cur[len(s.cur)-1].Seq, len(s.cur)
	s.cur, s.curBytes = nil, 0
	s.appendLocked(req, first, last, n)
}

func (s *Shipper) appendLocked(req *shiplogv1.PushRequest, first, last uint64, n int) {
	dropped, err := s.sp.append(req, first, last, n)
	if err != nil {
		s.log.Error("spool write failed", "spool", s.opts.Dir, "err", err)
	}
	if len(dropped) > 0 {
		k := 0
		for _, e := range dropped {
			k += e.records
		}
		s.lost += uint64(k)
		s.log.Warn("spool full: dropped the oldest unacked records", "spool", s.opts.Dir,
			"max_bytes", s.opts.SpoolMaxBytes, "records", k, "dropped_total", s.sp.state.Dropped)
		s.changedLocked()
	}
	s.kick()
}

func (s *Shipper) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Shipper) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Flush spools the current batch and waits until the server has acked every
// spooled record or ctx ends.
func (s *Shipper) Flush(ctx context.Context) error {
	for {
		s.mu.Lock()
		s.sealLocked()
		empty := len(s.sp.entries) == 0
		ch := s.changed
		s.mu.Unlock()
		if empty {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Added: s.added, Acked: s.acked, Pending: s.sp.pendingRecords(), Dropped: s.sp.state.Dropped,
		Lost: s.lost, Unparsed: s.unparsed, LastErr: s.lastErr}
}

// Close stops taking records, spools the current batch, and waits until every
// spooled record is acked and the server has answered a final batch with
// closing=true, or until ctx ends. It then stops the sender and releases the
// spool. What is not delivered stays in the spool, reported by an
// *UndeliveredError.
func (s *Shipper) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.sealLocked()
	s.closing = true
	s.mu.Unlock()
	s.kick()
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	s.stopSend()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sp.close()
	if n := s.sp.pendingRecords(); n > 0 || !s.closeAcked {
		return &UndeliveredError{Records: n, Dropped: s.sp.state.Dropped, Dir: s.opts.Dir, LastErr: s.lastErr}
	}
	return err
}

// Timestamp converts t for a record.
func Timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// RemoveSpool deletes a spool directory that holds nothing undelivered (after
// a successful Close): shiplog run's per-build spools do not pile up.
func RemoveSpool(dir string) error {
	for _, name := range []string{"queue", "state.json", "agent_id", "lock"} {
		if err := os.RemoveAll(dir + string(os.PathSeparator) + name); err != nil {
			return err
		}
	}
	return os.Remove(dir)
}
