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
	err := eachPage(ctx, t, "ListObjectsV2", pages, func(out *s3.ListObjectsV2Output) {
		for _, o := range out.Contents {
			objs = append(objs, StagedObject{Key: sdk.ToString(o.Key), Size: sdk.ToInt64(o.Size), LastModified: sdk.ToTime(o.LastModified)})
		}
	})
	if err != nil {
		return nil, err
	}
	return objs, nil
}

func (t *Target) listUploads(ctx context.Context, bucket, prefix string) ([]PendingUpload, error) {
	var ups []PendingUpload
	pages := s3.NewListMultipartUploadsPaginator(t.s3, &s3.ListMultipartUploadsInput{Bucket: sdk.String(bucket), Prefix: sdk.String(prefix)})
	err := eachPage(ctx, t, "ListMultipartUploads", pages, func(out *s3.ListMultipartUploadsOutput) {
		for _, u := range out.Uploads {
			ups = append(ups, PendingUpload{Key: sdk.ToString(u.Key), UploadID: sdk.ToString(u.UploadId), Initiated: sdk.ToTime(u.Initiated)})
		}
	})
	if err != nil {
		return nil, err
	}
	return ups, nil
}

// s3Pages is what the S3 SDK's paginators have in common.
type s3Pages[O any] interface {
	HasMorePages() bool
	NextPage(context.Context, ...func(*s3.Options)) (O, error)
}

// eachPage reads every page, each one call of op under the retry policy
// (t.call), and hands it to use.
func eachPage[O any](ctx context.Context, t *Target, op string, pages s3Pages[O], use func(O)) error {
	for pages.HasMorePages() {
		var out O
		if err := t.call(ctx, op, func(ctx context.Context) (err error) {
			out, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return err
		}
		use(out)
	}
	return nil
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
