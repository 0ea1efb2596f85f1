package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// appendLines appends "line from" .. "line to-1" to path.
func appendLines(t testing.TB, path string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for i := from; i < to; i++ {
		fmt.Fprintf(f, "line %d\n", i)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// follow runs Follow on path until the returned stop is called; stop then
// closes the Shipper.
func follow(t testing.TB, sh *Shipper, path string) (stop func()) {
	t.Helper()
	ho := DefaultHandlerOptions()
	ho.Multiline = false
	h := NewHandler(sh, ho, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := Follow(ctx, path, h, sh, FollowOptions{Poll: 10 * time.Millisecond}, nil); err != nil {
			t.Error(err)
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		closeOK(t, sh)
	}
}

func TestFollowRotationTruncationAndResume(t *testing.T) {
	f := newFakeServer(t, "")
	dir, spool := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "app.log")
	o := testOptions(t, f.addr, spool)

	// A file that appears later.
	stop := follow(t, openTest(t, o), path)
	appendLines(t, path, 0, 100)
	f.waitStored(100, 10*time.Second)
	// Rotation by rename, with lines written to the old file just before.
	appendLines(t, path, 100, 120)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 120, 200)
	f.waitStored(200, 10*time.Second)
	// Truncation (copytruncate).
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	f.waitStored(200, time.Second)
	appendLines(t, path, 200, 210) // shorter than before: seen as truncated
	f.waitStored(210, 10*time.Second)
	// An unfinished last line waits for its newline, also across a restart.
	fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o644)
	fmt.Fprint(fh, "line 2")
	fh.Close()
	stop()

	// Stopped: the file grows and is rotated again; the agent resumes.
	appendLines(t, path, 1000, 1010) // completes "line 2" as "line 2line 1000"
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 210, 250)
	stop = follow(t, openTest(t, o), path)
	f.waitStored(260, 10*time.Second)
	stop()

	msgs := f.messages()
	seen := map[string]int{}
	for _, m := range msgs {
		seen[m]++
	}
	want := []string{"line 2line 1000"}
	for i := 0; i < 250; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	for i := 1001; i < 1010; i++ {
		want = append(want, fmt.Sprintf("line %d", i))
	}
	for _, w := range want {
		if seen[w] != 1 {
			t.Errorf("%q stored %d times", w, seen[w])
		}
	}
	if len(msgs) != len(want) {
		t.Errorf("%d stored, want %d", len(msgs), len(want))
	}
}
