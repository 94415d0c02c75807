package storetest

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// PutPreflights stores a batch in one transaction, or none of it when one
// is refused.
func testPreflightBatches(t *testing.T, s store.Preflights) {
	ctx := context.Background()
	if err := s.PutPreflights(ctx, []store.Preflight{{Subject: "s-1", Status: "ready"}, {Subject: "s-2", Status: "blocked"}}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.PutPreflights(ctx, []store.Preflight{{Subject: "s-3", Status: "ready"}, {Subject: "s-4"}}), store.ErrInvalid, "s-4")
	got := ok(s.ListPreflights(ctx)).must(t)
	if len(got) != 2 || got[0].Subject != "s-1" || got[1].Status != "blocked" || string(got[0].Findings) != "[]" {
		t.Errorf("after a batch and a refused one: %+v", got)
	}
}

func testPreflights(t *testing.T, s store.Preflights) {
	ctx := context.Background()
	_, err := s.GetPreflight(ctx, "s-0123")
	wantErr(t, err, store.ErrNotFound, "s-0123")
	wantErr(t, s.PutPreflight(ctx, store.Preflight{Status: "ready"}), store.ErrInvalid, "subject")
	wantErr(t, s.PutPreflight(ctx, store.Preflight{Subject: "s-0123"}), store.ErrInvalid, "status")
	wantErr(t, s.PutPreflight(ctx, store.Preflight{Subject: "s-0123", Status: "ready", Findings: json.RawMessage("{")}), store.ErrInvalid, "JSON")

	findings := json.RawMessage(`[{"level":"blocker","code":"DISK_SHARED","message":"Disk 2 is shared."}]`)
	if err := s.PutPreflight(ctx, store.Preflight{Subject: "s-0123", Status: "blocked", Findings: findings, CheckedAt: t0}); err != nil {
		t.Fatal(err)
	}
	got := ok(s.GetPreflight(ctx, "s-0123")).must(t)
	if got.Status != "blocked" || !got.CheckedAt.Equal(t0) || !sameJSON(got.Findings, findings) {
		t.Errorf("stored %+v", got)
	}
	// A new check replaces the result whole.
	later := t0.Add(24 * 3600e9)
	if err := s.PutPreflight(ctx, store.Preflight{Subject: "s-0123", Status: "ready", CheckedAt: later}); err != nil {
		t.Fatal(err)
	}
	got = ok(s.GetPreflight(ctx, "s-0123")).must(t)
	if got.Status != "ready" || !got.CheckedAt.Equal(later) || string(got.Findings) != "[]" {
		t.Errorf("replaced by %+v", got)
	}
	if err := s.PutPreflight(ctx, store.Preflight{Subject: store.PreflightAccount, Status: "ready with warnings", Findings: findings}); err != nil {
		t.Fatal(err)
	}
	if a := ok(s.GetPreflight(ctx, store.PreflightAccount)).must(t); a.CheckedAt.IsZero() {
		t.Error("a zero CheckedAt is not set to now")
	}
	l := ok(s.ListPreflights(ctx)).must(t)
	if len(l) != 2 || l[0].Subject != store.PreflightAccount || l[1].Subject != "s-0123" {
		t.Errorf("listed %+v", l)
	}
	if err := s.DeletePreflight(ctx, "s-0123"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePreflight(ctx, "s-0123"); err != nil {
		t.Errorf("deleting a missing result: %v", err)
	}
	_, err = s.GetPreflight(ctx, "s-0123")
	wantErr(t, err, store.ErrNotFound)
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
