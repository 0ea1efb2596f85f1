package alert

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Leased runs the rules only while this node holds the cluster's alert lease
// (OnLease is the lease callback); the state lives in the cluster, so
// whichever node holds the lease goes on from where the last holder stopped.
// It answers Alerts, Rules, History and Reload on every node: the holder from
// its running Manager, the others from a read-only view of the shared state.
type Leased struct {
	opts LeasedOptions
	log  *slog.Logger

	held    atomic.Bool   // the node holds the alert lease
	started atomic.Bool   // Start was called: the loop runs until Stop
	kick    chan struct{} // held changed
	done    chan struct{} // closed when the loop ends
	quit    chan struct{}
	stopMu  sync.Once

	mu      sync.Mutex
	running *Manager
	stopRun func()
}

// LeasedOptions are what Leased starts, stops and shows.
type LeasedOptions struct {
	// Start builds a Manager on the cluster's state and starts evaluating;
	// stop ends evaluation and notification. Called only by Leased's loop.
	Start func() (mgr *Manager, stop func(), err error)
	// View builds a Manager over the shared state that does not evaluate.
	View func() (*Manager, error)
	// Retry is the wait before a failed Start is tried again (default 1s).
	Retry time.Duration
}

// NewLeased returns a Leased that does nothing until Start.
func NewLeased(log *slog.Logger, opts LeasedOptions) *Leased {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	return &Leased{opts: opts, log: log, kick: make(chan struct{}, 1),
		done: make(chan struct{}), quit: make(chan struct{})}
}

// OnLease is the node's lease callback; it does not block (the lease loop
// calls it), and may be called before Start.
func (l *Leased) OnLease(held bool) {
	l.held.Store(held)
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Start starts following the lease.
func (l *Leased) Start() {
	if l.started.Swap(true) {
		return
	}
	go l.loop()
}

// loop starts and stops evaluation as the lease comes and goes, in order; a
// start that fails (the cluster's alert state briefly unreadable during an
// election) is retried for as long as the lease is held.
func (l *Leased) loop() {
	defer close(l.done)
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		l.mu.Lock()
		held, running := l.held.Load(), l.running != nil
		switch {
		case held && !running:
			mgr, stop, err := l.opts.Start()
			if err != nil {
				l.log.Error("cluster: cannot start alert evaluation; retrying", "err", err)
				retry.Reset(l.opts.Retry)
			} else {
				l.running, l.stopRun = mgr, stop
			}
		case !held && running:
			l.stopRunning()
		}
		l.mu.Unlock()
		select {
		case <-l.quit:
			return
		case <-l.kick:
		case <-retry.C:
		}
	}
}

// stopRunning stops the running manager; l.mu is held.
func (l *Leased) stopRunning() {
	if l.running != nil {
		l.stopRun()
		l.running, l.stopRun = nil, nil
	}
}

// Stop ends the loop and the running evaluation, if any; it may be called
// more than once, and without Start.
func (l *Leased) Stop() {
	l.stopMu.Do(func() { close(l.quit) })
	if l.started.Load() {
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopRunning()
}

// Running is the Manager evaluating on this node, or nil.
func (l *Leased) Running() *Manager {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

// current is the running manager, or a fresh read-only view of the shared
// state on a node that does not evaluate.
func (l *Leased) current() (*Manager, error) {
	if r := l.Running(); r != nil {
		return r, nil
	}
	return l.opts.View()
}

// Alerts are the alerts of the running manager or of the shared state.
func (l *Leased) Alerts() []Alert {
	m, err := l.current()
	if err != nil {
		return nil
	}
	return m.Alerts()
}

// Rules are the loaded rules; an unreadable state is the reload error.
func (l *Leased) Rules() RulesStatus {
	m, err := l.current()
	if err != nil {
		return RulesStatus{LastReloadError: err.Error()}
	}
	return m.Rules()
}

// History pages through past transitions.
func (l *Leased) History(cursor string, limit int) ([]Transition, string, error) {
	m, err := l.current()
	if err != nil {
		return nil, "", err
	}
	return m.History(cursor, limit)
}

// Reload reloads the running manager's rules; a node that does not evaluate
// only checks the file (the holder reloads on its own SIGHUP).
func (l *Leased) Reload() error {
	if r := l.Running(); r != nil {
		return r.Reload()
	}
	_, err := l.opts.View()
	return err
}
