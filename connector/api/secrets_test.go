package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/daemon"
)

// Planted secrets — the AWS secret key, the vCenter password, an API key's
// secret — appear in no API response, error message, log line, metric or
// support bundle file.
func TestPlantedSecretsNeverComeOut(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := context.Background()
	settings, err := c.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	src := c.Peers.SourceInput()
	secrets := map[string]string{"AWS secret key": settings.SecretAccessKey, "vCenter password": src.Password, "API key secret": c.Key.Secret}
	cl := newClient(t, c, c.Key.ID, c.Key.Secret)
	var outputs []string
	record := func(what string, v any, err error) {
		b, _ := json.Marshal(v)
		outputs = append(outputs, what+": "+string(b))
		if err != nil {
			outputs = append(outputs, what+" error: "+err.Error())
		}
	}

	// Every operation, including failures that involve the secrets.
	out1, err := cl.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{})
	record("ImportServerCatalog", out1, err)
	servers, err := cl.GetServers(ctx, &api.GetServersInput{})
	record("GetServers", servers, err)
	freq := 12
	seed := api.At(timeNowPlusHours(6))
	job, err := cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: servers.ServerList[0].ServerID, Frequency: &freq, SeedReplicationTime: &seed})
	record("CreateReplicationJob", job, err)
	run, err := cl.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: job.ReplicationJobID})
	record("StartOnDemandReplicationRun", run, err)
	for _, f := range []func() (any, error){
		func() (any, error) { return cl.GetConnectors(ctx, &api.GetConnectorsInput{}) },
		func() (any, error) { return cl.GetReplicationJobs(ctx, &api.GetReplicationJobsInput{}) },
		func() (any, error) {
			return cl.GetReplicationRuns(ctx, &api.GetReplicationRunsInput{ReplicationJobID: job.ReplicationJobID})
		},
		func() (any, error) {
			return cl.GetReplicationRun(ctx, &api.GetReplicationRunInput{ReplicationRunID: run.ReplicationRunID})
		},
		func() (any, error) { return cl.ListSources(ctx, &api.ListSourcesInput{}) },
		func() (any, error) { return cl.TestSource(ctx, &api.SourceRef{Source: src.Name}) },
		func() (any, error) { return cl.GetRegistration(ctx, &api.GetRegistrationInput{}) },
		func() (any, error) { return cl.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{}) },
		func() (any, error) { return cl.GetEvents(ctx, &api.GetEventsInput{}) },
		// A wrong user with the real password; the real user with a
		// wrong password; registering with a wrong key id and the real
		// secret.
		func() (any, error) {
			return cl.AddSource(ctx, &api.SourceInput{Name: "x", URL: src.URL, User: "nobody", Password: src.Password, Thumbprint: src.Thumbprint})
		},
		func() (any, error) {
			return cl.AddSource(ctx, &api.SourceInput{Name: "y", URL: src.URL, User: src.User, Password: src.Password + "!", Thumbprint: src.Thumbprint})
		},
		func() (any, error) {
			bad := settings
			bad.AccessKeyID = "AKIAWRONGWRONGWRONG0"
			return cl.Register(ctx, &api.RegisterInput{Settings: bad})
		},
	} {
		v, err := f()
		record("call", v, err)
	}
	_, err = newClient(t, c, c.Key.ID, settings.SecretAccessKey).GetServers(ctx, &api.GetServersInput{})
	record("signed with the AWS secret", nil, err)
	metrics, err := cl.Metrics(ctx)
	record("metrics", string(metrics), err)

	// The support bundle, with a secret planted in the log it carries:
	// redaction is the second line of defence.
	lf, err := os.OpenFile(daemon.LogFile(c.Dir), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	lf.WriteString(`{"msg":"a careless line","password":"` + src.Password + `"}` + "\n")
	lf.Close()
	var bundle bytes.Buffer
	if err := cl.SupportBundle(ctx, &bundle); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(bundle.Bytes()), int64(bundle.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		outputs = append(outputs, "bundle "+f.Name+": "+b.String())
		if f.Name == "logs/rehost.log" && !strings.Contains(b.String(), `"password":"`+api.Redacted+`"`) {
			t.Error("the planted log line is not in the bundle, redacted")
		}
	}
	for _, want := range []string{"versions.json", "config.json", "summary.json", "status.json", "events.json", "logs/rehost.log"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("bundle lacks %s (has %v)", want, names)
		}
	}
	outputs = append(outputs, "log: "+c.Log.String())

	for what, s := range secrets {
		for _, o := range outputs {
			if strings.Contains(o, s) {
				t.Errorf("the %s appears in %.200s", what, o)
			}
		}
	}
	if len(outputs) < 25 {
		t.Errorf("only %d outputs searched", len(outputs))
	}
}
