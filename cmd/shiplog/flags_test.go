package main

import (
	"flag"
	"io"
	"testing"
	"time"
)

// Duration flags and their SHIPLOG_* variables take the project's duration
// dialect (days, weeks, fractions), not only Go's.
func TestDurationFlagsDialect(t *testing.T) {
	t.Setenv("SHIPLOG_FROM_ENV", "2w")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.Duration("a", time.Minute, "")
	b := fs.Duration("b", time.Minute, "")
	fromEnv := fs.Duration("from-env", time.Minute, "")
	plain := fs.Duration("plain", time.Minute, "")
	if err := parseFlags(fs, []string{"--a", "1d12h", "--b=1.5h", "--plain", "90s"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if *a != 36*time.Hour || *b != 90*time.Minute || *fromEnv != 14*24*time.Hour || *plain != 90*time.Second {
		t.Errorf("a=%v b=%v from-env=%v plain=%v", *a, *b, *fromEnv, *plain)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Duration("a", time.Minute, "")
	if err := parseFlags(fs, []string{"--a", "-1d"}, io.Discard); err == nil {
		t.Error("--a -1d was taken")
	}
}
