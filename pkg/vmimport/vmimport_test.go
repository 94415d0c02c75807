package vmimport

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// The embedded list is the one every caller reads: it parses, says where
// it comes from, and holds the systems the demo's guests run.
func TestEmbeddedRules(t *testing.T) {
	r := Get()
	if r.Checked == "" || len(r.Sources) == 0 || !strings.HasPrefix(r.Sources[0], "https://docs.aws.amazon.com/vm-import/") {
		t.Fatalf("rules without their source and date: %q %v", r.Checked, r.Sources)
	}
	if r.Limits.ImageVolumes != 21 || r.Limits.MBRBootDiskBytes != 2<<40 || r.Limits.VolumeMaxBytes != 16<<40 {
		t.Fatalf("limits %+v", r.Limits)
	}
	for _, c := range []struct {
		id, version string
		modes       string
	}{
		{"ubuntu", "22.04", "legacy-bios uefi"}, {"debian", "12", "legacy-bios uefi"}, {"rocky", "8.9", "legacy-bios uefi"},
		{"rhel", "8", "legacy-bios uefi"}, {"windows-server", "2019", "legacy-bios uefi"}, {"windows-server", "2012 R2", "legacy-bios"},
		{"centos", "6.5", "legacy-bios"},
	} {
		if got := strings.Join(r.BootModes(OS{ID: c.id, Version: c.version}), " "); got != c.modes {
			t.Errorf("%s %s boots in %q, want %q", c.id, c.version, got, c.modes)
		}
	}
}

// A malformed rules document is refused with what is wrong, so a bad edit
// of rules.json fails the tests (and the init of every importer) instead of
// a run.
func TestParseRefusesMalformed(t *testing.T) {
	good := string(rulesJSON)
	for _, c := range []struct{ name, doc, want string }{
		{"not json", "{", "parse rules"},
		{"unknown field", strings.Replace(good, `"limits"`, `"limitz": {}, "limits"`, 1), "unknown field"},
		{"no date", strings.Replace(good, `"checked": "2026-12-06"`, `"checked": "recently"`, 1), "checked"},
		{"bad boot mode", strings.Replace(good, `"bootModes": ["legacy-bios"]}`, `"bootModes": ["bios"]}`, 1), "boot mode \"bios\""},
		{"bad range", strings.Replace(good, `"7.0-7.9"`, `"7.9-7.0"`, 1), "version range"},
		{"zero limit", strings.Replace(good, `"imageVolumes": 21`, `"imageVolumes": 0`, 1), "limits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.doc == good {
				t.Fatal("the test's edit did not apply")
			}
			if _, err := Parse([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestVersionMatch(t *testing.T) {
	for _, c := range []struct {
		entry, v string
		want     Match
	}{
		{"22.04", "22.04", ExactMatch}, {"22.04", "22.10", NoMatch}, {"6", "6.10", ExactMatch}, {"6", "7", NoMatch},
		{"7.0-7.9", "7.4", ExactMatch}, {"7.0-7.9", "7.9.2009", ExactMatch}, {"7.0-7.9", "8.0", NoMatch}, {"7.0-7.9", "7", MajorMatch},
		{"8.0-8.10", "8.9", ExactMatch}, {"8.0-8.10", "8.11", NoMatch}, {"12.2", "12", MajorMatch}, {"12.2", "12.2", ExactMatch},
		{"2012 R2", "2012 r2", ExactMatch}, {"2012 R2", "2012", NoMatch}, {"6.0.0-6.0.8", "6.0.8", ExactMatch}, {"5.1-5.11", "", NoMatch},
	} {
		if got := match(c.entry, c.v); got != c.want {
			t.Errorf("match(%q, %q) = %d, want %d", c.entry, c.v, got, c.want)
		}
	}
}

func rules1(vs []Violation) string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s@%d", v.Rule, v.Disk))
	}
	return strings.Join(out, " ")
}

// Each rule, alone, on an image that breaks only it.
func TestCheck(t *testing.T) {
	r := Get()
	const gib = int64(1) << 30
	mbr := &disk.BootDisk{Table: disk.PartitionTable{Style: disk.StyleMBR, Partitions: []disk.Partition{{Offset: 1 << 20, Size: gib}}},
		FileSystems: []string{disk.FSExt4}, BIOS: true, Platform: disk.PlatformLinux, SystemFS: disk.FSExt4}
	gpt := &disk.BootDisk{Table: disk.PartitionTable{Style: disk.StyleGPT, Partitions: []disk.Partition{{Offset: 1 << 20, Size: gib, TypeGUID: disk.GPTTypeESP}}},
		FileSystems: []string{disk.FSFAT, disk.FSExt4}, UEFI: true, Platform: disk.PlatformLinux, SystemFS: disk.FSExt4}
	noOS := &disk.BootDisk{Table: mbr.Table, FileSystems: []string{disk.FSExt4}, BIOS: true}
	blank := &disk.BootDisk{Table: mbr.Table, FileSystems: []string{""}, BIOS: true}
	luks := &disk.BootDisk{Table: gpt.Table, FileSystems: []string{disk.FSFAT, disk.FSLUKS}, UEFI: true}
	ubuntu := OS{Platform: Linux, ID: "ubuntu", Version: "22.04"}
	many := make([]int64, 22)
	for i := range many {
		many[i] = gib
	}
	for _, c := range []struct {
		name string
		img  Image
		want string
	}{
		{"ready", Image{OS: ubuntu, BootMode: BIOS, Disks: []int64{8 * gib}, Boot: mbr}, ""},
		{"ready uefi", Image{OS: ubuntu, BootMode: UEFI, Disks: []int64{8 * gib}, Boot: gpt}, ""},
		{"nothing known", Image{Disks: []int64{gib}}, ""},
		{"22 disks", Image{OS: ubuntu, BootMode: BIOS, Disks: many}, "volumes@-1"},
		{"22 disks one by one", Image{OS: ubuntu, BootMode: BIOS, Disks: many, Snapshot: true}, ""},
		{"17 TiB", Image{OS: ubuntu, Disks: []int64{gib, 17 << 40}}, "volume-size@1"},
		{"no table", Image{OS: ubuntu, Disks: []int64{gib}, BootErr: fmt.Errorf("x: %w", disk.ErrNoPartitionTable)}, "partitions@0"},
		{"unreadable", Image{OS: ubuntu, Disks: []int64{gib}, BootErr: fmt.Errorf("connection reset")}, ""},
		{"blank", Image{Disks: []int64{gib}, Boot: blank}, "partitions@0"},
		{"uefi on mbr", Image{OS: ubuntu, BootMode: UEFI, Disks: []int64{gib}, Boot: mbr}, "boot-table@0"},
		{"bios on gpt", Image{OS: ubuntu, BootMode: BIOS, Disks: []int64{gib}, Boot: gpt}, "boot-table@0"},
		{"3 TiB mbr", Image{OS: ubuntu, BootMode: BIOS, Disks: []int64{3 << 40}, Boot: mbr}, "mbr-boot-disk-size@0"},
		{"3 TiB gpt", Image{OS: ubuntu, BootMode: UEFI, Disks: []int64{3 << 40}, Boot: gpt}, ""},
		{"no os", Image{Disks: []int64{gib}, Boot: noOS}, "os-missing@0"},
		{"luks root", Image{BootMode: UEFI, Disks: []int64{gib}, Boot: luks}, "encrypted@0"},
		{"freebsd", Image{OS: OS{ID: "freebsd", Version: "14.0"}, Disks: []int64{gib}}, "os@-1"},
		{"ubuntu 10.04", Image{OS: OS{ID: "ubuntu", Version: "10.04"}, Disks: []int64{gib}}, "os-version@-1"},
		{"2012 R2 uefi", Image{OS: OS{ID: "windows-server", Version: "2012 R2"}, BootMode: UEFI, Disks: []int64{gib}}, "boot-mode@-1"},
		{"2019 uefi", Image{OS: OS{ID: "windows-server", Version: "2019"}, BootMode: UEFI, Disks: []int64{gib}}, ""},
		{"rhel uefi, version unknown", Image{OS: OS{ID: "rhel"}, BootMode: UEFI, Disks: []int64{gib}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			vs := r.Check(c.img)
			if got := rules1(vs); got != c.want {
				t.Fatalf("violations %q (%v), want %q", got, vs, c.want)
			}
			for _, v := range vs {
				if v.Message == "" {
					t.Errorf("%s without a message", v.Rule)
				}
			}
		})
	}
}
