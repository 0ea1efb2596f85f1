package e2e

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	shiplogv1 "github.com/shiplog/shiplog/proto/shiplog/v1"
)

// fillUp writes path until its filesystem is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// TestRestartOnFullDisk: a server restarted on a full disk (here with
// --min-free-disk 0, the case that used to die of SIGBUS) comes up
// read-only: every acked record, sealed or only in the WAL, answers queries,
// and ingest is refused in words; once space is freed, a restart takes
// writes again and nothing was lost. --min-free-disk under 64MiB needs
// --insecure.
func TestRestartOnFullDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	cmd := exec.CommandContext(ctx20(t), binary, "server", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--min-free-disk", "0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "safe floor") {
		t.Fatalf("--min-free-disk 0 without --insecure: %v, stderr %q", err, stderr.String())
	}

	mnt := mountTmpfs(t, "64m")
	// The data directory is the mount; the server's log goes beside it.
	s := startServer(t, mnt, "--min-free-disk", "0", "--insecure")
	t0 := time.Now().Add(-time.Hour)
	recs := makeRecords(3000, t0, 1)
	pushAll(t, s.dial(t), toBatches(recs[:2000], "ro-agent", 500))
	s.stop() // sealed into Badger
	s.restart()
	pushAll(t, s.dial(t), toBatches(recs[2000:], "ro-agent", 500))
	s.kill() // these 1000 are only in the WAL
	fillUp(t, mnt+"/filler")
	t.Logf("disk full: %d bytes free", freeBytes(mnt))

	s.restart()
	if !strings.Contains(s.logText(), "READ-ONLY") {
		t.Fatalf("no word of read-only in the log:\n%s", s.logText())
	}
	if got := s.searchAll(t, url.Values{"limit": {"5000"}}); len(got) != 3000 {
		t.Fatalf("read-only server answers %d records, want 3000", len(got))
	}
	one := &shiplogv1.PushRequest{Records: []*shiplogv1.Record{{Message: "on a full disk"}}}
	_, err = shiplogv1.NewIngestServiceClient(s.dial(t)).Write(t.Context(), one)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Write on a read-only server: %v", err)
	}
	code, body := postJSON(t, s, `{"records":[{"message":"on a full disk"}]}`)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "read-only") {
		t.Fatalf("HTTP write on a read-only server: %d %s", code, body)
	}
	s.stop()

	if err := os.Remove(mnt + "/filler"); err != nil {
		t.Fatal(err)
	}
	s.restart()
	if resp := pushAll(t, s.dial(t), toBatches(makeRecords(10, time.Now(), 3001), "ro-agent", 10)); resp[0].Accepted != 10 {
		t.Fatalf("after freeing space: %v", resp[0])
	}
	if got := s.searchAll(t, url.Values{"limit": {"5000"}}); len(got) != 3010 {
		t.Fatalf("after freeing space: %d records, want 3010", len(got))
	}
	if p := s.logText(); strings.Contains(p, "panic") || strings.Contains(p, "fatal error") {
		t.Fatalf("server log:\n%s", p)
	}
}
