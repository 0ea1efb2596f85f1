package e2e

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBackupRestore backs up a running server (with lines still in open
// chunks), restores into a new directory without indexes, and finds every
// record there.
func TestBackupRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	s := startServer(t, t.TempDir()+"/data")
	cc := s.dial(t)
	t0 := time.Now().Add(-time.Hour)
	recs := makeRecords(3000, t0, 1)
	pushAll(t, cc, toBatches(recs, "backup-agent", 500))
	file := filepath.Join(t.TempDir(), "shiplog.backup")
	out, err := exec.Command(binary, "backup", "--server", s.grpcAddr, "--to", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup written") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "restored")
	out, err = exec.Command(binary, "restore", "--from", file, "--data", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "index")); !os.IsNotExist(err) {
		t.Fatalf("restored directory already has indexes: %v", err)
	}
	r := startServer(t, dir)
	if got := r.searchAll(t, url.Values{"limit": {"5000"}}); len(got) != 3000 {
		t.Fatalf("restored server has %d records", len(got))
	}
	// Queries through the rebuilt index find the same answers.
	want := count(recs, func(x rec) bool { return x.level == "error" && x.host == "web-2" })
	if got := r.searchAll(t, url.Values{"q": {"level:error host:web-2"}, "limit": {"5000"}}); len(got) != want {
		t.Fatalf("restored: %d errors of web-2, want %d", len(got), want)
	}
	// The agent's delivery position came along: a resend is a duplicate.
	resp := pushAll(t, r.dial(t), toBatches(recs[:500], "backup-agent", 500))
	if resp[0].Duplicates != 500 {
		t.Fatalf("resend after restore: %v", resp[0])
	}
	// Restoring over a non-empty directory is refused.
	out, err = exec.Command(binary, "restore", "--from", file, "--data", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("restore over data: %v %s", err, out)
	}
}
