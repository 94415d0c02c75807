package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	credsv2 "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// A registration with a KMS key the vmimport role may not use is reported
// when registering, before any run, with the grant to add; the connector
// is unhealthy until then; a run of an encrypted job with the key fails in
// its first step, preflight, with the same finding, and makes nothing; once
// the grant is added, the account is ready again.
func TestRegistrationWithAnUnusableKMSKey(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Unregistered: true})
	ctx := context.Background()
	ak, sk := c.Peers.AWS.Credentials()
	kc := kms.NewFromConfig(sdk.Config{Region: c.Region, Credentials: credsv2.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1},
		func(o *kms.Options) { o.BaseEndpoint = sdk.String(c.Peers.AWSURL) })
	account := c.Peers.AWS.AccountID()
	key, err := kc.CreateKey(ctx, &kms.CreateKeyInput{Policy: sdk.String(`{"Version":"2012-10-17","Statement":[{"Sid":"SecurityTeamOnly",` +
		`"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:user/security"},"Action":"kms:*","Resource":"*"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	keyARN := sdk.ToString(key.KeyMetadata.Arn)
	settings, err := c.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	settings.KMSKeyID = keyARN
	svc := &api.Local{D: c.D, Started: time.Now()}
	reg, err := svc.Register(ctx, &api.RegisterInput{Settings: settings, CreateRole: true, FixBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	kmsFinding := func(p *api.Preflight) *preflight.Finding {
		if p == nil {
			return nil
		}
		for i, f := range p.Findings {
			if f.Code == awstarget.CodeKMSRole {
				return &p.Findings[i]
			}
		}
		return nil
	}
	f := kmsFinding(reg.Preflight)
	if reg.Preflight == nil || reg.Preflight.Status != string(preflight.Blocked) || f == nil {
		t.Fatalf("registration's preflight: %+v", reg.Preflight)
	}
	roleARN := "arn:aws:iam::" + account + ":role/vmimport"
	if !strings.Contains(f.Action, "aws kms create-grant --key-id "+keyARN+" --grantee-principal "+roleARN) {
		t.Fatalf("no grant to add: %q", f.Action)
	}
	st, err := svc.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{})
	if err != nil || st.Healthy || st.Preflight == nil || kmsFinding(st.Preflight) == nil {
		t.Fatalf("connector status: healthy %v, %+v, %v", st != nil && st.Healthy, st, err)
	}

	// A run of an encrypted job with the key stops at preflight.
	if _, err := c.D.AddSource(ctx, c.Peers.SourceInput()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	servers, err := svc.GetServers(ctx, &api.GetServersInput{})
	if err != nil || len(servers.ServerList) == 0 {
		t.Fatalf("servers: %+v %v", servers, err)
	}
	one, seed := 24, api.At(time.Now().Add(time.Hour))
	job, err := svc.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: servers.ServerList[0].ServerID, Frequency: &one,
		SeedReplicationTime: &seed, Encrypted: true, KmsKeyID: keyARN})
	if err != nil {
		t.Fatal(err)
	}
	started, err := svc.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: job.ReplicationJobID})
	if err != nil {
		t.Fatal(err)
	}
	var run store.ReplicationRun
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if run, err = c.D.Store.GetRun(ctx, started.ReplicationRunID); err == nil && run.State == store.RunFailed {
			break
		}
	}
	if run.State != store.RunFailed || run.Progress.FailedStep != replication.StepPreflight ||
		!strings.Contains(run.StatusMessage, awstarget.CodeKMSRole) || !strings.Contains(run.StatusMessage, "create-grant") {
		t.Fatalf("run %s in %q: %s", run.State, run.Progress.FailedStep, run.StatusMessage)
	}
	if len(run.Progress.Steps) != 1 || run.Progress.Steps[0].Step != replication.StepPreflight {
		t.Errorf("the run went beyond preflight: %+v", run.Progress.Steps)
	}
	if snaps, _ := c.Peers.Sim.Snapshots(servers.ServerList[0].VmServer.VmName); len(snaps) != 0 {
		t.Errorf("VM snapshots: %v", snaps)
	}
	if tasks := c.Peers.AWS.ImportTasks(); len(tasks) != 0 {
		t.Errorf("import tasks: %v", tasks)
	}

	// The grant, as the finding says it.
	ops := strings.Fields(f.Action[strings.Index(f.Action, "--operations ")+len("--operations "):])
	var gops []kmstypes.GrantOperation
	for _, o := range ops {
		gops = append(gops, kmstypes.GrantOperation(strings.TrimSuffix(o, ".")))
	}
	if _, err := kc.CreateGrant(ctx, &kms.CreateGrantInput{KeyId: sdk.String(keyARN), GranteePrincipal: sdk.String(roleARN), Operations: gops}); err != nil {
		t.Fatal(err)
	}
	out, err := svc.Preflight(ctx, &api.PreflightInput{})
	if err != nil || out.Account == nil || out.Account.Status != string(preflight.Ready) {
		t.Fatalf("after the grant: %+v %v", out, err)
	}
	if st, err := svc.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{}); err != nil || st.Preflight == nil || kmsFinding(st.Preflight) != nil {
		t.Fatalf("status after the grant: %+v %v", st, err)
	}
}
