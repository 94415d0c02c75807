package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

func testLedger(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r1 := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunFailed})).must(t)[0]
	r2 := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]

	snap := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "snapshot", "vm-snapshot", json.RawMessage(`{"name":"rehost-sms-run-1"}`))).must(t)
	other := ok(s.RecordIntent(ctx, r2.ReplicationRunID, "snapshot", "vm-snapshot", nil)).must(t)
	upload := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "stage-disk-0", "multipart-upload", json.RawMessage(`{"key":"k0"}`))).must(t)
	task := ok(s.RecordIntent(ctx, r1.ReplicationRunID, "import", "import-task", json.RawMessage(`{}`))).must(t)
	if !(snap < other && other < upload && upload < task) {
		t.Errorf("ids not increasing: %d %d %d %d", snap, other, upload, task)
	}
	_, err := s.RecordIntent(ctx, "sms-run-missing", "x", "ami", nil)
	wantErr(t, err, store.ErrNotFound, "sms-run-missing")
	_, err = s.RecordIntent(ctx, r1.ReplicationRunID, "x", "ami", json.RawMessage(`{bad`))
	wantErr(t, err, store.ErrInvalid)

	if err := s.RecordCreated(ctx, snap, "snapshot-42", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordCreated(ctx, upload, "upload-abc", json.RawMessage(`{"parts":[]}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateData(ctx, upload, json.RawMessage(`{"parts":[{"n":1,"etag":"e1"}]}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, task); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, snap); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordReleased(ctx, snap); err != nil {
		t.Errorf("releasing twice: %v", err)
	}
	wantErr(t, s.RecordCreated(ctx, snap, "snapshot-43", nil), store.ErrConflict, "released")
	wantErr(t, s.RecordReleased(ctx, 999999), store.ErrNotFound)

	l := ok(s.LedgerForRun(ctx, r1.ReplicationRunID)).must(t)
	if len(l) != 3 || l[0].ID != snap || l[1].ID != upload || l[2].ID != task {
		t.Fatalf("ledger of run 1 = %+v", l)
	}
	if l[0].State != store.LedgerReleased || l[0].ResourceID != "snapshot-42" || string(l[0].Intent) != `{"name":"rehost-sms-run-1"}` || l[0].Step != "snapshot" {
		t.Errorf("snapshot entry = %+v", l[0])
	}
	if l[1].State != store.LedgerCreated || l[1].ResourceID != "upload-abc" || string(l[1].Data) != `{"parts":[{"n":1,"etag":"e1"}]}` || l[1].Kind != "multipart-upload" {
		t.Errorf("upload entry = %+v", l[1])
	}
	if l[2].State != store.LedgerReleased {
		t.Errorf("task entry = %+v", l[2])
	}
	// RecordCreated with nil data keeps stored data.
	if err := s.RecordCreated(ctx, upload, "upload-abc", nil); err != nil {
		t.Fatal(err)
	}
	if e := ok(s.GetLedgerEntry(ctx, upload)).must(t); string(e.Data) != `{"parts":[{"n":1,"etag":"e1"}]}` {
		t.Errorf("data after nil RecordCreated = %s", e.Data)
	}
	un := ok(s.UnreleasedLedger(ctx)).must(t)
	if len(un) != 2 || un[0].ID != other || un[1].ID != upload || un[0].RunID != r2.ReplicationRunID {
		t.Errorf("unreleased = %+v", un)
	}
}

func testHandOver(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	obj := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "s3-object", json.RawMessage(`{"key":"k0"}`))).must(t)
	if err := s.RecordCreated(ctx, obj, "k0", json.RawMessage(`{"size":42}`)); err != nil {
		t.Fatal(err)
	}
	pending := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", nil)).must(t)

	taken := ok(s.HandOver(ctx, obj, "unstage")).must(t)
	if taken.ID <= pending || taken.Step != "unstage" || taken.HandedFrom != obj || taken.Kind != "s3-object" ||
		taken.State != store.LedgerCreated || taken.ResourceID != "k0" || string(taken.Data) != `{"size":42}` || string(taken.Intent) != `{"key":"k0"}` || taken.RunID != r.ReplicationRunID {
		t.Errorf("taken entry = %+v", taken)
	}
	if old := ok(s.GetLedgerEntry(ctx, obj)).must(t); old.State != store.LedgerHandedOver || old.Step != "stage" {
		t.Errorf("entry handed over = %+v", old)
	}
	_, err := s.HandOver(ctx, obj, "other")
	wantErr(t, err, store.ErrConflict, "handed-over")
	// An intent can be handed over too: the taker finds it by name or tag.
	if p := ok(s.HandOver(ctx, pending, "unstage")).must(t); p.State != store.LedgerIntent || p.HandedFrom != pending {
		t.Errorf("intent handed over = %+v", p)
	}
	un := ok(s.UnreleasedLedger(ctx)).must(t)
	if len(un) != 2 || un[0].Step != "unstage" || un[1].Step != "unstage" {
		t.Errorf("unreleased after hand-overs = %+v", un)
	}
	if err := s.RecordReleased(ctx, taken.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.HandOver(ctx, taken.ID, "retention")
	wantErr(t, err, store.ErrConflict, "released")
	_, err = s.HandOver(ctx, 999999, "unstage")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.HandOver(ctx, pending, "")
	wantErr(t, err, store.ErrInvalid)
	if l := ok(s.LedgerForRun(ctx, r.ReplicationRunID)).must(t); len(l) != 4 {
		t.Errorf("ledger = %+v", l)
	}
}

func testLedgerParts(t *testing.T, s store.Store) {
	ctx := context.Background()
	_, job := fixture(t, s)
	r := ok(s.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: job.ReplicationJobID, State: store.RunActive})).must(t)[0]
	up := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", json.RawMessage(`{"disk":0}`))).must(t)
	other := ok(s.RecordIntent(ctx, r.ReplicationRunID, "stage", "multipart-upload", json.RawMessage(`{"disk":1}`))).must(t)
	part := func(n int64) store.LedgerPart {
		return store.LedgerPart{Number: n, Data: json.RawMessage(fmt.Sprintf(`{"etag":"e%d"}`, n))}
	}
	// Parts may be recorded before the upload's id is (a crash between the
	// two loses nothing), out of order, and in batches larger than one
	// statement holds.
	if err := s.RecordParts(ctx, up, []store.LedgerPart{part(3), part(1)}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordCreated(ctx, up, "upload-1", json.RawMessage(`{"partSize":16}`)); err != nil {
		t.Fatal(err)
	}
	var many []store.LedgerPart
	for n := int64(4); n <= 1003; n++ {
		many = append(many, part(n))
	}
	if err := s.RecordParts(ctx, up, append(many, part(2))); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordParts(ctx, other, []store.LedgerPart{part(1)}); err != nil {
		t.Fatal(err)
	}
	// A number recorded again replaces the part (a part uploaded again).
	if err := s.RecordParts(ctx, up, []store.LedgerPart{{Number: 3, Data: json.RawMessage(`{"etag":"again"}`)}}); err != nil {
		t.Fatal(err)
	}
	got := ok(s.LedgerParts(ctx, up)).must(t)
	if len(got) != 1003 {
		t.Fatalf("%d parts, want 1003", len(got))
	}
	for i, p := range got {
		want := string(part(int64(i + 1)).Data)
		if i+1 == 3 {
			want = `{"etag":"again"}`
		}
		if p.Number != int64(i+1) || string(p.Data) != want {
			t.Fatalf("part %d = %d %s, want %s", i, p.Number, p.Data, want)
		}
	}
	if e := ok(s.GetLedgerEntry(ctx, up)).must(t); string(e.Data) != `{"partSize":16}` {
		t.Errorf("entry data = %s: parts must not touch it", e.Data)
	}
	if got := ok(s.LedgerParts(ctx, other)).must(t); len(got) != 1 || got[0].Number != 1 {
		t.Errorf("other entry's parts = %+v", got)
	}

	wantErr(t, s.RecordParts(ctx, up, []store.LedgerPart{{Number: 0, Data: json.RawMessage(`{}`)}}), store.ErrInvalid, "0")
	wantErr(t, s.RecordParts(ctx, up, []store.LedgerPart{{Number: 5, Data: json.RawMessage(`{bad`)}}), store.ErrInvalid, "5")
	wantErr(t, s.RecordParts(ctx, 999999, []store.LedgerPart{part(1)}), store.ErrNotFound)
	// A refused batch stores nothing of itself.
	wantErr(t, s.RecordParts(ctx, up, []store.LedgerPart{part(2000), {Number: -1, Data: json.RawMessage(`{}`)}}), store.ErrInvalid)
	if got := ok(s.LedgerParts(ctx, up)).must(t); len(got) != 1003 {
		t.Errorf("%d parts after a refused batch", len(got))
	}

	// Handing the entry over moves its parts with it.
	taken := ok(s.HandOver(ctx, other, "unstage")).must(t)
	if got := ok(s.LedgerParts(ctx, taken.ID)).must(t); len(got) != 1 || string(got[0].Data) != string(part(1).Data) {
		t.Errorf("parts of the taken entry = %+v", got)
	}
	if got := ok(s.LedgerParts(ctx, other)).must(t); len(got) != 0 {
		t.Errorf("the handed-over entry keeps %d parts", len(got))
	}
	wantErr(t, s.RecordParts(ctx, other, []store.LedgerPart{part(2)}), store.ErrConflict, "handed-over")

	// Releasing drops them; a released entry takes no more.
	if err := s.RecordReleased(ctx, up); err != nil {
		t.Fatal(err)
	}
	if got := ok(s.LedgerParts(ctx, up)).must(t); len(got) != 0 {
		t.Errorf("a released entry keeps %d parts", len(got))
	}
	wantErr(t, s.RecordParts(ctx, up, []store.LedgerPart{part(1)}), store.ErrConflict, "released")
}
