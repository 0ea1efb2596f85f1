package store

// Per-batch checks of the limits on new streams and on agents' senders
// (Options.MaxStreamsPerDay, token binding).

import (
	"fmt"

	"github.com/shiplog/shiplog/model"
)

// checkSender binds a new or unbound agent to the sender (the name of the
// token that sent the batch) and refuses another sender. Without a sender
// (no authentication) nothing is checked.
func checkSender(ag *agentState, sender string) error {
	if sender == "" || ag.Sender == "" || ag.Sender == sender {
		return nil
	}
	return fmt.Errorf("%w: agent id %q was first used with token %q, not %q; give each agent its own agent id (a fresh spool makes one)",
		ErrAgentBound, ag.ID, ag.Sender, sender)
}

// known reports whether the store holds or has held lines of k's stream.
// Caller holds mu.
func (s *Store) known(k headKey) bool {
	if _, ok := s.streamInfo[k.stream]; ok {
		return true
	}
	if _, ok := s.lastRecv[k.stream]; ok {
		return true
	}
	_, ok := s.nextLine[k]
	return ok
}

// checkNewStreams counts the streams of groups the store has never seen and
// refuses them all if they would take today's new streams over
// Options.MaxStreamsPerDay. Caller holds mu; it adds the count returned to
// newStreams once the batch is stored.
func (s *Store) checkNewStreams(groups []*group, now int64) (int, error) {
	limit := s.opts.MaxStreamsPerDay
	if limit <= 0 {
		return 0, nil
	}
	if day := model.Day(now); day != s.newDay {
		s.newDay, s.newStreams = day, 0
	}
	var fresh map[uint64]*group
	for _, g := range groups {
		if s.known(g.key) {
			continue
		}
		if fresh == nil {
			fresh = map[uint64]*group{}
		}
		if _, ok := fresh[g.key.stream]; !ok {
			fresh[g.key.stream] = g
		}
	}
	if s.newStreams+len(fresh) <= limit {
		return len(fresh), nil
	}
	if s.limitWarned != s.newDay {
		s.limitWarned = s.newDay
		s.log.Warn("store: the limit of new streams a day is reached: batches opening new streams are refused until 00:00 UTC; known streams go on",
			"limit", limit, "flag", "--max-streams-per-day")
	}
	var first *group
	for _, g := range groups {
		if fresh[g.key.stream] == g {
			first = g
			break
		}
	}
	l := first.labels
	return 0, fmt.Errorf("%w: the batch opens %d new stream(s) (the first: service=%q host=%q build_id=%q deploy_id=%q) and %d of today's %d are taken (--max-streams-per-day); streams already known are accepted, new ones again from 00:00 UTC",
		ErrStreamLimit, len(fresh), l.Service, l.Host, l.BuildID, l.DeployID, s.newStreams, limit)
}
