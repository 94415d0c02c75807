package replication

import (
	"context"

	"github.com/rehost/rehost/pkg/disk"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Target is what a run needs of the cloud side, in pkg/target/aws's own
// types: *aws.Target satisfies it, and so does the in-memory memtarget.
// Every method is safe for concurrent use and idempotent where it says so;
// errors of AWS calls have already been retried (see pkg/retry) and are
// final.
type Target interface {
	// Stage uploads a stream to in.Key as a multipart upload and completes
	// it. With in.Resume (a state read from in.Tracker before a crash) and
	// a body yielding the same bytes from the start, parts already stored
	// are verified and not re-sent. With in.KeepOnFailure the upload is
	// kept on failure, for a later resume or AbortUploads.
	Stage(ctx context.Context, in awstarget.StageInput) (awstarget.Object, error)
	// Recover returns the object a recorded upload became if it was
	// completed without its caller learning so; ok is false when the
	// upload is still open or no matching object exists.
	Recover(ctx context.Context, up awstarget.Upload, f disk.Format) (obj awstarget.Object, ok bool, err error)
	// AbortUploads aborts every multipart upload under prefix.
	AbortUploads(ctx context.Context, prefix string) (int, error)
	// DeleteStaged deletes every object under prefix.
	DeleteStaged(ctx context.Context, prefix string) (int, error)

	// StartImport starts VM Import of staged disks; idempotent per
	// ClientToken.
	StartImport(ctx context.Context, in awstarget.ImportInput) (awstarget.Import, error)
	// Wait polls an import until it ends; a rejected import is an
	// *aws.ImportError carrying VM Import's status message.
	Wait(ctx context.Context, imp awstarget.Import, progress func(awstarget.ImportStatus)) (awstarget.Result, error)
	// CancelImport cancels an import still running and returns what it had
	// already made (an image, the snapshots of finished disks), for the
	// caller to delete. Idempotent.
	CancelImport(ctx context.Context, imp awstarget.Import) (awstarget.Result, error)
	// FindImports finds imports by client token or tag, so one whose start
	// was cut off before it was recorded is found.
	FindImports(ctx context.Context, in awstarget.FindImportsInput) ([]awstarget.Import, error)

	// Finalize names and tags an image and its snapshots; idempotent.
	Finalize(ctx context.Context, imageID, name string, tags map[string]string) error
	// FindImages and FindSnapshots list what carries every given tag (an
	// empty value matches any value of the key).
	FindImages(ctx context.Context, tags map[string]string) ([]awstarget.Image, error)
	FindSnapshots(ctx context.Context, tags map[string]string) ([]awstarget.Snapshot, error)
	// DeleteImage deregisters an image (if imageID is not empty) and
	// deletes the snapshots given, which the caller recorded before; what
	// is already gone is not an error.
	DeleteImage(ctx context.Context, imageID string, snapshotIDs []string) error
}

var _ Target = (*awstarget.Target)(nil)
