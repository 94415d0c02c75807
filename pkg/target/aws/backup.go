package aws

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// BackupPrefix holds the connector's state backups in the staging bucket:
// outside StagingPrefix, so the staging lifecycle rule (7-day expiry) never
// removes them; the connector keeps the newest of each appliance itself.
//
//	rehost-backup/<appliance>/rehost-state-<time>.rehost-backup
const BackupPrefix = "rehost-backup/"

// BackupKey is the object key of the backup of appliance id taken at t.
func BackupKey(id string, t time.Time) string {
	return BackupPrefix + clean(id) + "/rehost-state-" + t.UTC().Format("20060102T150405Z") + ".rehost-backup"
}

// PutBackup uploads a backup of size bytes as key in one request,
// encrypted at rest like staged objects. body is read from its start at
// each attempt.
func (t *Target) PutBackup(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	bucket, err := t.bucket()
	if err != nil {
		return fmt.Errorf("upload backup %s: %w", key, err)
	}
	alg, kms, bk := t.sse()
	err = t.call(ctx, "PutObject", func(ctx context.Context) error {
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			return err
		}
		_, err := t.s3.PutObject(ctx, &s3.PutObjectInput{
			Bucket: sdk.String(bucket), Key: sdk.String(key), Body: body, ContentLength: sdk.Int64(size),
			ContentType: sdk.String("application/octet-stream"), ServerSideEncryption: alg, SSEKMSKeyId: kms, BucketKeyEnabled: bk,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("upload backup to s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}

// ListBackups lists the objects under prefix (a BackupPrefix path), oldest
// first.
func (t *Target) ListBackups(ctx context.Context, prefix string) ([]StagedObject, error) {
	bucket, err := t.bucket()
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	objs, err := t.listObjects(ctx, bucket, prefix)
	if err != nil {
		return nil, fmt.Errorf("list backups under s3://%s/%s: %w", bucket, prefix, err)
	}
	slices.SortFunc(objs, func(a, b StagedObject) int { return a.LastModified.Compare(b.LastModified) })
	return objs, nil
}

// GetBackup opens the backup at key for reading; the caller closes it.
func (t *Target) GetBackup(ctx context.Context, key string) (io.ReadCloser, error) {
	bucket, err := t.bucket()
	if err != nil {
		return nil, fmt.Errorf("read backup %s: %w", key, err)
	}
	var out *s3.GetObjectOutput
	if err := t.call(ctx, "GetObject", func(ctx context.Context) (err error) {
		out, err = t.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(key)})
		return err
	}); err != nil {
		return nil, fmt.Errorf("read backup s3://%s/%s: %w", bucket, key, err)
	}
	return out.Body, nil
}

// DeleteBackup deletes the backup at key; one already gone is not an
// error.
func (t *Target) DeleteBackup(ctx context.Context, key string) error {
	bucket, err := t.bucket()
	if err != nil {
		return fmt.Errorf("delete backup %s: %w", key, err)
	}
	err = t.call(ctx, "DeleteObject", func(ctx context.Context) error {
		_, err := t.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(key)})
		return err
	})
	if err != nil && apiCode(err) != "NoSuchKey" {
		return fmt.Errorf("delete backup s3://%s/%s: %w", bucket, key, err)
	}
	return nil
}
