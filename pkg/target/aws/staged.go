package aws

import (
	"context"
	"fmt"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// StagedObject is an object under a staging prefix.
type StagedObject struct {
	Key          string    `json:"key"`
	Size         int64     `json:"size"`
	LastModified time.Time `json:"lastModified"`
}

// PendingUpload is a multipart upload not yet completed or aborted.
type PendingUpload struct {
	Key       string    `json:"key"`
	UploadID  string    `json:"uploadId"`
	Initiated time.Time `json:"initiated"`
}

// Staged is what the staging bucket holds under a prefix.
type Staged struct {
	Objects []StagedObject  `json:"objects"`
	Uploads []PendingUpload `json:"uploads"`
}

// ListStaged lists objects and pending multipart uploads under prefix (for
// cleanup and leak checks).
func (t *Target) ListStaged(ctx context.Context, prefix string) (Staged, error) {
	var s Staged
	bucket, err := t.bucket()
	if err != nil {
		return s, fmt.Errorf("list staged %s: %w", prefix, err)
	}
	if s.Objects, err = t.listObjects(ctx, bucket, prefix); err != nil {
		return s, fmt.Errorf("list staged objects under s3://%s/%s: %w", bucket, prefix, err)
	}
	if s.Uploads, err = t.listUploads(ctx, bucket, prefix); err != nil {
		return s, fmt.Errorf("list multipart uploads under s3://%s/%s: %w", bucket, prefix, err)
	}
	return s, nil
}

func (t *Target) listObjects(ctx context.Context, bucket, prefix string) ([]StagedObject, error) {
	var objs []StagedObject
	pages := s3.NewListObjectsV2Paginator(t.s3, &s3.ListObjectsV2Input{Bucket: sdk.String(bucket), Prefix: sdk.String(prefix)})
	for pages.HasMorePages() {
		var out *s3.ListObjectsV2Output
		if err := t.call(ctx, "ListObjectsV2", func(ctx context.Context) (err error) {
			out, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		for _, o := range out.Contents {
			objs = append(objs, StagedObject{Key: sdk.ToString(o.Key), Size: sdk.ToInt64(o.Size), LastModified: sdk.ToTime(o.LastModified)})
		}
	}
	return objs, nil
}

func (t *Target) listUploads(ctx context.Context, bucket, prefix string) ([]PendingUpload, error) {
	var ups []PendingUpload
	pages := s3.NewListMultipartUploadsPaginator(t.s3, &s3.ListMultipartUploadsInput{Bucket: sdk.String(bucket), Prefix: sdk.String(prefix)})
	for pages.HasMorePages() {
		var out *s3.ListMultipartUploadsOutput
		if err := t.call(ctx, "ListMultipartUploads", func(ctx context.Context) (err error) {
			out, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return nil, err
		}
		for _, u := range out.Uploads {
			ups = append(ups, PendingUpload{Key: sdk.ToString(u.Key), UploadID: sdk.ToString(u.UploadId), Initiated: sdk.ToTime(u.Initiated)})
		}
	}
	return ups, nil
}

// AbortUploads aborts every pending multipart upload under prefix and
// returns how many it aborted. Uploads that vanish meanwhile are not errors.
func (t *Target) AbortUploads(ctx context.Context, prefix string) (int, error) {
	bucket, err := t.bucket()
	if err != nil {
		return 0, fmt.Errorf("abort uploads under %s: %w", prefix, err)
	}
	ups, err := t.listUploads(ctx, bucket, prefix)
	if err != nil {
		return 0, fmt.Errorf("abort uploads under s3://%s/%s: list: %w", bucket, prefix, err)
	}
	n := 0
	for _, u := range ups {
		err := t.call(ctx, "AbortMultipartUpload", func(ctx context.Context) error {
			_, err := t.s3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: sdk.String(bucket), Key: sdk.String(u.Key), UploadId: sdk.String(u.UploadID)})
			return err
		})
		if err != nil && apiCode(err) != "NoSuchUpload" {
			return n, fmt.Errorf("abort upload %s of s3://%s/%s: %w", u.UploadID, bucket, u.Key, err)
		}
		if err == nil {
			n++
		}
	}
	return n, nil
}

// DeleteStaged deletes every object under prefix and returns how many.
// Idempotent: nothing left is not an error.
func (t *Target) DeleteStaged(ctx context.Context, prefix string) (int, error) {
	bucket, err := t.bucket()
	if err != nil {
		return 0, fmt.Errorf("delete staged objects under %s: %w", prefix, err)
	}
	objs, err := t.listObjects(ctx, bucket, prefix)
	if err != nil {
		return 0, fmt.Errorf("delete staged objects under s3://%s/%s: list: %w", bucket, prefix, err)
	}
	n := 0
	for _, o := range objs {
		err := t.call(ctx, "DeleteObject", func(ctx context.Context) error {
			_, err := t.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(o.Key)})
			return err
		})
		if err != nil && apiCode(err) != "NoSuchKey" {
			return n, fmt.Errorf("delete s3://%s/%s: %w", bucket, o.Key, err)
		}
		n++
	}
	return n, nil
}
