package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

// StartOnDemandReplicationRun starts a run now, beside the schedule, within
// the on-demand limit per 24 hours.
func (l *Local) StartOnDemandReplicationRun(ctx context.Context, in *StartOnDemandReplicationRunInput) (*StartOnDemandReplicationRunOutput, error) {
	if in.ReplicationJobID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationJobId is required")
	}
	if err := checkMembers(member{"replicationJobId", limit.JobID, in.ReplicationJobID}, member{"description", limit.Description, in.Description}); err != nil {
		return nil, err
	}
	if _, err := l.D.Store.GetJob(ctx, in.ReplicationJobID); err != nil {
		return nil, storeErr(err, ErrJobNotFound)
	}
	id, err := l.D.Sched.Trigger(ctx, in.ReplicationJobID)
	switch {
	case errors.Is(err, scheduler.ErrOnDemandLimit):
		return nil, Errorf(ErrRunLimitExceeded, "%v", err)
	case errors.Is(err, scheduler.ErrJobState):
		return nil, Errorf(ErrOperationNotPermitted, "%v", err)
	case errors.Is(err, store.ErrConflict):
		return nil, Errorf(ErrOperationNotPermitted, "%v: wait for it to end ('rehost run watch')", err)
	case err != nil:
		return nil, storeErr(err, ErrJobNotFound)
	}
	if in.Description != "" {
		if _, err := l.D.Store.UpdateRun(ctx, id, func(r *store.ReplicationRun) error {
			r.Description = in.Description
			return nil
		}); err != nil {
			l.D.Log.Warn("record the description of an on-demand run", "run", id, "err", err)
		}
	}
	l.notify()
	return &StartOnDemandReplicationRunOutput{ReplicationRunID: id}, nil
}

// VerifyReplicationJob requests a full verification of an incremental
// job's replicas: the next run reads every block back. It starts that run
// now when it can (no run in progress, within the on-demand limit).
func (l *Local) VerifyReplicationJob(ctx context.Context, in *VerifyReplicationJobInput) (*VerifyReplicationJobOutput, error) {
	if in.ReplicationJobID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationJobId is required")
	}
	j, err := l.D.Store.UpdateJob(ctx, in.ReplicationJobID, func(j *store.ReplicationJob) error {
		switch {
		case j.State == store.JobDeleted || j.State == store.JobDeleting:
			return fmt.Errorf("%w: replication job %s is %s", errJobGone, j.ReplicationJobID, j.State)
		case j.Mode != store.ModeIncremental:
			return fmt.Errorf("%w: replication job %s copies its disks whole every run (full mode): there are no replicas to verify; its AMIs' content is checked by VM Import", errJobGone, j.ReplicationJobID)
		}
		j.VerifyRequested = true
		return nil
	})
	switch {
	case errors.Is(err, errJobGone):
		return nil, Errorf(ErrOperationNotPermitted, "%v", err)
	case err != nil:
		return nil, storeErr(err, ErrJobNotFound)
	}
	id, err := l.D.Sched.Trigger(ctx, j.ReplicationJobID)
	out := &VerifyReplicationJobOutput{ReplicationRunID: id}
	switch {
	case err == nil:
		out.Message = fmt.Sprintf("run %s reads back every block of the replicas of job %s", id, j.ReplicationJobID)
	case errors.Is(err, scheduler.ErrOnDemandLimit), errors.Is(err, store.ErrConflict), errors.Is(err, scheduler.ErrJobState):
		out.Message = fmt.Sprintf("the next run of job %s reads back every block of its replicas (%v)", j.ReplicationJobID, err)
	default:
		return nil, storeErr(err, ErrJobNotFound)
	}
	l.notify()
	return out, nil
}

// GetReplicationRuns pages through a job's runs, newest first.
func (l *Local) GetReplicationRuns(ctx context.Context, in *GetReplicationRunsInput) (*GetReplicationRunsOutput, error) {
	if in.ReplicationJobID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationJobId is required")
	}
	jobs, err := l.GetReplicationJobs(ctx, &GetReplicationJobsInput{ReplicationJobID: in.ReplicationJobID})
	if err != nil {
		return nil, err
	}
	runs, err := l.D.Store.ListRuns(ctx, in.ReplicationJobID, 0)
	if err != nil {
		return nil, internal(err)
	}
	pg, next, err := page(runs, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := &GetReplicationRunsOutput{ReplicationJob: &jobs.ReplicationJobList[0], ReplicationRunList: []ReplicationRun{}, NextToken: next}
	for _, r := range pg {
		out.ReplicationRunList = append(out.ReplicationRunList, l.run(ctx, r))
	}
	return out, nil
}

// GetReplicationRun returns one run, with its progress while it runs.
func (l *Local) GetReplicationRun(ctx context.Context, in *GetReplicationRunInput) (*GetReplicationRunOutput, error) {
	if in.ReplicationRunID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationRunId is required")
	}
	r, err := l.D.Store.GetRun(ctx, in.ReplicationRunID)
	if err != nil {
		return nil, storeErr(err, ErrInvalidParameter)
	}
	out := l.run(ctx, r)
	// One run also carries a finished run's progress: the step it failed
	// in, how long each step took.
	if out.Rehost.Progress == nil && !r.StartedAt.IsZero() {
		if p, err := l.D.RunProgress(ctx, r); err == nil {
			out.Rehost.Progress = &p
		}
	}
	return &GetReplicationRunOutput{ReplicationRun: out}, nil
}

// GetEvents lists job and run events, newest first.
func (l *Local) GetEvents(ctx context.Context, in *GetEventsInput) (*GetEventsOutput, error) {
	if in.MaxResults < 0 || in.MaxResults > maxPage {
		return nil, Errorf(ErrInvalidParameter, "maxResults %d: must be from 1 to %d", in.MaxResults, maxPage)
	}
	evs, err := l.D.Store.Events(ctx, store.EventFilter{JobID: in.ReplicationJobID, RunID: in.ReplicationRunID, Limit: cmp.Or(in.MaxResults, 100)})
	if err != nil {
		return nil, internal(err)
	}
	out := &GetEventsOutput{Events: []Event{}}
	for _, e := range evs {
		out.Events = append(out.Events, Event{Time: At(e.Time), ReplicationJobID: e.JobID, ReplicationRunID: e.RunID, Level: e.Level, Message: e.Message})
	}
	return out, nil
}
