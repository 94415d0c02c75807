package replication

import (
	"context"
	"fmt"

	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepUnstage deletes the staged objects (the bucket's lifecycle rule is only
// a backstop) and hands the AMI over to the job: from here on, only
// retention removes it.
const StepUnstage = "unstage"

type unstageStep struct{ noEffects }

func (unstageStep) name() string { return StepUnstage }

func (unstageStep) do(ctx context.Context, r *run) error {
	prefix := awstarget.RunPrefix(r.job.ReplicationJobID, r.run.ReplicationRunID)
	// Uploads a retried stage abandoned before its first part was recorded.
	if _, err := r.target.AbortUploads(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: abort leftover uploads under %s: %w", r.server.Name, prefix, err)
	}
	if _, err := r.target.DeleteStaged(ctx, prefix); err != nil {
		return fmt.Errorf("vm %q: delete staged objects under %s: %w", r.server.Name, prefix, err)
	}
	all, err := r.e.Store.LedgerForRun(ctx, r.run.ReplicationRunID)
	if err != nil {
		return fmt.Errorf("vm %q: read the run's ledger: %w", r.server.Name, err)
	}
	// What the steps before this one made is now removed or handed over;
	// the steps after keep their own records.
	before := map[string]bool{}
	for _, s := range steps {
		if s.name() == StepUnstage {
			break
		}
		before[s.name()] = true
	}
	for _, le := range all {
		if unreleased(le) && before[le.Step] {
			if err := r.e.Store.RecordReleased(ctx, le.ID); err != nil {
				return fmt.Errorf("vm %q: record cleanup: %w", r.server.Name, err)
			}
		}
	}
	return nil
}
