package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"

	"github.com/rehost/rehost/internal/lab/s3peer"
	"github.com/rehost/rehost/pkg/retry"
)

// Each AWS call is retried by the target's policy alone (the SDK's retryer
// is off): with every answer a 500, the S3 front sees exactly RetryAttempts
// requests and the error is marked exhausted, so nothing above retries it;
// a 501 is sent once; two faults cost two extra requests and the object
// arrives intact.
func TestOneLayerOfRetries(t *testing.T) {
	env := newPeerTarget(t, true, Config{RetryAttempts: 3})
	front := env.srv.Front
	for n := 1; n <= 3; n++ {
		front.Inject("CreateMultipartUpload", n, s3peer.Fail500)
	}
	front.Inject("CreateMultipartUpload", 4, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusNotImplemented)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>injected</Message></Error>`)
	})
	front.Inject("CreateMultipartUpload", 5, s3peer.Fail500)
	front.Inject("CreateMultipartUpload", 6, s3peer.Fail500)

	body := bytes.Repeat([]byte("one layer of retries "), 50000)
	stage := func(key string) error {
		_, err := env.t.Stage(context.Background(), StageInput{Key: key, Body: bytes.NewReader(body), SizeHint: int64(len(body)), Format: "raw"})
		return err
	}
	err := stage("rehost/j/r/always-500")
	if n := front.Count("CreateMultipartUpload"); n != 3 || !retry.Exhausted(err) {
		t.Fatalf("every answer a 500: the front saw %d requests, want 3 (RetryAttempts); err %v (exhausted %v)", n, err, retry.Exhausted(err))
	}
	err = stage("rehost/j/r/501")
	if n := front.Count("CreateMultipartUpload"); n != 4 || err == nil || retry.Exhausted(err) {
		t.Fatalf("501: the front saw %d requests in all, want 4 (one more); err %v", n, err)
	}
	if err := stage("rehost/j/r/two-faults"); err != nil {
		t.Fatalf("two faults: %v", err)
	}
	if n := front.Count("CreateMultipartUpload"); n != 7 {
		t.Fatalf("two faults then success: the front saw %d requests in all, want 7", n)
	}
	got, n := downloadSum(t, env.srv, "staging", "rehost/j/r/two-faults")
	if n != int64(len(body)) || got != sha256.Sum256(body) {
		t.Fatalf("staged object of %d bytes differs from the %d sent", n, len(body))
	}
}
