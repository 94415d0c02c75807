package replication

import (
	"context"
	"crypto/sha256"

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

	// Tasks says which VM Import tasks StartImport starts for in, by kind
	// (each kind is limited by a per-region quota of its own).
	Tasks(in awstarget.ImportInput) awstarget.ImportTasks
	// StartImport starts VM Import of staged disks; idempotent per
	// ClientToken.
	StartImport(ctx context.Context, in awstarget.ImportInput) (awstarget.Import, error)
	// Wait polls an import until it ends; a rejected import is an
	// *aws.ImportError carrying VM Import's status message.
	Wait(ctx context.Context, imp awstarget.Import, progress func(awstarget.ImportStatus)) (awstarget.Result, error)
	// ImportAdmitted imports staged disks one ImportSnapshot task per
	// disk, starting a disk's task only once adm admits it (see
	// aws.Target.ImportAdmitted): known holds the task ids of disks
	// started before a restart, which take slots back only while they
	// run; a disk recorded without an id is started again under the same
	// client token. It registers the AMI when every disk is imported.
	ImportAdmitted(ctx context.Context, in awstarget.ImportInput, known []string, adm awstarget.Admission, progress func(awstarget.ImportStatus)) (awstarget.Import, awstarget.Result, error)
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

	// EBS direct, for incremental runs. Blocks are awstarget.BlockSize
	// bytes.

	// CheckEBSDirect returns why replicas cannot be written (no endpoint
	// in the region, no permission), or nil.
	CheckEBSDirect(ctx context.Context) error
	// StartReplica starts a pending snapshot, a child of in.Parent when
	// set; idempotent per in.ClientToken.
	StartReplica(ctx context.Context, in awstarget.ReplicaInput) (awstarget.Replica, error)
	// PutBlock stores block index of pending snapshot id; sum is the
	// data's SHA-256, which the target checks. Putting a block again
	// replaces it.
	PutBlock(ctx context.Context, id string, index int64, data []byte, sum [sha256.Size]byte) error
	// CompleteReplica completes a pending snapshot into which changed
	// blocks were put; aggregate is the SHA-256 of their checksums in block
	// order. A refusal is an *aws.ReplicaError (the snapshot is then in
	// error). Completing a completed snapshot succeeds.
	CompleteReplica(ctx context.Context, id string, changed int64, aggregate []byte) error
	// SnapshotState is a snapshot's state (pending, completed, error), ""
	// when it does not exist.
	SnapshotState(ctx context.Context, id string) (string, error)
	// ListBlocks calls fn with the blocks of completed snapshot id holding
	// data, from index start, a page at a time in ascending order; an
	// error of fn stops the listing with it.
	ListBlocks(ctx context.Context, id string, start int64, fn func([]awstarget.Block) error) error
	// ChangedBlocks is ListBlocks of what second holds differently from
	// first of its lineage ("" for every block); a block only first holds
	// has no Token.
	ChangedBlocks(ctx context.Context, first, second string, fn func([]awstarget.Block) error) error
	// GetBlock reads block b of completed snapshot id into buf and returns
	// the checksum it was put with (base64 SHA-256).
	GetBlock(ctx context.Context, id string, b awstarget.Block, buf []byte) (string, error)
}

var _ Target = (*awstarget.Target)(nil)
