package s3peer

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// lifecycleRule is the part of a lifecycle rule the front acts on.
type lifecycleRule struct {
	ID     string
	Status string
	Prefix string // legacy rules carry it outside Filter
	Filter *struct {
		Prefix string
		And    *struct{ Prefix string }
	}
	Expiration *struct {
		Days int
		Date string
	}
	AbortIncompleteMultipartUpload *struct{ DaysAfterInitiation int }
}

func (r lifecycleRule) prefix() string {
	if r.Filter != nil {
		if r.Filter.And != nil {
			return r.Filter.And.Prefix
		}
		return r.Filter.Prefix
	}
	return r.Prefix
}

func parseLifecycle(doc []byte) ([]lifecycleRule, error) {
	var c struct {
		Rules []lifecycleRule `xml:"Rule"`
	}
	if err := xml.Unmarshal(doc, &c); err != nil {
		return nil, err
	}
	if len(c.Rules) == 0 {
		return nil, errors.New("no Rule")
	}
	for _, r := range c.Rules {
		if r.Status != "Enabled" && r.Status != "Disabled" {
			return nil, fmt.Errorf("rule %q: Status %q is not Enabled or Disabled", r.ID, r.Status)
		}
		if e := r.Expiration; e != nil && e.Days < 0 {
			return nil, fmt.Errorf("rule %q: negative Days", r.ID)
		}
	}
	return c.Rules, nil
}

// Now is the front's lifecycle clock: the wall clock moved by Advance.
func (f *Front) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Now().Add(f.st.ClockOffset)
}

// Sweep is what one lifecycle pass removed.
type Sweep struct {
	Now     time.Time `json:"now"`
	Expired []string  `json:"expired"` // bucket/key
	Aborted []string  `json:"aborted"` // bucket/key#uploadId
}

// Advance moves the lifecycle clock forward by d and runs the lifecycle
// rules at the new time.
func (f *Front) Advance(ctx context.Context, d time.Duration) (Sweep, error) {
	f.mu.Lock()
	f.st.ClockOffset += d
	f.saveLocked()
	f.mu.Unlock()
	return f.Sweep(ctx)
}

// due is when S3 acts on something made at t under a rule of days: t plus
// the days, rounded up to the next midnight UTC.
func due(t time.Time, days int) time.Time {
	d := t.UTC().Add(time.Duration(days) * 24 * time.Hour)
	midnight := d.Truncate(24 * time.Hour)
	if midnight.Equal(d) {
		return d
	}
	return midnight.Add(24 * time.Hour)
}

// Sweep runs every bucket's lifecycle rules at the front's clock: objects
// whose expiration is due are deleted, multipart uploads initiated longer
// ago than the rule's days are aborted, each by the rule's prefix.
func (f *Front) Sweep(ctx context.Context) (Sweep, error) {
	now := f.Now()
	sw := Sweep{Now: now, Expired: []string{}, Aborted: []string{}}
	f.mu.Lock()
	rules := map[string][]lifecycleRule{}
	for bucket, subs := range f.st.Config {
		if rs, err := parseLifecycle(subs[SubLifecycle]); err == nil {
			rules[bucket] = rs
		}
	}
	f.mu.Unlock()
	for bucket, rs := range rules {
		for _, r := range rs {
			if r.Status != "Enabled" {
				continue
			}
			if e := r.Expiration; e != nil && (e.Days > 0 || e.Date != "") {
				if err := f.expire(ctx, bucket, r, now, &sw); err != nil {
					return sw, err
				}
			}
			if a := r.AbortIncompleteMultipartUpload; a != nil && a.DaysAfterInitiation > 0 {
				if err := f.abortUploads(ctx, bucket, r.prefix(), a.DaysAfterInitiation, now, &sw); err != nil {
					return sw, err
				}
			}
		}
	}
	return sw, nil
}

func (f *Front) expire(ctx context.Context, bucket string, r lifecycleRule, now time.Time, sw *Sweep) error {
	p := s3.NewListObjectsV2Paginator(f.backend, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(r.prefix())})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("lifecycle: list %s: %w", bucket, err)
		}
		for _, o := range out.Contents {
			at := due(aws.ToTime(o.LastModified), r.Expiration.Days)
			if r.Expiration.Date != "" {
				t, err := time.Parse(time.RFC3339, r.Expiration.Date)
				if err != nil {
					continue
				}
				at = t
			}
			if now.Before(at) {
				continue
			}
			if _, err := f.backend.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key}); err != nil {
				return fmt.Errorf("lifecycle: expire %s/%s: %w", bucket, aws.ToString(o.Key), err)
			}
			name := bucket + "/" + aws.ToString(o.Key)
			f.mu.Lock()
			delete(f.st.Objects, name)
			f.saveLocked()
			f.mu.Unlock()
			sw.Expired = append(sw.Expired, name)
		}
	}
	return nil
}

func (f *Front) abortUploads(ctx context.Context, bucket, prefix string, days int, now time.Time, sw *Sweep) error {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket), Prefix: aws.String(prefix)}
	for {
		out, err := f.backend.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("lifecycle: list uploads of %s: %w", bucket, err)
		}
		for _, u := range out.Uploads {
			if now.Before(due(aws.ToTime(u.Initiated), days)) {
				continue
			}
			if _, err := f.backend.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId}); err != nil {
				return fmt.Errorf("lifecycle: abort upload %s of %s/%s: %w", aws.ToString(u.UploadId), bucket, aws.ToString(u.Key), err)
			}
			f.mu.Lock()
			delete(f.st.Uploads, aws.ToString(u.UploadId))
			f.saveLocked()
			f.mu.Unlock()
			sw.Aborted = append(sw.Aborted, bucket+"/"+aws.ToString(u.Key)+"#"+aws.ToString(u.UploadId))
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// sweepEvery runs the lifecycle rules on the real clock, as S3 runs them
// in the background.
func (f *Front) sweepEvery(d time.Duration) {
	defer f.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), d)
			if sw, err := f.Sweep(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "s3peer front: %v\n", err)
			} else if n := len(sw.Expired) + len(sw.Aborted); n > 0 {
				fmt.Fprintf(os.Stderr, "s3peer front: lifecycle expired %s; aborted %s\n", strings.Join(sw.Expired, ", "), strings.Join(sw.Aborted, ", "))
			}
			cancel()
		}
	}
}
