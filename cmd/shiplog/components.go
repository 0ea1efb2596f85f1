package main

import (
	"context"
	"log/slog"
)

// component is one part of the running server, with what starts and what
// stops it (either may be nil). runServer starts its components in order and
// stops each started one once, in reverse order: after serving, or, when one
// fails to start, the ones already started.
type component struct {
	name  string
	start func(ctx context.Context) error
	stop  func() error
	// stopping, when set, is logged ("shutting down: <stopping>") before
	// stop in a shutdown (not when a failed start is unwound).
	stopping string
}

// started is the components that started, in order.
type started struct {
	cs  []component
	log *slog.Logger
}

// startComponents starts cs in order. When one fails, it stops those
// already started, in reverse order, and returns that start's error.
func startComponents(ctx context.Context, cs []component, log *slog.Logger) (*started, error) {
	s := &started{log: log}
	for _, c := range cs {
		if c.start != nil {
			if err := c.start(ctx); err != nil {
				s.unwind()
				return nil, err
			}
		}
		s.cs = append(s.cs, c)
	}
	return s, nil
}

// unwind stops the started components after a failed start; their errors
// give way to the start's.
func (s *started) unwind() {
	for i := len(s.cs) - 1; i >= 0; i-- {
		if s.cs[i].stop != nil {
			_ = s.cs[i].stop()
		}
	}
	s.cs = nil
}

// stop stops every started component once, in reverse order, and returns
// the first error; a second call does nothing.
func (s *started) stop() error {
	var first error
	for i := len(s.cs) - 1; i >= 0; i-- {
		c := s.cs[i]
		if c.stop == nil {
			continue
		}
		if c.stopping != "" {
			s.log.Info("shutting down: " + c.stopping)
		}
		if err := c.stop(); err != nil && first == nil {
			first = err
		}
	}
	s.cs = nil
	return first
}
