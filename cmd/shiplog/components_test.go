package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// recorder builds components that write what happens to them into events.
type recorder struct{ events []string }

func (r *recorder) component(name string, startErr error) component {
	return component{
		name: name,
		start: func(context.Context) error {
			r.events = append(r.events, "start "+name)
			return startErr
		},
		stop: func() error {
			r.events = append(r.events, "stop "+name)
			return nil
		},
		stopping: "stopping " + name,
	}
}

// A component that fails to start stops the ones already started, in
// reverse order, and no later one starts; the start's error comes back.
func TestStartComponentsFailureStopsStarted(t *testing.T) {
	var r recorder
	var logs bytes.Buffer
	boom := errors.New("boom")
	cs := []component{r.component("store", nil), r.component("node", nil), r.component("alerting", boom), r.component("server", nil)}
	s, err := startComponents(context.Background(), cs, slog.New(slog.NewTextHandler(&logs, nil)))
	if !errors.Is(err, boom) || s != nil {
		t.Fatalf("startComponents: %v, %v; want boom", s, err)
	}
	want := []string{"start store", "start node", "start alerting", "stop node", "stop store"}
	if !reflect.DeepEqual(r.events, want) {
		t.Errorf("events %q, want %q", r.events, want)
	}
	if strings.Contains(logs.String(), "shutting down") {
		t.Errorf("an unwound start logged a shutdown:\n%s", logs.String())
	}
}

// A started list stops once, in reverse, logging each stopping line, and
// returns the first stop error.
func TestStartedStopsOnceInReverse(t *testing.T) {
	var r recorder
	var logs bytes.Buffer
	closeErr := errors.New("close store")
	store := r.component("store", nil)
	store.stop = func() error { r.events = append(r.events, "stop store"); return closeErr }
	quiet := component{name: "listener", start: func(context.Context) error { r.events = append(r.events, "start listener"); return nil }}
	cs := []component{store, quiet, r.component("syslog", nil)}
	s, err := startComponents(context.Background(), cs, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); !errors.Is(err, closeErr) {
		t.Errorf("stop: %v, want %v", err, closeErr)
	}
	if err := s.stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	want := []string{"start store", "start listener", "start syslog", "stop syslog", "stop store"}
	if !reflect.DeepEqual(r.events, want) {
		t.Errorf("events %q, want %q", r.events, want)
	}
	log := logs.String()
	if i, j := strings.Index(log, "shutting down: stopping syslog"), strings.Index(log, "shutting down: stopping store"); i < 0 || j < i {
		t.Errorf("want the stopping lines, syslog then store:\n%s", log)
	}
}

// A real server whose alerting fails to start (the rules file is missing)
// closes the store it opened: the same data directory opens again at once
// (Badger holds a lock on it while open).
func TestServerFailedStartClosesStore(t *testing.T) {
	data := t.TempDir()
	args := []string{"server", "--data", data, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"}
	var stderr lockedBuffer
	err := Run(context.Background(), append(args, "--rules", filepath.Join(data, "missing.yml")), io.Discard, &stderr)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(ue.msg, "--rules") {
		t.Fatalf("missing rules file: %v, want a usage error about --rules\n%s", err, stderr.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout lockedBuffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, args, &stdout, &stderr) }()
	for !strings.Contains(stdout.String(), "shiplog is serving") {
		select {
		case err := <-done:
			t.Fatalf("second start on the same --data: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v", err)
	}
}
