package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestAccessKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// Two processes creating keys at once lose neither: each CLI process
	// is a Daemon of its own over the same directory.
	d2, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	var wg sync.WaitGroup
	keys := make([]AccessKey, 8)
	for i := range keys {
		wg.Go(func() {
			dd := d
			if i%2 == 1 {
				dd = d2
			}
			k, err := dd.CreateAccessKey(ctx, "k", i == 0)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	listed, err := d.AccessKeys(ctx)
	if err != nil || len(listed) != len(keys) {
		t.Fatalf("listed %d keys (%v), want %d", len(listed), err, len(keys))
	}
	for _, k := range listed {
		if k.Secret != "" {
			t.Error("a listing carries a secret")
		}
	}
	k := keys[0]
	if len(k.ID) != 20 || !strings.HasPrefix(k.ID, "RHK") || len(k.Secret) != 40 || !k.ReadOnly {
		t.Errorf("key %+v", k)
	}
	if got, ok, err := d2.AccessKey(ctx, k.ID); !ok || err != nil || got.Secret != k.Secret {
		t.Errorf("lookup: %v %v", ok, err)
	}
	if _, err := d2.RevokeAccessKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := d.AccessKey(ctx, k.ID); ok {
		t.Error("a revoked key is still accepted by another process's daemon")
	}
	if _, err := d.RevokeAccessKey(ctx, "RHKNOSUCHKEY00000000"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("revoke unknown: %v", err)
	}
	// Sealed at rest.
	db, _ := os.ReadFile(filepath.Join(dir, "rehost.db"))
	wal, _ := os.ReadFile(filepath.Join(dir, "rehost.db-wal"))
	if strings.Contains(string(db)+string(wal), k.Secret) {
		t.Error("an access key's secret is stored in plaintext")
	}
	if s := d.Secrets(ctx); len(s) != len(keys) {
		t.Errorf("Secrets lists %d, want the %d key secrets", len(s), len(keys))
	}
}

func TestOpenExistingCreatesNothing(t *testing.T) {
	ctx := context.Background()
	missing := filepath.Join(t.TempDir(), "x")
	if _, err := OpenExisting(ctx, missing, Options{}); !errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), "rehost register") {
		t.Errorf("missing: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("OpenExisting created the directory")
	}
	dir := t.TempDir()
	d, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if d, err = OpenExisting(ctx, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	d.Close()
}

func TestLockServe(t *testing.T) {
	dir := t.TempDir()
	l, err := LockServe(dir, ServeInfo{PID: 4242, Listen: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockServe(dir, ServeInfo{PID: 1}); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid 4242") {
		t.Errorf("second lock: %v", err)
	}
	if info, ok, err := Serving(dir); !ok || err != nil || info.Listen != "127.0.0.1:1" {
		t.Errorf("Serving: %+v %v %v", info, ok, err)
	}
	l.Release()
	if _, ok, _ := Serving(dir); ok {
		t.Error("still serving after release")
	}
	l, err = LockServe(dir, ServeInfo{PID: 1})
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
}
