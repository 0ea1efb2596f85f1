package alert

import "sync"

// memStore is the StateStore of a Manager or Notifier without one: state lives
// as long as the process.
type memStore struct {
	mu      sync.Mutex
	states  map[string][]byte
	history [][]byte // seq i+1 at index i
}

func newMemStore() *memStore { return &memStore{states: map[string][]byte{}} }

func (s *memStore) PutAlertState(key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if value == nil {
		delete(s.states, key)
		return nil
	}
	s.states[key] = append([]byte(nil), value...)
	return nil
}

func (s *memStore) AlertStates() (map[string][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]byte, len(s.states))
	for k, v := range s.states {
		out[k] = v
	}
	return out, nil
}

func (s *memStore) AppendAlertHistory(value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history = append(s.history, append([]byte(nil), value...))
	return nil
}

func (s *memStore) AlertHistory(before uint64, fn func(seq uint64, value []byte) bool) error {
	s.mu.Lock()
	h := s.history
	s.mu.Unlock()
	i := len(h)
	if before > 0 && int(before-1) < i {
		i = int(before - 1)
	}
	for i--; i >= 0; i-- {
		if !fn(uint64(i+1), h[i]) {
			return nil
		}
	}
	return nil
}
