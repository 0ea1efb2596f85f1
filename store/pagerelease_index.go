package store

import (
	"io"
	"path/filepath"

	"github.com/blevesearch/bleve/v2/index/scorch"
)

// heldSegments returns the files of the persisted segments of every open
// day index, by their path relative to the data directory, and a func that
// lets them go. Until it is called the segments cannot be closed (a held
// reader keeps its snapshot's segments referenced), so their memory maps
// stay where /proc/self/maps shows them. Caller holds x.mu, so no index is
// closed meanwhile either.
func (x *indexSet) heldSegments(dataDir string) (files map[string]bool, release func()) {
	files = map[string]bool{}
	var held []io.Closer
	for _, idx := range x.open {
		adv, err := idx.Advanced()
		if err != nil {
			continue
		}
		r, err := adv.Reader()
		if err != nil {
			continue
		}
		held = append(held, r)
		snap, ok := r.(*scorch.IndexSnapshot)
		if !ok {
			continue
		}
		for _, ss := range snap.Segments() {
			ps, ok := ss.Segment().(interface{ Path() string })
			if !ok {
				continue // in memory, not yet persisted
			}
			if rel, err := filepath.Rel(dataDir, ps.Path()); err == nil {
				files[rel] = true
			}
		}
	}
	return files, func() {
		for _, r := range held {
			_ = r.Close()
		}
	}
}
