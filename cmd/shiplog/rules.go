package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/shiplog/shiplog/alert"
	"github.com/shiplog/shiplog/query"
)

// runRules is `shiplog rules check FILE...`.
func runRules(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stdout, "usage: shiplog rules check FILE...\n\nChecks alert rules files as the server loads them (see docs/rules.md): every\nproblem is printed as FILE:LINE:COLUMN: message; the exit code is 1 if there is any.")
		if len(args) == 0 {
			return usagef("rules: give a subcommand: check")
		}
		return nil
	}
	if args[0] != "check" {
		return usagef("rules: unknown subcommand %q (want check)", args[0])
	}
	fs := flag.NewFlagSet("rules check", flag.ContinueOnError)
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		if err == errHelp {
			return nil
		}
		return err
	}
	if fs.NArg() == 0 {
		return usagef("rules check: give a rules file")
	}
	failed := false
	for _, path := range fs.Args() {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", path, err)
			failed = true
			continue
		}
		f, probs := alert.Parse(data, rulesParseOptions())
		for _, p := range probs {
			fmt.Fprintf(stdout, "%s:%s\n", path, p)
		}
		if len(probs) > 0 {
			fmt.Fprintf(stdout, "%s: FAILED: %d problem%s\n", path, len(probs), map[bool]string{true: "", false: "s"}[len(probs) == 1])
			failed = true
			continue
		}
		n := 0
		for _, g := range f.Groups {
			n += len(g.Rules)
		}
		fmt.Fprintf(stdout, "%s: SUCCESS: %d rules in %d groups, %d receivers\n", path, n, len(f.Groups), len(f.Receivers))
	}
	if failed {
		return exitError{1}
	}
	return nil
}

// rulesParseOptions checks logs: queries with the query parser, and agg:
// and by: fields as the stats engine takes them.
func rulesParseOptions() alert.ParseOptions {
	words := func(check func(string) error) func(string) error {
		return func(s string) error {
			if err := check(s); err != nil {
				return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), query.ErrBadQuery.Error()+": "))
			}
			return nil
		}
	}
	return alert.ParseOptions{
		CheckLogsQuery: words(func(s string) error { _, err := query.Parse(s); return err }),
		CheckAgg:       words(query.CheckAgg),
		CheckBy:        words(query.CheckStatsField),
	}
}
