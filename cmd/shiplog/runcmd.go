package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/shiplog/shiplog/agent"
)

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	sf := addShipFlags(fs, false, 5*time.Second)
	if err := parseFlags(fs, args, stdout); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if err := sf.check("run"); err != nil {
		return err
	}
	if *sf.service == "" || *sf.buildID == "" {
		return usagef("run: --service and --build-id are required")
	}
	command := fs.Args()
	if len(command) == 0 {
		return usagef("run: no command given (shiplog run --service S --build-id B -- CMD [ARGS...])")
	}

	// The build must not fail because logging does: a spool that cannot be
	// opened means the command runs unshipped.
	dir, fallback := *sf.spool, false
	if dir == "" {
		dir, fallback = filepath.Join(cacheDir(), "run-"+safeName(*sf.buildID)), true
	}
	log := newAgentLogger(stderr, slog.LevelError+4) // quiet: the command's stderr is ours
	sh, err := openShipper(sf.options(dir), fallback, log)
	if err != nil {
		fmt.Fprintf(stderr, "shiplog run: warning: cannot open spool (%v); running the command without shipping its output\n", err)
		sh = nil
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	var stdin io.Reader = os.Stdin
	code, err := agent.RunCommand(sh, sf.tags(), agent.RunOptions{
		Command: command, Stdin: stdin, Stdout: stdout, Stderr: stderr, Signals: sigs, Handler: sf.handlerOptions(),
	})
	if err != nil {
		return err
	}
	if sh != nil {
		cctx, cancel := context.WithTimeout(context.Background(), *sf.shutdown)
		cerr := sh.Close(cctx)
		cancel()
		st := sh.Stats()
		var ue *agent.UndeliveredError
		switch {
		case errors.As(cerr, &ue) && ue.Records > 0:
			last := ""
			if ue.LastErr != nil {
				last = " (" + ue.LastErr.Error() + ")"
			}
			fmt.Fprintf(stderr, "shiplog run: warning: %d of %d lines not delivered to %s%s; they are kept in %s and sent by the next shiplog run for this build\n",
				ue.Records, st.Added, *sf.server, last, sh.Dir())
		case cerr != nil && !errors.As(cerr, &ue):
			fmt.Fprintf(stderr, "shiplog run: warning: %v\n", cerr)
		case st.Lost > 0:
			fmt.Fprintf(stderr, "shiplog run: warning: %d lines were dropped (spool full, or refused by the server)\n", st.Lost)
		case *sf.spool == "":
			_ = agent.RemoveSpool(sh.Dir()) // all delivered: the per-build spool is not needed
		}
	}
	_ = ctx // the command ends by the signals passed on to it, not by ctx
	if code != 0 {
		return exitError{code}
	}
	return nil
}
