package store

import (
	"encoding/binary"

	"github.com/dgraph-io/badger/v4"

	"github.com/shiplog/shiplog/model"
)

// Attribute keys seen per day, so that the query language can tell an
// attribute field (status:500) from text that holds a colon
// (payment_test.go:88): see HasAttrKey.
//
// In memory, Store.attrKeys (under mu) holds per day the keys of every line
// appended (open chunks included; WAL replay restores those of open chunks).
// In Badger, k<day><key> (empty value) records a key of a sealed chunk,
// written in the chunk's own transaction the first time the key is sealed on
// that day, and k<day> alone marks a day whose every chunk was sealed with its
// keys recorded. A day that already had chunks when this was first written
// (an older version sealed them) has no mark: its keys are not known, and
// HasAttrKey says yes to any key there.

// pfxAttrKey prefixes the attribute keys of a day (see above).
const pfxAttrKey = 'k'

// dayKeys are the attribute keys of one day.
type dayKeys struct {
	keys map[string]bool // key -> recorded in Badger
	// known: every key of the day is in keys (else older chunks may hold others).
	known bool
	// marked: k<day> is in Badger.
	marked bool
}

func attrKeyKey(day uint32, key string) []byte {
	k := make([]byte, 5, 5+len(key))
	k[0] = pfxAttrKey
	binary.BigEndian.PutUint32(k[1:], day)
	return append(k, key...)
}

// dayKeysOf returns day's keys, creating them. A day with no sealed chunk yet
// is known from its start. Caller holds mu.
func (s *Store) dayKeysOf(day uint32) *dayKeys {
	dk := s.attrKeys[day]
	if dk == nil {
		if s.attrKeys == nil {
			s.attrKeys = map[uint32]*dayKeys{}
		}
		dk = &dayKeys{keys: map[string]bool{}, known: len(s.days[day]) == 0}
		s.attrKeys[day] = dk
	}
	return dk
}

// noteAttrKeys records the keys of a line appended to h (before it is added
// to h's columns). A line with the keys of the line before it, in the same
// order (the common case), costs no map lookup. Caller holds mu.
func (s *Store) noteAttrKeys(h *head, day uint32, as []model.Attr) {
	if len(as) == 0 {
		return
	}
	if n := len(h.lines.Attrs); n > 0 && sameKeys(h.lines.Attrs[n-1], as) {
		return
	}
	dk := s.dayKeysOf(day)
	for _, a := range as {
		if _, ok := dk.keys[a.Key]; !ok {
			dk.keys[a.Key] = false
		}
	}
}

// attrKeysToWrite returns the Badger keys a seal of l must write: its
// attribute keys not yet recorded, and the day's mark if due. Caller holds
// mu (read).
func (s *Store) attrKeysToWrite(l *Lines) [][]byte {
	day := l.Meta.Day
	dk := s.attrKeys[day]
	if dk == nil {
		return nil
	}
	var out [][]byte
	seen := map[string]bool{}
	for i, as := range l.Attrs {
		if i > 0 && sameKeys(l.Attrs[i-1], as) {
			continue
		}
		for _, a := range as {
			if seen[a.Key] {
				continue
			}
			seen[a.Key] = true
			if !dk.keys[a.Key] {
				out = append(out, attrKeyKey(day, a.Key))
			}
		}
	}
	if dk.known && !dk.marked {
		out = append(out, attrKeyKey(day, ""))
	}
	return out
}

// attrKeysWritten notes keys written by attrKeysToWrite. Caller holds mu.
func (s *Store) attrKeysWritten(day uint32, written [][]byte) {
	dk := s.attrKeys[day]
	if dk == nil {
		return
	}
	for _, k := range written {
		if len(k) == 5 {
			dk.marked = true
		} else {
			dk.keys[string(k[5:])] = true
		}
	}
}

// loadAttrKeys reads the recorded keys, after loadMeta: a day with chunks and
// no mark is not known.
func (s *Store) loadAttrKeys(txn *badger.Txn) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pfxAttrKey}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) < 5 {
			continue
		}
		day := binary.BigEndian.Uint32(k[1:5])
		dk := s.attrKeys[day]
		if dk == nil {
			dk = &dayKeys{keys: map[string]bool{}}
			s.attrKeys[day] = dk
		}
		if len(k) == 5 {
			dk.known, dk.marked = true, true
			continue
		}
		dk.keys[string(k[5:])] = true
	}
	for day := range s.days {
		if s.attrKeys[day] == nil {
			s.attrKeys[day] = &dayKeys{keys: map[string]bool{}}
		}
	}
}

// HasAttrKey reports whether some line in tr (by the UTC days tr touches) may
// have attribute key: it has been seen on such a day, or a day in tr was
// written before keys were recorded.
func (s *Store) HasAttrKey(tr model.TimeRange, key string) bool {
	if tr.Start >= tr.End {
		return false
	}
	first, last := model.Day(tr.Start), model.Day(tr.End-1)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if int(last-first) >= len(s.attrKeys) {
		for day, dk := range s.attrKeys {
			if day >= first && day <= last && (!dk.known || hasKey(dk, key)) {
				return true
			}
		}
		return false
	}
	for day := first; ; day++ {
		if dk := s.attrKeys[day]; dk != nil && (!dk.known || hasKey(dk, key)) {
			return true
		}
		if day == last {
			return false
		}
	}
}

// sameKeys reports whether a and b have the same keys in the same order.
func sameKeys(a, b []model.Attr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key {
			return false
		}
	}
	return true
}

func hasKey(dk *dayKeys, key string) bool {
	_, ok := dk.keys[key]
	return ok
}
