package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/shiplog/shiplog/model"
)

// usageError is a bad command line or config: exit code 2, one line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// exitError carries an exit code without a message (shiplog run).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"server", "run the log server", runServer},
		{"query", "print matching records, oldest first", runQuery},
		{"tail", "follow new matching records", runTail},
		{"stats", "count matching records by fields, with aggregates, as a table", runStats},
		{"agent", "ship lines from files or stdin to the server", runAgent},
		{"run", "run a command, passing its output through and shipping it", runRun},
		{"token", "make a new auth token: shiplog token new --name N --scopes ...", runToken},
		{"rules", "check alert rules files: shiplog rules check FILE", runRules},
		{"backup", "copy a running server's store to a file", runBackup},
		{"restore", "create a data directory from a backup file", runRestore},
	}
}

// Run runs the shiplog command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, "usage: shiplog COMMAND [FLAGS]\n\ncommands:")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(stdout, "\nRun 'shiplog COMMAND --help' for a command's flags. Every flag may also be set as SHIPLOG_<FLAG>, e.g. SHIPLOG_DATA=/var/lib/shiplog.")
		if len(args) == 0 {
			return usagef("no command given")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	return usagef("unknown command %q (try 'shiplog help')", args[0])
}

// parseFlags parses args, then fills each flag not given from SHIPLOG_<NAME>
// (upper case, dashes as underscores). Errors are usage errors.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	fs.SetOutput(io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				f.Value = durationFlag{f.Value}
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, "usage: shiplog %s [FLAGS]\n", fs.Name())
			fs.PrintDefaults()
			return errHelp
		}
		return usagef("%s: %v", fs.Name(), err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, name := range names {
		if set[name] {
			continue
		}
		env := "SHIPLOG_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(name, v); err != nil && envErr == nil {
				envErr = usagef("%s: %s=%q: %v", fs.Name(), env, v, err)
			}
		}
	}
	return envErr
}

// errHelp: --help was printed; exit 0.
var errHelp = errors.New("help shown")

// durationFlag makes a duration flag take the project's one duration dialect
// (model.ParseDuration: 1d, 2w, 1h30m, 1.5h), not only Go's.
type durationFlag struct{ flag.Value }

func (d durationFlag) Set(s string) error {
	v, err := model.ParseDuration(s)
	if err != nil {
		return err
	}
	return d.Value.Set(v.String())
}
