// Package preflight checks, before the first byte moves, whether a server
// will migrate and whether the AWS account is ready to take it: from what
// the catalog knows of the VM (guest OS, firmware, disks, snapshots, tools),
// from the boot disk's partition table and file systems where the source
// reads them cheaply (pkg/disk's probes), and against VM Import's rules
// (pkg/vmimport, the ones the AWS emulator enforces at import).
//
// Each finding has a level, a stable code, one sentence and what to do. A
// server with a blocker will fail; one with warnings migrates with a
// caveat the user should accept knowingly; notes are for information.
package preflight

import (
	"cmp"
	"slices"
)

// Level is how much a finding matters.
type Level string

// Levels, most severe first.
const (
	// Blocker: replication would fail (VM Import refuses the image, the
	// source cannot export the disk, the account cannot take it).
	Blocker Level = "blocker"
	// Warning: replication works, with a caveat (crash-consistent copies,
	// full copies where incremental ones were expected).
	Warning Level = "warning"
	// Note: for information.
	Note Level = "note"
)

func (l Level) rank() int {
	switch l {
	case Blocker:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is one result of a check.
type Finding struct {
	Level Level `json:"level"`
	// Code is stable across releases (scripts may match it).
	Code string `json:"code"`
	// Message says what was found, in one sentence.
	Message string `json:"message"`
	// Action says what to do about it (empty for most notes).
	Action string `json:"action,omitempty"`
	// Disk is the disk concerned (its label), where there is one.
	Disk string `json:"disk,omitempty"`
}

// Status sums up findings.
type Status string

// Statuses.
const (
	Ready             Status = "ready"
	ReadyWithWarnings Status = "ready with warnings"
	Blocked           Status = "blocked"
)

// StatusOf is Blocked with any blocker, ReadyWithWarnings with any
// warning, Ready otherwise.
func StatusOf(fs []Finding) Status {
	switch {
	case slices.ContainsFunc(fs, func(f Finding) bool { return f.Level == Blocker }):
		return Blocked
	case slices.ContainsFunc(fs, func(f Finding) bool { return f.Level == Warning }):
		return ReadyWithWarnings
	}
	return Ready
}

// Of returns the findings of a level, in order.
func Of(fs []Finding, l Level) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Level == l {
			out = append(out, f)
		}
	}
	return out
}

// Sort orders findings by level, most severe first, keeping the order of
// equal ones.
func Sort(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int { return cmp.Compare(a.Level.rank(), b.Level.rank()) })
}
