package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Alerting state (the alert package's StateStore), under one key prefix byte
// (see doc.go):
//
//	n s <key>      an opaque value per key: rule states, the notification log
//	n h <seq>      one transition of the alert history (seq: uint64 big-endian,
//	               1, 2, 3 ...); the newest MaxAlertHistory are kept
//	n c            the last seq given out (uint64 big-endian)
const (
	pfxAlert        = 'n'
	alertStateKind  = 's'
	alertHistoryKey = 'h'
	alertCounterKey = 'c'
)

// MaxAlertHistory is how many alert transitions are kept.
const MaxAlertHistory = 10000

func alertStateKey(key string) []byte {
	k := make([]byte, 0, 2+len(key))
	return append(append(k, pfxAlert, alertStateKind), key...)
}

func alertHistKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pfxAlert, alertHistoryKey}, seq)
}

// PutAlertState writes value under key; a nil value deletes the key.
func (s *Store) PutAlertState(key string, value []byte) error {
	if s.readOnly {
		return s.errReadOnly()
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		if value == nil {
			return txn.Delete(alertStateKey(key))
		}
		return txn.Set(alertStateKey(key), append([]byte(nil), value...))
	})
	if err != nil {
		return fmt.Errorf("alert state %q: %w", key, err)
	}
	return nil
}

// AlertStates returns every alert state key and its value.
func (s *Store) AlertStates() (map[string][]byte, error) {
	out := map[string][]byte{}
	prefix := []byte{pfxAlert, alertStateKind}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefix):])] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("alert states: %w", err)
	}
	return out, nil
}

// AppendAlertHistory appends one transition, dropping the oldest beyond
// MaxAlertHistory.
func (s *Store) AppendAlertHistory(value []byte) error {
	if s.readOnly {
		return s.errReadOnly()
	}
	for try := 0; ; try++ {
		err := s.db.Update(func(txn *badger.Txn) error {
			// Reading the counter with Get makes concurrent appends conflict
			// (Badger tracks the keys a transaction reads), so each gets its seq.
			var last uint64
			item, err := txn.Get([]byte{pfxAlert, alertCounterKey})
			switch {
			case err == nil:
				err = item.Value(func(v []byte) error {
					if len(v) != 8 {
						return fmt.Errorf("alert history counter of %d bytes", len(v))
					}
					last = binary.BigEndian.Uint64(v)
					return nil
				})
			case errors.Is(err, badger.ErrKeyNotFound):
				err = nil
			}
			if err != nil {
				return err
			}
			seq := last + 1
			if err := txn.Set([]byte{pfxAlert, alertCounterKey}, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
			if err := txn.Set(alertHistKey(seq), append([]byte(nil), value...)); err != nil {
				return err
			}
			if seq > MaxAlertHistory {
				return txn.Delete(alertHistKey(seq - MaxAlertHistory))
			}
			return nil
		})
		if errors.Is(err, badger.ErrConflict) && try < 1000 {
			continue // another append took the same seq
		}
		if err != nil {
			return fmt.Errorf("alert history: %w", err)
		}
		return nil
	}
}

// AlertHistory calls fn on transitions newest first, starting below seq
// before (0: with the newest), until fn returns false.
func (s *Store) AlertHistory(before uint64, fn func(seq uint64, value []byte) bool) error {
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, PrefetchValues: true, PrefetchSize: 64, Prefix: []byte{pfxAlert, alertHistoryKey}})
		defer it.Close()
		start := uint64(1<<64 - 1)
		if before > 0 {
			start = before - 1
		}
		for it.Seek(alertHistKey(start)); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 10 {
				continue
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			if !fn(binary.BigEndian.Uint64(k[2:]), v) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("alert history: %w", err)
	}
	return nil
}
