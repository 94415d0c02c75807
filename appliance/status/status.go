// Package status is the appliance's report of itself: which system
// partition runs, whether Secure Boot is on, the key upgrades must be
// signed with, and the last upgrade and how it ended. The appliance's init
// writes it on the data partition; `rehost serve --appliance-status FILE`
// reads it into GetConnectorStatus and the web console, so the API and the
// console say why an upgrade was rolled back.
package status

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Report is the file's content.
type Report struct {
	Version string `json:"version"`
	// System is the system partition running: "A" or "B".
	System string `json:"system"`
	// SecureBoot is what the kernel reported: "enabled", "disabled", or
	// "not UEFI" (a BIOS boot).
	SecureBoot string `json:"secureBoot"`
	// SigningKey is the fingerprint of the release key an upgrade must be
	// signed with; DevKey says it is the public development key.
	SigningKey string   `json:"signingKey"`
	DevKey     bool     `json:"devKey,omitempty"`
	Upgrade    *Upgrade `json:"upgrade,omitempty"`
}

// Upgrade states.
const (
	// Writing: the image is being written into the inactive system. Found
	// at a boot, the write was cut short (Interrupted).
	Writing     = "writing"
	Interrupted = "interrupted"
	// Armed: written and checked; the next boot starts it on trial.
	Armed = "armed"
	// Trying: the new system runs on trial.
	Trying = "trying"
	// Installed: the new system's connector answered; it is the default.
	Installed = "installed"
	// Failed: the new system gave up its trial (its connector did not
	// start); the next boot returns to the previous one.
	Failed = "failed"
	// RolledBack: the previous system runs again and reports why.
	RolledBack = "rolled-back"
)

// Upgrade is the last upgrade.
type Upgrade struct {
	State string `json:"state"`
	From  string `json:"from"` // version upgraded from
	To    string `json:"to"`   // version upgraded to
	// System is the partition the new version went into: "A" or "B".
	System string    `json:"system"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// Read reads the report at path.
func Read(path string) (Report, error) {
	var r Report
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("appliance status %s: %w", path, err)
	}
	return r, nil
}

// Write replaces the report at path atomically.
func Write(path string, r Report) error { return WriteJSON(path, r) }

// WriteJSON replaces path with v as indented JSON, atomically: a power
// loss leaves the old file or the new one. The init keeps its other files
// on the data partition (settings.json) the same way.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
