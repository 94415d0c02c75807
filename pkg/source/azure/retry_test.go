package azure

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/azuresim"
	"github.com/rehost/rehost/pkg/retry"
	"github.com/rehost/rehost/pkg/source"
)

const retryVM = "retry-01"

func busy(status int, code string) azuresim.Fault { return azuresim.Fault{Status: status, Code: code} }

// Every Azure call is retried by the source's policy alone (the SDK's
// retries are off), counted where the requests arrive: a call that always
// fails reaches the subscription exactly RetryAttempts times and comes back
// marked exhausted (so no step retries it again) and unreachable; a refusal
// is sent once; two faults cost two more requests. The same holds for the
// sign-in, a listing, the start and the polls of a long-running operation.
func TestOneLayerOfRetries(t *testing.T) {
	ctx := context.Background()
	cfg := config()
	cfg.RetryAttempts = 3

	tokens := sim.Requests(azuresim.OpToken, "")
	sim.Inject(azuresim.OpToken, "", 2, busy(http.StatusServiceUnavailable, "temporarily_unavailable"))
	s := connect(t, cfg)
	if n := sim.Requests(azuresim.OpToken, "") - tokens; n != 3 {
		t.Errorf("sign-in failing twice: %d token requests, want 3", n)
	}

	id := sim.VMID(retryVM)
	const get = "VirtualMachinesClient.Get"
	count := func() int { return sim.Requests(get, "/"+retryVM) }
	before := count()
	sim.Inject(get, "/"+retryVM, 3, busy(http.StatusServiceUnavailable, "ServerBusy"))
	_, err := s.VM(ctx, id)
	if n := count() - before; n != 3 || !retry.Exhausted(err) || !errors.Is(err, source.ErrUnreachable) || retry.Transient(err) {
		t.Fatalf("every answer a 503: %d requests, want 3 (RetryAttempts); err %v (exhausted %v)", n, err, retry.Exhausted(err))
	}
	if !strings.Contains(err.Error(), "read vm") || !strings.Contains(err.Error(), "ServerBusy (503)") || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("error does not say what failed and how often: %v", err)
	}

	before = count()
	sim.Inject(get, "/"+retryVM, 1, busy(http.StatusBadRequest, "InvalidParameter"))
	if _, err = s.VM(ctx, id); err == nil || retry.Exhausted(err) || count()-before != 1 {
		t.Fatalf("a 400: %d requests, want 1; err %v", count()-before, err)
	}
	before = count()
	sim.Inject(get, "/"+retryVM, 2, busy(http.StatusInternalServerError, "InternalServerError"))
	if vm, err := s.VM(ctx, id); err != nil || vm.Name != retryVM || count()-before != 3 {
		t.Fatalf("two 500s then the answer: %d requests, want 3; %v", count()-before, err)
	}

	// A listing that fails midway starts over and sees each VM once.
	const list = "VirtualMachinesClient.NewListAllPager"
	before = sim.Requests(list, "")
	sim.Inject(list, "", 1, busy(http.StatusGatewayTimeout, "GatewayTimeout"))
	vms, err := s.Inventory(ctx)
	if err != nil || sim.Requests(list, "")-before < 2 {
		t.Fatalf("inventory after a 504: %d listing requests, %v", sim.Requests(list, "")-before, err)
	}
	seen := map[string]int{}
	for _, v := range vms {
		if seen[v.ID]++; seen[v.ID] > 1 {
			t.Errorf("vm %s listed twice", v.Name)
		}
	}

	// The snapshot's creation and its polls.
	const create = "SnapshotsClient.BeginCreateOrUpdate"
	creates, polls := sim.Requests(create, "/"), sim.Requests(create+azuresim.PollSuffix, "/")
	sim.Inject(create, "/", 1, busy(http.StatusTooManyRequests, "TooManyRequests"))
	sim.Inject(create+azuresim.PollSuffix, "/", 2, busy(http.StatusServiceUnavailable, "ServerBusy"))
	cp, err := s.Checkpoint(ctx, id, "rehost-retry-calls")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(ctx, cp)
	if n := sim.Requests(create, "/") - creates; n != 2 {
		t.Errorf("snapshot creation answered 429 once: %d requests, want 2", n)
	}
	if n := sim.Requests(create+azuresim.PollSuffix, "/") - polls; n != 2+2 {
		t.Errorf("polls of the snapshot creation, two failing: %d, want the 2 the operation takes plus 2", n)
	}
}

// A server's Retry-After replaces the backoff: with a first pause of an hour
// and a deadline of a minute, the call gets through only because the 429s
// asked for 10 ms.
func TestRetryAfterHonoured(t *testing.T) {
	cfg := config()
	cfg.RetryBaseDelay = time.Hour
	s := connect(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const get = "VirtualMachinesClient.Get"
	before := sim.Requests(get, "/"+retryVM)
	sim.Inject(get, "/"+retryVM, 2, azuresim.Fault{Status: http.StatusTooManyRequests, Code: "TooManyRequests", RetryAfter: 10 * time.Millisecond})
	if _, err := s.VM(ctx, sim.VMID(retryVM)); err != nil {
		t.Fatalf("throttled twice with Retry-After 10ms: %v", err)
	}
	if n := sim.Requests(get, "/"+retryVM) - before; n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
}

// Disk data: a ranged read answered 503, or whose body is cut short, is
// read again by the one policy (not by an SDK retry reader under it) and
// the disk arrives intact; a read that always fails reaches the data
// endpoint exactly RetryAttempts times and the stream fails marked
// exhausted. The grant behind the reads and the page range listing are
// retried the same way.
func TestDiskReadsRetried(t *testing.T) {
	ctx := context.Background()
	cfg := config()
	cfg.RetryAttempts, cfg.ReadConcurrency = 3, 1
	s := connect(t, cfg)
	data := bytes.Repeat([]byte("read once, by one policy "), 40000) // 1 MB: 4 chunks
	if err := sim.WriteDisk(retryVM, 0, 0, data); err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(ctx, sim.VMID(retryVM), "rehost-retry-reads")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release(ctx, cp)

	const grant = "SnapshotsClient.BeginGrantAccess"
	grants, ranges := sim.Requests(grant, "/"), sim.Requests(azuresim.OpPageRanges, "")
	sim.Inject(grant, "/", 2, busy(http.StatusServiceUnavailable, "ServerBusy"))
	sim.Inject(azuresim.OpPageRanges, "", 1, busy(http.StatusServiceUnavailable, "ServerBusy"))
	ex, err := s.Export(ctx, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close(nil)
	if g, r := sim.Requests(grant, "/")-grants, sim.Requests(azuresim.OpPageRanges, "")-ranges; g != 3 || r != 2 {
		t.Errorf("grant failing twice: %d requests, want 3; page ranges failing once: %d, want 2", g, r)
	}

	d := ex.Disks()[0]
	chunks := 0
	for _, e := range d.Extents {
		chunks += int((e.Length + cfg.ChunkBytes - 1) / cfg.ChunkBytes)
	}
	reads := sim.Requests(azuresim.OpBlobRead, "")
	sim.Inject(azuresim.OpBlobRead, "", 1, busy(http.StatusServiceUnavailable, "ServerBusy"))
	sim.Inject(azuresim.OpBlobRead, "", 1, azuresim.Fault{CutAfter: 1000})
	rc, err := ex.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("stream with a 503 and a cut read: %v", err)
	}
	if got := decode(t, d.Format, stream); !bytes.Equal(got[:len(data)], data) {
		t.Fatal("the disk differs from what was written")
	}
	if n := sim.Requests(azuresim.OpBlobRead, "") - reads; n != chunks+2 {
		t.Errorf("%d ranged reads for %d chunks and 2 faults, want %d", n, chunks, chunks+2)
	}

	reads = sim.Requests(azuresim.OpBlobRead, "")
	sim.Inject(azuresim.OpBlobRead, "", 3, busy(http.StatusServiceUnavailable, "ServerBusy"))
	rc, err = ex.Open(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if n := sim.Requests(azuresim.OpBlobRead, "") - reads; n != 3 || !retry.Exhausted(err) {
		t.Fatalf("every read a 503: %d requests, want 3 (RetryAttempts); err %v", n, err)
	}
}
