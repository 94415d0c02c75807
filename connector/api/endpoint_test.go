package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
)

func newClient(t *testing.T, c *apitest.Connector, id, secret string) *client.Client {
	t.Helper()
	cl, err := client.New(client.Options{Endpoint: c.URL, Region: c.Region, Fingerprint: c.Fingerprint, Credentials: staticCreds(id, secret)})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// The protocol's edges: SMS's exceptions for missing and malformed input,
// a read-only key, the rate limit, the size limit, unknown operations,
// and requests signed for another region.
func TestEndpointRefusals(t *testing.T) {
	c := apitest.Start(t, apitest.Options{PerKeyRate: 5, PerKeyBurst: 15})
	ctx := context.Background()
	cl := newClient(t, c, c.Key.ID, c.Key.Secret)

	freq := 12
	_, err := cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: "s-1", Frequency: &freq})
	if !api.IsType(err, api.ErrMissingRequiredParameter) {
		t.Errorf("no seed: %v", err)
	}
	seed := api.At(time.Unix(5, 0))
	if _, err = cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: "s-1", Frequency: &freq, SeedReplicationTime: &seed}); !api.IsType(err, api.ErrInvalidParameter) {
		t.Errorf("seed in 1970: %v", err)
	}
	if _, err = cl.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: "sms-job-0"}); !api.IsType(err, api.ErrJobNotFound) {
		t.Errorf("on-demand run of no job: %v", err)
	}
	if _, err = cl.GetServers(ctx, &api.GetServersInput{NextToken: "bogus"}); !api.IsType(err, api.ErrInvalidParameter) {
		t.Errorf("bad next token: %v", err)
	}

	ro, err := c.D.CreateAccessKey(ctx, "prometheus", true)
	if err != nil {
		t.Fatal(err)
	}
	rocl := newClient(t, c, ro.ID, ro.Secret)
	if _, err := rocl.GetServers(ctx, &api.GetServersInput{}); err != nil {
		t.Errorf("read-only key reading: %v", err)
	}
	if _, err := rocl.DeleteServerCatalog(ctx, &api.DeleteServerCatalogInput{}); !api.IsType(err, api.ErrUnauthorizedOperation) {
		t.Errorf("read-only key deleting: %v", err)
	}
	if err := rocl.SupportBundle(ctx, io.Discard); !api.IsType(err, api.ErrUnauthorizedOperation) {
		t.Errorf("read-only key taking a support bundle: %v", err)
	}

	// Prometheus cannot sign: basic authentication with a key is accepted
	// for /metrics only.
	hc := pinned(t, c.Fingerprint)
	req, _ := http.NewRequest(http.MethodGet, c.URL+"/metrics", nil)
	req.SetBasicAuth(ro.ID, ro.Secret)
	resp, err := hc.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("metrics with basic auth: %v %v", resp, err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The staging memory is the daemon's default pool, and nothing waits for it.
		for _, want := range []string{"\nrehost_staging_buffer_budget_bytes 2.68435456e+08\n", "\nrehost_staging_buffer_waiting 0\n"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %q:\n%s", strings.TrimSpace(want), body)
			}
		}
	}
	req, _ = http.NewRequest(http.MethodPost, c.URL+"/", strings.NewReader("{}"))
	req.Header.Set("X-Amz-Target", api.SMSTarget+".GetServers")
	req.SetBasicAuth(ro.ID, ro.Secret)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("API call with basic auth: %v %v", resp, err)
	}
	for _, path := range []string{"/", "/metrics", "/support/bundle"} {
		method := http.MethodGet
		if path == "/" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, c.URL+path, nil)
		if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("anonymous %s %s: %v %v", method, path, resp, err)
		}
	}

	// Signed for another region than the registration's.
	other := raw(t, c, "eu-north-9", api.SMSTarget+".GetServers", []byte("{}"))
	if other.StatusCode != http.StatusForbidden || !strings.Contains(other.Header.Get("X-Amzn-Errortype"), "InvalidSignature") {
		t.Errorf("wrong region: %d %s", other.StatusCode, other.Header.Get("X-Amzn-Errortype"))
	}
	if r := raw(t, c, c.Region, api.SMSTarget+".NoSuchThing", []byte("{}")); r.Header.Get("X-Amzn-Errortype") != api.ErrUnknownOperation {
		t.Errorf("unknown operation: %d %s", r.StatusCode, r.Header.Get("X-Amzn-Errortype"))
	}
	if r := raw(t, c, c.Region, api.SMSTarget+".GetServers", []byte(`{"maxResults": "many"}`)); r.Header.Get("X-Amzn-Errortype") != api.ErrInvalidParameter {
		t.Errorf("maxResults of the wrong type: %d %s", r.StatusCode, r.Header.Get("X-Amzn-Errortype"))
	}
	if r := raw(t, c, c.Region, api.SMSTarget+".GetServers", bytes.Repeat([]byte(" "), 2<<20)); r.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: %d", r.StatusCode)
	}

	// The key's rate: a burst of 15, then 5 a second.
	throttled := false
	for range 40 {
		if r := raw(t, c, c.Region, api.SMSTarget+".GetConnectors", []byte("{}")); r.StatusCode == http.StatusTooManyRequests {
			throttled = r.Header.Get("X-Amzn-Errortype") == api.ErrThrottling
			break
		}
	}
	if !throttled {
		t.Error("40 requests at once were not throttled")
	}
}

// raw sends one signed JSON request, signed for region.
func raw(t *testing.T, c *apitest.Connector, region, target string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.URL+"/", bytes.NewReader(body))
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	creds, _ := staticCreds(c.Key.ID, c.Key.Secret).Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, sha(body), "sms", region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := pinned(t, c.Fingerprint).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func timeNowPlusHours(h int) time.Time { return time.Now().Add(time.Duration(h) * time.Hour) }
