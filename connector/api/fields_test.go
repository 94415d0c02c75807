package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
)

// Names and free text are checked by the service, whoever calls it — here
// over HTTP as the CLI and SMS clients do: a refused value is an
// InvalidParameterException naming its member, and nothing is stored.
func TestFieldRulesOverTheAPI(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := context.Background()
	cl := newClient(t, c, c.Key.ID, c.Key.Secret)
	src := c.Peers.SourceInput()
	want := func(what string, err error, member, says string) {
		t.Helper()
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Type != api.ErrInvalidParameter || ae.Field != member || !strings.Contains(ae.Message, says) {
			t.Errorf("%s: %v (%+v), want an InvalidParameterException about %s saying %q", what, err, ae, member, says)
		}
	}

	for _, name := range []string{"<script>alert(1)</script>", "a/b", strings.Repeat("n", 65)} {
		_, err := cl.AddSource(ctx, &api.SourceInput{Name: name, URL: src.URL, User: src.User, Password: src.Password, Thumbprint: src.Thumbprint})
		want("a source named "+name, err, "name", "source name")
	}
	srcs, err := cl.ListSources(ctx, &api.ListSourcesInput{})
	if err != nil || len(srcs.Sources) != 1 {
		t.Fatalf("sources after the refusals: %+v %v, want only the harness's", srcs, err)
	}

	if _, err := cl.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	servers, err := cl.GetServers(ctx, &api.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	freq, seed := 12, api.At(timeNowPlusHours(6))
	huge := strings.Repeat("x", 100<<10)
	_, err = cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: servers.ServerList[0].ServerID, Frequency: &freq,
		SeedReplicationTime: &seed, Description: huge})
	want("a 100 KB description", err, "description", "102400 characters, want at most 255")
	job, err := cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: servers.ServerList[0].ServerID, Frequency: &freq,
		SeedReplicationTime: &seed, Description: strings.Repeat("é", 255)})
	if err != nil {
		t.Fatalf("a 255-character description: %v", err)
	}
	long := strings.Repeat("d", 256)
	_, err = cl.UpdateReplicationJob(ctx, &api.UpdateReplicationJobInput{ReplicationJobID: job.ReplicationJobID, Description: &long})
	want("a 256-character description", err, "description", "256 characters")
	role := "vm import"
	_, err = cl.UpdateReplicationJob(ctx, &api.UpdateReplicationJobInput{ReplicationJobID: job.ReplicationJobID, RoleName: &role})
	want("a role name with a space", err, "roleName", "role name")

	settings, err := c.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	before, err := cl.GetRegistration(ctx, &api.GetRegistrationInput{})
	if err != nil {
		t.Fatal(err)
	}
	nowhere := settings
	nowhere.Region = "xx-nowhere-9"
	_, err = cl.Register(ctx, &api.RegisterInput{Settings: nowhere})
	want("an unknown region", err, "settings.region", "no such region: xx-nowhere-9")
	wrong := settings
	wrong.SecretAccessKey = strings.Repeat("w", 40)
	_, err = cl.Register(ctx, &api.RegisterInput{Settings: wrong})
	want("a wrong secret key", err, "settings.secretAccessKey", "AWS refused the secret access key")
	if after, err := cl.GetRegistration(ctx, &api.GetRegistrationInput{}); err != nil || *after != *before {
		t.Errorf("the failed registrations changed it: %+v, was %+v (%v)", after, before, err)
	}
}
