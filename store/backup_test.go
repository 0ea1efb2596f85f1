package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// goodBackup returns a backup of a store holding 300 lines.
func goodBackup(t testing.TB) []byte {
	t.Helper()
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := s.Append(context.Background(), testBatch("ag", 300, 1, t0)); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// v1 turns a version 2 backup into what version 1 wrote: no trailer.
func v1(b []byte) []byte {
	out := append([]byte(backupMagicV1), b[len(backupMagic):len(b)-backupTrailerSize]...)
	return out
}

// Damaged, truncated and crafted backups get ErrBadBackup and leave no data
// directory (nor a temporary one) behind; intact ones, of both versions,
// restore.
func TestRestoreValidates(t *testing.T) {
	good := goodBackup(t)
	if !bytes.HasPrefix(good, []byte(backupMagic)) || len(good) < 1000 {
		t.Fatalf("backup of %d bytes starts %q", len(good), good[:min(len(good), 20)])
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	// 26 bytes: the header and a frame claiming 2^63 bytes (Badger's loader
	// panicked on it).
	crafted := append([]byte(backupMagicV1), 0, 0, 0, 0, 0, 0, 0, 0x80, 1)
	huge := append([]byte(backupMagic), 0, 0, 0, 0x10, 0, 0, 0, 0, 1, 2, 3)
	// A frame that decodes but holds an entry with no key.
	var noKey []byte
	noKey = binary.LittleEndian.AppendUint64(noKey, 4)
	noKey = append(noKey, 0x0a, 0x02, 0x20, 0x01) // KVList{kv: [KV{version: 1}]}
	cases := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"good", good, true},
		{"good v1", v1(good), true},
		{"crafted 26 bytes", crafted, false},
		{"huge frame", huge, false},
		{"no key", append([]byte(backupMagicV1), noKey...), false},
		{"truncated", good[:len(good)*2/3], false},
		{"truncated at the trailer", good[:len(good)-backupTrailerSize], false},
		{"truncated v1", v1(good)[:len(good)*2/3], false},
		{"flipped byte", flipped, false},
		{"bytes after the trailer", append(bytes.Clone(good), 0), false},
		{"empty", nil, false},
		{"not a backup", []byte("SHIPLOG-BACKUP 9\nxxxxxxxxxxxxxxxx"), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "data")
			err := Restore(bytes.NewReader(c.data), dir)
			if !c.ok {
				if !errors.Is(err, ErrBadBackup) {
					t.Fatalf("restore: %v, want ErrBadBackup", err)
				}
				ents, _ := os.ReadDir(parent)
				if len(ents) != 0 {
					t.Fatalf("left behind: %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := testOpen(t, dir, DefaultOptions())
			defer s.Close()
			if n := count(t, s, nil, nil); n != 300 {
				t.Fatalf("restored %d lines, want 300", n)
			}
		})
	}
	// An empty directory is restored into; its mode is the store's.
	dir := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Restore(bytes.NewReader(good), dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("restored directory: %v %v", fi.Mode(), err)
	}
}

// FuzzRestore feeds Restore arbitrary files: it must answer an error or
// restore, never panic, and leave nothing behind when it fails.
func FuzzRestore(f *testing.F) {
	good := goodBackup(f)
	f.Add(good)
	f.Add(v1(good))
	f.Add(good[:len(good)/2])
	f.Add(append([]byte(backupMagicV1), 0, 0, 0, 0, 0, 0, 0, 0x80, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The checks first, alone: cheap, so the fuzzer spends its time
		// there. Only what they let through goes to Badger's loader (an
		// open Badger costs tens of milliseconds an input).
		vr, err := newBackupReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, vr); err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("refused without ErrBadBackup: %v", err)
			}
			return
		}
		parent := t.TempDir()
		if err := Restore(bytes.NewReader(data), filepath.Join(parent, "data")); err != nil {
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Fatalf("failed restore left %v", ents)
			}
		}
	})
}
