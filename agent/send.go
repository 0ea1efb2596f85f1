package agent

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cenkalti/backoff/v5"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// newBackoff is capped exponential backoff with jitter: the n-th wait is
// drawn from [d/2, d] where d = min·2ⁿ, capped at max; Reset starts again
// from min (after a success). cenkalti/backoff draws from interval·[1-f, 1+f]:
// with the interval at ¾d and f = ⅓ that is [d/2, d].
func newBackoff(min, max time.Duration) *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     min * 3 / 4,
		RandomizationFactor: 1.0 / 3,
		Multiplier:          2,
		MaxInterval:         max * 3 / 4,
	}
}

var (
	errAckTimeout = errors.New("no answer from the server in time")
	errRejected   = errors.New("batch rejected")
	errNewAgentID = errors.New("continuing under a new agent id: resending what is not stored")
)

type recvResult struct {
	resp *shiplogv1.PushResponse
	err  error
}

// sendLoop connects, sends and reconnects until the closing batch is acked or
// ctx ends. After a failure it moves on to the next server at once; only when
// every server has failed since the last wait (or the last delivery) does it
// wait, for the next backoff step, before it starts the round again.
func (s *Shipper) sendLoop(ctx context.Context) {
	defer close(s.done)
	bo := newBackoff(s.opts.BackoffMin, s.opts.BackoffMax)
	n := len(s.opts.Servers)
	failed := 0 // servers that failed since the last wait or the last delivery
	for i := 0; ; {
		if !s.waitWork(ctx) {
			return
		}
		addr := s.opts.Servers[i%n]
		answered := s.answered
		err := s.session(ctx, addr, bo)
		if err == nil {
			s.setErr(nil)
			return // goodbye acked
		}
		if ctx.Err() != nil {
			return
		}
		s.setErr(fmt.Errorf("%s: %w", addr, err))
		if errors.Is(err, errRejected) || errors.Is(err, errNewAgentID) {
			continue // the bad batch is gone, or the id changed: go on at once
		}
		if !s.down {
			s.log.Warn("cannot deliver to server: spooling and retrying", "server", addr, "err", err)
			s.down = true
		} else {
			s.log.Debug("cannot deliver to server", "server", addr, "err", err)
		}
		if s.answered != answered {
			failed = 0 // it worked for a while: a new round starts with it
		}
		failed++
		i++
		if failed < n {
			continue // a server not tried in this round: try it now
		}
		failed = 0
		select {
		case <-time.After(bo.NextBackOff()):
		case <-ctx.Done():
			return
		}
	}
}

// waitWork waits until there is a batch to send or a goodbye to say.
func (s *Shipper) waitWork(ctx context.Context) bool {
	for {
		s.mu.Lock()
		work := len(s.sp.entries) > 0 || s.closing
		s.mu.Unlock()
		if work {
			return true
		}
		select {
		case <-s.wake:
		case <-ctx.Done():
			return false
		}
	}
}

func (s *Shipper) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

func (s *Shipper) dial(addr string) (*grpc.ClientConn, error) {
	// A connection attempt gets the longer of MinConnectTimeout and the
	// first backoff step; the sender does its own backoff across servers.
	bc := grpcbackoff.DefaultConfig
	bc.BaseDelay = min(bc.BaseDelay, s.opts.ConnectTimeout)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: s.opts.ConnectTimeout}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16 << 20)),
	}
	return grpc.NewClient(addr, append(opts, s.opts.DialOptions...)...)
}

// closingMarker stands in the in-flight list for the goodbye batch.
var closingMarker = &entry{}

// session runs one Push stream: it sends spooled batches in order, up to
// Window at a time, and deletes each when its answer comes. It returns nil
// once the goodbye batch is answered.
func (s *Shipper) session(ctx context.Context, addr string, bo *backoff.ExponentialBackOff) error {
	cc, err := s.dial(addr)
	if err != nil {
		return err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := shiplogv1.NewIngestServiceClient(cc).Push(sctx)
	if err != nil {
		return err
	}
	resps := make(chan recvResult, s.opts.Window+1)
	go recvLoop(sctx, stream, resps)

	var inflight []*entry
	var cursor uint64 // id of the last batch sent
	lastProgress := time.Now()
	timer := time.NewTimer(s.opts.AckTimeout)
	defer timer.Stop()
	for {
		var toSend []*entry
		s.mu.Lock()
		for len(inflight)+len(toSend) < s.opts.Window {
			e := s.sp.after(cursor)
			if e == nil {
				break
			}
			toSend = append(toSend, e)
			cursor = e.id
		}
		goodbye := s.closing && len(toSend) == 0 && len(inflight) == 0 && len(s.sp.entries) == 0 && len(s.cur) == 0
		dropped := s.sp.state.Dropped
		s.mu.Unlock()

		for _, e := range toSend {
			req, err := s.load(e)
			if err != nil {
				continue // gone (dropped) or unreadable (now dropped)
			}
			req.Dropped = dropped
			if err := stream.Send(req); err != nil {
				return s.streamErr(resps, inflight, err)
			}
			inflight = append(inflight, e)
		}
		if goodbye {
			req := &shiplogv1.PushRequest{AgentId: s.AgentID(), Defaults: s.defaults, Closing: true, Dropped: dropped}
			if err := stream.Send(req); err != nil {
				return s.streamErr(resps, inflight, err)
			}
			inflight = append(inflight, closingMarker)
		}
		var timeout <-chan time.Time
		if len(inflight) > 0 {
			timer.Reset(time.Until(lastProgress.Add(s.opts.AckTimeout)))
			timeout = timer.C
		}
		select {
		case r := <-resps:
			if r.err != nil {
				return s.recvErr(r.err, inflight)
			}
			if len(inflight) == 0 {
				return errors.New("answer to a batch that was not sent")
			}
			e := inflight[0]
			inflight = inflight[1:]
			lastProgress = time.Now()
			bo.Reset()
			s.delivering(addr)
			if e == closingMarker {
				s.mu.Lock()
				s.closeAcked = true
				s.mu.Unlock()
				_ = stream.CloseSend()
				return nil
			}
			if s.ack(e, r.resp) {
				return errNewAgentID
			}
		case <-s.wake:
		case <-timeout:
			return fmt.Errorf("%w (%s)", errAckTimeout, s.opts.AckTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// recvLoop passes the stream's answers to resps until an error (passed too)
// or until ctx ends.
func recvLoop(ctx context.Context, stream shiplogv1.IngestService_PushClient, resps chan<- recvResult) {
	for {
		r, err := stream.Recv()
		select {
		case resps <- recvResult{r, err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// delivering notes that addr answered a batch. The first answer after a move
// to another server, or after an outage, is logged.
func (s *Shipper) delivering(addr string) {
	s.answered++
	switch {
	case s.server != "" && s.server != addr:
		s.log.Info("failed over: delivering to another server", "server", addr, "previous", s.server)
	case s.server == "" && addr != s.opts.Servers[0]:
		s.log.Info("failed over: delivering to another server", "server", addr, "unreachable", s.opts.Servers[0])
	case s.down:
		s.log.Info("delivering again", "server", addr)
	}
	s.server, s.down = addr, false
}

// load returns the request of a spooled batch, reading it from disk when it
// is not kept in memory. An unreadable batch is dropped.
func (s *Shipper) load(e *entry) (*shiplogv1.PushRequest, error) {
	s.mu.Lock()
	req, removed, path, id := e.req, e.removed, e.path, s.sp.agentID
	e.sentAs = id
	s.mu.Unlock()
	if removed {
		return nil, errors.New("batch dropped")
	}
	if req != nil {
		// Sent under the current id: it changes when the server's position
		// for the old one leaves no room (see ack).
		req.AgentId = id
		return req, nil
	}
	req, err := readEntry(path)
	if err != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		if e.removed {
			return nil, err
		}
		s.log.Error("spool: unreadable batch dropped", "file", path, "records", e.records, "err", err)
		s.sp.remove(e)
		s.sp.state.Dropped += uint64(e.records)
		s.lost += uint64(e.records)
		_ = s.sp.writeState()
		s.changedLocked()
		return nil, err
	}
	req.AgentId = id
	return req, nil
}

// seqRoom is the least room an agent id must leave above the server's
// position for the agent to continue above it: seq never wraps to 0.
const seqRoom = 1 << 62

// ack deletes an answered batch. It reports whether the agent took a new id
// (the session must then end, so that what was answered as duplicates under
// the old one is sent again).
func (s *Shipper) ack(e *entry, r *shiplogv1.PushResponse) (newID bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := r.GetAckedSeq(); a >= s.sp.state.NextSeq && a > math.MaxUint64-seqRoom {
		// The server's position for this id is near the end of the range
		// (someone else sent huge seq numbers under it): continuing above
		// it would soon wrap seq to 0, and every line would be a duplicate.
		// Take a fresh id and keep this spool's numbers; the batches not
		// stored, this one included, go again under the new id.
		old := s.sp.agentID
		renewed := e.sentAs != old // sent before an earlier change of id
		if !renewed {
			if err := s.sp.newAgentID(); err != nil {
				s.log.Error("server holds seq numbers near the end of the range for this agent id, and a new id could not be kept", "agent_id", old, "acked_seq", a, "err", err)
			} else {
				renewed = true
				s.log.Error("server holds seq numbers near the end of the range for this agent id (sent by someone else?): continuing under a new agent id",
					"agent_id", old, "acked_seq", a, "new_agent_id", s.sp.agentID)
			}
		}
		if renewed {
			if r.GetAccepted() == 0 && !e.removed {
				s.changedLocked()
				return true
			}
			newID = true
		}
	}
	if !e.removed {
		s.acked += uint64(e.records)
		s.sp.remove(e)
	}
	if a := r.GetAckedSeq(); a >= s.sp.state.NextSeq && a <= math.MaxUint64-seqRoom {
		// The server holds numbers this spool never gave out: its state was
		// lost or restored from a copy. Continue above the server's.
		s.log.Error("server already holds higher seq numbers for this agent id: spool state was reset; continuing after them",
			"agent_id", s.sp.agentID, "acked_seq", r.GetAckedSeq(), "next_seq", s.sp.state.NextSeq)
		s.sp.state.NextSeq = r.GetAckedSeq() + 1
		for _, rec := range s.cur {
			rec.Seq = s.sp.state.NextSeq
			s.sp.state.NextSeq++
		}
	}
	s.changedLocked()
	return newID
}

// streamErr finds the real error behind a failed Send: the stream's status,
// which Recv reports. Answers still on their way are taken as acks.
func (s *Shipper) streamErr(resps chan recvResult, inflight []*entry, err error) error {
	deadline := time.After(time.Second)
	for {
		select {
		case r := <-resps:
			if r.err != nil {
				return s.recvErr(r.err, inflight)
			}
			if len(inflight) > 0 {
				if inflight[0] != closingMarker {
					s.ack(inflight[0], r.resp)
				}
				inflight = inflight[1:]
				s.answered++
			}
		case <-deadline:
			return err
		}
	}
}

// recvErr handles a stream that ended. A batch the server refuses as invalid
// would be refused again: it is dropped (and counted) instead of resent. The
// server answers in order, so it is the oldest one in flight. Any other end,
// Unavailable included (a cluster node whose replicated log could not ack the
// batch in time), leaves every unanswered batch in the spool, to be resent to
// the next server.
func (s *Shipper) recvErr(err error, inflight []*entry) error {
	if status.Code(err) != codes.InvalidArgument || len(inflight) == 0 || inflight[0] == closingMarker {
		return err
	}
	e := inflight[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	if !e.removed {
		s.sp.remove(e)
		s.sp.state.Dropped += uint64(e.records)
		s.lost += uint64(e.records)
		_ = s.sp.writeState()
		s.changedLocked()
	}
	s.log.Error("server rejected a batch: dropped", "records", e.records, "first_seq", e.first, "err", status.Convert(err).Message())
	return fmt.Errorf("%w: %v", errRejected, err)
}
