package s3peer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// State is what GET /_s3peer/state answers: every bucket with its objects
// and multipart uploads, for leak checks by a process that does not hold
// the keys (a crash campaign's counter, rehost-lab leftovers).
type State struct {
	Now     time.Time     `json:"now"` // the lifecycle clock
	Buckets []BucketState `json:"buckets"`
}

// BucketState is one bucket in State.
type BucketState struct {
	Name string `json:"name"`
	// Encryption is the default encryption's algorithm, "" for none.
	Encryption string        `json:"encryption,omitempty"`
	Lifecycle  bool          `json:"lifecycle"`
	Objects    []ObjectState `json:"objects"`
	Uploads    []UploadState `json:"uploads"`
}

// ObjectState is one object.
type ObjectState struct {
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	LastModified time.Time `json:"lastModified"`
}

// UploadState is one incomplete multipart upload.
type UploadState struct {
	Key       string    `json:"key"`
	UploadID  string    `json:"uploadId"`
	Initiated time.Time `json:"initiated"`
}

// State lists what versitygw holds.
func (f *Front) State(ctx context.Context) (State, error) {
	st := State{Now: f.Now(), Buckets: []BucketState{}}
	out, err := f.backend.ListBuckets(ctx, &s3.ListBucketsInput{})
	if err != nil {
		return st, fmt.Errorf("list buckets: %w", err)
	}
	for _, b := range out.Buckets {
		name := aws.ToString(b.Name)
		bs := BucketState{Name: name, Objects: []ObjectState{}, Uploads: []UploadState{}}
		f.mu.Lock()
		if enc, err := parseEncryption(f.st.Config[name][SubEncryption]); err == nil {
			bs.Encryption = enc.Algorithm
		}
		bs.Lifecycle = f.st.Config[name][SubLifecycle] != nil
		f.mu.Unlock()
		p := s3.NewListObjectsV2Paginator(f.backend, &s3.ListObjectsV2Input{Bucket: b.Name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return st, fmt.Errorf("list objects of %s: %w", name, err)
			}
			for _, o := range page.Contents {
				bs.Objects = append(bs.Objects, ObjectState{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
			}
		}
		in := &s3.ListMultipartUploadsInput{Bucket: b.Name}
		for {
			page, err := f.backend.ListMultipartUploads(ctx, in)
			if err != nil {
				return st, fmt.Errorf("list uploads of %s: %w", name, err)
			}
			for _, u := range page.Uploads {
				bs.Uploads = append(bs.Uploads, UploadState{Key: aws.ToString(u.Key), UploadID: aws.ToString(u.UploadId), Initiated: aws.ToTime(u.Initiated)})
			}
			if !aws.ToBool(page.IsTruncated) {
				break
			}
			in.KeyMarker, in.UploadIdMarker = page.NextKeyMarker, page.NextUploadIdMarker
		}
		st.Buckets = append(st.Buckets, bs)
	}
	return st, nil
}

// serveDebug answers the unauthenticated, test-only endpoints:
//
//	GET  /_s3peer/state                 State
//	POST /_s3peer/clock?advance=192h    Sweep (moves the lifecycle clock)
func (f *Front) serveDebug(w http.ResponseWriter, r *http.Request) {
	var v any
	var err error
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/_s3peer/state":
		v, err = f.State(r.Context())
	case r.Method == http.MethodPost && r.URL.Path == "/_s3peer/clock":
		d, perr := time.ParseDuration(r.URL.Query().Get("advance"))
		if perr != nil || d < 0 {
			http.Error(w, "advance: want a duration such as 192h", http.StatusBadRequest)
			return
		}
		v, err = f.Advance(r.Context(), d)
	default:
		http.Error(w, "unknown s3peer endpoint", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// FetchState reads GET /_s3peer/state of a front in another process
// (either of its URLs).
func FetchState(ctx context.Context, client *http.Client, frontURL string) (State, error) {
	var st State
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(frontURL, "/")+"/_s3peer/state", nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("s3 peer state: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("s3 peer state: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
