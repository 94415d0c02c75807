package replication_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	credsv2 "github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/web"
	"github.com/rehost/rehost/pkg/store"
)

// A step is one file: the throwaway step of export_test.go, added to the
// table by a test alone, shows in the run's progress, the console's run
// page and the metrics, with its title and its weight in the run's percent.
func TestAStepIsOneFile(t *testing.T) {
	replication.InsertThrowawayStep(t, replication.StepUnstage)
	in := replication.Throwaway

	var svc api.Service
	c := apitest.Start(t, apitest.Options{Console: func(c *apitest.Connector, s api.Service) http.Handler {
		svc = s
		con, err := web.New(web.Options{Service: s, Keys: c.D, Settings: c.D.Store, Fingerprint: c.Fingerprint,
			Log: slog.New(slog.NewJSONHandler(c.Log, nil)), OnEC2: func() bool { return false }})
		if err != nil {
			t.Fatal(err)
		}
		return con.Handler()
	}})
	ctx := context.Background()
	if _, err := svc.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	servers, err := svc.GetServers(ctx, &api.GetServersInput{})
	if err != nil || len(servers.ServerList) == 0 {
		t.Fatalf("servers: %v %v", servers, err)
	}
	one, seed := 1, api.At(time.Now().Add(time.Hour))
	job, err := svc.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: servers.ServerList[0].ServerID, Frequency: &one, SeedReplicationTime: &seed})
	if err != nil {
		t.Fatal(err)
	}
	started, err := svc.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: job.ReplicationJobID})
	if err != nil {
		t.Fatal(err)
	}
	id := started.ReplicationRunID

	// While the run is in the step: its progress, and the console's run
	// page, which lists it by its title, in its place, as the current step.
	select {
	case <-replication.ThrowawayReached:
	case <-time.After(2 * time.Minute):
		t.Fatal("the run never reached the throwaway step")
	}
	out, err := svc.GetReplicationRun(ctx, &api.GetReplicationRunInput{ReplicationRunID: id})
	if err != nil {
		t.Fatal(err)
	}
	// The step table's weights: the steps before it are done, it and the
	// rest not.
	var before, total int
	for _, s := range replication.StepsOf(replication.ModeFull) {
		if s.Name == in.Name {
			before = total
		}
		total += s.Weight
	}
	if p := out.ReplicationRun.Rehost.Progress; p == nil || p.Step != in.Name || p.Title != in.Title || p.Percent != before*100/total {
		t.Errorf("progress in the throwaway step: %+v, want %s, %q, %d%%", p, in.Name, in.Title, before*100/total)
	}
	page := consolePage(t, c, "/runs/"+id)
	if !strings.Contains(page, in.Title) {
		t.Errorf("the run page does not name the current step %q", in.Title)
	}
	// The list of steps begins with the first step's title.
	page = page[max(0, strings.Index(page, replication.Steps()[0].Title)):]
	unstage := strings.Index(page, replication.StepInfo(replication.StepUnstage).Title)
	at := strings.Index(page, in.Title)
	retention := strings.Index(page, replication.StepInfo(replication.StepRetention).Title)
	if at < 0 || !(unstage < at && at < retention) {
		t.Errorf("the run page does not show %q between unstage and retention (at %d, %d, %d)", in.Title, unstage, at, retention)
	}
	close(replication.ThrowawayGo)

	var run api.ReplicationRun
	for deadline := time.Now().Add(time.Minute); ; {
		out, err := svc.GetReplicationRun(ctx, &api.GetReplicationRunInput{ReplicationRunID: id})
		if err != nil {
			t.Fatal(err)
		}
		run = out.ReplicationRun
		if !store.RunState(run.State).Live() || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if run.State != string(store.RunCompleted) {
		t.Fatalf("run %s: %s %s", id, run.State, run.StatusMessage)
	}
	timed := false
	for _, s := range run.Rehost.Progress.Steps {
		timed = timed || s.Step == in.Name
	}
	if !timed {
		t.Errorf("the run's step times do not include %s: %+v", in.Name, run.Rehost.Progress.Steps)
	}

	// The metrics have its duration under its own label.
	hc, err := client.New(client.Options{Endpoint: c.URL, Region: c.Region, Fingerprint: c.Fingerprint,
		Credentials: credsv2.NewStaticCredentialsProvider(c.Key.ID, c.Key.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	want := `rehost_step_duration_seconds_count{step="` + in.Metric + `"} 1`
	for deadline := time.Now().Add(10 * time.Second); ; {
		text, err := hc.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(text), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", want, text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// consolePage sets the console's first password (which logs in) and returns
// the page at path.
func consolePage(t *testing.T, c *apitest.Connector, path string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c.TLSConfig()
	hc := &http.Client{Jar: jar, Transport: tr, Timeout: time.Minute}
	get := func(p string) string {
		resp, err := hc.Get(c.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, resp.StatusCode, b)
		}
		return string(b)
	}
	m := csrfRE.FindStringSubmatch(get("/setup"))
	if m == nil {
		t.Fatal("no CSRF token on /setup")
	}
	pw := "violet tractor harbour 42"
	resp, err := hc.PostForm(c.URL+"/setup", url.Values{"csrf": {m[1]}, "password": {pw}, "confirm": {pw}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return get(path)
}
