package replication

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepUnstage deletes the staged objects once VM Import has read them (the
// bucket's lifecycle rule is only a backstop). It takes the objects, any
// upload left open and the staging prefix over from the stage step.
const StepUnstage = "unstage"

type unstageStep struct{}

func (unstageStep) info() Info {
	return Info{
		Name: StepUnstage, Title: "Delete the staged disks", Weight: 2, Metric: "unstage", Modes: fullOnly,
		Advice:  "The AMI was made but deleting the staged disks failed: check AWS (rehost connector status); the next start finishes the cleanup, and the bucket's lifecycle rule removes what is left after 7 days.",
		Effects: "takes the `s3-object`, `multipart-upload` and `staging-prefix` entries over from stage, deletes the objects and aborts leftover uploads",
	}
}

func (s unstageStep) do(ctx context.Context, r *run) error {
	var taken []store.LedgerEntry
	for _, kind := range []string{kindObject, kindUpload, kindStagingPrefix} {
		es, err := r.handOver(ctx, stageStep{}, s, kind)
		if err != nil {
			return err
		}
		taken = append(taken, es...)
	}
	prefix := awstarget.RunPrefix(r.job.ReplicationJobID, r.run.ReplicationRunID)
	// Uploads a retried stage abandoned before its first part was recorded.
	if _, err := r.target.AbortUploads(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: abort leftover uploads under %s: %w", r.server.Name, prefix, err)
	}
	if _, err := r.target.DeleteStaged(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: delete staged objects under %s: %w", r.server.Name, prefix, err)
	}
	for _, le := range taken {
		if unreleased(le) {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: record the staged disks' deletion: %w", r.server.Name, err)
			}
		}
	}
	return nil
}

func (unstageStep) undo(ctx context.Context, u *undoer, le store.LedgerEntry) error {
	return u.sweep(ctx)
}
