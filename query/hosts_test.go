package query

import (
	"fmt"
	"testing"
	"time"

	"github.com/shiplog/shiplog/model"
	"github.com/shiplog/shiplog/store"
)

// streamsCatalog is a Catalog of streams alone.
type streamsCatalog []store.StreamInfo

func (c streamsCatalog) Streams() []store.StreamInfo { return c }
func (streamsCatalog) Agents() []store.AgentInfo     { return nil }
func (streamsCatalog) Runs() map[string][]model.Run  { return nil }

// Walking every page of PageHosts gives every host once, by service and
// host, also when hosts appear between pages; filters and counts hold.
func TestPageHostsWalk(t *testing.T) {
	now := time.Now()
	var cat streamsCatalog
	add := func(svc, host string, last time.Time) {
		cat = append(cat, store.StreamInfo{ID: uint64(len(cat) + 1), Labels: model.Labels{Service: svc, Host: host},
			First: last.Add(-time.Minute).UnixNano(), Last: last.UnixNano(), Lines: 1, Levels: [model.NumLevels]uint64{model.LevelInfo: 1}})
	}
	add("", "", now) // the empty key sorts first and must not restart the walk
	for i := range 250 {
		svc := []string{"api", "db", "web"}[i%3]
		last := now
		if i%5 == 0 {
			last = now.Add(-time.Hour) // silent
		}
		add(svc, fmt.Sprintf("h%03d", i), last)
		if i%7 == 0 { // a second stream of the same host (another build): still one host
			add(svc, fmt.Sprintf("h%03d", i), last)
		}
	}
	seen := map[string]int{}
	var after *store.HostKey
	var prev string
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("the walk does not end")
		}
		p := PageHosts(cat, HostFilter{}, after, 7, 5*time.Minute, now)
		if pages == 0 && (p.Total != 251 || p.States[StateLive] != 201 || p.States[StateSilent] != 50) {
			t.Fatalf("total %d, states %v", p.Total, p.States)
		}
		for _, h := range p.Hosts {
			k := h.Service + "\x00" + h.Host
			if len(seen) > 0 && k <= prev {
				t.Fatalf("%q after %q: not in order", k, prev)
			}
			prev = k
			seen[k]++
		}
		if pages == 3 {
			add("aaa", "new", now) // before the cursor: not in this walk
			add("zzz", "new", now) // after it: in this walk
		}
		if !p.More {
			break
		}
		last := p.Hosts[len(p.Hosts)-1]
		after = &store.HostKey{Service: last.Service, Host: last.Host}
	}
	if len(seen) != 252 {
		t.Fatalf("%d hosts walked, want 251 and the new one after the cursor", len(seen))
	}
	for k, n := range seen {
		if n != 1 {
			t.Fatalf("host %q seen %d times", k, n)
		}
	}
	p := PageHosts(cat, HostFilter{Service: "db", State: StateSilent}, nil, 1000, 5*time.Minute, now)
	if p.Total != len(p.Hosts) || p.More || p.Total == 0 {
		t.Fatalf("filtered page: total %d, %d hosts, more %v", p.Total, len(p.Hosts), p.More)
	}
	for _, h := range p.Hosts {
		if h.Service != "db" || h.State != StateSilent {
			t.Fatalf("filter let through %+v", h)
		}
	}
}
