//go:build !unix

package agent

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir only creates DIR/lock: without flock, running two agents on one
// spool is not detected.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

func unlockDir(f *os.File) {
	if f != nil {
		_ = f.Close()
	}
}

// fileID is unknown here: rotation is then seen only by truncation.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
