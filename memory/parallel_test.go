package memory

import (
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelCoversEachIndexOnce checks that parallel hands every index of
// [0,n) to fn exactly once, in ranges that do not overlap, whatever the
// number of cores and however the pieces fall.
func TestParallelCoversEachIndexOnce(t *testing.T) {
	for _, procs := range []int{1, 2, 3, 8} {
		for _, n := range []int{1, 2, 5, 16, 17, 100, 1001, 100_000} {
			for _, work := range []int{0, parallelWork} {
				prev := runtime.GOMAXPROCS(procs)
				seen := make([]int32, n)
				var calls atomic.Int32
				parallel(n, work, func(lo, hi int) {
					calls.Add(1)
					if lo < 0 || hi > n || lo >= hi {
						t.Errorf("procs %d n %d: bad range [%d,%d)", procs, n, lo, hi)
						return
					}
					for i := lo; i < hi; i++ {
						atomic.AddInt32(&seen[i], 1)
					}
				})
				runtime.GOMAXPROCS(prev)
				for i, c := range seen {
					if c != 1 {
						t.Fatalf("procs %d n %d work %d: index %d handed out %d times", procs, n, work, i, c)
					}
				}
				if work < parallelWork && calls.Load() != 1 {
					t.Errorf("procs %d n %d: small work split into %d calls", procs, n, calls.Load())
				}
			}
		}
	}
}

// gcPercent reads the collector's setting.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestWithoutGCRestoresTheSettingAfterItsGrace checks that a decode turns
// the collector off, leaves it on with a raised goal for gcGrace, and then
// restores the setting it found, also when another decode starts during
// the grace (which must not take the raised goal for the setting to keep).
func TestWithoutGCRestoresTheSettingAfterItsGrace(t *testing.T) {
	prevGrace := gcGrace
	gcGrace = 50 * time.Millisecond
	defer func() { gcGrace = prevGrace }()
	prev := debug.SetGCPercent(150)
	defer debug.SetGCPercent(prev)
	var keep [][]byte
	grow := func() {
		if gcPercent() != -1 {
			t.Error("the collector is on during a decode")
		}
		for range 64 {
			keep = append(keep, make([]byte, 1<<20))
		}
	}
	withoutGC(grow)
	if p := gcPercent(); p < 150 {
		t.Fatalf("right after a decode the setting is %d, want at least 150", p)
	}
	time.Sleep(10 * time.Millisecond)
	withoutGC(grow) // during the first one's grace
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() != 150 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if p := gcPercent(); p != 150 {
		t.Fatalf("after the grace the setting is %d, want the 150 found before the decodes", p)
	}
	runtime.KeepAlive(keep)
}
