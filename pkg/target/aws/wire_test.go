package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/pkg/retry"
)

// front serves the emulator over TLS and answers the first faults[op]
// calls of an operation itself, with a fault.
type front struct {
	em     *emulator.Emulator
	mu     sync.Mutex
	faults map[string][]http.HandlerFunc
	calls  map[string]int
	header map[string]http.Header // the last request's, by operation
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	if form, _ := url.ParseQuery(string(body)); op == "" {
		op = form.Get("Action")
	}
	if op == "" {
		op = ebsOperation(r.Method, r.URL.Path)
	}
	f.mu.Lock()
	f.calls[op]++
	f.header[op] = r.Header.Clone()
	var fault http.HandlerFunc
	if q := f.faults[op]; len(q) > 0 {
		fault, f.faults[op] = q[0], q[1:]
	}
	f.mu.Unlock()
	if fault != nil {
		fault(w, r)
		return
	}
	f.em.ServeHTTP(w, r)
}

// ebsOperation names an EBS direct request by its method and path.
func ebsOperation(method, path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case method == http.MethodPost && len(parts) == 1:
		return "StartSnapshot"
	case method == http.MethodPost && len(parts) == 3 && parts[1] == "completion":
		return "CompleteSnapshot"
	case method == http.MethodPut && len(parts) == 4:
		return "PutSnapshotBlock"
	case method == http.MethodGet && len(parts) == 4:
		return "GetSnapshotBlock"
	case method == http.MethodGet && len(parts) == 3 && parts[2] == "blocks":
		return "ListSnapshotBlocks"
	case method == http.MethodGet && len(parts) == 3 && parts[2] == "changedblocks":
		return "ListChangedBlocks"
	}
	return ""
}

func (f *front) lastHeader(op string) http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.header[op]
}

func (f *front) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *front) inject(op string, h ...http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], h...)
}

func jsonFault(status int, typ, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"__type":"com.amazonaws.ssm#%s","message":%q}`, typ, msg)
	}
}

func queryFault(status int, code, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>rid-1</RequestId></ErrorResponse>`, code, msg)
	}
}

// newFrontTarget is a target whose services (but S3) are the emulator
// behind a front, over TLS trusted through Config.HTTPClient only (as a
// registration's custom CA is).
func newFrontTarget(t *testing.T, cfg Config) (*Target, *front) {
	t.Helper()
	em, err := emulator.New(emulator.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	f := &front{em: em, faults: map[string][]http.HandlerFunc{}, calls: map[string]int{}, header: map[string]http.Header{}}
	srv := httptest.NewTLSServer(f)
	t.Cleanup(srv.Close)
	ak, sk := em.Credentials()
	cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey = em.Region(), ak, sk
	cfg.HTTPClient = srv.Client()
	cfg.RetryBaseDelay = time.Millisecond
	if cfg.Endpoints.SSM == "" {
		cfg.Endpoints = Endpoints{S3: cfg.Endpoints.S3, SSM: srv.URL, CloudFormation: srv.URL, EC2: srv.URL,
			IAM: srv.URL, STS: srv.URL, KMS: srv.URL, Quotas: srv.URL, EBS: srv.URL}
	}
	tg, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tg, f
}

// The thin SSM and CloudFormation clients against the emulator: AWS's
// error codes and messages reach the caller in the SDK's shapes (so
// ErrNoAgent, "does not exist" and the retry classifier work as with the
// SDK clients); a throttled or failing call is retried by the target's
// policy alone, a refused one is sent once; stacks come back whole.
func TestThinClients(t *testing.T) {
	ctx := context.Background()
	tg, f := newFrontTarget(t, Config{RetryAttempts: 3})

	if _, err := tg.RunCommand(ctx, "i-0123456789abcdef0", false, "true"); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("a command on an instance SSM does not manage: %v, want ErrNoAgent", err)
	}
	_, err := tg.CommandResult(ctx, "not-a-command", "i-0123456789abcdef0")
	if apiCode(err) != "InvalidCommandId" || !strings.Contains(err.Error(), "not-a-command is not a command id") ||
		!strings.Contains(err.Error(), "operation error SSM: GetCommandInvocation") || transient(err) {
		t.Fatalf("a bad command id: %v (code %q, transient %v)", err, apiCode(err), transient(err))
	}
	if n := f.count("GetCommandInvocation"); n != 1 {
		t.Fatalf("a refused call was sent %d times, want once", n)
	}

	f.inject("GetCommandInvocation", jsonFault(http.StatusBadRequest, "ThrottlingException", "Rate exceeded"),
		jsonFault(http.StatusServiceUnavailable, "InternalServerError", "try again"))
	if _, err := tg.CommandResult(ctx, "00000000-0000-0000-0000-000000000000", "i-0123456789abcdef0"); apiCode(err) != "InvocationDoesNotExist" {
		t.Fatalf("after a throttle and a 503: %v, want the emulator's InvocationDoesNotExist", err)
	}
	if n := f.count("GetCommandInvocation"); n != 4 {
		t.Fatalf("throttled, failed, answered: %d calls in all, want 4", n)
	}

	f.inject("DescribeStacks", queryFault(http.StatusBadRequest, "Throttling", "Rate exceeded"))
	if st, err := tg.DescribeStack(ctx, "no-such-stack"); st != nil || err != nil {
		t.Fatalf("a stack that does not exist: %+v, %v; want nil, nil", st, err)
	}
	if n := f.count("DescribeStacks"); n != 2 {
		t.Fatalf("throttled then answered: %d DescribeStacks calls, want 2", n)
	}
	err = tg.ValidateTemplate(ctx, `{"Resources": {}}`)
	if apiCode(err) != "ValidationError" || apiMessage(err) == "" || transient(err) || f.count("ValidateTemplate") != 1 {
		t.Fatalf("a template without resources: %v (code %q), %d calls", err, apiCode(err), f.count("ValidateTemplate"))
	}

	const tpl = `{"Parameters": {"Size": {"Type": "String"}},
	"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
	"Outputs": {"Size": {"Value": {"Ref": "Size"}}, "Handle": {"Value": {"Ref": "Handle"}}}}`
	if err := tg.ValidateTemplate(ctx, tpl); err != nil {
		t.Fatal(err)
	}
	in := StackInput{Name: "thin", Template: tpl, Parameters: map[string]string{"Size": "large & <small>"}, Tags: map[string]string{"rehost:app": "a-1"}, Token: "tok-1"}
	id, err := tg.CreateStack(ctx, in)
	if err != nil || !strings.HasPrefix(id, "arn:aws:cloudformation:") {
		t.Fatalf("create stack: %q, %v", id, err)
	}
	if again, err := tg.CreateStack(ctx, in); err != nil || again != id {
		t.Fatalf("the same create again: %q, %v; want %q", again, err, id)
	}
	var st *Stack
	for range 100 {
		if st, err = tg.DescribeStack(ctx, id); err != nil || st != nil && st.Status != "CREATE_IN_PROGRESS" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || st == nil || st.Status != "CREATE_COMPLETE" || st.Name != "thin" || st.Outputs["Size"] != "large & <small>" ||
		!strings.HasPrefix(st.Outputs["Handle"], "http") {
		t.Fatalf("the stack: %+v, %v", st, err)
	}
	evs, err := tg.StackEvents(ctx, "thin")
	if err != nil || len(evs) < 2 || evs[0].LogicalID != "thin" || evs[0].Status != "CREATE_IN_PROGRESS" || evs[0].Time.IsZero() ||
		evs[len(evs)-1].Status != "CREATE_COMPLETE" || evs[0].Time.After(evs[len(evs)-1].Time) {
		t.Fatalf("events, oldest first: %+v, %v", evs, err)
	}
	rs, err := tg.StackResources(ctx, "thin")
	if err != nil || len(rs) != 1 || rs[0].LogicalID != "Handle" || rs[0].Type != "AWS::CloudFormation::WaitConditionHandle" || rs[0].Status != "CREATE_COMPLETE" {
		t.Fatalf("resources: %+v, %v", rs, err)
	}
	more := in
	more.Template = strings.Replace(tpl, `"Resources": {`, `"Resources": {"Second": {"Type": "AWS::CloudFormation::WaitConditionHandle"}, `, 1)
	cs, err := tg.CreateChangeSet(ctx, more, "thin-1")
	if err != nil || cs.ID == "" || cs.Status != "CREATE_COMPLETE" || len(cs.Changes) != 1 || cs.Changes[0].Action != "Add" || cs.Changes[0].LogicalID != "Second" {
		t.Fatalf("change set: %+v, %v", cs, err)
	}
	if err := tg.UpdateStack(ctx, StackInput{Name: "thin", Template: tpl, Parameters: map[string]string{"Size": "large & <small>"}}); !errors.Is(err, ErrNoUpdates) {
		t.Fatalf("an update that changes nothing: %v, want ErrNoUpdates", err)
	}
	if err := tg.DeleteStack(ctx, "thin", ""); err != nil {
		t.Fatal(err)
	}

	// EC2's launch queries: EC2's error shape (<Response><Errors>…).
	const missing = "i-0123456789abcdef0"
	if subs, err := tg.Subnets(ctx, []string{"subnet-0123456789abcdef0"}); err != nil || len(subs) != 0 {
		t.Fatalf("an unknown subnet: %v, %v; want none", subs, err)
	}
	if sgs, err := tg.SecurityGroups(ctx, []string{"sg-0123456789abcdef0"}); err != nil || len(sgs) != 0 {
		t.Fatalf("an unknown security group: %v, %v; want none", sgs, err)
	}
	if unknown, err := tg.UnknownInstanceTypes(ctx, []string{"t3.micro", "x9.nothing"}); err != nil || len(unknown) != 1 || unknown[0] != "x9.nothing" {
		t.Fatalf("instance types: unknown %v, %v; want [x9.nothing]", unknown, err)
	}
	if st, err := tg.InstanceStatuses(ctx, []string{missing}); err != nil || len(st) != 0 {
		t.Fatalf("an unknown instance's status: %v, %v", st, err)
	}
	if _, err := tg.ConsoleOutput(ctx, missing); !strings.HasPrefix(apiCode(err), "InvalidInstanceID") || !strings.Contains(err.Error(), "operation error EC2: GetConsoleOutput") {
		t.Fatalf("console output of an unknown instance: %v (code %q)", err, apiCode(err))
	}
}

// A CloudFormation endpoint nothing listens on: the call is retried (a
// connection refused is worth another try) until the policy gives up.
func TestThinClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	tg, _ := newFrontTarget(t, Config{RetryAttempts: 2, Endpoints: Endpoints{SSM: closed, CloudFormation: closed}})
	err = tg.ValidateTemplate(context.Background(), `{}`)
	if !retry.Exhausted(err) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("a closed port: %v (exhausted %v)", err, retry.Exhausted(err))
	}
}
