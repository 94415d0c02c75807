package replication

import (
	"context"
	"encoding/json"
	"io"

	"github.com/rehost/rehost/pkg/disk"
)

// Target is what a run needs of the cloud side. connector binds it to
// pkg/target/aws; the interface keeps the run free of SDK types. Opaque
// json.RawMessage values (upload state, import references) are persisted in
// the ledger as they are and handed back after a restart.
type Target interface {
	// Stage uploads a disk stream of unknown length to key. resume, when not
	// nil, is the last state passed to checkpoint by an earlier attempt and
	// body yields the same content from the start; completed parts are then
	// verified and not re-sent. On failure the upload is kept for a resume;
	// the run aborts it when it gives up.
	Stage(ctx context.Context, in StageRequest) (Staged, error)
	// AbortUploads aborts every multipart upload under prefix.
	AbortUploads(ctx context.Context, prefix string) (int, error)
	// DeleteStaged deletes every object under prefix.
	DeleteStaged(ctx context.Context, prefix string) (int, error)

	// StartImport starts VM Import of the staged disks. It is idempotent
	// per ClientToken: a second call with the same token returns the same
	// import.
	StartImport(ctx context.Context, in ImportRequest) (json.RawMessage, error)
	// WaitImport polls the import until it ends; a rejected import returns
	// an error carrying VM Import's status message.
	WaitImport(ctx context.Context, ref json.RawMessage, progress func(percent int, status string)) (ImportResult, error)
	// CancelImport cancels an import still running. If it had already
	// completed, the image it made is returned so the caller can delete it.
	CancelImport(ctx context.Context, ref json.RawMessage) (ImportResult, error)
	// FindImports returns the imports tagged tagKey=tagValue, so an import
	// whose start was cut off before its reference was recorded is found.
	FindImports(ctx context.Context, tagKey, tagValue string) ([]json.RawMessage, error)

	// Finalize names and tags an image and its snapshots; idempotent.
	Finalize(ctx context.Context, imageID, name string, tags map[string]string) error
	// DeleteImage deregisters an image and deletes its snapshots; an unknown
	// image is not an error.
	DeleteImage(ctx context.Context, imageID string) error
	// Retain keeps the keep most recent images tagged tagKey=tagValue and
	// deletes the others, returning their ids.
	Retain(ctx context.Context, tagKey, tagValue string, keep int) ([]string, error)
}

// StageRequest is one disk stream to stage.
type StageRequest struct {
	Key        string
	Body       io.Reader
	SizeHint   int64
	Format     disk.Format
	Resume     json.RawMessage
	Progress   func(done int64)
	Checkpoint func(state json.RawMessage)
}

// Staged is a staged disk image.
type Staged struct {
	Bucket string      `json:"bucket"`
	Key    string      `json:"key"`
	Size   int64       `json:"size"`
	Format disk.Format `json:"format"`
	// Reused counts parts a resume kept without re-sending.
	Reused int `json:"reused,omitempty"`
}

// ImportRequest asks VM Import for an image of the staged disks.
type ImportRequest struct {
	Disks       []Staged // boot disk first
	LicenseType string   // AWS or BYOL
	BootMode    string   // legacy-bios or uefi
	Platform    string   // Linux or Windows
	Encrypted   bool
	KMSKeyID    string
	RoleName    string
	ClientToken string
	Description string
	Tags        map[string]string
}

// ImportResult is what a completed import made.
type ImportResult struct {
	ImageID     string   `json:"imageId"`
	SnapshotIDs []string `json:"snapshotIds,omitempty"`
}
