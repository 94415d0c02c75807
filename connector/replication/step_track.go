package replication

import (
	"context"
	"errors"
	"fmt"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// StepTrack turns on the VM's change tracking where it must be turned on,
// and checks that the run can be incremental: the source tracks changes
// and reads disks at random, and the region has EBS direct. Where one of
// them is not to be had, the run turns full (S3 and VM Import) and says
// why.
const StepTrack = "track"

type trackStep struct{ noEffects }

func (trackStep) info() Info {
	return Info{
		Name: StepTrack, Title: "Turn on change tracking", Weight: 2, Metric: "track", Modes: incrementalOnly,
		Advice:  "The connector could not check or turn on the VM's change tracking: test the source (rehost source test) and start the job again. A VM that cannot be tracked is not an error: its runs copy it whole and say why.",
		Effects: "nothing to undo: turns change tracking on where it must be (vSphere CBT, with a snapshot cycle the source removes itself), checks EBS direct in the region; where either is not to be had the run turns full and says why",
	}
}

func (s trackStep) do(ctx context.Context, r *run) error {
	why, err := r.incrementalBlocked(ctx)
	if err != nil {
		return err
	}
	if why != "" {
		return r.turnFull(ctx, why)
	}
	return nil
}

// incrementalBlocked says why the run cannot be incremental ("" when it
// can); an error is one worth retrying the step for.
func (r *run) incrementalBlocked(ctx context.Context) (string, error) {
	ct, tracks := r.src.(source.ChangeTracker)
	_, reads := r.src.(source.CheckpointReader)
	if !tracks || !reads {
		return "its source cannot tell which blocks changed or read them at random", nil
	}
	if err := r.target.CheckEBSDirect(ctx); err != nil {
		return err.Error(), nil
	}
	if err := ct.EnableTracking(ctx, r.vm.ID); err != nil {
		if errors.Is(err, source.ErrNoTracking) {
			return err.Error(), nil
		}
		return "", fmt.Errorf("vm %q: turn on change tracking: %w", r.server.Name, err)
	}
	return "", nil
}

// turnFull makes the run copy the VM whole from here on, and says why.
func (r *run) turnFull(ctx context.Context, why string) error {
	if err := r.setMode(ctx, ModeFull); err != nil {
		return err
	}
	r.updateRun(ctx, func(x *store.ReplicationRun) {
		x.Replication = &store.RunReplication{FullBecause: why}
	})
	r.log.Warn("incremental run turned full", "why", why)
	r.event(ctx, store.LevelWarn, "vm %q is copied whole this time (S3 and VM Import), not incrementally: %s", r.server.Name, why)
	return nil
}
