//go:build linux

package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The copy of the store taken before a trial goes back into place, and the
// store the trial migrated is set aside, not lost; without a copy nothing
// moves.
func TestPreTrialCopyAndSwap(t *testing.T) {
	dir := t.TempDir()
	state, before, aside := filepath.Join(dir, "state"), filepath.Join(dir, "before"), filepath.Join(dir, "aside")
	os.MkdirAll(state, 0o700)
	os.WriteFile(filepath.Join(state, "rehost.db"), []byte("schema 4"), 0o600)
	os.WriteFile(filepath.Join(state, "rehost.db-wal"), []byte("wal 4"), 0o600)
	if err := copyPreTrial(state, before); err != nil {
		t.Fatal(err)
	}
	// The trial migrates the store.
	os.WriteFile(filepath.Join(state, "rehost.db"), []byte("schema 5"), 0o600)
	os.Remove(filepath.Join(state, "rehost.db-wal"))
	os.WriteFile(filepath.Join(state, "rehost.db-shm"), []byte("shm 5"), 0o600)

	ok, err := swapInPreTrial(state, before, aside)
	if err != nil || !ok {
		t.Fatalf("swap: %v, %v", ok, err)
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	if read(filepath.Join(state, "rehost.db")) != "schema 4" || read(filepath.Join(state, "rehost.db-wal")) != "wal 4" {
		t.Error("the copy from before the trial is not back in place")
	}
	if _, err := os.Stat(filepath.Join(state, "rehost.db-shm")); !os.IsNotExist(err) {
		t.Error("the migrated store's shared memory file is left beside the old store")
	}
	if read(filepath.Join(aside, "rehost.db")) != "schema 5" || read(filepath.Join(aside, "rehost.db-shm")) != "shm 5" {
		t.Error("the migrated store was not set aside")
	}
	if ok, err := swapInPreTrial(state, before, aside); ok || err != nil {
		t.Errorf("a second swap, without a copy: %v, %v", ok, err)
	}
}
