package scheduler

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Anchored is the schedule of a replication job: runs at Seed + k×Every for
// k = 0, 1, 2, … — anchored at the seed time (its minute and second), not at
// wall-clock hours as a cron spec would be. It is a cron.Schedule.
type Anchored struct {
	Seed  time.Time
	Every time.Duration // > 0
}

var _ cron.Schedule = Anchored{}

// Next returns the first slot strictly after t (cron's contract).
func (a Anchored) Next(t time.Time) time.Time {
	if t.Before(a.Seed) {
		return a.Seed
	}
	k := t.Sub(a.Seed)/a.Every + 1
	return a.Seed.Add(k * a.Every)
}

// AtOrAfter returns the first slot at or after t.
func (a Anchored) AtOrAfter(t time.Time) time.Time {
	if !t.After(a.Seed) {
		return a.Seed
	}
	d := t.Sub(a.Seed)
	k := d / a.Every
	if d%a.Every != 0 {
		k++
	}
	return a.Seed.Add(k * a.Every)
}

// LatestAtOrBefore returns the last slot at or before t, and false if t is
// before the seed.
func (a Anchored) LatestAtOrBefore(t time.Time) (time.Time, bool) {
	if t.Before(a.Seed) {
		return time.Time{}, false
	}
	return a.Seed.Add(t.Sub(a.Seed) / a.Every * a.Every), true
}

// OnGrid reports whether t is one of the schedule's slots.
func (a Anchored) OnGrid(t time.Time) bool {
	return !t.Before(a.Seed) && t.Sub(a.Seed)%a.Every == 0
}
