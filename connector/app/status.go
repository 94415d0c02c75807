package app

import (
	"fmt"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// An application's replication and launch status, rolled up from its
// servers' jobs and its launches, in SMS's values.

// SMS's replication status values of an application.
const (
	ReplicationReadyForConfiguration = "READY_FOR_CONFIGURATION"
	ReplicationReadyForReplication   = "READY_FOR_REPLICATION"
	ReplicationPending               = "REPLICATION_PENDING"
	ReplicationInProgress            = "REPLICATION_IN_PROGRESS"
	ReplicationReplicated            = "REPLICATED"
	ReplicationPartiallyReplicated   = "PARTIALLY_REPLICATED"
	ReplicationDeltaInProgress       = "DELTA_REPLICATION_IN_PROGRESS"
	ReplicationDeltaReplicated       = "DELTA_REPLICATED"
	ReplicationDeltaFailed           = "DELTA_REPLICATION_FAILED"
	ReplicationFailed                = "REPLICATION_FAILED"
	ReplicationStopped               = "REPLICATION_STOPPED"
)

// SMS's launch status values of an application.
const (
	LaunchReadyForConfiguration = "READY_FOR_CONFIGURATION"
	LaunchConfigurationInvalid  = "CONFIGURATION_INVALID"
	LaunchReadyForLaunch        = "READY_FOR_LAUNCH"
	LaunchPending               = "LAUNCH_PENDING"
	LaunchInProgress            = "LAUNCH_IN_PROGRESS"
	LaunchLaunched              = "LAUNCHED"
	LaunchDeltaInProgress       = "DELTA_LAUNCH_IN_PROGRESS"
	LaunchDeltaFailed           = "DELTA_LAUNCH_FAILED"
	LaunchFailed                = "LAUNCH_FAILED"
	LaunchTerminateInProgress   = "TERMINATE_IN_PROGRESS"
	LaunchTerminateFailed       = "TERMINATE_FAILED"
	LaunchTerminated            = "TERMINATED"
)

// ServerReplication is what the rollup reads of one server's job.
type ServerReplication struct {
	Name string
	Job  *store.ReplicationJob // nil: none
	// Latest is the job's newest run; Completed counts its completed runs.
	Latest    *store.ReplicationRun
	Completed int
	// LastCompleted is when the newest completed run ended.
	LastCompleted time.Time
}

// ReplicationStatus rolls the servers' replication up into the app's
// status, a message naming the servers that decide it, and the time of the
// latest completed replication.
func ReplicationStatus(a store.App, servers []ServerReplication) (status, message string, latest time.Time) {
	if a.Replication == nil {
		return ReplicationReadyForConfiguration, "put a replication configuration", time.Time{}
	}
	var running, failed, replicated, waiting []string
	delta := false
	for _, s := range servers {
		if s.LastCompleted.After(latest) {
			latest = s.LastCompleted
		}
		if s.Job == nil || s.Job.State == store.JobDeleted {
			waiting = append(waiting, s.Name)
			continue
		}
		hasAMI := s.Job.LatestAmiID != ""
		switch {
		case s.Latest != nil && s.Latest.State.Live():
			running = append(running, s.Name)
			delta = delta || hasAMI
		case s.Job.State == store.JobFailed || s.Job.State == store.JobPausedOnFailure || s.Latest != nil && s.Latest.State == store.RunFailed:
			msg := s.Job.StatusMessage
			if msg == "" && s.Latest != nil {
				msg = s.Latest.StatusMessage
			}
			failed = append(failed, fmt.Sprintf("%s: %s", s.Name, msg))
			delta = delta || hasAMI
		case hasAMI:
			replicated = append(replicated, s.Name)
			delta = delta || s.Completed > 1
		default:
			waiting = append(waiting, s.Name)
		}
	}
	switch {
	case a.ReplicationStopped:
		return ReplicationStopped, "replication was stopped: start it again with StartAppReplication", latest
	case len(failed) > 0 && delta:
		return ReplicationDeltaFailed, strings.Join(failed, "; "), latest
	case len(failed) > 0:
		return ReplicationFailed, strings.Join(failed, "; "), latest
	case len(running) > 0 && delta:
		return ReplicationDeltaInProgress, "replicating " + strings.Join(running, ", "), latest
	case len(running) > 0:
		return ReplicationInProgress, "replicating " + strings.Join(running, ", "), latest
	case len(servers) > 0 && len(replicated) == len(servers) && delta:
		return ReplicationDeltaReplicated, "", latest
	case len(servers) > 0 && len(replicated) == len(servers):
		return ReplicationReplicated, "", latest
	case len(replicated) > 0:
		return ReplicationPartiallyReplicated, "no AMI yet of " + strings.Join(waiting, ", "), latest
	}
	noJob := true
	for _, s := range servers {
		noJob = noJob && (s.Job == nil || s.Job.State == store.JobDeleted)
	}
	if noJob {
		return ReplicationReadyForReplication, "start it with StartAppReplication", latest
	}
	return ReplicationPending, "waiting for the first runs of " + strings.Join(waiting, ", "), latest
}

// LaunchStatus is the app's launch status from its configuration check
// (nil: complete) and its cutover launches, newest first.
func LaunchStatus(a store.App, configErr error, launches []store.Launch) (status, message string) {
	var cut *store.Launch
	for i := range launches {
		if launches[i].Kind == store.LaunchCutover {
			cut = &launches[i]
			break
		}
	}
	if cut == nil || cut.State == store.LaunchTerminated && cut.StackID == "" {
		switch {
		case a.Launch == nil:
			return LaunchReadyForConfiguration, "put a launch configuration"
		case configErr != nil:
			return LaunchConfigurationInvalid, configErr.Error()
		case cut != nil && cut.StatusMessage != "":
			return LaunchReadyForLaunch, "the last launch was refused: " + cut.StatusMessage
		}
		return LaunchReadyForLaunch, ""
	}
	switch cut.State {
	case store.LaunchPending:
		return LaunchPending, cut.StatusMessage
	case store.LaunchCreating:
		return LaunchInProgress, cut.StatusMessage
	case store.LaunchUpdating:
		return LaunchDeltaInProgress, cut.StatusMessage
	case store.LaunchLaunched:
		return LaunchLaunched, cut.StatusMessage
	case store.LaunchUpdateFailed:
		return LaunchDeltaFailed, cut.StatusMessage
	case store.LaunchFailed:
		return LaunchFailed, cut.StatusMessage
	case store.LaunchTerminating:
		return LaunchTerminateInProgress, cut.StatusMessage
	case store.LaunchTerminateFailed:
		return LaunchTerminateFailed, cut.StatusMessage
	}
	return LaunchTerminated, cut.StatusMessage
}
