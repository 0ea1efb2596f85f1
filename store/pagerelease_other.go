//go:build !linux

package store

// releaseMappedPages is Linux only (it reads /proc/self/maps).
func (s *Store) releaseMappedPages() {}

// releaseIndexPages is Linux only (it reads /proc/self/maps).
func (s *Store) releaseIndexPages() {}
