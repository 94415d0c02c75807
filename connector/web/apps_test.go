package web_test

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/internal/lab/vspheresim"
)

// upload posts a multipart form of the page at page to action, with its
// CSRF token and one file.
func (b *browser) upload(page, action string, v url.Values, field, name string, content []byte) answer {
	b.h.t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("csrf", b.csrf(page))
	for k, vs := range v {
		for _, x := range vs {
			mw.WriteField(k, x)
		}
	}
	fw, err := mw.CreateFormFile(field, name)
	if err != nil {
		b.h.t.Fatal(err)
	}
	fw.Write(content)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, b.h.URL+action, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

// The application pages without JavaScript: an app created from the form
// (a group naming a server not in the catalog refused next to the
// groups), a rightsizing CSV uploaded as a file (a bad row refused with
// its row, column and value, nothing changed; a good one shown in the
// launch configuration), the template shown and downloaded, and a cutover
// of a server whose AMI holds no operating system: its boot check says
// failed to boot with the console's last lines. Then the app is deleted
// with its launch terminated.
func TestAppPages(t *testing.T) {
	// The source says Ubuntu (so preflight passes); the disk holds no OS.
	vms := []vspheresim.VMSpec{{Name: "data-01", GuestID: "ubuntu64Guest", CPUs: 1, MemoryMiB: 1024, Disks: []vspheresim.DiskSpec{{CapacityBytes: 16 << 20,
		Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 7, 1<<20, 1<<20) }}}}}
	h := start(t, apitest.Options{VMs: vms, ImportMode: "snapshot"})
	ctx := context.Background()
	local := &api.Local{D: h.D}
	b := h.browser()
	b.setup()
	if a := b.submit("/servers", "/servers/import", nil); a.location() != "/servers" {
		t.Fatalf("import: %d %q", a.status, a.location())
	}
	if a := b.get("/apps"); a.status != http.StatusOK || !strings.Contains(a.body, "No application yet") || !strings.Contains(a.body, `href="/apps" aria-current="page"`) {
		t.Fatalf("empty apps page: %d\n%s", a.status, a.body)
	}
	a := b.submit("/apps", "/apps", url.Values{"name": {"archive"}, "groups": {"all: data-01, nowhere-9"}})
	if a.status != http.StatusUnprocessableEntity || !regexp.MustCompile(`id="f-groups-error"[^>]*>.*no server &#34;nowhere-9&#34;`).MatchString(a.body) {
		t.Errorf("a group with an unknown server: %d\n%s", a.status, a.body)
	}
	a = b.submit("/apps", "/apps", url.Values{"name": {"archive"}, "description": {"cold data"}, "groups": {"all: data-01"}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.location(), "/apps/") {
		t.Fatalf("create app: %d %s\n%s", a.status, a.location(), a.body)
	}
	page := a.location()
	appID := strings.TrimPrefix(page, "/apps/")
	a = b.get(page)
	if !strings.Contains(a.body, "Created the application archive: 1 servers in 1 groups") || !strings.Contains(a.body, "READY_FOR_CONFIGURATION") ||
		!strings.Contains(a.body, "No launch configuration yet") {
		t.Errorf("new app page:\n%s", a.body)
	}
	if a := b.get("/apps"); !strings.Contains(a.body, `href="`+page+`"`) || !strings.Contains(a.body, "cold data") {
		t.Errorf("the list does not show the app:\n%s", a.body)
	}

	// Rightsizing: a type the region lacks, then a good CSV.
	a = b.upload(page, page+"/rightsizing", nil, "csv_file", "sizes.csv", []byte("Server,Instance Type,Subnet,Security Groups,Volume Type,Tags\ndata-01,m9.huge,,,gp3,tier=data\n"))
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `row 2, column instance type: &#34;m9.huge&#34;`) || !strings.Contains(a.body, "nothing was changed") {
		t.Errorf("a CSV with an unknown type: %d\n%s", a.status, a.body)
	}
	a = b.upload(page, page+"/rightsizing", nil, "csv_file", "sizes.csv", []byte("Server,Instance Type,Subnet,Security Groups,Volume Type,Tags\ndata-01,t3.small,,,gp3,tier=data\n"))
	if a.status != http.StatusSeeOther {
		t.Fatalf("rightsizing: %d\n%s", a.status, a.body)
	}
	a = b.get(page)
	if !strings.Contains(a.body, "Imported the rightsizing CSV: data-01 t3.small (row 2)") || !strings.Contains(a.body, `<td class="itype">t3.small</td>`) ||
		!strings.Contains(a.body, "tier=data") || strings.Contains(a.body, "No launch configuration yet") {
		t.Errorf("the launch configuration after the CSV:\n%s", a.body)
	}

	// Replicated (through the API: the console has no form for the
	// replication parameters), then the template and the cutover.
	srv, err := local.GetServers(ctx, &api.GetServersInput{})
	if err != nil || len(srv.ServerList) != 1 {
		t.Fatal(err, srv)
	}
	freq, seed := 24, api.At(time.Now().Add(time.Hour))
	if _, err := local.PutAppReplicationConfiguration(ctx, &api.PutAppReplicationConfigurationInput{AppID: appID, ServerGroupReplicationConfigurations: []api.ServerGroupReplicationConfiguration{
		{ServerReplicationConfigurations: []api.ServerReplicationConfiguration{{Server: &srv.ServerList[0], ServerReplicationParameters: &api.ServerReplicationParameters{Frequency: &freq, SeedTime: &seed}}}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := local.StartAppReplication(ctx, &api.AppRef{AppID: appID}); err != nil {
		t.Fatal(err)
	}
	if a := b.submit(page, page+"/replicate", nil); a.status != http.StatusSeeOther {
		t.Fatalf("replicate: %d\n%s", a.status, a.body)
	}
	if a := b.get(page); !strings.Contains(a.body, "Started 1 replication runs") {
		t.Errorf("after replicate:\n%s", a.body)
	}
	waitPage(t, b, page, time.Minute, func(body string) bool { return strings.Contains(body, "REPLICATED") })
	a = b.submit(page, page+"/template", url.Values{"format": {"YAML"}, "do": {"show"}})
	if a.status != http.StatusOK || !regexp.MustCompile(`(?s)<pre class="doc" id="template"[^>]*>[^<]*Default: ami-[0-9a-f]+[^<]*Type: AWS::EC2::Instance`).MatchString(a.body) {
		t.Errorf("the template shown: %d\n%s", a.status, a.body)
	}
	a = b.submit(page, page+"/template", url.Values{"format": {"JSON"}, "do": {"download"}})
	if a.status != http.StatusOK || !strings.Contains(a.header.Get("Content-Disposition"), appID+".template.json") || !strings.HasPrefix(a.body, "{") ||
		!strings.Contains(a.body, `"AWS::EC2::Instance"`) {
		t.Errorf("the template downloaded: %d %v\n%.300s", a.status, a.header, a.body)
	}
	if a := b.submit(page, page+"/launch", url.Values{"kind": {"cutover"}}); a.status != http.StatusSeeOther {
		t.Fatalf("launch: %d\n%s", a.status, a.body)
	}
	body := waitPage(t, b, page, 2*time.Minute, func(body string) bool {
		return strings.Contains(body, "LAUNCH_FAILED") && strings.Contains(body, "failed to boot")
	})
	if !regexp.MustCompile(`(?s)The last lines of data-01's console:.*<pre class="doc console"[^>]*>[^<]*No bootable device\.`).MatchString(body) {
		t.Errorf("no console lines beside the failed boot:\n%s", body)
	}
	if !strings.Contains(body, `/terminate?kind=cutover"`) {
		t.Errorf("no way to terminate the failed cutover:\n%s", body)
	}
	if a := b.get(page + "/terminate?kind=cutover"); !strings.Contains(a.body, "Terminate the cutover of") || !strings.Contains(a.body, "test launch") {
		t.Errorf("terminate confirmation:\n%s", a.body)
	}

	// Deleted with its launch terminated.
	if a := b.get(page + "/delete"); !strings.Contains(a.body, "Delete application") {
		t.Errorf("delete confirmation:\n%s", a.body)
	}
	a = b.submit(page+"/delete", page+"/delete", url.Values{"terminate": {"on"}})
	if a.status != http.StatusSeeOther || a.location() != "/apps" {
		t.Fatalf("delete: %d %s\n%s", a.status, a.location(), a.body)
	}
	if a := b.get("/apps"); !strings.Contains(a.body, "Deleted the application archive") || strings.Contains(a.body, `href="`+page+`"`) {
		t.Errorf("after the deletion:\n%s", a.body)
	}
	for _, s := range h.Peers.AWS.Stacks() {
		if s.Status != "DELETE_COMPLETE" {
			t.Errorf("stack %s left %s", s.Name, s.Status)
		}
	}
	if a := b.get(page); a.status != http.StatusNotFound {
		t.Errorf("a deleted app's page: %d", a.status)
	}
}

// waitPage reloads a page until its body satisfies done.
func waitPage(t *testing.T, b *browser, page string, timeout time.Duration, done func(string) bool) string {
	t.Helper()
	var body string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if body = b.get(page).body; done(body) {
			return body
		}
	}
	t.Fatalf("%s did not come to the state wanted within %s:\n%s", page, timeout, body)
	return ""
}
