package e2e

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// plainToken sends a bearer token over a connection without TLS (loopback).
type plainToken string

func (t plainToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (plainToken) RequireTransportSecurity() bool { return false }

// assertPrivate fails for any file or directory under root that group or
// others can read, write or enter.
func assertPrivate(t *testing.T, root string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return nil
		}
		n++
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %04o: open to group or others", path, fi.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("nothing under %s", root)
	}
}

// TestFilesPrivate: under umask 022 the server's data directory (WAL,
// Badger, Bleve) and a backup are open to no one but their owner; a data
// directory left 0755 by an older version is tightened at start; an auth file
// others can write is refused, one they can read is warned about.
func TestFilesPrivate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	adminTok, e1 := newToken(t, "ops", "admin")
	authFile := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(authFile, []byte("tokens:\n"+e1), 0o644); err != nil {
		t.Fatal(err)
	}
	// Writable by others: refused before anything starts.
	if err := os.Chmod(authFile, 0o666); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx20(t), binary, "server", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--auth-file", authFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(stderr.String(), "writable by group or others") {
		t.Fatalf("server with a 0666 auth file: %v, stderr %q", err, stderr.String())
	}
	if err := os.Chmod(authFile, 0o644); err != nil {
		t.Fatal(err)
	}

	// A data directory as an older version left it.
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(data, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "wal", "notes"), []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, data, "--auth-file", authFile, "--syslog", "127.0.0.1:0")
	if log := s.logText(); !strings.Contains(log, "readable by group or others") || !strings.Contains(log, "made the data directory private") {
		t.Fatalf("no warning about the auth file's mode or the tightened data directory:\n%s", log)
	}
	// Syslog has no tokens: said at start.
	if log := s.logText(); !strings.Contains(log, "--syslog takes messages without a token") {
		t.Fatalf("no warning about --syslog beside --auth-file:\n%s", log)
	}
	cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(plainToken(adminTok)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	pushAll(t, cc, toBatches(makeRecords(2000, time.Now().Add(-time.Hour), 1), "files-agent", 500))
	backup := filepath.Join(t.TempDir(), "shiplog.backup")
	out, err := exec.Command(binary, "backup", "--server", s.grpcAddr, "--token", adminTok, "--to", backup).CombinedOutput()
	if err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// Let the sealed chunks reach Bleve, so its files are on disk too.
	waitFor(t, s, "an index on disk", func() bool {
		ents, _ := os.ReadDir(filepath.Join(data, "index"))
		return len(ents) > 0
	})
	assertPrivate(t, data)
	assertPrivate(t, backup)
	restored := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command(binary, "restore", "--from", backup, "--data", restored).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	assertPrivate(t, restored)
	s.stop()
	assertPrivate(t, data)
}

// TestRestoreBadFile: `shiplog restore` of a crafted 26-byte file (Badger's
// loader panicked on it) and of a truncated backup fails with a clear error
// and leaves no data directory behind.
func TestRestoreBadFile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	dir := t.TempDir()
	crafted := filepath.Join(dir, "crafted.backup")
	if err := os.WriteFile(crafted, append([]byte("SHIPLOG-BACKUP 1\n"), 0, 0, 0, 0, 0, 0, 0, 0x80, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.backup")
	if err := os.WriteFile(truncated, append([]byte("SHIPLOG-BACKUP 2\n"), 5, 0, 0, 0, 0, 0, 0, 0, 0x0a), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{crafted, truncated} {
		data := filepath.Join(dir, "restored")
		out, err := exec.Command(binary, "restore", "--from", f, "--data", data).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "not a valid shiplog backup") ||
			strings.Contains(string(out), "panic") {
			t.Fatalf("restore %s: %v\n%s", filepath.Base(f), err, out)
		}
		t.Logf("%s: %s", filepath.Base(f), strings.TrimSpace(string(out)))
		if ents, _ := os.ReadDir(dir); len(ents) != 2 {
			t.Fatalf("restore of %s left %v behind", filepath.Base(f), ents)
		}
	}
}

// ctx20 bounds a command expected to exit at once (a server that should
// refuse to start but does not is killed after 20s).
func ctx20(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
