package scheduler

import (
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

func TestAnchored(t *testing.T) {
	a := Anchored{Seed: seed, Every: 12 * time.Hour}
	for _, tc := range []struct {
		t, next, atOrAfter time.Time
	}{
		{seed.Add(-time.Hour), seed, seed},
		{seed, seed.Add(12 * time.Hour), seed},
		{seed.Add(time.Second), seed.Add(12 * time.Hour), seed.Add(12 * time.Hour)},
		{seed.Add(12 * time.Hour), seed.Add(24 * time.Hour), seed.Add(12 * time.Hour)},
		{seed.Add(35*time.Hour + 59*time.Minute), seed.Add(36 * time.Hour), seed.Add(36 * time.Hour)},
	} {
		if got := a.Next(tc.t); !got.Equal(tc.next) {
			t.Errorf("Next(%v) = %v, want %v", tc.t, got, tc.next)
		}
		if got := a.AtOrAfter(tc.t); !got.Equal(tc.atOrAfter) {
			t.Errorf("AtOrAfter(%v) = %v, want %v", tc.t, got, tc.atOrAfter)
		}
	}
	if _, ok := a.LatestAtOrBefore(seed.Add(-time.Nanosecond)); ok {
		t.Error("LatestAtOrBefore before the seed reported a slot")
	}
	if got, _ := a.LatestAtOrBefore(seed.Add(25 * time.Hour)); !got.Equal(seed.Add(24 * time.Hour)) {
		t.Errorf("LatestAtOrBefore(+25h) = %v", got)
	}
	if !a.OnGrid(seed.Add(48*time.Hour)) || a.OnGrid(seed.Add(6*time.Hour)) || a.OnGrid(seed.Add(-12*time.Hour)) {
		t.Error("OnGrid wrong")
	}
	// As a cron.Schedule, the minute follows the seed (10:17), not the hour.
	var s cron.Schedule = Anchored{Seed: seed, Every: time.Hour}
	at := seed.Add(-3 * time.Minute)
	for i := 0; i < 30; i++ {
		at = s.Next(at)
		if at.Minute() != 17 || at.Second() != 0 {
			t.Fatalf("slot %d at %v", i, at)
		}
	}
	if !at.Equal(seed.Add(29 * time.Hour)) {
		t.Errorf("30th slot = %v", at)
	}
}

func TestFakeClockTimers(t *testing.T) {
	c := NewFakeClock(seed)
	t1 := c.NewTimer(time.Minute)
	t2 := c.NewTimer(time.Hour)
	t3 := c.NewTimer(2 * time.Minute)
	if !t3.Stop() || t3.Stop() {
		t.Error("Stop should report true once")
	}
	if c.Timers() != 2 {
		t.Fatalf("timers = %d", c.Timers())
	}
	c.Advance(59 * time.Second)
	select {
	case <-t1.C():
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Second)
	select {
	case got := <-t1.C():
		if !got.Equal(seed.Add(time.Minute)) {
			t.Errorf("fired with %v", got)
		}
	default:
		t.Fatal("did not fire at its deadline")
	}
	c.Set(seed) // never backwards
	if !c.Now().Equal(seed.Add(time.Minute)) {
		t.Errorf("clock went back to %v", c.Now())
	}
	if t1.Stop() {
		t.Error("Stop of a fired timer reported true")
	}
	c.Advance(2 * time.Hour)
	select {
	case <-t2.C():
	default:
		t.Fatal("second timer did not fire")
	}
	select {
	case <-t3.C():
		t.Fatal("stopped timer fired")
	default:
	}
	now := c.NewTimer(0)
	select {
	case <-now.C():
	default:
		t.Fatal("zero timer did not fire at once")
	}
}
