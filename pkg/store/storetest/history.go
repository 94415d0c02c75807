package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		job := "sms-job-a"
		if i%2 == 1 {
			job = "sms-job-b"
		}
		e := ok(s.AddEvent(ctx, store.Event{Time: t0.Add(time.Duration(i) * time.Minute), JobID: job, RunID: fmt.Sprintf("run-%d", i/4), Message: fmt.Sprintf("event %d", i)})).must(t)
		if e.ID == 0 || e.Level != store.LevelInfo {
			t.Errorf("added event %+v", e)
		}
	}
	got := ok(s.Events(ctx, store.EventFilter{JobID: "sms-job-a", Limit: 2})).must(t)
	if len(got) != 2 || got[0].Message != "event 4" || got[1].Message != "event 2" || !got[0].Time.Equal(t0.Add(4*time.Minute)) {
		t.Errorf("events of job a = %+v", got)
	}
	got = ok(s.Events(ctx, store.EventFilter{RunID: "run-1"})).must(t)
	if len(got) != 2 || got[0].Message != "event 5" {
		t.Errorf("events of run-1 = %+v", got)
	}
	if n := len(ok(s.Events(ctx, store.EventFilter{})).must(t)); n != 6 {
		t.Errorf("all events = %d", n)
	}
	_, err := s.AddEvent(ctx, store.Event{Level: "debug", Message: "x"})
	wantErr(t, err, store.ErrInvalid, "debug")
	_, err = s.AddEvent(ctx, store.Event{})
	wantErr(t, err, store.ErrInvalid)
}
