package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// UpsertServers stores a batch in one transaction: new and existing
// servers alike, or none when one of them is refused.
func testServerBatches(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc-batch")
	old := ok(s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "vm-1", Name: "web"})).must(t)
	got := ok(s.UpsertServers(ctx, []store.Server{
		{SourceID: src.ID, VMID: "vm-1", Name: "web-renamed", DiskCount: 2},
		{SourceID: src.ID, VMID: "vm-2", Name: "db"},
	})).must(t)
	if len(got) != 2 || got[0].ServerID != old.ServerID || !strings.HasPrefix(got[1].ServerID, "s-") || got[1].ServerID == old.ServerID {
		t.Fatalf("batch upsert = %+v", got)
	}
	if back := ok(s.GetServer(ctx, old.ServerID)).must(t); back.Name != "web-renamed" || back.DiskCount != 2 {
		t.Errorf("updated in a batch: %+v", back)
	}
	_, err := s.UpsertServers(ctx, []store.Server{
		{SourceID: src.ID, VMID: "vm-3", Name: "app"},
		{SourceID: "src-missing", VMID: "vm-4", Name: "lost"},
	})
	wantErr(t, err, store.ErrNotFound, "lost")
	if n := len(ok(s.ListServers(ctx, store.ServerFilter{SourceID: src.ID})).must(t)); n != 2 {
		t.Errorf("a refused batch left %d servers, want the 2 from before", n)
	}
}

func testSources(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newSource(t, s, "vc-a")
	if !strings.HasPrefix(a.ID, "src-") || len(a.ID) != 4+17 {
		t.Errorf("source id %q: want src- and 17 hex digits", a.ID)
	}
	got := ok(s.GetSource(ctx, a.ID)).must(t)
	if got.Name != "vc-a" || !bytes.Equal(got.Secret, []byte{0, 1, 2, 0xff}) || got.Thumbprint != "AA:BB" || got.User != "admin@vsphere.local" || got.Kind != store.SourceVSphere {
		t.Errorf("stored source = %+v", got)
	}
	if !got.CreatedAt.Equal(a.CreatedAt) || got.CreatedAt.IsZero() {
		t.Errorf("created at %v, want %v", got.CreatedAt, a.CreatedAt)
	}
	_, err := s.CreateSource(ctx, store.Source{Kind: store.SourceHyperV, Name: "vc-a"})
	wantErr(t, err, store.ErrConflict, "vc-a")
	_, err = s.CreateSource(ctx, store.Source{Kind: "xen", Name: "x"})
	wantErr(t, err, store.ErrInvalid, "xen")

	b := ok(s.CreateSource(ctx, store.Source{Kind: store.SourceHyperV, Name: "hv"})).must(t)
	upd := ok(s.UpdateSource(ctx, b.ID, func(src *store.Source) error {
		src.Insecure = true
		src.Endpoint = "https://hv:5986"
		src.Options = json.RawMessage(`{"auth":"ntlm"}`)
		src.ID = "tampered"
		return nil
	})).must(t)
	if upd.ID != b.ID || !upd.Insecure {
		t.Errorf("updated source = %+v", upd)
	}
	if got := ok(s.GetSource(ctx, b.ID)).must(t); got.Endpoint != "https://hv:5986" || !got.Insecure || string(got.Options) != `{"auth":"ntlm"}` {
		t.Errorf("stored after update = %+v", got)
	}
	_, err = s.UpdateSource(ctx, b.ID, func(src *store.Source) error { src.Options = json.RawMessage(`{"auth":`); return nil })
	wantErr(t, err, store.ErrInvalid, "options")
	_, err = s.UpdateSource(ctx, b.ID, func(src *store.Source) error { src.Name = "vc-a"; return nil })
	wantErr(t, err, store.ErrConflict)
	list := ok(s.ListSources(ctx)).must(t)
	if len(list) != 2 || list[0].Name != "hv" || list[1].Name != "vc-a" {
		t.Errorf("list = %+v", list)
	}

	newServer(t, s, a, "vm-9")
	wantErr(t, s.DeleteSource(ctx, a.ID), store.ErrConflict, a.ID)
	if err := s.DeleteSource(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSource(ctx, b.ID)
	wantErr(t, err, store.ErrNotFound, b.ID)
	wantErr(t, s.DeleteSource(ctx, b.ID), store.ErrNotFound)
}

func testServers(t *testing.T, s store.Store) {
	ctx := context.Background()
	src := newSource(t, s, "vc")
	first := newServer(t, s, src, "4213-aa")
	if !strings.HasPrefix(first.ServerID, "s-") || len(first.ServerID) != 2+17 {
		t.Errorf("server id %q", first.ServerID)
	}
	again := ok(s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "4213-aa", Name: "renamed", CPUs: 8, MemoryMiB: 16384, DiskCount: 3})).must(t)
	if again.ServerID != first.ServerID {
		t.Fatalf("re-import changed server id %s → %s", first.ServerID, again.ServerID)
	}
	got := ok(s.GetServer(ctx, first.ServerID)).must(t)
	if got.Name != "renamed" || got.CPUs != 8 || got.MemoryMiB != 16384 || got.DiskCount != 3 || got.VMID != "4213-aa" {
		t.Errorf("stored = %+v", got)
	}
	other := newServer(t, s, src, "4213-bb")
	if other.ServerID == first.ServerID {
		t.Fatal("two VMs share a server id")
	}
	src2 := newSource(t, s, "vc2")
	newServer(t, s, src2, "4213-aa") // same VM id, other source: a different server
	if n := len(ok(s.ListServers(ctx, store.ServerFilter{})).must(t)); n != 3 {
		t.Errorf("servers = %d, want 3", n)
	}
	if l := ok(s.ListServers(ctx, store.ServerFilter{SourceID: src.ID})).must(t); len(l) != 2 {
		t.Errorf("servers of source = %d, want 2", len(l))
	}
	_, err := s.UpsertServer(ctx, store.Server{SourceID: "src-missing", VMID: "x"})
	wantErr(t, err, store.ErrNotFound, "src-missing")
	_, err = s.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: "x", Details: "{not json"})
	wantErr(t, err, store.ErrInvalid)
	_, err = s.UpsertServer(ctx, store.Server{SourceID: src.ID})
	wantErr(t, err, store.ErrInvalid)

	job := newJob(t, s, other.ServerID)
	wantErr(t, s.DeleteServer(ctx, other.ServerID), store.ErrConflict, job.ReplicationJobID)
	if err := s.DeleteServer(ctx, first.ServerID); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetServer(ctx, first.ServerID)
	wantErr(t, err, store.ErrNotFound)
}
