package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limits protect the server from load it cannot take.
type Limits struct {
	QueryTimeout         time.Duration // per query
	MaxConcurrentQueries int           // more wait, up to QueryTimeout
	MaxTails             int           // live tails open at once; more get ResourceExhausted
	MaxInflightBatches   int           // batches being stored at once; more get ResourceExhausted
	MinFreeDisk          uint64        // below this many free bytes in DataDir, ingest is refused
	DataDir              string
	// MaxBodyBytesInflight bounds the bytes of HTTP request bodies held at
	// once, as received and as decoded (gunzipped, unsnappied): a request
	// that cannot reserve its bytes gets ResourceExhausted (429). The
	// process peaks at about three times it under hostile load (the Go
	// runtime collects at twice the live heap).
	MaxBodyBytesInflight int64
}

// DefaultLimits returns the server's defaults.
func DefaultLimits() Limits {
	return Limits{QueryTimeout: 30 * time.Second, MaxConcurrentQueries: 8, MaxTails: 256, MaxInflightBatches: 64, MinFreeDisk: 256 << 20,
		MaxBodyBytesInflight: 128 << 20}
}

// Limiter enforces Limits.
type Limiter struct {
	l       Limits
	queries chan struct{}
	tails   chan struct{}
	batches chan struct{}
	body    atomic.Int64 // bytes of request bodies held (see body.go)
	lowDisk atomic.Bool
	free    atomic.Uint64
	checked atomic.Int64 // Unix ns of the last free-space check
	log     *slog.Logger
}

// NewLimiter starts the disk watch (until ctx is done).
func NewLimiter(ctx context.Context, l Limits, log *slog.Logger) *Limiter {
	d := DefaultLimits()
	if l.QueryTimeout <= 0 {
		l.QueryTimeout = d.QueryTimeout
	}
	if l.MaxConcurrentQueries <= 0 {
		l.MaxConcurrentQueries = d.MaxConcurrentQueries
	}
	if l.MaxInflightBatches <= 0 {
		l.MaxInflightBatches = d.MaxInflightBatches
	}
	if l.MaxTails <= 0 {
		l.MaxTails = d.MaxTails
	}
	if l.MaxBodyBytesInflight <= 0 {
		l.MaxBodyBytesInflight = d.MaxBodyBytesInflight
	}
	lm := &Limiter{l: l, queries: make(chan struct{}, l.MaxConcurrentQueries), tails: make(chan struct{}, l.MaxTails),
		batches: make(chan struct{}, l.MaxInflightBatches), log: log}
	if l.DataDir != "" && l.MinFreeDisk > 0 {
		lm.checkDisk(log)
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					lm.checkDisk(log)
				}
			}
		}()
	}
	return lm
}

func (lm *Limiter) checkDisk(log *slog.Logger) {
	lm.checked.Store(time.Now().UnixNano())
	var st syscall.Statfs_t
	if err := syscall.Statfs(lm.l.DataDir, &st); err != nil {
		return
	}
	free := st.Bavail * uint64(st.Bsize)
	lm.free.Store(free)
	low := free < lm.l.MinFreeDisk
	if lm.lowDisk.Swap(low) != low {
		if low {
			log.Warn("free disk below the floor: refusing ingest, queries go on", "free_bytes", free, "floor_bytes", lm.l.MinFreeDisk)
		} else {
			log.Info("free disk back above the floor: ingest resumes", "free_bytes", free)
		}
	}
}

// FreeDisk is the last measured free space of the data directory.
func (lm *Limiter) FreeDisk() uint64 { return lm.free.Load() }

func exhausted(msg string, retry time.Duration) error {
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		return d.Err()
	}
	return st.Err()
}

// ingest admits one batch; release must be called when it is stored.
func (lm *Limiter) ingest(ctx context.Context) (release func(), err error) {
	if lm == nil {
		return func() {}, nil
	}
	// Fast ingest fills a disk quickly: look again if the last look is
	// more than 50 ms old (statfs costs about a microsecond).
	if lm.l.DataDir != "" && lm.l.MinFreeDisk > 0 && time.Now().UnixNano()-lm.checked.Load() > int64(50*time.Millisecond) {
		lm.checkDisk(lm.log)
	}
	if lm.lowDisk.Load() {
		return nil, exhausted(fmt.Sprintf("disk almost full: %d bytes free in the data directory, below the floor of %d; ingest is refused until space is freed (queries still work)",
			lm.free.Load(), lm.l.MinFreeDisk), 10*time.Second)
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case lm.batches <- struct{}{}:
		return func() { <-lm.batches }, nil
	case <-t.C:
		return nil, exhausted(fmt.Sprintf("server busy: %d batches are being stored; retry shortly", lm.l.MaxInflightBatches), time.Second)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// errQueryTimeout is the cause of a query context that ran out of its
// QueryTimeout (rather than being cancelled by the client).
var errQueryTimeout = errors.New("query timeout")

// query admits one query with its timeout: it waits for a slot (up to the
// timeout), and the context it returns ends QueryTimeout after the call.
func (lm *Limiter) query(ctx context.Context) (context.Context, func(), error) {
	if lm == nil {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithTimeoutCause(ctx, lm.l.QueryTimeout, errQueryTimeout)
	select {
	case lm.queries <- struct{}{}:
		return ctx, func() { <-lm.queries; cancel() }, nil
	case <-ctx.Done():
		cancel()
		if !errors.Is(context.Cause(ctx), errQueryTimeout) {
			return nil, nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, nil, exhausted(fmt.Sprintf("too many concurrent queries (%d): none finished within %s", lm.l.MaxConcurrentQueries, lm.l.QueryTimeout), time.Second)
	}
}

// queryError is err as the answer of a query run under ctx from query: when
// the query ran out of its time limit, DeadlineExceeded in words.
func (lm *Limiter) queryError(ctx context.Context, err error) error {
	if err == nil || lm == nil || !errors.Is(context.Cause(ctx), errQueryTimeout) {
		return err
	}
	return status.Errorf(codes.DeadlineExceeded, "the query took longer than its time limit of %s (--query-timeout): narrow it down (time range, labels, a simpler pattern)", lm.l.QueryTimeout)
}

// tail admits one live tail, without waiting: beyond MaxTails the answer is
// ResourceExhausted. release must be called when the tail ends.
func (lm *Limiter) tail() (release func(), err error) {
	if lm == nil {
		return func() {}, nil
	}
	select {
	case lm.tails <- struct{}{}:
		return func() { <-lm.tails }, nil
	default:
		return nil, exhausted(fmt.Sprintf("too many live tails (%d, --max-tails): close one or retry later", lm.l.MaxTails), 5*time.Second)
	}
}
