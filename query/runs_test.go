package query

import (
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// fullCatalog is a Catalog of streams, agents and runs.
type fullCatalog struct {
	streams []store.StreamInfo
	agents  []store.AgentInfo
	runs    map[string][]model.Run
}

func (c *fullCatalog) Streams() []store.StreamInfo  { return c.streams }
func (c *fullCatalog) Agents() []store.AgentInfo    { return c.agents }
func (c *fullCatalog) Runs() map[string][]model.Run { return c.runs }

// Two builds run one after another on one host, each closing its own
// agent: the host is closed, not silent.
func TestHostClosedAfterRunsInTurn(t *testing.T) {
	now := time.Now()
	t1, t2 := now.Add(-time.Hour).UnixNano(), now.Add(-30*time.Minute).UnixNano()
	hk := store.HostKey{Service: "ci", Host: "runner"}
	c := &fullCatalog{
		streams: []store.StreamInfo{
			{ID: 1, Labels: model.Labels{Service: "ci", Host: "runner", BuildID: "b1"}, First: t1, Last: t1, LastReceived: t1, Levels: [model.NumLevels]uint64{model.LevelInfo: 2}},
			{ID: 2, Labels: model.Labels{Service: "ci", Host: "runner", BuildID: "b2"}, First: t2, Last: t2, LastReceived: t2, Levels: [model.NumLevels]uint64{model.LevelInfo: 1}},
		},
		agents: []store.AgentInfo{
			{ID: "a1", Closed: true, ClosedAt: t1 + 1, Hosts: []store.HostKey{hk}},
			{ID: "a2", Closed: true, ClosedAt: t2 + 1, Hosts: []store.HostKey{hk}},
		},
	}
	hs := Hosts(c, HostFilter{}, time.Minute, now)
	if len(hs) != 1 || hs[0].State != StateClosed {
		t.Fatalf("hosts %+v, want runner closed", hs)
	}
	// A line after the last goodbye: not closed.
	c.streams[1].LastReceived = t2 + 2
	if hs := Hosts(c, HostFilter{}, time.Minute, now); hs[0].State != StateSilent {
		t.Fatalf("state %s after a line past the last goodbye, want silent", hs[0].State)
	}
	// One agent still open: not closed.
	c.streams[1].LastReceived = t2
	c.agents[0].Closed = false
	if hs := Hosts(c, HostFilter{}, time.Minute, now); hs[0].State != StateSilent {
		t.Fatalf("state %s with an agent open, want silent", hs[0].State)
	}
}

// A build's status and exit code come from all its runs: the failing run's
// exit code, a lost run after silentAfter without lines, per-host lines.
func TestBuildRunsStatus(t *testing.T) {
	now := time.Now()
	ago := func(d time.Duration) int64 { return now.Add(-d).UnixNano() }
	c := &fullCatalog{
		streams: []store.StreamInfo{
			{ID: 1, Labels: model.Labels{Service: "ci", Host: "r1", BuildID: "two"}, First: ago(time.Hour), Last: ago(time.Hour), LastReceived: ago(time.Hour), Levels: [model.NumLevels]uint64{model.LevelInfo: 3}},
			{ID: 2, Labels: model.Labels{Service: "ci", Host: "r2", BuildID: "two"}, First: ago(time.Hour), Last: ago(time.Hour), LastReceived: ago(time.Hour), Levels: [model.NumLevels]uint64{model.LevelInfo: 5}},
			{ID: 3, Labels: model.Labels{Service: "ci", Host: "r3", BuildID: "killed"}, First: ago(time.Hour), Last: ago(time.Hour), LastReceived: ago(10 * time.Second), Levels: [model.NumLevels]uint64{model.LevelInfo: 1}},
		},
		runs: map[string][]model.Run{
			"two": {
				{BuildID: "two", Host: "r1", Start: ago(2 * time.Hour), End: ago(90 * time.Minute), Finished: true, ExitCode: 1},
				{BuildID: "two", Host: "r2", Start: ago(2 * time.Hour), End: ago(time.Hour), Finished: true, ExitCode: 0},
			},
			"killed": {{BuildID: "killed", Host: "r3", Start: ago(time.Hour)}},
		},
	}
	by := map[string]*Group{}
	for _, g := range BuildsAt(c, 30*time.Second, now) {
		by[g.ID] = g
	}
	two := by["two"]
	if two.Status != "failed" || two.ExitCode != 1 || two.RunStates[0] != "failed" || two.RunStates[1] != "passed" {
		t.Fatalf("build two: %s exit %d runs %v, want failed exit 1", two.Status, two.ExitCode, two.RunStates)
	}
	if two.HostLines["r1"] != 3 || two.HostLines["r2"] != 5 {
		t.Fatalf("host lines %v", two.HostLines)
	}
	if k := by["killed"]; k.Status != "running" || k.RunStates[0] != "running" {
		t.Fatalf("killed 10 s ago: %s %v, want running", k.Status, k.RunStates)
	}
	for _, g := range BuildsAt(c, 5*time.Second, now) {
		if g.ID == "killed" && (g.Status != "lost" || g.RunStates[0] != "lost") {
			t.Fatalf("killed: %s %v, want lost", g.Status, g.RunStates)
		}
	}
	for _, g := range Builds(c) {
		if g.ID == "killed" && g.Status != "running" {
			t.Fatalf("Builds without a silence limit: %s, want running", g.Status)
		}
	}
}
