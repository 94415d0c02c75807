package demo

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/s3peer"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// PeerStates is what the three peers report holding: in-process
// (Peers.States) or read from peers running as processes of their own
// (FetchStates), for the demo's and a crash campaign's leak checks.
type PeerStates struct {
	VCenter vspheresim.State   `json:"vcenter"`
	S3      s3peer.State       `json:"s3"`
	AWS     emulator.StateView `json:"aws"`
}

// PeerURLs locate peers running as processes (rehost-lab vcenter, s3, aws).
type PeerURLs struct {
	VCenter, VCenterThumbprint string
	S3                         string // either of the front's URLs
	// S3Client reaches S3 (trusting its CA for the HTTPS URL); default
	// http.DefaultClient.
	S3Client *http.Client
	AWS      string
}

// FetchStates reads the test-only state endpoints of separately started
// peers.
func FetchStates(ctx context.Context, u PeerURLs) (PeerStates, error) {
	var st PeerStates
	var err error
	if st.VCenter, err = vspheresim.FetchState(ctx, u.VCenter, u.VCenterThumbprint); err != nil {
		return st, err
	}
	if st.S3, err = s3peer.FetchState(ctx, u.S3Client, u.S3); err != nil {
		return st, err
	}
	if st.AWS, err = emulator.FetchState(nil, u.AWS); err != nil {
		return st, fmt.Errorf("aws emulator state: %w", err)
	}
	return st, nil
}

// Leftovers is what the peers still hold that a finished run should have
// removed.
type Leftovers struct {
	VMSnapshots     []string `json:"vmSnapshots,omitempty"`
	OpenLeases      int      `json:"openLeases,omitempty"`
	Uploads         []string `json:"multipartUploads,omitempty"`
	Objects         []string `json:"objects,omitempty"`
	ActiveImports   []string `json:"activeImports,omitempty"`
	OrphanSnapshots []string `json:"orphanSnapshots,omitempty"` // EBS snapshots in no AMI, not claimed
	// PendingSnapshots are EBS direct snapshots started and never
	// completed (a replica a run left).
	PendingSnapshots []string `json:"pendingSnapshots,omitempty"`
	// ReplicaSnapshots are completed replicas in no AMI: what incremental
	// jobs keep between runs, claimed or not.
	ReplicaSnapshots []string `json:"replicaSnapshots,omitempty"`
	UntrackedImages  []string `json:"untrackedImages,omitempty"`  // AMIs no completed run claims
	DuplicateAMIRuns []string `json:"duplicateAmiRuns,omitempty"` // runs with several AMIs
	// AMIsPerRun counts the AMIs tagged with each run.
	AMIsPerRun map[string]int `json:"amisPerRun,omitempty"`
	// Stacks are CloudFormation stacks not deleted, and Instances EC2
	// instances not terminated: what application launches left.
	Stacks    []string `json:"stacks,omitempty"`
	Instances []string `json:"instances,omitempty"`
	// Templates are application templates in the staging bucket: kept on
	// purpose (the staging lifecycle expires them), not a leak.
	Templates []string `json:"templates,omitempty"`
	// Backups are the connector's state backups (awstarget.BackupPrefix):
	// kept on purpose, so not counted as left behind.
	Backups []string `json:"backups,omitempty"`
}

// Empty reports whether nothing leaked.
func (l Leftovers) Empty() bool {
	return len(l.VMSnapshots) == 0 && l.OpenLeases == 0 && len(l.Uploads) == 0 && len(l.Objects) == 0 &&
		len(l.ActiveImports) == 0 && len(l.OrphanSnapshots) == 0 && len(l.PendingSnapshots) == 0 &&
		len(l.UntrackedImages) == 0 && len(l.DuplicateAMIRuns) == 0 && len(l.Stacks) == 0 && len(l.Instances) == 0
}

func (l Leftovers) String() string {
	var parts []string
	add := func(name string, v []string) {
		if len(v) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", name, strings.Join(v, ", ")))
		}
	}
	add("vm snapshots", l.VMSnapshots)
	if l.OpenLeases > 0 {
		parts = append(parts, fmt.Sprintf("open nfc leases: %d", l.OpenLeases))
	}
	add("multipart uploads", l.Uploads)
	add("objects", l.Objects)
	add("active imports", l.ActiveImports)
	add("orphan ebs snapshots", l.OrphanSnapshots)
	add("pending ebs snapshots", l.PendingSnapshots)
	add("untracked amis", l.UntrackedImages)
	add("runs with several amis", l.DuplicateAMIRuns)
	add("stacks", l.Stacks)
	add("instances", l.Instances)
	if len(parts) == 0 {
		return "nothing left behind"
	}
	return strings.Join(parts, "; ")
}

// Leftovers counts what the peers hold in bucket (every bucket when "")
// beyond the AMIs of completed runs. claimed holds those runs' AMI ids and
// the replica snapshots the connector keeps; a nil claimed skips the
// untracked-AMI check and takes every completed replica (tagged
// rehost:replica) as kept (a caller without the connector's state).
func (st PeerStates) Leftovers(bucket string, claimed map[string]bool) Leftovers {
	l := Leftovers{OpenLeases: len(st.VCenter.OpenLeases), AMIsPerRun: map[string]int{}}
	for vm, names := range st.VCenter.Snapshots {
		for _, n := range names {
			l.VMSnapshots = append(l.VMSnapshots, vm+"/"+n)
		}
	}
	for _, b := range st.S3.Buckets {
		if bucket != "" && b.Name != bucket {
			continue
		}
		prefix := ""
		if bucket == "" {
			prefix = b.Name + "/"
		}
		for _, o := range b.Objects {
			if strings.HasPrefix(o.Key, awstarget.TemplatePrefix) {
				l.Templates = append(l.Templates, prefix+o.Key)
				continue
			}
			// The connector's state backups are kept on purpose.
			if strings.HasPrefix(o.Key, awstarget.BackupPrefix) {
				l.Backups = append(l.Backups, prefix+o.Key)
				continue
			}
			l.Objects = append(l.Objects, prefix+o.Key)
		}
		for _, u := range b.Uploads {
			l.Uploads = append(l.Uploads, prefix+u.Key+"#"+u.UploadID)
		}
	}
	inImage := map[string]bool{}
	perRun := map[string][]string{}
	for _, im := range st.AWS.Images {
		if im.State == "deregistered" {
			continue
		}
		for _, d := range im.Devices {
			inImage[d.SnapshotID] = true
		}
		if claimed != nil && !claimed[im.ID] {
			l.UntrackedImages = append(l.UntrackedImages, im.ID)
		}
		for _, t := range im.Tags {
			if t.Key == replication.TagRun {
				perRun[t.Value] = append(perRun[t.Value], im.ID)
			}
		}
	}
	for run, ids := range perRun {
		l.AMIsPerRun[run] = len(ids)
		if len(ids) > 1 {
			l.DuplicateAMIRuns = append(l.DuplicateAMIRuns, run+"="+strings.Join(ids, "+"))
		}
	}
	for _, s := range st.AWS.Snapshots {
		replica := slices.ContainsFunc(s.Tags, func(t emulator.Tag) bool { return t.Key == replication.TagReplica })
		switch {
		case s.State == "pending":
			l.PendingSnapshots = append(l.PendingSnapshots, s.ID)
		case inImage[s.ID]:
		case replica && (claimed == nil || claimed[s.ID]):
			l.ReplicaSnapshots = append(l.ReplicaSnapshots, s.ID)
		default:
			l.OrphanSnapshots = append(l.OrphanSnapshots, s.ID)
		}
	}
	for _, t := range st.AWS.ImportTasks {
		if t.Status == "active" || t.Status == "deleting" {
			l.ActiveImports = append(l.ActiveImports, t.ID)
		}
	}
	for _, st := range st.AWS.Stacks {
		if st.Status != "DELETE_COMPLETE" {
			l.Stacks = append(l.Stacks, st.Name+" ("+st.Status+")")
		}
	}
	for _, in := range st.AWS.Instances {
		if in.State != "terminated" {
			l.Instances = append(l.Instances, in.ID+" ("+in.State+")")
		}
	}
	slices.Sort(l.VMSnapshots)
	slices.Sort(l.DuplicateAMIRuns)
	return l
}
