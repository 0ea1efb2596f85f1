package store

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Everything under the data directory is the server's alone: directories
// are created 0700 and files 0600 (Badger and Bleve create theirs below
// directories that are 0700). tightenPerms brings a directory written by an
// older version (0755 and 0644 under umask 022) to the same, and returns how
// many entries it changed. Symbolic links are left alone.
func tightenPerms(dir string) (changed int, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // vanished meanwhile, or unreadable: not ours to fix
		}
		if d.Type()&fs.ModeSymlink != 0 || (!d.IsDir() && !d.Type().IsRegular()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		mode := fi.Mode().Perm()
		want := mode &^ 0o077
		if d.IsDir() {
			want |= 0o700
		}
		if want == mode {
			return nil
		}
		if err := os.Chmod(path, want); err != nil {
			return err
		}
		changed++
		return nil
	})
	return changed, err
}
