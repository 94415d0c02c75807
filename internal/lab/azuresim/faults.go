package azuresim

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Operations of Inject and Requests besides Resource Manager's, which are
// named by the SDK operation that sends them ("SnapshotsClient.Get"; a
// poll of a long-running operation as its start plus PollSuffix).
const (
	OpToken      = "token"            // Entra ID's token endpoint
	OpBlobRead   = "blob read"        // a ranged read of disk data
	OpPageRanges = "blob page ranges" // a page range listing
	PollSuffix   = " poll"
)

// Fault is what the subscription answers a request with instead of
// serving it: Status with error Code (as ARM, Entra ID or the data
// endpoint words one), asking for a pause of RetryAfter (sent as Azure's
// retry-after-ms) when set; or, for OpBlobRead with Status 0, the data
// served but the connection cut after CutAfter bytes of the body.
type Fault struct {
	Status     int
	Code       string
	RetryAfter time.Duration
	CutAfter   int64
}

type injected struct {
	op, match string
	left      int
	f         Fault
}

// Inject makes the next n requests of op whose path contains match (any
// path when match is "") answer f.
func (s *Sim) Inject(op, match string, n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &injected{op: op, match: match, left: n, f: f})
}

// ClearFaults drops the faults Inject set that are not spent yet.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Requests counts the requests of op whose path contains match that the
// subscription received, faulted ones included.
func (s *Sim) Requests(op, match string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for path, k := range s.requests[op] {
		if strings.Contains(path, match) {
			n += k
		}
	}
	return n
}

// arrive counts a request of op and returns the fault injected for it,
// if any.
func (s *Sim) arrive(op string, r *http.Request) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requests[op] == nil {
		s.requests[op] = map[string]int{}
	}
	s.requests[op][r.URL.Path]++
	for i, f := range s.faults {
		if f.op == op && strings.Contains(r.URL.Path, f.match) {
			if f.left--; f.left <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
			return f.f, true
		}
	}
	return Fault{}, false
}

// answerFault writes f's error answer in the format of op's service.
func answerFault(w http.ResponseWriter, op string, f Fault) {
	if f.RetryAfter > 0 {
		w.Header().Set("Retry-After-Ms", fmt.Sprint(f.RetryAfter.Milliseconds()))
	}
	switch op {
	case OpToken:
		writeJSON(w, f.Status, map[string]any{"error": f.Code, "error_description": "AADSTS: injected fault"})
	case OpBlobRead, OpPageRanges:
		blobError(w, f.Status, f.Code, "injected fault")
	default:
		writeARMError(w, f.Status, f.Code, "injected fault")
	}
}

// cutBody serves n bytes of a body, then fails the read: the proxy then
// drops the connection mid-answer.
type cutBody struct {
	io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errCut
	}
	p = p[:min(int64(len(p)), b.left)]
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// AllRequests counts every request the subscription received.
func (s *Sim) AllRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, paths := range s.requests {
		for _, k := range paths {
			n += k
		}
	}
	return n
}
