package web

import (
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
)

var funcs = template.FuncMap{
	"when":        when,
	"bytes":       func(n any) string { return humanize.IBytes(toUint(n)) },
	"percent":     percent,
	"field":       field,
	"options":     withOptions,
	"stateClass":  stateClass,
	"vm":          vmOf,
	"duration":    duration,
	"staticURL":   func(name string) string { return "/static/" + name + "?v=" + url.QueryEscape(version.String()) },
	"sourceKinds": func() []sourceKind { return sourceKinds },
	"seconds":     seconds,
	"flashFor":    flashFor,
	"kindField":   kindField,
	"kindLabel":   kindLabel,
	"mib":         func(n int64) int64 { return n << 20 },
	"inc":         func(n int) int { return n + 1 },
	"upper":       strings.ToUpper,
}

func toUint(n any) uint64 {
	switch x := n.(type) {
	case int64:
		return uint64(max(x, 0))
	case uint64:
		return x
	case int:
		return uint64(max(x, 0))
	}
	return 0
}

// when renders a time for JavaScript to localise: UTC, labelled so, in a
// <time> element whose datetime attribute holds the instant.
func when(t any) template.HTML {
	var tt time.Time
	switch x := t.(type) {
	case api.Time:
		tt = x.Time
	case time.Time:
		tt = x
	}
	if tt.IsZero() {
		return "—"
	}
	u := tt.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s">%s UTC</time>`,
		template.HTMLEscapeString(u.Format(time.RFC3339)), template.HTMLEscapeString(u.Format("2006-01-02 15:04:05"))))
}

// percent is done of total in whole percent, 0–100.
func percent(done, total int64) int {
	if total <= 0 {
		return 0
	}
	return int(min(100, max(0, done*100/total)))
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
	}
	return "info"
}

func vmOf(v *api.VmServer) api.VmServer {
	if v == nil {
		return api.VmServer{}
	}
	return *v
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
