package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	credsv2 "github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/awserr"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/sms"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/connector/replication"
)

// pinned is an HTTP client that trusts exactly the connector's certificate.
func pinned(t *testing.T, fp string) *http.Client {
	want, _ := hex.DecodeString(strings.ReplaceAll(fp, ":", ""))
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if sum := sha256.Sum256(raw[0]); !bytes.Equal(sum[:], want) {
				return errors.New("certificate does not match the pinned fingerprint")
			}
			return nil
		},
	}}}
}

// smsClient is the AWS SDK's own SMS client (aws-sdk-go's generated
// service/sms), pointed at the connector.
func smsClient(t *testing.T, c *apitest.Connector, id, secret string) *sms.SMS {
	sess, err := session.NewSession(&aws.Config{
		Region: aws.String(c.Region), Endpoint: aws.String(c.URL), HTTPClient: pinned(t, c.Fingerprint),
		Credentials: credentials.NewStaticCredentials(id, secret, ""), MaxRetries: aws.Int(0),
	})
	if err != nil {
		t.Fatal(err)
	}
	return sms.New(sess)
}

func code(err error) string {
	var ae awserr.Error
	if errors.As(err, &ae) {
		return ae.Code()
	}
	return ""
}

// An SMS client from an AWS SDK drives the connector end to end: catalog,
// job, SMS's exceptions, an on-demand run to its AMI (whose content is the
// source disk's), update, delete; a bad signature and a revoked key are
// refused. The metrics move with the run.
func TestSMSClientOfTheAWSSDK(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	ctx := context.Background()
	cl := smsClient(t, c, c.Key.ID, c.Key.Secret)

	if _, err := cl.ImportServerCatalogWithContext(ctx, &sms.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}
	all, err := cl.GetServersWithContext(ctx, &sms.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.ServerList) != len(c.Peers.VMs) || aws.StringValue(all.ServerCatalogStatus) != "AVAILABLE" {
		t.Fatalf("GetServers: %v", all)
	}
	var db *sms.Server
	for _, s := range all.ServerList {
		if aws.StringValue(s.VmServer.VmName) == "db-01" {
			db = s
		}
		if aws.StringValue(s.VmServer.VmManagerType) != "VSPHERE" || aws.StringValue(s.VmServer.VmManagerName) == "" {
			t.Errorf("server %v: want a VSPHERE manager with a name", s.VmServer)
		}
	}
	if db == nil {
		t.Fatal("no db-01 in the catalog")
	}
	one, err := cl.GetServersWithContext(ctx, &sms.GetServersInput{VmServerAddressList: []*sms.VmServerAddress{db.VmServer.VmServerAddress}})
	if err != nil || len(one.ServerList) != 1 || *one.ServerList[0].ServerId != *db.ServerId {
		t.Fatalf("GetServers filtered by address: %v %v", one, err)
	}
	// Paging with the SDK's paginator.
	pages := 0
	if err := cl.GetServersPagesWithContext(ctx, &sms.GetServersInput{MaxResults: aws.Int64(1)}, func(*sms.GetServersOutput, bool) bool {
		pages++
		return true
	}); err != nil || pages != len(c.Peers.VMs) {
		t.Errorf("paged through %d pages (%v), want %d", pages, err, len(c.Peers.VMs))
	}

	seed := time.Now().Add(6 * time.Hour)
	job, err := cl.CreateReplicationJobWithContext(ctx, &sms.CreateReplicationJobInput{
		ServerId: db.ServerId, SeedReplicationTime: aws.Time(seed), Frequency: aws.Int64(12),
		LicenseType: aws.String("BYOL"), NumberOfRecentAmisToKeep: aws.Int64(2),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.CreateReplicationJobWithContext(ctx, &sms.CreateReplicationJobInput{ServerId: db.ServerId, SeedReplicationTime: aws.Time(seed), Frequency: aws.Int64(12)})
	if code(err) != "ReplicationJobAlreadyExistsException" || !strings.Contains(err.Error(), *job.ReplicationJobId) {
		t.Errorf("duplicate job: %v", err)
	}
	_, err = cl.CreateReplicationJobWithContext(ctx, &sms.CreateReplicationJobInput{ServerId: all.ServerList[0].ServerId, SeedReplicationTime: aws.Time(seed), Frequency: aws.Int64(25)})
	if code(err) != "InvalidParameterException" || !strings.Contains(err.Error(), "1 to 24") {
		t.Errorf("frequency 25: %v", err)
	}
	_, err = cl.UpdateReplicationJobWithContext(ctx, &sms.UpdateReplicationJobInput{ReplicationJobId: aws.String("sms-job-00000000000000000"), Frequency: aws.Int64(6)})
	if code(err) != "ReplicationJobNotFoundException" {
		t.Errorf("update of an unknown job: %v", err)
	}

	run, err := cl.StartOnDemandReplicationRunWithContext(ctx, &sms.StartOnDemandReplicationRunInput{ReplicationJobId: job.ReplicationJobId, Description: aws.String("from the SDK")})
	if err != nil {
		t.Fatal(err)
	}
	var done *sms.ReplicationRun
	for deadline := time.Now().Add(3 * time.Minute); done == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the on-demand run did not finish in 3 minutes")
		}
		runs, err := cl.GetReplicationRunsWithContext(ctx, &sms.GetReplicationRunsInput{ReplicationJobId: job.ReplicationJobId})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs.ReplicationRunList {
			if *r.ReplicationRunId == *run.ReplicationRunId && (*r.State == "COMPLETED" || *r.State == "FAILED") {
				done = r
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if *done.State != "COMPLETED" || aws.StringValue(done.AmiId) == "" || aws.StringValue(done.Type) != "ON_DEMAND" ||
		aws.StringValue(done.Description) != "from the SDK" || done.CompletedTime == nil {
		t.Fatalf("run: %v", done)
	}
	checks, err := c.Peers.Verify("db-01", *done.AmiId)
	if err != nil || len(checks) != 1 || !checks[0].Equal {
		t.Errorf("AMI content: %v %v", checks, err)
	}

	if _, err := cl.UpdateReplicationJobWithContext(ctx, &sms.UpdateReplicationJobInput{ReplicationJobId: job.ReplicationJobId, Frequency: aws.Int64(6)}); err != nil {
		t.Fatal(err)
	}
	jobs, err := cl.GetReplicationJobsWithContext(ctx, &sms.GetReplicationJobsInput{ReplicationJobId: job.ReplicationJobId})
	if err != nil || len(jobs.ReplicationJobList) != 1 {
		t.Fatal(jobs, err)
	}
	if j := jobs.ReplicationJobList[0]; *j.Frequency != 6 || aws.StringValue(j.LatestAmiId) != *done.AmiId || len(j.ReplicationRunList) == 0 {
		t.Errorf("job after update: %v", j)
	}
	if _, err := cl.DeleteReplicationJobWithContext(ctx, &sms.DeleteReplicationJobInput{ReplicationJobId: job.ReplicationJobId}); err != nil {
		t.Fatal(err)
	}
	jobs, err = cl.GetReplicationJobsWithContext(ctx, &sms.GetReplicationJobsInput{ReplicationJobId: job.ReplicationJobId})
	if err != nil || *jobs.ReplicationJobList[0].State != "DELETED" {
		t.Errorf("job after delete: %v %v", jobs, err)
	}
	conns, err := cl.GetConnectorsWithContext(ctx, &sms.GetConnectorsInput{})
	if err != nil || len(conns.ConnectorList) != 1 || *conns.ConnectorList[0].Status != "HEALTHY" {
		t.Errorf("GetConnectors: %v %v", conns, err)
	}

	// A wrong secret, an unknown key and a revoked key are refused.
	if _, err := smsClient(t, c, c.Key.ID, c.Key.Secret+"x").GetServersWithContext(ctx, &sms.GetServersInput{}); code(err) != "InvalidSignatureException" {
		t.Errorf("bad signature: %v", err)
	}
	other, err := c.D.CreateAccessKey(ctx, "other", false)
	if err != nil {
		t.Fatal(err)
	}
	ocl := smsClient(t, c, other.ID, other.Secret)
	if _, err := ocl.GetServersWithContext(ctx, &sms.GetServersInput{}); err != nil {
		t.Fatalf("second key: %v", err)
	}
	if _, err := c.D.RevokeAccessKey(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ocl.GetServersWithContext(ctx, &sms.GetServersInput{}); code(err) != "UnrecognizedClientException" {
		t.Errorf("revoked key: %v", err)
	}
	if !strings.Contains(c.Log.String(), `"keyId":"`+c.Key.ID+`"`) {
		t.Error("calls are not logged with their key id")
	}

	// The metrics parse and moved with the run.
	hc, err := client.New(client.Options{Endpoint: c.URL, Region: c.Region, Fingerprint: c.Fingerprint,
		Credentials: staticCreds(c.Key.ID, c.Key.Secret)})
	if err != nil {
		t.Fatal(err)
	}
	var families map[string]*dto.MetricFamily
	for deadline := time.Now().Add(10 * time.Second); ; {
		text, err := hc.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		if families, err = parser.TextToMetricFamilies(bytes.NewReader(text)); err != nil {
			t.Fatalf("metrics do not parse: %v\n%s", err, text)
		}
		if value(families, "rehost_replication_runs_finished_total", "COMPLETED") == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := value(families, "rehost_replication_runs_finished_total", "COMPLETED"); v != 1 {
		t.Errorf("runs completed: %v", v)
	}
	if v := value(families, "rehost_staged_bytes_total", ""); v <= 0 {
		t.Errorf("bytes staged: %v", v)
	}
	// One sample per step of the one run, under each step's own label.
	steps := map[string]uint64{}
	if h := families["rehost_step_duration_seconds"]; h != nil {
		for _, m := range h.Metric {
			for _, l := range m.Label {
				steps[l.GetValue()] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	for _, in := range replication.StepsOf(replication.ModeFull) {
		if steps[in.Metric] != 1 {
			t.Errorf("step duration histogram of %s (%s): %d samples, want 1 (all: %v)", in.Name, in.Metric, steps[in.Metric], steps)
		}
	}
	if v := value(families, "rehost_job_last_success_timestamp_seconds", *job.ReplicationJobId); v < float64(time.Now().Add(-time.Hour).Unix()) {
		t.Errorf("last success of the job: %v", v)
	}
	if v := value(families, "rehost_api_errors_total", "ReplicationJobAlreadyExistsException"); v != 1 {
		t.Errorf("API errors by type: %v", v)
	}
}

// value is a counter's or gauge's value whose first label is label ("" for
// none).
func value(fams map[string]*dto.MetricFamily, name, label string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		if label != "" && (len(m.Label) == 0 || m.Label[0].GetValue() != label) {
			continue
		}
		if m.Counter != nil {
			return m.Counter.GetValue()
		}
		return m.Gauge.GetValue()
	}
	return -1
}

func staticCreds(id, secret string) credsv2.StaticCredentialsProvider {
	return credsv2.NewStaticCredentialsProvider(id, secret, "")
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
