package preflight

import (
	"regexp"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/vmimport"
)

// Guest is the guest OS as preflight identified it, and from what.
type Guest struct {
	vmimport.OS
	// From says where it was read: "the boot disk", "the guest's own
	// report", "the VM's guest OS setting".
	From string `json:"from,omitempty"`
}

// IdentifyGuest names a VM's OS from the most precise fact there is: the
// boot disk's /etc/os-release, then what the guest reports through the
// platform (vSphere's detailed guest data, Hyper-V's and Azure's OS name
// and version), then the platform's guest OS setting (vSphere's guestId).
// The zero OS when nothing says.
func IdentifyGuest(vm source.VM, boot *disk.BootDisk) Guest {
	if boot != nil {
		switch {
		case boot.Platform == disk.PlatformLinux && boot.OSRelease.ID != "":
			r := boot.OSRelease
			return Guest{vmimport.OS{Platform: vmimport.Linux, ID: r.ID, Version: r.VersionID, Name: r.Title()}, "the boot disk"}
		case boot.Platform == disk.PlatformWindows:
			// Windows's version is in its registry: take the platform's word
			// for it when it says Windows too.
			if g := reported(vm); g.Platform == vmimport.Windows {
				return Guest{g, "the guest's report, Windows on the boot disk"}
			}
			if g := fromGuestID(vm.GuestID); g.Platform == vmimport.Windows {
				return Guest{g, "the VM's guest OS setting, Windows on the boot disk"}
			}
			return Guest{vmimport.OS{Platform: vmimport.Windows, Name: "Windows"}, "the boot disk"}
		}
	}
	if g := reported(vm); g.ID != "" {
		return Guest{g, "the guest's report"}
	}
	if g := fromGuestID(vm.GuestID); g.Platform != "" {
		return Guest{g, "the VM's guest OS setting"}
	}
	if boot != nil && boot.Platform != "" {
		return Guest{vmimport.OS{Platform: boot.Platform, Name: boot.Platform}, "the boot disk"}
	}
	if g := fromText(vm.GuestOS); g.Platform != "" {
		return Guest{g, "the guest's report"}
	}
	return Guest{}
}

// reported is the OS the guest reports: its name, and the version the
// platform gives beside it (a Windows build number names its release).
func reported(vm source.VM) vmimport.OS {
	g := fromText(vm.GuestOS)
	if g.Version != "" || vm.GuestVersion == "" {
		return g
	}
	v := strings.TrimSpace(vm.GuestVersion)
	if g.ID == "windows-server" || g.ID == "windows" {
		v = windowsRelease(g.ID, v)
	}
	if g.ID == "" {
		if g2 := fromText(vm.GuestOS + " " + v); g2.ID != "" {
			return g2
		}
	}
	g.Version = v
	return g
}

// windowsRelease names the release of a Windows build ("10.0.17763").
func windowsRelease(id, build string) string {
	f := strings.Split(build, ".")
	if len(f) < 3 || f[0] != "10" {
		return ""
	}
	servers := map[string]string{"14393": "2016", "17763": "2019", "20348": "2022", "26100": "2025"}
	if id == "windows-server" {
		return servers[f[2]]
	}
	if n := f[2]; n >= "22000" && len(n) == 5 {
		return "11"
	}
	return "10"
}

// textOS recognises an OS in a name as platforms write it ("Microsoft
// Windows Server 2019 (64-bit)", "Ubuntu 22.04.3 LTS", "Red Hat Enterprise
// Linux 8 (64-bit)", "Linux: ubuntu 22.04", "SUSE Linux Enterprise Server
// 15 SP5").
var textOS = []struct {
	re       *regexp.Regexp
	id       string
	platform string
}{
	{regexp.MustCompile(`(?i)windows\s+server\s+(\d{4}(?:\s+r2)?)`), "windows-server", vmimport.Windows},
	{regexp.MustCompile(`(?i)windows\s+server\b`), "windows-server", vmimport.Windows},
	{regexp.MustCompile(`(?i)windows\s+(7|8\.1|8|10|11)\b`), "windows", vmimport.Windows},
	{regexp.MustCompile(`(?i)ubuntu(?:\s+linux)?\s*(\d+\.\d+)?`), "ubuntu", vmimport.Linux},
	{regexp.MustCompile(`(?i)(?:red\s*hat\s+enterprise\s+linux|\brhel)\s*(?:server\s*)?(\d+(?:\.\d+)?)?`), "rhel", vmimport.Linux},
	{regexp.MustCompile(`(?i)centos(?:\s+linux)?(?:\s+stream)?\s*(\d+(?:\.\d+)*)?`), "centos", vmimport.Linux},
	{regexp.MustCompile(`(?i)rocky(?:\s+linux)?\s*(\d+(?:\.\d+)?)?`), "rocky", vmimport.Linux},
	{regexp.MustCompile(`(?i)alma\s*linux\s*(\d+(?:\.\d+)?)?`), "almalinux", vmimport.Linux},
	{regexp.MustCompile(`(?i)oracle\s+linux\s*(?:server\s*)?(\d+(?:\.\d+)?)?`), "ol", vmimport.Linux},
	{regexp.MustCompile(`(?i)debian(?:\s+gnu/linux)?\s*(\d+(?:\.\d+)*)?`), "debian", vmimport.Linux},
	{regexp.MustCompile(`(?i)(?:suse\s+linux\s+enterprise(?:\s+server)?|\bsles)\s*(\d+(?:\s*sp\d+)?)?`), "sles", vmimport.Linux},
	{regexp.MustCompile(`(?i)amazon\s+linux\s*(\d+)?`), "amzn", vmimport.Linux},
	{regexp.MustCompile(`(?i)fedora(?:\s+linux)?\s*(\d+)?`), "fedora", vmimport.Linux},
	{regexp.MustCompile(`(?i)freebsd\s*(\d+(?:\.\d+)?)?`), "freebsd", ""},
}

var spRE = regexp.MustCompile(`(?i)^(\d+)\s*sp(\d+)$`)

func fromText(s string) vmimport.OS {
	s = strings.TrimSpace(s)
	if s == "" {
		return vmimport.OS{}
	}
	for _, t := range textOS {
		m := t.re.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		v := ""
		if len(m) > 1 {
			v = strings.TrimSpace(m[1])
		}
		if sp := spRE.FindStringSubmatch(v); sp != nil {
			v = sp[1] + "." + sp[2] // SLES 15 SP5 is os-release's 15.5
		}
		if t.id == "windows-server" {
			v = strings.Join(strings.Fields(strings.ToUpper(v)), " ") // "2012 r2" → "2012 R2"
		}
		return vmimport.OS{Platform: t.platform, ID: t.id, Version: v, Name: s}
	}
	switch l := strings.ToLower(s); {
	case strings.HasPrefix(l, "windows") || strings.Contains(l, "microsoft windows"):
		return vmimport.OS{Platform: vmimport.Windows, Name: s}
	case strings.HasPrefix(l, "linux") || strings.Contains(l, "linux"):
		return vmimport.OS{Platform: vmimport.Linux, Name: s}
	}
	return vmimport.OS{}
}

// vSphere guest ids: the family and, where the id says it, the version.
var guestIDs = []struct {
	re           *regexp.Regexp
	id, platform string
	version      string // "$1": the id's number
}{
	{regexp.MustCompile(`^windows9Server64Guest$`), "windows-server", vmimport.Windows, "2016"},
	{regexp.MustCompile(`^windows2019srv_64Guest$`), "windows-server", vmimport.Windows, "2019"},
	{regexp.MustCompile(`^windows2019srvNext_64Guest$`), "windows-server", vmimport.Windows, "2022"},
	{regexp.MustCompile(`^windows2022srvNext_64Guest$`), "windows-server", vmimport.Windows, "2025"},
	{regexp.MustCompile(`^windows8Server64Guest$`), "windows-server", vmimport.Windows, "2012"},
	{regexp.MustCompile(`^windows7Server64Guest$`), "windows-server", vmimport.Windows, "2008 R2"},
	{regexp.MustCompile(`^winLonghorn(64)?Guest$`), "windows-server", vmimport.Windows, "2008"},
	{regexp.MustCompile(`^winNet\w*Guest$`), "windows-server", vmimport.Windows, "2003"},
	{regexp.MustCompile(`^windows11_64Guest$`), "windows", vmimport.Windows, "11"},
	{regexp.MustCompile(`^windows9(_64)?Guest$`), "windows", vmimport.Windows, "10"},
	{regexp.MustCompile(`^windows8(_64)?Guest$`), "windows", vmimport.Windows, "8"},
	{regexp.MustCompile(`^windows7(_64)?Guest$`), "windows", vmimport.Windows, "7"},
	{regexp.MustCompile(`^ubuntu(64)?Guest$`), "ubuntu", vmimport.Linux, ""},
	{regexp.MustCompile(`^rhel(\d+)(_64)?Guest$`), "rhel", vmimport.Linux, "$1"},
	{regexp.MustCompile(`^centos(\d+)(_64)?Guest$`), "centos", vmimport.Linux, "$1"},
	{regexp.MustCompile(`^centos(64)?Guest$`), "centos", vmimport.Linux, ""},
	{regexp.MustCompile(`^debian(\d+)(_64)?Guest$`), "debian", vmimport.Linux, "$1"},
	{regexp.MustCompile(`^sles(\d+)(_64)?Guest$`), "sles", vmimport.Linux, "$1"},
	{regexp.MustCompile(`^oracleLinux(\d+)(_64)?Guest$`), "ol", vmimport.Linux, "$1"},
	{regexp.MustCompile(`^rockylinux_64Guest$`), "rocky", vmimport.Linux, ""},
	{regexp.MustCompile(`^almalinux_64Guest$`), "almalinux", vmimport.Linux, ""},
	{regexp.MustCompile(`^amazonlinux2_64Guest$`), "amzn", vmimport.Linux, "2"},
	{regexp.MustCompile(`^amazonlinux3_64Guest$`), "amzn", vmimport.Linux, "2023"},
	{regexp.MustCompile(`^fedora(64)?Guest$`), "fedora", vmimport.Linux, ""},
	{regexp.MustCompile(`^freebsd\d*(_64)?Guest$`), "freebsd", "", ""},
	{regexp.MustCompile(`^solaris\d*(_64)?Guest$`), "solaris", "", ""},
	{regexp.MustCompile(`^darwin\d*(_64)?Guest$`), "darwin", "", ""},
	{regexp.MustCompile(`^(other\w*Linux\w*|genericLinux)Guest$`), "", vmimport.Linux, ""},
}

func fromGuestID(id string) vmimport.OS {
	for _, g := range guestIDs {
		m := g.re.FindStringSubmatchIndex(id)
		if m == nil {
			continue
		}
		v := string(g.re.ExpandString(nil, g.version, id, m))
		return vmimport.OS{Platform: g.platform, ID: g.id, Version: v, Name: id}
	}
	return vmimport.OS{}
}
