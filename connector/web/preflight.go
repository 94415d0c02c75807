package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/preflight"
)

// findingsSummary counts findings by level: "1 blocker, 2 warnings".
func findingsSummary(fs []preflight.Finding) string {
	n := map[preflight.Level]int{}
	for _, f := range fs {
		n[f.Level]++
	}
	var parts []string
	for _, l := range []preflight.Level{preflight.Blocker, preflight.Warning, preflight.Note} {
		switch n[l] {
		case 0:
		case 1:
			parts = append(parts, "1 "+string(l))
		default:
			parts = append(parts, fmt.Sprintf("%d %ss", n[l], l))
		}
	}
	return strings.Join(parts, ", ")
}

// levelClass is a finding's badge.
func levelClass(l preflight.Level) string {
	switch l {
	case preflight.Blocker:
		return "bad"
	case preflight.Warning:
		return "warn"
	}
	return "info"
}

// preflightStatus is what the catalog's filter matches: a preflight
// status, or "unchecked".
func preflightStatus(s api.Server) string {
	if s.Rehost == nil || s.Rehost.Preflight == nil {
		return "unchecked"
	}
	return s.Rehost.Preflight.Status
}

// serversPreflight checks every server of the catalog and the account
// again now.
func (c *Console) serversPreflight(w http.ResponseWriter, r *http.Request, rq *request) error {
	out, err := c.svc.Preflight(r.Context(), &api.PreflightInput{})
	if err != nil {
		var ae *api.Error
		if asAPIError(err, &ae) {
			return c.flashTo(w, r, rq, "/servers", flash{Kind: "error", Target: "preflight", Message: "Preflight failed: " + ae.Message})
		}
		return err
	}
	n := map[string]int{}
	for _, s := range out.Servers {
		n[s.Status]++
	}
	c.log.Info("console: preflight checked", "servers", len(out.Servers), "blocked", n[string(preflight.Blocked)])
	msg := fmt.Sprintf("Checked %d servers: %d ready, %d ready with warnings, %d blocked.", len(out.Servers),
		n[string(preflight.Ready)], n[string(preflight.ReadyWithWarnings)], n[string(preflight.Blocked)])
	if out.Account != nil && out.Account.Status == string(preflight.Blocked) {
		msg += " The AWS account is blocked: see Health."
	}
	return c.flashTo(w, r, rq, "/servers", flash{Kind: "ok", Target: "preflight", Message: msg})
}
