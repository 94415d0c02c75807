// Package vmimport holds what EC2 VM Import accepts — the operating systems
// and versions it imports, the boot modes each boots in, and its limits on
// volumes and sizes — as data (rules.json, embedded, with the pages it was
// read from and when), and the one evaluation of an image against it.
//
// Two callers share it so they cannot drift: preflight, which checks a
// server before any byte is staged, and the AWS emulator's import
// acceptance, which refuses the same images at ImportImage. A missing
// rules.json fails the build (go:embed); a malformed one fails every test
// of every package that imports this one, at init, before anything runs.
package vmimport

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

//go:embed rules.json
var rulesJSON []byte

// Boot modes, as ImportImage's BootMode names them.
const (
	BIOS = "legacy-bios"
	UEFI = "uefi"
)

// Platforms.
const (
	Linux   = "Linux"
	Windows = "Windows"
)

// Limits are VM Import's and EBS's size and count limits.
type Limits struct {
	// ImageVolumes is the most disks one ImportImage takes; more are
	// imported one by one with ImportSnapshot.
	ImageVolumes int `json:"imageVolumes"`
	// MBRBootDiskBytes is the largest boot disk an MBR partition table
	// addresses.
	MBRBootDiskBytes int64 `json:"mbrBootDiskBytes"`
	// VolumeMaxBytes is the largest EBS volume an import makes.
	VolumeMaxBytes int64 `json:"volumeMaxBytes"`
}

// Release is one row of the supported list: versions of a system, the
// kernel AWS names for them, and the boot modes VM Import boots them in.
type Release struct {
	// Versions are exact versions ("22.04", "2012 R2") or inclusive
	// ranges of dotted numbers ("7.0-7.9").
	Versions  []string `json:"versions"`
	Kernel    string   `json:"kernel,omitempty"`
	BootModes []string `json:"bootModes"`
}

// System is an operating system VM Import imports some versions of.
type System struct {
	Name     string `json:"name"`
	Platform string `json:"platform"`
	// ID is os-release's ID for Linux ("rhel", "ubuntu"), "windows-server"
	// or "windows".
	ID       string    `json:"id"`
	Releases []Release `json:"releases"`
}

// Rules is the content of rules.json.
type Rules struct {
	About   string   `json:"about"`
	Sources []string `json:"sources"`
	Checked string   `json:"checked"`
	Note    string   `json:"note"`
	Limits  Limits   `json:"limits"`
	Formats struct {
		Image    []string `json:"image"`
		Snapshot []string `json:"snapshot"`
	} `json:"formats"`
	Systems []System `json:"systems"`
}

var rules = mustParse(rulesJSON)

// Get returns the rules. The caller must not change them.
func Get() *Rules { return rules }

func mustParse(b []byte) *Rules {
	r, err := Parse(b)
	if err != nil {
		panic(fmt.Sprintf("vmimport: the embedded rules.json is invalid, fix it before anything can run: %v", err))
	}
	return r
}

// Parse reads and validates a rules document.
func Parse(b []byte) (*Rules, error) {
	var r Rules
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("parse rules: %w", err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(r.Sources) == 0 {
		bad("no sources: say which pages the rules were read from")
	}
	if _, err := parseDate(r.Checked); err != nil {
		bad("checked %q: want the date the sources were read, YYYY-MM-DD", r.Checked)
	}
	if r.Limits.ImageVolumes <= 0 || r.Limits.MBRBootDiskBytes <= 0 || r.Limits.VolumeMaxBytes <= 0 {
		bad("limits: every limit must be positive: %+v", r.Limits)
	}
	if len(r.Formats.Image) == 0 || len(r.Formats.Snapshot) == 0 {
		bad("formats: image and snapshot formats are required")
	}
	ids := map[string]bool{}
	for _, s := range r.Systems {
		if s.ID == "" || s.Name == "" || ids[s.ID] {
			bad("system %q: a name and a unique id are required", s.Name)
		}
		ids[s.ID] = true
		if s.Platform != Linux && s.Platform != Windows {
			bad("system %s: platform %q is not Linux or Windows", s.ID, s.Platform)
		}
		if len(s.Releases) == 0 {
			bad("system %s: no releases", s.ID)
		}
		for _, rel := range s.Releases {
			if len(rel.Versions) == 0 {
				bad("system %s: a release without versions", s.ID)
			}
			for _, v := range rel.Versions {
				if lo, hi, ok := strings.Cut(v, "-"); ok && (numeric(lo) == nil || numeric(hi) == nil || compare(numeric(lo), numeric(hi)) > 0) {
					bad("system %s: version range %q: want LOW-HIGH of dotted numbers, LOW first", s.ID, v)
				}
			}
			if len(rel.BootModes) == 0 {
				bad("system %s %v: no boot modes", s.ID, rel.Versions)
			}
			for _, m := range rel.BootModes {
				if m != BIOS && m != UEFI {
					bad("system %s %v: boot mode %q is not %s or %s", s.ID, rel.Versions, m, BIOS, UEFI)
				}
			}
		}
	}
	if len(r.Systems) == 0 {
		bad("no systems")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &r, nil
}

func parseDate(s string) ([3]int, error) {
	var d [3]int
	p := strings.Split(s, "-")
	if len(p) != 3 || len(p[0]) != 4 || len(p[1]) != 2 || len(p[2]) != 2 {
		return d, errors.New("not YYYY-MM-DD")
	}
	for i := range p {
		n, err := strconv.Atoi(p[i])
		if err != nil {
			return d, err
		}
		d[i] = n
	}
	if d[1] < 1 || d[1] > 12 || d[2] < 1 || d[2] > 31 {
		return d, errors.New("not a date")
	}
	return d, nil
}

// System returns the system of an id, nil when VM Import imports no
// version of it.
func (r *Rules) System(id string) *System {
	for i := range r.Systems {
		if r.Systems[i].ID == id {
			return &r.Systems[i]
		}
	}
	return nil
}

// numeric parses a dotted version ("8.10") into its numbers; nil when it is
// not one.
func numeric(v string) []int {
	if v == "" {
		return nil
	}
	var out []int
	for f := range strings.SplitSeq(v, ".") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil
		}
		out = append(out, n)
	}
	return out
}

func compare(a, b []int) int { return slices.Compare(a, b) }

// Match is how well a version matches a release.
type Match int

const (
	// NoMatch: the version is not in the release.
	NoMatch Match = iota
	// MajorMatch: only the version's leading numbers are known ("12") and
	// some version of the release starts with them ("12.2").
	MajorMatch
	// ExactMatch: the version is one of the release's, or in its range, or
	// a point release of one ("6.10" of "6").
	ExactMatch
)

// match compares a guest version with one entry of Release.Versions.
func match(entry, v string) Match {
	v = strings.TrimSpace(v)
	if strings.EqualFold(entry, v) {
		return ExactMatch
	}
	gv := numeric(v)
	if gv == nil {
		return NoMatch
	}
	lo, hi, isRange := strings.Cut(entry, "-")
	if !isRange {
		hi = lo
	}
	l, h := numeric(lo), numeric(hi)
	if l == nil || h == nil {
		return NoMatch
	}
	// A point release of a single version: "6.10" of "6".
	if !isRange && len(gv) > len(l) && compare(gv[:len(l)], l) == 0 {
		return ExactMatch
	}
	// Within a range, compared at the range's precision.
	if isRange {
		n := min(len(gv), len(l))
		if len(gv) >= len(l) && compare(gv[:len(l)], l) >= 0 && compare(gv[:min(len(gv), len(h))], h) <= 0 {
			return ExactMatch
		}
		if len(gv) < len(l) && compare(gv, l[:n]) >= 0 && compare(gv, h[:min(len(gv), len(h))]) <= 0 {
			return MajorMatch
		}
		return NoMatch
	}
	// "12" known, the release lists "12.2".
	if len(gv) < len(l) && compare(gv, l[:len(gv)]) == 0 {
		return MajorMatch
	}
	return NoMatch
}

// Release returns the release of the system holding version v and how well
// it matched (the best match over the releases, the first of equal ones).
func (s *System) Release(v string) (*Release, Match) {
	var best *Release
	bestM := NoMatch
	for i := range s.Releases {
		for _, e := range s.Releases[i].Versions {
			if m := match(e, v); m > bestM {
				best, bestM = &s.Releases[i], m
			}
		}
	}
	return best, bestM
}

// Versions lists every version the system's releases name, for messages.
func (s *System) Versions() string {
	var out []string
	for _, r := range s.Releases {
		out = append(out, r.Versions...)
	}
	return strings.Join(out, ", ")
}
