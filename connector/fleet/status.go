package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Status is the fleet's view: every member with its health and load, the
// member that schedules, and the runs' leases.
type Status struct {
	Leader  string         `json:"leader,omitempty"`
	TTL     time.Duration  `json:"leaseTtl"`
	Members []MemberStatus `json:"members"`
	Leases  []LeaseStatus  `json:"leases"`
}

// MemberStatus is a member and what the fleet knows of it.
type MemberStatus struct {
	store.Member
	// Healthy: its heartbeat is younger than the lease TTL.
	Healthy bool `json:"healthy"`
	// RunsInFlight counts its unexpired leases of ACTIVE runs.
	RunsInFlight int  `json:"runsInFlight"`
	Leader       bool `json:"leader,omitempty"`
}

// LeaseStatus is one run's lease with the run it holds.
type LeaseStatus struct {
	store.Lease
	Expired bool           `json:"expired,omitempty"`
	JobID   string         `json:"jobId,omitempty"`
	State   store.RunState `json:"state,omitempty"`
	Stage   string         `json:"stage,omitempty"`
}

// StatusStore is what StatusOf reads.
type StatusStore interface {
	store.Fleet
	GetRun(ctx context.Context, id string) (store.ReplicationRun, error)
}

// StatusOf reads the fleet's view from the store, judging health and
// expiry against ttl at now.
func StatusOf(ctx context.Context, st StatusStore, ttl time.Duration, now time.Time) (Status, error) {
	members, err := st.ListMembers(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("fleet status: %w", err)
	}
	leases, err := st.Leases(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("fleet status: %w", err)
	}
	leader, until, err := st.LockHolder(ctx, schedulerLock)
	if err != nil {
		return Status{}, fmt.Errorf("fleet status: %w", err)
	}
	if !until.After(now) {
		leader = ""
	}
	out := Status{Leader: leader, TTL: ttl, Members: []MemberStatus{}, Leases: []LeaseStatus{}}
	load := map[string]int{}
	for _, l := range leases {
		ls := LeaseStatus{Lease: l, Expired: !l.Expires.After(now)}
		if r, err := st.GetRun(ctx, l.RunID); err == nil {
			ls.JobID, ls.State, ls.Stage = r.ReplicationJobID, r.State, r.Stage
		}
		if !ls.Expired && ls.State == store.RunActive {
			load[l.Holder]++
		}
		out.Leases = append(out.Leases, ls)
	}
	for _, m := range members {
		out.Members = append(out.Members, MemberStatus{Member: m, Healthy: now.Sub(m.Heartbeat) < ttl,
			RunsInFlight: load[m.ID], Leader: m.ID == leader})
	}
	return out, nil
}
