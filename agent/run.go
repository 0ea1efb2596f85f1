package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// RunOptions configure RunCommand.
type RunOptions struct {
	Command []string
	Stdin   io.Reader // *os.File is handed to the command as it is
	Stdout  io.Writer
	Stderr  io.Writer
	// Signals are passed on to the command while it runs.
	Signals <-chan os.Signal
	// Handler configures the lines of both streams (Attrs gets stream=...).
	Handler HandlerOptions
	// WaitDelay: after the command exits, how long its output pipes may stay
	// open (held by a child it left running) before they are closed.
	WaitDelay time.Duration
}

// RunCommand runs a command with its stdout and stderr passed through
// unchanged, byte for byte as they arrive, and ships every line of each with
// stream=stdout or stream=stderr and the level read from the line. It reports
// the run's start and end (with the exit code) to sh, which may be nil (the
// command then just runs). It returns the command's exit code: 128+n when a
// signal n killed it, 127 when it could not be found, 126 when it could not be
// started.
func RunCommand(sh *Shipper, tags Tags, o RunOptions) (int, error) {
	if len(o.Command) == 0 {
		return 0, errors.New("no command")
	}
	report := &shiplogv1.RunReport{BuildId: tags.BuildID, DeployId: tags.DeployID, Service: tags.Service,
		Host: tags.Host, Command: o.Command}
	start := time.Now()
	report.Start = Timestamp(start)
	if sh != nil {
		sh.Report(report)
	}

	outs := make([]*lineTee, 2)
	for i, name := range []string{"stdout", "stderr"} {
		ho := o.Handler
		ho.Attrs = map[string]string{"stream": name}
		for k, v := range o.Handler.Attrs {
			if k != "stream" {
				ho.Attrs[k] = v
			}
		}
		ho.Name = name
		h := NewHandler(sh, ho, nil)
		w := []io.Writer{o.Stdout, o.Stderr}[i]
		outs[i] = &lineTee{w: w, h: h}
		outs[i].sp = newSplitter(h.opts.MaxLineBytes, func(line []byte, truncated bool, _ int64) { h.Line(line, truncated, nil) })
	}
	stops := []func(){outs[0].h.startTicker(), outs[1].h.startTicker()}

	cmd := exec.Command(o.Command[0], o.Command[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, outs[0], outs[1]
	cmd.WaitDelay = o.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	code := 0
	err := cmd.Start()
	if err != nil {
		code = 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		fmt.Fprintf(o.Stderr, "shiplog run: %v\n", err)
	} else {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case sig := <-o.Signals:
					_ = cmd.Process.Signal(sig)
				case <-done:
					return
				}
			}
		}()
		err = cmd.Wait()
		close(done)
		wg.Wait()
		code = exitCode(cmd, err)
	}
	for i, t := range outs {
		t.mu.Lock()
		t.sp.Flush()
		t.mu.Unlock()
		t.h.Flush()
		stops[i]()
	}
	end := time.Now()
	if sh != nil {
		done := &shiplogv1.RunReport{BuildId: report.BuildId, DeployId: report.DeployId, Service: report.Service,
			Host: report.Host, Command: report.Command, Start: report.Start, End: Timestamp(end),
			Finished: true, ExitCode: int32(code)}
		sh.Report(done)
	}
	return code, nil
}

func exitCode(cmd *exec.Cmd, err error) int {
	ps := cmd.ProcessState
	if ps == nil {
		if err != nil {
			return 126
		}
		return 0
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if c := ps.ExitCode(); c >= 0 {
		return c
	}
	return 1
}

// lineTee passes a command's output through unchanged and splits it into
// lines for shipping.
type lineTee struct {
	w  io.Writer
	h  *Handler
	mu sync.Mutex
	sp *splitter
}

func (t *lineTee) Write(p []byte) (int, error) {
	// Our own output failing must not fail the command: ignore its error.
	_, _ = t.w.Write(p)
	t.mu.Lock()
	t.sp.Write(p)
	t.mu.Unlock()
	return len(p), nil
}
