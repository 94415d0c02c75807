package app

import (
	"regexp"
	"strings"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The boot check: after a launch, each instance's serial console and
// status checks say whether the migrated server came up — without logging
// in to it. A login prompt, cloud-init's "finished" line or EC2Launch's
// "Windows is Ready to use" is a boot; a firmware or kernel giving up (no
// bootable device, a kernel panic, GRUB's rescue prompt, Windows' stop
// codes), or a failed reachability check with no sign of a boot, is a
// failure, reported with the console's last lines.

// Boot verdicts.
const (
	Booted       = "booted"
	FailedToBoot = "failed to boot"
	NoOutputYet  = "no output yet"
	// Booting: the console shows a boot under way, neither finished nor
	// failed.
	Booting = "booting"
)

// Final reports whether a verdict will not change for this instance.
func Final(verdict string) bool { return verdict == Booted || verdict == FailedToBoot }

var (
	bootedRE = regexp.MustCompile(`(?m)(^\S+ login: *$|Cloud-init v\. \S+ finished at|Windows is Ready to use|EC2Launch.*: Windows is ready)`)
	failedRE = regexp.MustCompile(`(?mi)(No bootable device|No bootable option or device was found|Boot failed|Kernel panic|grub rescue>|` +
		`Operating System not found|Missing operating system|INACCESSIBLE_BOOT_DEVICE|Windows failed to start|` +
		`You are in emergency mode|Give root password for maintenance)`)
)

// TailLines is how many of the console's last lines a verdict keeps.
const TailLines = 12

// Verdict is the boot check's answer for one instance.
type Verdict struct {
	State string
	// Detail is the console line that decided, or why there is none.
	Detail string
	// Tail holds the console's last lines.
	Tail []string
}

// CheckBoot reads one instance's console output and status checks.
func CheckBoot(console string, st awstarget.InstanceStatus) Verdict {
	console = strings.ReplaceAll(console, "\r", "")
	tail := lastLines(console, TailLines)
	if m := failedRE.FindString(console); m != "" {
		return Verdict{State: FailedToBoot, Detail: lineOf(console, m), Tail: tail}
	}
	if m := bootedRE.FindString(console); m != "" {
		return Verdict{State: Booted, Detail: lineOf(console, m), Tail: tail}
	}
	switch {
	case st.State == "terminated" || st.State == "shutting-down":
		return Verdict{State: FailedToBoot, Detail: "the instance is " + st.State + " and its console shows no boot", Tail: tail}
	case strings.TrimSpace(console) == "":
		return Verdict{State: NoOutputYet, Detail: "the console has no output yet (instance " + orUnknown(st.State) + ")"}
	case st.Instance == "impaired":
		return Verdict{State: FailedToBoot, Detail: "the reachability check failed and the console shows no finished boot", Tail: tail}
	}
	return Verdict{State: Booting, Detail: "the console shows a boot under way", Tail: tail}
}

func orUnknown(s string) string {
	if s == "" {
		return "state unknown"
	}
	return s
}

// lineOf is the whole console line holding match.
func lineOf(console, match string) string {
	i := strings.Index(console, match)
	start := strings.LastIndexByte(console[:i], '\n') + 1
	end := strings.IndexByte(console[i:], '\n')
	if end < 0 {
		end = len(console) - i
	}
	return strings.TrimSpace(console[start : i+end])
}

// lastLines returns the last n lines that are not blank.
func lastLines(s string, n int) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, strings.TrimRight(l, " "))
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}
