package web_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/replication"
)

// The dashboard's forms, without JavaScript (plain HTTP as a browser with
// scripts off sends it): a job created, run, paused, resumed, edited (its
// errors next to the field) and deleted with its AMIs; a source that jobs
// use refused removal; the support bundle; an API key revoked.
func TestDashboardForms(t *testing.T) {
	h := start(t, apitest.Options{})
	ctx := context.Background()
	b := h.browser()
	b.setup()
	if a := b.submit("/servers", "/servers/import", nil); a.location() != "/servers" {
		t.Fatalf("import: %d %q", a.status, a.location())
	}
	a := b.get("/servers?q=db-01")
	if !strings.Contains(a.body, "1 of 3 servers") || !strings.Contains(a.body, "Imported 3 servers") {
		t.Errorf("servers filtered by name:\n%s", a.body)
	}
	list, err := (&api.Local{D: h.D}).GetServers(ctx, &api.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	var db string
	for _, s := range list.ServerList {
		if s.VmServer.VmName == "db-01" {
			db = s.ServerID
		}
	}
	seed := time.Now().Add(2 * time.Hour).UTC().Format("2006-01-02T15:04")
	a = b.submit("/jobs/new", "/jobs", url.Values{"server": {db}, "frequency": {"12"}, "keep": {"1"}, "license": {"BYOL"}, "seed": {seed}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("create job: %d\n%s", a.status, a.body)
	}
	job := strings.TrimPrefix(a.location(), "/jobs/")
	page := "/jobs/" + job
	if a := b.get(page); !strings.Contains(a.body, seed[:10]) || !strings.Contains(a.body, "BYOL") {
		t.Errorf("job page without its settings:\n%s", a.body)
	}
	if a := b.submit("/jobs/new", "/jobs", url.Values{"server": {db}, "frequency": {"12"}, "keep": {"1"}}); a.status != http.StatusUnprocessableEntity ||
		!strings.Contains(a.body, `id="f-server-error"`) {
		t.Errorf("a second job for the server: %d, want its error next to the server field", a.status)
	}
	if a := b.submit(page, page+"/start", nil); a.location() != page {
		t.Fatalf("start: %d %q", a.status, a.location())
	}
	run := waitRun(t, h, job)
	if run.State != "COMPLETED" || run.AmiID == "" {
		t.Fatalf("run %s ended %s: %s", run.ReplicationRunID, run.State, run.StatusMessage)
	}
	// Without JavaScript the run page refreshes itself while live, and
	// shows the AMI once done.
	if a := b.get("/runs/" + run.ReplicationRunID); !strings.Contains(a.body, run.AmiID) || !strings.Contains(a.body, "data-final") {
		t.Errorf("completed run page:\n%s", a.body)
	} else if strings.Contains(a.body, "Turn on change tracking") {
		t.Errorf("a full run's page lists the incremental steps:\n%s", a.body)
	}

	for _, step := range []struct{ action, state string }{{"pause", "PAUSED"}, {"resume", "ACTIVE"}} {
		if a := b.submit(page, page+"/"+step.action, nil); a.location() != page {
			t.Fatalf("%s: %d", step.action, a.status)
		}
		if j := getJob(t, h, job); j.State != step.state {
			t.Errorf("after %s the job is %s, want %s", step.action, j.State, step.state)
		}
	}
	if a := b.submit(page+"/edit", page, url.Values{"frequency": {"30"}, "keep": {"2"}, "license": {"AWS"}}); a.status != http.StatusUnprocessableEntity ||
		!strings.Contains(a.body, `id="f-frequency-error"`) || !strings.Contains(a.body, "from 1 to 24") {
		t.Errorf("edit with frequency 30: %d", a.status)
	}
	if a := b.submit(page+"/edit", page, url.Values{"frequency": {"6"}, "keep": {"2"}, "license": {"AWS"}, "description": {"nightly"}}); a.location() != page {
		t.Fatalf("edit: %d\n%s", a.status, a.body)
	}
	if j := getJob(t, h, job); j.Frequency != 6 || j.NumberOfRecentAmisToKeep != 2 || j.Description != "nightly" || j.LicenseType != "AWS" {
		t.Errorf("edited job: %+v", j)
	}

	srcs, err := (&api.Local{D: h.D}).ListSources(ctx, &api.ListSourcesInput{})
	if err != nil || len(srcs.Sources) != 1 {
		t.Fatalf("sources: %v %v", srcs, err)
	}
	remove := "/sources/" + srcs.Sources[0].SourceID + "/remove"
	if a := b.get("/sources/" + srcs.Sources[0].Name + "/remove"); a.status != http.StatusNotFound {
		t.Errorf("a source addressed by its name: %d, want 404 (sources are addressed by id)", a.status)
	}
	if a := b.submit(remove, remove, nil); a.status != http.StatusBadRequest || !strings.Contains(a.body, "job") {
		t.Errorf("removing a source jobs use: %d", a.status)
	}

	if a := b.get(page + "/delete"); !strings.Contains(a.body, run.AmiID) || !strings.Contains(a.body, "Also delete its AMIs") {
		t.Errorf("delete page:\n%s", a.body)
	}
	if a := b.submit(page+"/delete", page+"/delete", url.Values{"delete_amis": {"on"}}); a.location() != "/jobs" {
		t.Fatalf("delete: %d\n%s", a.status, a.body)
	}
	if j := getJob(t, h, job); j.State != "DELETED" {
		t.Errorf("deleted job is %s", j.State)
	}
	tgt, err := h.D.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if imgs, err := tgt.FindImages(ctx, map[string]string{replication.TagJob: job}); err != nil || len(imgs) != 0 {
		t.Errorf("AMIs left after deleting the job with them: %v %v", imgs, err)
	}

	if a := b.get("/support/download"); a.status != http.StatusOK || a.header.Get("Content-Type") != "application/zip" || !strings.HasPrefix(a.body, "PK") {
		t.Errorf("support bundle: %d %s", a.status, a.header.Get("Content-Type"))
	}

	keys, _ := h.D.AccessKeys(ctx)
	id := keys[0].ID
	if a := b.submit("/keys/"+id+"/revoke", "/keys/"+id+"/revoke", nil); a.location() != "/keys" {
		t.Fatalf("revoke: %d", a.status)
	}
	if _, ok, _ := h.D.AccessKey(ctx, id); ok {
		t.Error("the revoked key still works")
	}
	if a := b.get("/keys"); !strings.Contains(a.body, "revoked") {
		t.Error("the key list does not show the revocation")
	}
}

func getJob(t *testing.T, h *harness, id string) api.ReplicationJob {
	t.Helper()
	out, err := (&api.Local{D: h.D}).GetReplicationJobs(context.Background(), &api.GetReplicationJobsInput{ReplicationJobID: id})
	if err != nil {
		t.Fatal(err)
	}
	return out.ReplicationJobList[0]
}

// waitRun waits for the job's latest run to end.
func waitRun(t *testing.T, h *harness, job string) api.ReplicationRun {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := (&api.Local{D: h.D}).GetReplicationRuns(context.Background(), &api.GetReplicationRunsInput{ReplicationJobID: job})
		if err != nil {
			t.Fatal(err)
		}
		if rs := out.ReplicationRunList; len(rs) > 0 && rs[0].State != "PENDING" && rs[0].State != "ACTIVE" {
			return rs[0]
		}
	}
	t.Fatal("the run did not end within a minute")
	return api.ReplicationRun{}
}

// The registration form: its own checks next to each field, and an
// assumed role that STS refuses shown next to the role's ARN (the emulator
// has no AssumeRole: the connector did ask STS for it).
func TestRegistrationForm(t *testing.T) {
	h := start(t, apitest.Options{Unregistered: true})
	settings, err := h.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	b := h.browser()
	b.setup()
	for what, c := range map[string]struct {
		v     url.Values
		field string
	}{
		"no region":         {url.Values{"cred": {"instance"}}, "region"},
		"bad region":        {url.Values{"region": {"Europe"}, "cred": {"instance"}}, "region"},
		"keys without id":   {url.Values{"region": {"eu-west-1"}, "cred": {"keys"}}, "access_key_id"},
		"id without secret": {url.Values{"region": {"eu-west-1"}, "cred": {"keys"}, "access_key_id": {"AKIAIOSFODNN7EXAMPLE"}}, "secret_access_key"},
		"bad role ARN":      {url.Values{"region": {"eu-west-1"}, "cred": {"role"}, "role_arn": {"vmimport"}}, "role_arn"},
		"one endpoint":      {url.Values{"region": {"eu-west-1"}, "cred": {"instance"}, "endpoint": {"https://vpce.example"}}, "s3_endpoint"},
		"not PEM":           {url.Values{"region": {"eu-west-1"}, "cred": {"instance"}, "ca_pem": {"hello"}}, "ca_pem"},
		"assumed role refused": {url.Values{"region": {settings.Region}, "cred": {"role"}, "access_key_id": {settings.AccessKeyID},
			"secret_access_key": {settings.SecretAccessKey}, "role_arn": {"arn:aws:iam::123456789012:role/rehost-connector"},
			"endpoint": {settings.Endpoint}, "s3_endpoint": {settings.S3Endpoint}, "ca_pem": {string(settings.CAPEM)}}, "role_arn"},
	} {
		a := b.submit("/aws", "/aws", c.v)
		if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `id="f-`+c.field+`-error"`) {
			t.Errorf("%s: %d, want the error next to %s\n%s", what, a.status, c.field, a.body)
		}
	}
	if reg, _ := (&api.Local{D: h.D}).GetRegistration(context.Background(), nil); reg.Registered {
		t.Error("a refused form registered the connector")
	}
}
