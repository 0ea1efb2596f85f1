package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// The GOGC a live heap gets: the headroom's share of it, never above GOGC
// as started nor below minGCPercent (unless GOGC was set lower).
func TestGCTunerPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base     int
		headroom uint64
		live     uint64
		want     int
	}{
		{100, 128 * mib, 64 * mib, 100},  // small heap: GOGC as it was
		{100, 128 * mib, 128 * mib, 100}, // the headroom is the heap
		{100, 128 * mib, 160 * mib, 80},  // 128 MiB of growth on 160 live
		{100, 128 * mib, 1024 * mib, 25}, // floor
		{50, 128 * mib, 128 * mib, 50},   // never above GOGC as started
		{10, 128 * mib, 1024 * mib, 10},  // GOGC set below the floor stays
		{200, 128 * mib, 0, 200},         // nothing measured yet
		{400, 128 * mib, 16 * mib, 400},  // GOGC raised by the user stays
		{100, 128 * mib, 256 * mib, 50},  // half
	} {
		tu := &gcTuner{headroom: c.headroom, base: c.base, live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
		metrics.Read(tu.live) // a KindUint64 value, as tune reads it
		if got := tu.percent(c.live); got != c.want {
			t.Errorf("base %d, headroom %d, live %d: GOGC %d, want %d", c.base, c.headroom, c.live, got, c.want)
		}
	}
}

// With a live heap larger than the headroom, the collections that follow
// set GOGC below 100; stopping restores it.
func TestGCHeadroomSetsGOGC(t *testing.T) {
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	base := gogc()
	if base != 100 {
		t.Skipf("GOGC is %d", base)
	}
	live := make([]byte, 8<<20) // 8 MiB live, headroom 1 MiB: GOGC at the floor
	stop := startGCHeadroom(1 << 20)
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != minGCPercent && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	got := gogc()
	stop()
	runtime.KeepAlive(live)
	if got != minGCPercent {
		t.Errorf("GOGC %d with 8 MiB live and 1 MiB headroom, want %d", got, minGCPercent)
	}
	if p := gogc(); p != base {
		t.Errorf("GOGC %d after stop, want %d", p, base)
	}
	if stop := startGCHeadroom(0); gogc() != base {
		t.Errorf("a headroom of 0 changed GOGC to %d", gogc())
	} else {
		stop()
	}
}

// Servers in one process share the tuner: GOGC comes back to what it was
// only when the last one stops, whatever the order.
func TestGCHeadroomShared(t *testing.T) {
	gogc := func() int { p := debug.SetGCPercent(100); debug.SetGCPercent(p); return p }
	base := gogc()
	if base != 100 {
		t.Skipf("GOGC is %d", base)
	}
	live := make([]byte, 8<<20)
	stop1 := startGCHeadroom(1 << 20)
	stop2 := startGCHeadroom(1 << 20)
	deadline := time.Now().Add(10 * time.Second)
	for gogc() != minGCPercent && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if p := gogc(); p != minGCPercent {
		t.Fatalf("GOGC %d with two servers' tuner, want %d", p, minGCPercent)
	}
	stop1()
	stop1() // twice: counted once
	runtime.GC()
	if p := gogc(); p != minGCPercent {
		t.Errorf("GOGC %d after the first of two stops, want the tuner's %d", p, minGCPercent)
	}
	runtime.KeepAlive(live)
	stop2()
	if p := gogc(); p != base {
		t.Errorf("GOGC %d after both stopped, want %d", p, base)
	}
}
