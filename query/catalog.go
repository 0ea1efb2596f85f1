package query

import (
	"slices"
	"sort"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// Catalog is what the builds, deploys and hosts views need of the store.
type Catalog interface {
	Streams() []store.StreamInfo
	Agents() []store.AgentInfo
	Runs() map[string][]model.Run
}

// Levels counts lines per level.
type Levels [model.NumLevels]uint64

func (l *Levels) add(o [model.NumLevels]uint64) {
	for i := range l {
		l[i] += o[i]
	}
}

// Errors is the number of error and fatal lines.
func (l *Levels) Errors() uint64 { return l[model.LevelError] + l[model.LevelFatal] }

// Total is the number of lines.
func (l *Levels) Total() uint64 {
	var n uint64
	for _, c := range l {
		n += c
	}
	return n
}

// Group sums up the streams of one build or deploy.
type Group struct {
	ID        string
	Services  []string
	Hosts     []string
	Others    []string // deploy ids of a build, build ids of a deploy
	First     int64
	Last      int64
	Levels    Levels
	Runs      []model.Run
	Status    string // running, passed, failed or unknown
	Start     int64  // of the runs: earliest start
	End       int64  // latest end, when every run has finished
	ExitCode  int    // of the failing run that finished last, else of the last run to finish
	HostLives []Host // deploys only
	// HostLines counts the group's own lines by host.
	HostLines map[string]uint64
	// RunStates is each run's status (RunStatus, or "lost"), as Runs.
	RunStates []string
	// lastLine: by host, when its latest line of the group arrived.
	lastLine map[string]int64
}

// Lines is the group's line count.
func (g *Group) Lines() uint64 { return g.Levels.Total() }

// ErrorRate is (error + fatal) / lines.
func (g *Group) ErrorRate() float64 {
	if n := g.Lines(); n > 0 {
		return float64(g.Levels.Errors()) / float64(n)
	}
	return 0
}

// Host is one (service, host) pair's life.
type Host struct {
	Host, Service     string
	First, Last       int64 // first and last seen
	BuildID, DeployID string
	BuildIDs          []string
	DeployIDs         []string
	Levels            Levels
	State             string // live, silent, closed
	Agents            []store.AgentInfo
}

// Host states.
const (
	StateLive   = "live"
	StateSilent = "silent"
	StateClosed = "closed"
)

type groupAcc struct {
	g        *Group
	services map[string]bool
	hosts    map[string]bool
	others   map[string]bool
}

func newAcc(id string) *groupAcc {
	return &groupAcc{g: &Group{ID: id}, services: map[string]bool{}, hosts: map[string]bool{}, others: map[string]bool{}}
}

func (a *groupAcc) add(si *store.StreamInfo, other string) {
	g := a.g
	if g.Levels.Total() == 0 || si.First < g.First {
		g.First = si.First
	}
	if si.Last > g.Last {
		g.Last = si.Last
	}
	g.Levels.add(si.Levels)
	if g.HostLines == nil {
		g.HostLines, g.lastLine = map[string]uint64{}, map[string]int64{}
	}
	g.HostLines[si.Labels.Host] += (*Levels)(&si.Levels).Total()
	g.lastLine[si.Labels.Host] = max(g.lastLine[si.Labels.Host], si.LastReceived, si.Last)
	a.services[si.Labels.Service] = true
	a.hosts[si.Labels.Host] = true
	if other != "" {
		a.others[other] = true
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (a *groupAcc) done() *Group {
	g := a.g
	g.Services, g.Hosts, g.Others = keys(a.services), keys(a.hosts), keys(a.others)
	sort.Slice(g.Runs, func(i, j int) bool { return g.Runs[i].Start < g.Runs[j].Start })
	g.Status = "unknown"
	g.RunStates = make([]string, len(g.Runs))
	for i := range g.Runs {
		g.RunStates[i] = RunStatus(&g.Runs[i])
	}
	if len(g.Runs) > 0 {
		g.summarize()
	}
	return g
}

// summarize sets a group's status, start, end and exit code from its runs.
func (g *Group) summarize() {
	g.Start = g.Runs[0].Start
	var lastEnd, failEnd int64
	failed, running := false, false
	for _, r := range g.Runs {
		g.Start = min(g.Start, r.Start)
		if !r.Finished {
			running = true
			continue
		}
		if r.End >= lastEnd {
			lastEnd = r.End
			if !failed {
				g.ExitCode = r.ExitCode
			}
		}
		if r.ExitCode != 0 && r.End >= failEnd {
			failed, failEnd, g.ExitCode = true, r.End, r.ExitCode
		}
	}
	switch {
	case running:
		g.Status = "running"
	case failed:
		g.Status = "failed"
	default:
		g.Status = "passed"
	}
	if !running {
		g.End = lastEnd
	}
	if (g.First == 0 || g.Start < g.First) && g.Levels.Total() == 0 {
		g.First, g.Last = g.Start, max(g.End, g.Start)
	}
}

// markLost turns the runs that never reported their end, and whose host has
// sent no line of the group for silentAfter (nor started within it), lost;
// a group running only because of lost runs is lost (failed if one failed).
func (g *Group) markLost(silentAfter time.Duration, now time.Time) {
	running, lost, failed := false, false, false
	for i := range g.Runs {
		r := &g.Runs[i]
		if r.Finished {
			failed = failed || r.ExitCode != 0
			continue
		}
		if now.UnixNano()-max(r.Start, g.lastLine[r.Host]) >= int64(silentAfter) {
			g.RunStates[i], lost = "lost", true
		} else {
			running = true
		}
	}
	if !lost || running {
		return
	}
	g.Status = "lost"
	if failed {
		g.Status = "failed"
	}
}

// RunStatus is the status of one run.
func RunStatus(r *model.Run) string {
	switch {
	case !r.Finished:
		return "running"
	case r.ExitCode != 0:
		return "failed"
	}
	return "passed"
}

// Builds sums up every build, newest (latest first line) first.
func Builds(c Catalog) []*Group { return BuildsAt(c, 0, time.Time{}) }

// BuildsAt is Builds with runs judged lost after silentAfter (0: never).
func BuildsAt(c Catalog, silentAfter time.Duration, now time.Time) []*Group {
	accs := map[string]*groupAcc{}
	for _, si := range c.Streams() {
		if si.Labels.BuildID == "" {
			continue
		}
		a := accs[si.Labels.BuildID]
		if a == nil {
			a = newAcc(si.Labels.BuildID)
			accs[si.Labels.BuildID] = a
		}
		a.add(&si, si.Labels.DeployID)
	}
	for b, runs := range c.Runs() {
		a := accs[b]
		if a == nil {
			a = newAcc(b)
			accs[b] = a
		}
		a.g.Runs = append(a.g.Runs, runs...)
		for _, r := range runs {
			a.services[r.Service] = true
			a.hosts[r.Host] = true
			if r.DeployID != "" {
				a.others[r.DeployID] = true
			}
		}
	}
	out := finish(accs)
	if silentAfter > 0 {
		for _, g := range out {
			g.markLost(silentAfter, now)
		}
	}
	return out
}

// Deploys sums up every deploy, newest first, each with the previous deploy of
// its service.
func Deploys(c Catalog, silentAfter time.Duration, now time.Time) []*Group {
	accs := map[string]*groupAcc{}
	for _, si := range c.Streams() {
		if si.Labels.DeployID == "" {
			continue
		}
		a := accs[si.Labels.DeployID]
		if a == nil {
			a = newAcc(si.Labels.DeployID)
			accs[si.Labels.DeployID] = a
		}
		a.add(&si, si.Labels.BuildID)
	}
	for _, runs := range c.Runs() {
		for _, r := range runs {
			if r.DeployID == "" {
				continue
			}
			a := accs[r.DeployID]
			if a == nil {
				a = newAcc(r.DeployID)
				accs[r.DeployID] = a
			}
			a.g.Runs = append(a.g.Runs, r)
			a.services[r.Service] = true
			a.hosts[r.Host] = true
			a.others[r.BuildID] = true
		}
	}
	out := finish(accs)
	for _, g := range out {
		g.markLost(silentAfter, now)
	}
	hosts := Hosts(c, HostFilter{}, silentAfter, now)
	for _, g := range out {
		for _, h := range hosts {
			for _, d := range h.DeployIDs {
				if d == g.ID {
					g.HostLives = append(g.HostLives, h)
				}
			}
		}
	}
	return out
}

// Previous returns the deploy of the same service (its first service) that
// started last before d, or nil.
func Previous(all []*Group, d *Group) *Group {
	if len(d.Services) == 0 {
		return nil
	}
	var best *Group
	for _, g := range all {
		if g == d || g.First >= d.First || !slices.Contains(g.Services, d.Services[0]) {
			continue
		}
		if best == nil || g.First > best.First {
			best = g
		}
	}
	return best
}

func finish(accs map[string]*groupAcc) []*Group {
	out := make([]*Group, 0, len(accs))
	for _, a := range accs {
		out = append(out, a.done())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].First != out[j].First {
			return out[i].First > out[j].First
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// HostFilter narrows Hosts.
type HostFilter struct {
	Service  string
	State    string
	DeployID string
	BuildID  string
	AliveAt  int64 // 0: any time
}

// Hosts returns every (service, host) ever seen, most recently seen first.
func Hosts(c Catalog, f HostFilter, silentAfter time.Duration, now time.Time) []Host {
	type acc struct {
		h          Host
		builds     map[string]bool
		deploys    map[string]bool
		lastRecv   int64
		latestTime int64
	}
	accs := map[store.HostKey]*acc{}
	for _, si := range c.Streams() {
		k := store.HostKey{Service: si.Labels.Service, Host: si.Labels.Host}
		a := accs[k]
		if a == nil {
			a = &acc{h: Host{Host: k.Host, Service: k.Service, First: si.First, Last: si.Last}, builds: map[string]bool{}, deploys: map[string]bool{}}
			accs[k] = a
		}
		a.h.First = min(a.h.First, si.First)
		if si.Last >= a.latestTime {
			a.latestTime = si.Last
			a.h.BuildID, a.h.DeployID = si.Labels.BuildID, si.Labels.DeployID
		}
		a.h.Last = max(a.h.Last, si.Last)
		a.h.Levels.add(si.Levels)
		a.builds[si.Labels.BuildID] = true
		a.deploys[si.Labels.DeployID] = true
		a.lastRecv = max(a.lastRecv, si.LastReceived)
	}
	for _, ag := range c.Agents() {
		for _, hk := range ag.Hosts {
			if a := accs[hk]; a != nil {
				a.h.Agents = append(a.h.Agents, ag)
			}
		}
	}
	out := make([]Host, 0, len(accs))
	for _, a := range accs {
		h := a.h
		h.BuildIDs, h.DeployIDs = keys(a.builds), keys(a.deploys)
		// Liveness is judged by when lines arrived (wall clock), not by the
		// times written in them; before a restart's first line, by those times.
		seen := max(a.lastRecv, h.Last)
		h.State = StateSilent
		if now.UnixNano()-seen < int64(silentAfter) {
			h.State = StateLive
		}
		// Closed: every agent of the host said goodbye, the last of them
		// after its latest line (runs one after another each close their
		// own agent: an earlier run's goodbye is older than later lines).
		closed := len(h.Agents) > 0
		var lastClose int64
		for _, ag := range h.Agents {
			closed = closed && ag.Closed
			lastClose = max(lastClose, ag.ClosedAt)
		}
		closed = closed && lastClose >= a.lastRecv
		if closed {
			h.State = StateClosed
		}
		if f.Service != "" && h.Service != f.Service || f.State != "" && h.State != f.State ||
			f.DeployID != "" && !a.deploys[f.DeployID] || f.BuildID != "" && !a.builds[f.BuildID] ||
			f.AliveAt != 0 && (f.AliveAt < h.First || f.AliveAt > h.Last) {
			continue
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Last != out[j].Last {
			return out[i].Last > out[j].Last
		}
		return out[i].Host < out[j].Host
	})
	return out
}

// HostPage is one page of hosts by service, then host.
type HostPage struct {
	Hosts  []Host
	More   bool           // hosts follow the page's last
	Total  int            // hosts that match the filter, over every page
	States map[string]int // hosts that match the filter but for its state, by state
}

// PageHosts returns up to limit hosts of Hosts(c, f, ...) that sort after
// the (service, host) pair after (nil: from the first). A page's
// last host is the next page's after: pages neither repeat nor skip a host
// while others appear or change.
func PageHosts(c Catalog, f HostFilter, after *store.HostKey, limit int, silentAfter time.Duration, now time.Time) HostPage {
	state := f.State
	f.State = ""
	all := Hosts(c, f, silentAfter, now)
	p := HostPage{States: map[string]int{}}
	keep := all[:0]
	for _, h := range all {
		p.States[h.State]++
		if state == "" || h.State == state {
			keep = append(keep, h)
		}
	}
	p.Total = len(keep)
	less := func(a, b store.HostKey) bool {
		return a.Service < b.Service || a.Service == b.Service && a.Host < b.Host
	}
	key := func(h *Host) store.HostKey { return store.HostKey{Service: h.Service, Host: h.Host} }
	sort.Slice(keep, func(i, j int) bool { return less(key(&keep[i]), key(&keep[j])) })
	start := 0
	if after != nil {
		start = sort.Search(len(keep), func(i int) bool { return less(*after, key(&keep[i])) })
	}
	end := min(start+limit, len(keep))
	p.Hosts, p.More = keep[start:end], end < len(keep)
	return p
}
