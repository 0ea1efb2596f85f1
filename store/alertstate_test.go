package store

import (
	"fmt"
	"sync"
	"testing"
)

func TestAlertState(t *testing.T) {
	dir := t.TempDir()
	s := testOpen(t, dir, DefaultOptions())
	for k, v := range map[string]string{"rule/a": "1", "rule/b": "2", "nflog/ops/x": "3"} {
		if err := s.PutAlertState(k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutAlertState("rule/b", nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ { // concurrent appends each get their own seq
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := s.AppendAlertHistory([]byte(fmt.Sprintf("%d-%d", g, i))); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = testOpen(t, dir, DefaultOptions())
	defer s.Close()
	st, err := s.AlertStates()
	if err != nil || len(st) != 2 || string(st["rule/a"]) != "1" || string(st["nflog/ops/x"]) != "3" {
		t.Fatalf("states %q %v", st, err)
	}
	var seqs []uint64
	seen := map[string]bool{}
	if err := s.AlertHistory(0, func(seq uint64, v []byte) bool {
		seqs = append(seqs, seq)
		seen[string(v)] = true
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 100 || len(seen) != 100 || seqs[0] != 100 || seqs[99] != 1 {
		t.Fatalf("history: %d entries, %d distinct, first %v", len(seqs), len(seen), seqs[:1])
	}
	// Paging: below 51, three at a time.
	var page []uint64
	_ = s.AlertHistory(51, func(seq uint64, _ []byte) bool {
		page = append(page, seq)
		return len(page) < 3
	})
	if fmt.Sprint(page) != "[50 49 48]" {
		t.Errorf("page %v", page)
	}
	page = nil
	_ = s.AlertHistory(1, func(seq uint64, _ []byte) bool { page = append(page, seq); return true })
	if len(page) != 0 {
		t.Errorf("below 1: %v", page)
	}
}

func TestAlertHistoryTrimmed(t *testing.T) {
	if testing.Short() {
		t.Skip("appends MaxAlertHistory entries")
	}
	s := testOpen(t, t.TempDir(), DefaultOptions())
	defer s.Close()
	for i := 0; i < MaxAlertHistory+5; i++ {
		if err := s.AppendAlertHistory([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	n, oldest := 0, uint64(0)
	_ = s.AlertHistory(0, func(seq uint64, _ []byte) bool { n++; oldest = seq; return true })
	if n != MaxAlertHistory || oldest != 6 {
		t.Errorf("%d entries, oldest %d", n, oldest)
	}
}
