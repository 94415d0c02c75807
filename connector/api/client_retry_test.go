package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/pkg/retry"
)

// faultFront stands before a connector: it counts the requests of each
// operation and answers the next ones it was told to fail instead of
// forwarding them.
type faultFront struct {
	srv   *httptest.Server
	proxy *httputil.ReverseProxy

	mu     sync.Mutex
	counts map[string]int
	faults map[string][]http.HandlerFunc
}

func newFaultFront(t *testing.T, c *apitest.Connector) *faultFront {
	target, _ := url.Parse(c.URL)
	f := &faultFront{counts: map[string]int{}, faults: map[string][]http.HandlerFunc{}}
	f.proxy = &httputil.ReverseProxy{
		// The client signed the front's host; the connector checks the
		// signature over the Host header it receives.
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport: pinned(t, c.Fingerprint).Transport,
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), api.SMSTarget+".")
		f.mu.Lock()
		f.counts[op]++
		var fault http.HandlerFunc
		if q := f.faults[op]; len(q) > 0 {
			fault, f.faults[op] = q[0], q[1:]
		}
		f.mu.Unlock()
		if fault != nil {
			fault(w, r)
			return
		}
		f.proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *faultFront) inject(op string, n int, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.faults[op] = append(f.faults[op], h)
	}
}

func (f *faultFront) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *faultFront) client(t *testing.T, c *apitest.Connector, base time.Duration) *client.Client {
	cl, err := client.New(client.Options{Endpoint: f.srv.URL, Region: c.Region, Credentials: staticCreds(c.Key.ID, c.Key.Secret),
		Fingerprint: api.Fingerprint(f.srv.Certificate().Raw), RetryBaseDelay: base})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// answer is a fault: the connector's error answer of type typ.
func answer(status int, typ, retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-Errortype", typ)
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": "injected"})
	}
}

// forwardThenDrop lets the connector run the request, then hangs up on
// the client before it hears the answer.
func (f *faultFront) forwardThenDrop(w http.ResponseWriter, r *http.Request) {
	f.proxy.ServeHTTP(httptest.NewRecorder(), r)
	panic(http.ErrAbortHandler)
}

// The client retries under pkg/retry, counted at a front before a real
// connector: a throttled call is sent again whatever it does (the
// connector throttles before it runs anything); a read-only call is sent
// again after a 5xx or a dropped connection, exactly RetryAttempts times
// at most; a call that changes something is sent once when the connector
// may have run it (a 500, a connection dropped after the request went out):
// the job is created once, never answered "already exists" by a resend.
func TestClientRetries(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	f := newFaultFront(t, c)
	cl := f.client(t, c, time.Millisecond)
	ctx := context.Background()
	if _, err := cl.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{}); err != nil {
		t.Fatal(err)
	}

	f.inject("GetServers", 3, answer(http.StatusInternalServerError, api.ErrInternal, ""))
	servers, err := cl.GetServers(ctx, &api.GetServersInput{})
	if err != nil || len(servers.ServerList) < 2 || f.count("GetServers") != 4 {
		t.Fatalf("read-only call failing 3 times: %d requests, want 4; %v", f.count("GetServers"), err)
	}
	f.inject("GetServers", 4, answer(http.StatusServiceUnavailable, api.ErrInternal, ""))
	_, err = cl.GetServers(ctx, &api.GetServersInput{})
	if n := f.count("GetServers") - 4; n != 4 || !retry.Exhausted(err) || !api.IsType(err, api.ErrInternal) {
		t.Fatalf("read-only call always failing: %d requests, want 4 (RetryAttempts); %v", n, err)
	}
	f.inject("GetServers", 1, f.forwardThenDrop)
	if _, err = cl.GetServers(ctx, &api.GetServersInput{}); err != nil || f.count("GetServers") != 10 {
		t.Fatalf("read-only call whose answer was lost: %d requests in all, want 10; %v", f.count("GetServers"), err)
	}

	freq, seed := 12, api.At(time.Now().Add(time.Hour))
	job := func(server string) (*api.CreateReplicationJobOutput, error) {
		return cl.CreateReplicationJob(ctx, &api.CreateReplicationJobInput{ServerID: server, Frequency: &freq, SeedReplicationTime: &seed})
	}
	f.inject("CreateReplicationJob", 2, answer(http.StatusTooManyRequests, api.ErrThrottling, ""))
	if _, err := job(servers.ServerList[0].ServerID); err != nil || f.count("CreateReplicationJob") != 3 {
		t.Fatalf("throttled twice: %d requests, want 3; %v", f.count("CreateReplicationJob"), err)
	}
	f.inject("CreateReplicationJob", 1, answer(http.StatusInternalServerError, api.ErrInternal, ""))
	if _, err := job(servers.ServerList[1].ServerID); !api.IsType(err, api.ErrInternal) || retry.Exhausted(err) || f.count("CreateReplicationJob") != 4 {
		t.Fatalf("a changing call answered 500: %d requests, want 4 (sent once); %v", f.count("CreateReplicationJob"), err)
	}
	f.inject("CreateReplicationJob", 1, f.forwardThenDrop)
	if _, err := job(servers.ServerList[1].ServerID); err == nil || api.IsType(err, api.ErrJobAlreadyExists) || f.count("CreateReplicationJob") != 5 {
		t.Fatalf("a changing call whose answer was lost: %d requests, want 5 (sent once); %v", f.count("CreateReplicationJob"), err)
	}
	jobs, err := cl.GetReplicationJobs(ctx, &api.GetReplicationJobsInput{})
	if err != nil || len(jobs.ReplicationJobList) != 2 {
		t.Fatalf("jobs after the lost answer: %+v, %v; want the two created", jobs, err)
	}
}

// A Retry-After replaces the backoff: with a first pause of an hour and a
// deadline of a minute, the call goes through only because the throttling
// answer asked for a second.
func TestClientHonoursRetryAfter(t *testing.T) {
	c := apitest.Start(t, apitest.Options{Unregistered: true})
	f := newFaultFront(t, c)
	cl := f.client(t, c, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.inject("GetConnectors", 1, answer(http.StatusTooManyRequests, api.ErrThrottling, "1"))
	if _, err := cl.GetConnectors(ctx, &api.GetConnectorsInput{}); err != nil || f.count("GetConnectors") != 2 {
		t.Fatalf("throttled with Retry-After 1: %d requests, want 2; %v", f.count("GetConnectors"), err)
	}
}

// A connection never made is retried for any call: the request cannot
// have reached the connector.
func TestClientRetriesRefusedConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cl, err := client.New(client.Options{Endpoint: "https://" + addr, Credentials: staticCreds("AKID", "secret"), RetryBaseDelay: time.Millisecond,
		Fingerprint: strings.Repeat("00", 32)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.DeleteServerCatalog(context.Background(), &api.DeleteServerCatalogInput{})
	var op *net.OpError
	if !retry.Exhausted(err) || !errors.As(err, &op) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("refused connection: %v", err)
	}
}
