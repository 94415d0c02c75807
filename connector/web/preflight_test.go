package web_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/preflight"
)

// The catalog shows each server's preflight with its findings' codes and
// what to do, and filters by it; a job for a blocked server is refused with
// its blocker next to the server field, one with warnings until they are
// accepted; health shows the account's preflight; "check again" re-runs it.
func TestPreflightInConsole(t *testing.T) {
	const detailed = "distroName='Ubuntu' distroVersion='22.04' prettyName='Ubuntu 22.04.3 LTS'"
	vm := func(name string, f func(*vspheresim.VMSpec)) vspheresim.VMSpec {
		s := vspheresim.VMSpec{Name: name, GuestID: "ubuntu64Guest", PowerOn: true, ToolsRunning: true, CBT: true,
			GuestDetailedData: detailed, Disks: []vspheresim.DiskSpec{{CapacityBytes: 1 << 20}}}
		if f != nil {
			f(&s)
		}
		return s
	}
	h := start(t, apitest.Options{VMs: []vspheresim.VMSpec{
		vm("pf-ready", nil),
		vm("pf-blocked", func(s *vspheresim.VMSpec) {
			s.Disks = append(s.Disks, vspheresim.DiskSpec{CapacityBytes: 1 << 20, Mode: "independent_persistent"})
		}),
		vm("pf-warned", func(s *vspheresim.VMSpec) { s.ToolsRunning, s.GuestDetailedData = false, "" }),
	}})
	b := h.browser()
	b.setup()
	if a := b.submit("/servers", "/servers/import", nil); a.location() != "/servers" {
		t.Fatalf("import: %d %q", a.status, a.location())
	}
	list, err := (&api.Local{D: h.D}).GetServers(context.Background(), &api.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, s := range list.ServerList {
		ids[s.VmServer.VmName] = s.ServerID
		if s.Rehost == nil || s.Rehost.Preflight == nil {
			t.Fatalf("%s has no preflight after the import", s.VmServer.VmName)
		}
	}

	a := b.get("/servers")
	for _, want := range []string{"READY</span>", "BLOCKED</span>", "READY WITH WARNINGS</span>", preflight.CodeDiskIndependent, preflight.CodeQuiesce, "1 blocker"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("the catalog does not show %q:\n%s", want, a.body)
		}
	}
	blocked := b.get("/servers?preflight=" + url.QueryEscape(string(preflight.Blocked)))
	if !strings.Contains(blocked.body, "1 of 3 servers") || !strings.Contains(blocked.body, "pf-blocked") || strings.Contains(blocked.body, "pf-warned") {
		t.Errorf("the catalog filtered to blocked servers:\n%s", blocked.body)
	}

	job := url.Values{"server": {ids["pf-blocked"]}, "frequency": {"12"}, "keep": {"1"}, "license": {"AWS"}}
	if a := b.submit("/jobs/new", "/jobs", job); a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `id="f-server-error"`) ||
		!strings.Contains(a.body, preflight.CodeDiskIndependent) {
		t.Errorf("a job for a blocked server: %d, want its blocker next to the server field\n%s", a.status, a.body)
	}
	job.Set("accept_warnings", "on")
	if a := b.submit("/jobs/new", "/jobs", job); a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, preflight.CodeDiskIndependent) {
		t.Errorf("a job for a blocked server with warnings accepted: %d, want it refused", a.status)
	}
	job.Set("server", ids["pf-warned"])
	job.Del("accept_warnings")
	if a := b.submit("/jobs/new", "/jobs", job); a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, preflight.CodeQuiesce) ||
		!strings.Contains(a.body, `id="f-accept_warnings"`) {
		t.Errorf("a job for a server with warnings, not accepted: %d, want them named and the box to accept them\n%s", a.status, a.body)
	}
	job.Set("accept_warnings", "on")
	if a := b.submit("/jobs/new", "/jobs", job); a.status != http.StatusSeeOther {
		t.Errorf("a job for a server with warnings, accepted: %d\n%s", a.status, a.body)
	}

	st, err := (&api.Local{D: h.D}).GetConnectorStatus(context.Background(), &api.GetConnectorStatusInput{})
	if err != nil || st.Preflight == nil {
		t.Fatalf("the account's preflight: %+v %v", st, err)
	}
	badge := strings.ToUpper(st.Preflight.Status) + "</span>"
	if a := b.get("/health"); !strings.Contains(a.body, "<th scope=\"row\">AWS account preflight</th>") || !strings.Contains(a.body, badge) {
		t.Errorf("health without the account's preflight (%s):\n%s", badge, a.body)
	}
	a = b.submit("/servers", "/servers/preflight", nil)
	if a.location() != "/servers" {
		t.Fatalf("check again: %d %q", a.status, a.location())
	}
	if a := b.get("/servers"); !strings.Contains(html.UnescapeString(a.body), "Checked 3 servers: 1 ready, 1 ready with warnings, 1 blocked.") {
		t.Errorf("check again without its result:\n%s", a.body)
	}
}
