package web

import (
	"cmp"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/app"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
)

// staticURL is a static file's address; the version in it makes a new
// release fetch the file anew.
func staticURL(name string) templ.SafeURL {
	return templ.SafeURL("/static/" + name + "?v=" + url.QueryEscape(version.String()))
}

func iec[N int64 | uint64 | int](n N) string { return humanize.IBytes(uint64(max(n, 0))) }

// The addresses of the console's objects: each by its id, escaped, never
// by a name a user chose.
func jobURL(id string) templ.SafeURL    { return templ.SafeURL("/jobs/" + url.PathEscape(id)) }
func runURL(id string) templ.SafeURL    { return templ.SafeURL("/runs/" + url.PathEscape(id)) }
func sourceURL(id string) templ.SafeURL { return templ.SafeURL("/sources/" + url.PathEscape(id)) }
func keyURL(id string) templ.SafeURL    { return templ.SafeURL("/keys/" + url.PathEscape(id)) }
func appURL(id string) templ.SafeURL    { return templ.SafeURL("/apps/" + url.PathEscape(id)) }
func memberURL(id string) templ.SafeURL { return templ.SafeURL("/fleet/" + url.PathEscape(id)) }

// orDash is a value, or a dash when there is none.
func orDash(s string) string { return cmp.Or(s, "—") }

func urlQuery(s string) string { return url.QueryEscape(s) }

// wizardPath is the address of a wizard step when the page is shown in the
// wizard, else "".
func wizardPath(w *wizardView, step string) string {
	if w == nil {
		return ""
	}
	return "/wizard/" + step
}

// percent is done of total in whole percent, 0–100.
func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	return int(min(100, max(0, done*100/total)))
}

func diskID(d *runView, disk int) string {
	return fmt.Sprintf("disk-%s-%d", d.Run.ReplicationRunID, disk)
}

func diskPercent(k daemon.DiskProgress) int {
	if k.Staged {
		return 100
	}
	return percent(k.Sent, cmp.Or(k.Total, k.Capacity))
}

// diskLabel says where a disk of a run stands.
func diskLabel(d *runView, k daemon.DiskProgress) string {
	s := fmt.Sprintf("Disk %d", k.Disk+1)
	if k.Capacity > 0 {
		s += " (" + iec(k.Capacity) + ")"
	}
	total := cmp.Or(k.Total, k.Capacity)
	switch {
	case k.Staged:
		return s + ": uploaded, a " + iec(k.Sent) + " image"
	case k.Sent > 0:
		return fmt.Sprintf("%s: %d%% — %s of %s", s, percent(k.Sent, total), iec(k.Sent), iec(total))
	case d.Final:
		return s + ": not uploaded"
	}
	return s + ": waiting"
}

// failureText says in which step a run failed, and why.
func failureText(d *runView) string {
	if d.Failed == "" {
		return d.Run.StatusMessage
	}
	return "In the step “" + cmp.Or(d.FailedTitle, d.Failed) + "”: " + d.Run.StatusMessage
}

func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// stateClass is the badge style of a job or run state.
func stateClass(state string) string {
	switch state {
	case string(store.JobActive), string(store.RunCompleted), "OK":
		return "ok"
	case string(store.JobFailed), string(store.JobPausedOnFailure), string(store.JobFailing), "ERROR":
		return "bad"
	case string(store.JobPaused), string(store.RunMissed), string(store.JobDeleting), string(store.JobDeleted), "WARN":
		return "warn"
	// An application's rolled-up statuses (SMS's), a launch's states and a
	// server's boot check.
	case "REPLICATED", "READY_FOR_LAUNCH", "LAUNCHED", "VALIDATED", app.Booted, "passed", api.ConnectorHealthy:
		return "ok"
	case "READY_FOR_CONFIGURATION", "CONFIGURATION_INVALID", "TERMINATED", app.NoOutputYet, api.ConnectorUnhealthy:
		return "warn"
	case app.FailedToBoot:
		return "bad"
	}
	if strings.Contains(state, "FAILED") {
		return "bad"
	}
	return "info"
}

func vmOf(v *api.VmServer) api.VmServer {
	if v == nil {
		return api.VmServer{}
	}
	return *v
}

// serverChoice names a server in the new job's server list.
func serverChoice(s api.Server) string {
	vm := vmOf(s.VmServer)
	if s.Rehost != nil {
		return fmt.Sprintf("%s (%s, %d disks)", vm.VmName, vm.VmManagerName, s.Rehost.DiskCount)
	}
	return fmt.Sprintf("%s (%s)", vm.VmName, vm.VmManagerName)
}

func instanceChoice(onEC2 bool) string {
	s := "The instance role of this EC2 instance, or the default credential chain"
	if onEC2 {
		s += " — this appliance runs in EC2"
	}
	return s
}

func seconds(s float64) string { return duration(time.Duration(s * float64(time.Second))) }

// flashFor picks the messages that belong next to one element.
func flashFor(fs []flash, target string) []flash {
	var out []flash
	for _, f := range fs {
		if f.Target == target {
			out = append(out, f)
		}
	}
	return out
}

// scheduleText says how often a job runs, with a comma when its next run
// follows.
func scheduleText(j api.ReplicationJob) string {
	s := "runs once"
	if !j.RunOnce {
		s = "every " + jobEvery(j)
	}
	if !j.NextReplicationRunStartTime.IsZero() {
		s += ","
	}
	return s
}

// refreshIf is a page's reload interval without JavaScript: every 5 s
// while it shows a live run.
func refreshIf(live bool) int {
	if live {
		return 5
	}
	return 0
}

// stageTitle is a step's title from the step table.
func stageTitle(name string) string { return cmp.Or(replication.StepInfo(name).Title, name) }

// stageText is where a live run stands, in words: its step's title from
// the step table and the step's own progress ("VM Import · 2% validating"),
// or where it stands in the queue for VM Import slots.
func stageText(r api.ReplicationRun) string {
	if r.StageDetails == nil || r.StageDetails.Stage == "" {
		return ""
	}
	t := replication.StepInfo(r.StageDetails.Stage).Title
	if r.Rehost != nil && r.Rehost.Progress != nil && r.Rehost.Progress.SlotWait != nil {
		return t + " · " + r.Rehost.Progress.SlotWait.String()
	}
	if p := strings.TrimSpace(r.StageDetails.StageProgress); p != "" {
		t += " · " + p
	}
	return t
}

// nameHint says what a name may be, from its rules.
var nameHint = fmt.Sprintf("How this console and the CLI call the source, e.g. vc1: %s, at most %d.", limit.SourceName.Chars(), limit.SourceName.Max)

// timePart is a piece of a message: text, or an instant written in it.
type timePart struct {
	text string
	at   time.Time
}

var rfc3339 = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`)

// splitTimes cuts a message around the RFC 3339 instants in it.
func splitTimes(msg string) []timePart {
	var out []timePart
	for {
		loc := rfc3339.FindStringIndex(msg)
		if loc == nil {
			break
		}
		t, err := time.Parse(time.RFC3339Nano, msg[loc[0]:loc[1]])
		if err != nil {
			out = append(out, timePart{text: msg[:loc[1]]})
		} else {
			if loc[0] > 0 {
				out = append(out, timePart{text: msg[:loc[0]]})
			}
			out = append(out, timePart{at: t})
		}
		msg = msg[loc[1]:]
	}
	if msg != "" {
		out = append(out, timePart{text: msg})
	}
	return out
}
