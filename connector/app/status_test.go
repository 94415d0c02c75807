package app

import (
	"errors"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

func TestReplicationStatus(t *testing.T) {
	configured := store.App{Replication: &store.ReplicationConfig{}}
	t1 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	job := func(state store.JobState, ami string) *store.ReplicationJob {
		return &store.ReplicationJob{State: state, LatestAmiID: ami, StatusMessage: "VM Import: Unknown OS"}
	}
	run := func(state store.RunState) *store.ReplicationRun { return &store.ReplicationRun{State: state} }
	for _, c := range []struct {
		name    string
		app     store.App
		servers []ServerReplication
		want    string
	}{
		{"not configured", store.App{}, nil, ReplicationReadyForConfiguration},
		{"no jobs", configured, []ServerReplication{{Name: "db"}}, ReplicationReadyForReplication},
		{"jobs, no run yet", configured, []ServerReplication{{Name: "db", Job: job(store.JobPending, "")}}, ReplicationPending},
		{"first runs", configured, []ServerReplication{{Name: "db", Job: job(store.JobActive, ""), Latest: run(store.RunActive)}}, ReplicationInProgress},
		{"again", configured, []ServerReplication{{Name: "db", Job: job(store.JobActive, "ami-1"), Latest: run(store.RunActive)}}, ReplicationDeltaInProgress},
		{"some", configured, []ServerReplication{{Name: "db", Job: job(store.JobActive, "ami-1"), Completed: 1}, {Name: "web", Job: job(store.JobPending, "")}}, ReplicationPartiallyReplicated},
		{"all", configured, []ServerReplication{{Name: "db", Job: job(store.JobActive, "ami-1"), Completed: 1, LastCompleted: t1}}, ReplicationReplicated},
		{"all, twice", configured, []ServerReplication{{Name: "db", Job: job(store.JobActive, "ami-2"), Completed: 2}}, ReplicationDeltaReplicated},
		{"failed", configured, []ServerReplication{{Name: "db", Job: job(store.JobFailed, ""), Latest: run(store.RunFailed)}}, ReplicationFailed},
		{"failed again", configured, []ServerReplication{{Name: "db", Job: job(store.JobPausedOnFailure, "ami-1")}}, ReplicationDeltaFailed},
		{"stopped", store.App{Replication: &store.ReplicationConfig{}, ReplicationStopped: true}, []ServerReplication{{Name: "db"}}, ReplicationStopped},
	} {
		got, msg, latest := ReplicationStatus(c.app, c.servers)
		if got != c.want {
			t.Errorf("%s: %s (%s), want %s", c.name, got, msg, c.want)
		}
		if c.want == ReplicationFailed && msg != "db: VM Import: Unknown OS" {
			t.Errorf("%s: message %q does not name the server and its cause", c.name, msg)
		}
		if c.name == "all" && !latest.Equal(t1) {
			t.Errorf("latest replication %v", latest)
		}
	}
}

func TestLaunchStatus(t *testing.T) {
	a := store.App{Launch: &store.LaunchConfig{}}
	if s, _ := LaunchStatus(store.App{}, nil, nil); s != LaunchReadyForConfiguration {
		t.Errorf("not configured: %s", s)
	}
	if s, msg := LaunchStatus(a, errors.New("server web-01 has no instance type"), nil); s != LaunchConfigurationInvalid || msg == "" {
		t.Errorf("invalid: %s %q", s, msg)
	}
	for state, want := range map[store.LaunchState]string{
		store.LaunchPending: LaunchPending, store.LaunchCreating: LaunchInProgress, store.LaunchUpdating: LaunchDeltaInProgress,
		store.LaunchLaunched: LaunchLaunched, store.LaunchUpdateFailed: LaunchDeltaFailed, store.LaunchFailed: LaunchFailed,
		store.LaunchTerminating: LaunchTerminateInProgress, store.LaunchTerminateFailed: LaunchTerminateFailed,
	} {
		// A test launch never decides the app's (cutover's) status.
		ls := []store.Launch{{Kind: store.LaunchTest, State: store.LaunchLaunched}, {Kind: store.LaunchCutover, State: state, StackID: "arn"}}
		if s, _ := LaunchStatus(a, nil, ls); s != want {
			t.Errorf("%s: %s, want %s", state, s, want)
		}
	}
	if s, _ := LaunchStatus(a, nil, []store.Launch{{Kind: store.LaunchCutover, State: store.LaunchTerminated, StackID: "arn"}}); s != LaunchTerminated {
		t.Errorf("terminated: %s", s)
	}
	if s, msg := LaunchStatus(a, nil, []store.Launch{{Kind: store.LaunchCutover, State: store.LaunchTerminated, StatusMessage: "refused"}}); s != LaunchReadyForLaunch || msg == "" {
		t.Errorf("a refused launch: %s %q", s, msg)
	}
}
