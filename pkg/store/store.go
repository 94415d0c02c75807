// Package store persists rehost's state: sources, the server catalog,
// replication jobs and runs (named and shaped after the AWS SMS API), the
// per-run resource ledger that makes a run resumable, events,
// applications and settings.
//
// Store is the interface; SQLite (pure Go, embedded) is the default
// implementation and a PostgreSQL one can follow: the SQL is written with `?`
// placeholders rebound per dialect and the migrations use only types both
// accept. Every implementation passes the conformance suite in storetest.
//
// The store never sees plaintext secrets: Source.Secret and setting values are
// opaque bytes the caller has already encrypted.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rehost/rehost/pkg/disk"
)

// Errors every method wraps, with a message naming the thing concerned.
var (
	// ErrNotFound: the addressed row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change would break a uniqueness rule (one job per
	// server, one pending or active run per job, a duplicate name) or remove a
	// row others still refer to.
	ErrConflict = errors.New("conflict")
	// ErrInvalid: a field holds a value the model does not allow.
	ErrInvalid = errors.New("invalid")
	// ErrSchemaNewer: a newer rehost migrated the database past the
	// schema this one knows; it is refused, never written to.
	ErrSchemaNewer = errors.New("state migrated by a newer rehost")
)

// SourceKind is the hypervisor family of a Source.
type SourceKind string

// Source kinds.
const (
	SourceVSphere SourceKind = "vsphere"
	SourceHyperV  SourceKind = "hyperv"
	SourceSCVMM   SourceKind = "scvmm"
	SourceAzure   SourceKind = "azure"
)

// Source is a hypervisor endpoint with the credentials to reach it.
type Source struct {
	ID       string     `json:"id"` // "src-" + 17 hex, assigned by CreateSource
	Kind     SourceKind `json:"kind"`
	Name     string     `json:"name"` // unique
	Endpoint string     `json:"endpoint"`
	User     string     `json:"user"`
	// Secret is the credential, encrypted by the caller; never plaintext.
	Secret     []byte `json:"-"`
	Thumbprint string `json:"thumbprint,omitempty"`
	Insecure   bool   `json:"insecure,omitempty"`
	// Options holds the kind's own non-secret settings as JSON (a Hyper-V
	// host's authentication scheme, an Azure subscription); the store keeps
	// it opaque.
	Options   json.RawMessage `json:"options,omitempty"`
	CreatedAt time.Time       `json:"createdAt"`
}

// Server is one entry of the server catalog: a VM imported from a source.
type Server struct {
	ServerID   string    `json:"serverId"` // "s-" + 17 hex, stable across re-imports
	SourceID   string    `json:"sourceId"`
	VMID       string    `json:"vmId"` // the source's own id of the VM
	Name       string    `json:"name"`
	Path       string    `json:"path"`
	GuestOS    string    `json:"guestOS"`
	Firmware   string    `json:"firmware"`
	CPUs       int       `json:"cpus"`
	MemoryMiB  int64     `json:"memoryMiB"`
	DiskCount  int       `json:"diskCount"`
	Details    string    `json:"details,omitempty"` // JSON text, the source's full description
	ImportedAt time.Time `json:"importedAt"`
}

// ServerFilter narrows ListServers; zero fields match everything.
type ServerFilter struct {
	SourceID string
}

// JobState is the state of a replication job, as in SMS.
type JobState string

// Job states.
const (
	JobPending         JobState = "PENDING"
	JobActive          JobState = "ACTIVE"
	JobFailed          JobState = "FAILED"
	JobDeleting        JobState = "DELETING"
	JobDeleted         JobState = "DELETED"
	JobCompleted       JobState = "COMPLETED"
	JobPausedOnFailure JobState = "PAUSED_ON_FAILURE"
	JobFailing         JobState = "FAILING"
	// JobPaused: an administrator paused the job; it gets no automatic
	// runs until resumed (rehost's, not SMS's).
	JobPaused JobState = "PAUSED"
)

// License types of the AMIs a job makes.
const (
	LicenseAWS  = "AWS"
	LicenseBYOL = "BYOL"
)

// Job modes: how a job's runs copy the disks.
const (
	// ModeFull: every run exports each disk whole, stages it in S3 and
	// imports it with VM Import (SMS's way).
	ModeFull = ""
	// ModeIncremental: the first run copies each disk into a replica EBS
	// snapshot with EBS direct, every later run only the blocks that
	// changed, onto a child of the previous replica; the AMI is built from
	// the replicas.
	ModeIncremental = "incremental"
)

// ReplicationJob replicates one server on a schedule (or once).
type ReplicationJob struct {
	ReplicationJobID    string    `json:"replicationJobId"` // "sms-job-" + 17 hex
	ServerID            string    `json:"serverId"`
	SeedReplicationTime time.Time `json:"seedReplicationTime"`
	// Frequency in hours, 1–24. A run-once job may leave it 0, and so does
	// a job run every FrequencyMinutes.
	Frequency int `json:"frequency"`
	// FrequencyMinutes runs an incremental job every 15, 20 or 30 minutes
	// (Frequency is then 0); 0 means Frequency hours.
	FrequencyMinutes int `json:"frequencyMinutes,omitempty"`
	// Mode is ModeFull or ModeIncremental.
	Mode string `json:"mode,omitempty"`
	// NoConversion builds an incremental run's AMI with RegisterImage on
	// the replicas as they are, for a guest that needs no conversion;
	// otherwise VM Import converts them (ImportImage).
	NoConversion bool `json:"noConversion,omitempty"`
	// VerifyRequested makes the next incremental run read back every block
	// of its replicas (a full verification); that run clears it.
	VerifyRequested             bool      `json:"verifyRequested,omitempty"`
	RunOnce                     bool      `json:"runOnce"`
	LicenseType                 string    `json:"licenseType"` // LicenseAWS or LicenseBYOL
	RoleName                    string    `json:"roleName,omitempty"`
	NumberOfRecentAmisToKeep    int       `json:"numberOfRecentAmisToKeep"`
	Encrypted                   bool      `json:"encrypted"`
	KmsKeyID                    string    `json:"kmsKeyId,omitempty"`
	Description                 string    `json:"description,omitempty"`
	State                       JobState  `json:"state"`
	StatusMessage               string    `json:"statusMessage,omitempty"`
	NextReplicationRunStartTime time.Time `json:"nextReplicationRunStartTime"`
	LatestAmiID                 string    `json:"latestAmiId,omitempty"`
	ConsecutiveFailures         int       `json:"consecutiveFailures"`
	CreatedAt                   time.Time `json:"createdAt"`
	UpdatedAt                   time.Time `json:"updatedAt"`
}

// JobFilter narrows ListJobs; zero fields match everything.
type JobFilter struct {
	States   []JobState
	ServerID string
}

// RunType says why a run exists.
type RunType string

// Run types.
const (
	RunAutomatic RunType = "AUTOMATIC"
	RunOnDemand  RunType = "ON_DEMAND"
)

// RunState is the state of a replication run, as in SMS.
type RunState string

// Run states.
const (
	RunPending   RunState = "PENDING"
	RunMissed    RunState = "MISSED"
	RunActive    RunState = "ACTIVE"
	RunFailed    RunState = "FAILED"
	RunCompleted RunState = "COMPLETED"
	RunDeleting  RunState = "DELETING"
	RunDeleted   RunState = "DELETED"
)

// Live reports whether the state holds the job's single run slot.
func (s RunState) Live() bool { return s == RunPending || s == RunActive }

// ReplicationRun is one replication of a job's server into an AMI.
type ReplicationRun struct {
	ReplicationRunID   string    `json:"replicationRunId"` // "sms-run-" + 17 hex
	ReplicationJobID   string    `json:"replicationJobId"`
	Type               RunType   `json:"type"`
	State              RunState  `json:"state"`
	Stage              string    `json:"stage,omitempty"`
	StageProgress      string    `json:"stageProgress,omitempty"` // "42%", "1.2 GiB of 4.0 GiB"
	StatusMessage      string    `json:"statusMessage,omitempty"`
	AmiID              string    `json:"amiId,omitempty"`
	ScheduledStartTime time.Time `json:"scheduledStartTime"`
	StartedAt          time.Time `json:"startedAt,omitempty"`
	CompletedTime      time.Time `json:"completedTime,omitempty"`
	Description        string    `json:"description,omitempty"`
	Encrypted          bool      `json:"encrypted"`
	KmsKeyID           string    `json:"kmsKeyId,omitempty"`
	// Progress is where the run is, as numbers; Stage and StageProgress
	// say the same in words (SMS's stageDetails).
	Progress RunProgress `json:"progress"`
	// Replication is what an incremental run moved and proved; nil for a
	// full run.
	Replication *RunReplication `json:"replication,omitempty"`
	CreatedAt   time.Time       `json:"createdAt"`
}

// RunReplication is what an incremental run moved and proved: proof of
// replication, per run.
type RunReplication struct {
	// FullBecause says why a run of an incremental job copied the VM whole
	// (through S3 and VM Import): change tracking or EBS direct was not to
	// be had. The other fields are then zero.
	FullBecause string `json:"fullBecause,omitempty"`
	// BytesRead were read from the source; BytesSent put into replicas;
	// BlocksChanged is the number of 512 KiB blocks put.
	BytesRead     int64 `json:"bytesRead"`
	BytesSent     int64 `json:"bytesSent"`
	BlocksChanged int64 `json:"blocksChanged"`
	// Disks are the same per disk.
	Disks []DiskReplication `json:"disks,omitempty"`
	// Verification is the read-back of the replicas; nil until it ran.
	Verification *Verification `json:"verification,omitempty"`
}

// DiskReplication is one disk of an incremental run.
type DiskReplication struct {
	Disk int    `json:"disk"`
	Key  string `json:"key"`
	// SnapshotID is the disk's replica; Parent the one it was written on
	// top of ("" for a new chain).
	SnapshotID string `json:"snapshotId,omitempty"`
	Parent     string `json:"parent,omitempty"`
	// Capacity is the disk's size; PreviousCapacity its size at the
	// parent (larger Capacity: the disk grew and its replica with it).
	Capacity         int64 `json:"capacity"`
	PreviousCapacity int64 `json:"previousCapacity,omitempty"`
	BytesRead        int64 `json:"bytesRead"`
	BytesSent        int64 `json:"bytesSent"`
	BlocksChanged    int64 `json:"blocksChanged"`
	// BlocksResent are the blocks the run's verification found differing
	// and sent again from the source; BytesRead and BytesSent count them.
	BlocksResent int64 `json:"blocksResent,omitempty"`
	// Resync says why the disk was read whole rather than only its changed
	// areas (a reset change id, a replica deleted behind rehost's back);
	// "" for a seed or a normal run.
	Resync string `json:"resync,omitempty"`
}

// Verification is a run's read-back of its replicas against the manifest.
type Verification struct {
	// Full is set for a verification of every block (on a schedule or on
	// request); otherwise the changed blocks (up to a budget) and a random
	// sample of the others were read.
	Full bool `json:"full,omitempty"`
	// Blocks read back, of which Sampled were unchanged blocks chosen at
	// random; Mismatches differed from the manifest, Repaired of them were
	// sent again and then matched.
	Blocks     int64     `json:"blocks"`
	Sampled    int64     `json:"sampled"`
	Mismatches int64     `json:"mismatches"`
	Repaired   int64     `json:"repaired"`
	At         time.Time `json:"at"`
}

// String is the verification as a run shows it:
// "verified: 812 blocks (64 sampled), 0 mismatches".
func (v Verification) String() string {
	s := fmt.Sprintf("verified: %d blocks (%d sampled), %d mismatches", v.Blocks, v.Sampled, v.Mismatches)
	if v.Full {
		s = fmt.Sprintf("verified: %d blocks (all), %d mismatches", v.Blocks, v.Mismatches)
	}
	if v.Repaired > 0 {
		s += fmt.Sprintf(", %d repaired", v.Repaired)
	}
	return s
}

// RunProgress is where a run is: its step, the bytes of each disk staged so
// far, and VM Import's own percent.
type RunProgress struct {
	Step string `json:"step,omitempty"`
	// Mode is the run's mode (ModeFull or ModeIncremental), which decides
	// its steps: an incremental job's run falls back to full where change
	// tracking or EBS direct is not to be had.
	Mode          string         `json:"mode,omitempty"`
	Disks         []DiskProgress `json:"disks,omitempty"`
	ImportPercent int            `json:"importPercent,omitempty"`
	// Steps are the steps the run has entered, in order, with when each
	// began and ended (zero while it runs). A step re-entered after a
	// restart keeps its first entry.
	Steps []StepTime `json:"steps,omitempty"`
	// FailedStep is the step a failed run failed in.
	FailedStep string `json:"failedStep,omitempty"`
	// SlotWaitSince is when the run began waiting for VM Import slots (the
	// region's quota of concurrent import tasks is taken); zero when it
	// does not wait.
	SlotWaitSince time.Time `json:"slotWaitSince,omitzero"`
}

// StepTime is when a step of a run began and ended.
type StepTime struct {
	Step    string    `json:"step"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
}

// DiskProgress is one disk's staging: bytes stored of the stream's total
// (the disk's capacity when the stream's own length is not known).
type DiskProgress struct {
	Disk       int   `json:"disk"`
	BytesDone  int64 `json:"bytesDone"`
	BytesTotal int64 `json:"bytesTotal"`
	// BytesRead were read from the source to make the disk's image (of a
	// sparse disk, its allocated data); nil where a connector from before
	// it was counted recorded the run.
	BytesRead *int64 `json:"bytesRead,omitempty"`
	// Pacing is how the connector encoded the disk's image and the rates
	// it chose on (nil where the source sends the image as it is, as
	// vCenter does).
	Pacing *disk.Pacing `json:"pacing,omitempty"`
}

// LedgerState is the life of one resource a run makes outside the process.
type LedgerState string

// Ledger states.
const (
	// LedgerIntent: about to be created; it may or may not exist (a crash
	// can fall between the call and RecordCreated), so cleanup looks it up by
	// its tag or name.
	LedgerIntent LedgerState = "intent"
	// LedgerCreated: exists, ResourceID known.
	LedgerCreated LedgerState = "created"
	// LedgerReleased: deleted, or given up by the run (an AMI the job
	// keeps); nothing to undo.
	LedgerReleased LedgerState = "released"
	// LedgerHandedOver: another step took the resource over; the entry it
	// took it with (HandedFrom naming this one) is the resource's record
	// now.
	LedgerHandedOver LedgerState = "handed-over"
)

// LedgerEntry records one resource a run made or is about to make. Step and
// Kind are the caller's vocabulary (which step made it, what it is); the
// store keeps them opaque.
type LedgerEntry struct {
	ID         int64           `json:"id"`
	RunID      string          `json:"runId"`
	Step       string          `json:"step"`
	Kind       string          `json:"kind"`
	Intent     json.RawMessage `json:"intent,omitempty"`
	ResourceID string          `json:"resourceId,omitempty"`
	State      LedgerState     `json:"state"`
	Data       json.RawMessage `json:"data,omitempty"`
	// HandedFrom is the entry this one took its resource over from (0: the
	// step made it).
	HandedFrom int64     `json:"handedFrom,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// LedgerPart is one numbered piece of a ledger entry's resource (a part of
// a multipart upload); Data is the caller's, kept opaque.
type LedgerPart struct {
	Number int64           `json:"number"`
	Data   json.RawMessage `json:"data"`
}

// Event levels.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Event is an append-only line of a job's or run's history.
type Event struct {
	ID      int64     `json:"id"`
	Time    time.Time `json:"time"`
	JobID   string    `json:"jobId,omitempty"`
	RunID   string    `json:"runId,omitempty"`
	Level   string    `json:"level"`
	Message string    `json:"message"`
}

// EventFilter selects events; zero fields match everything. Limit 0 means no
// limit.
type EventFilter struct {
	JobID string
	RunID string
	Limit int
}

// Store is rehost's persisted state: every role below, and Close. Every
// method is safe for concurrent use, honours ctx cancellation, and wraps
// ErrNotFound, ErrConflict or ErrInvalid where those apply; other errors are
// I/O failures of the backend.
//
// Methods that take a func run it inside a transaction on a fresh copy of
// the row (read-modify-write); the func must not call the store, and an
// error it returns aborts the transaction and is returned wrapped.
//
// Each user of the store takes only the roles it needs (the replication
// engine, the scheduler, the API, the console's keys and settings), and
// storetest checks each role on its own.
type Store interface {
	Catalog
	Jobs
	Runs
	Ledger
	History
	Settings
	Apps
	Replicas
	Preflights
	Fleet
	// Close releases the backend. Calls after Close fail.
	Close() error
}

// Catalog is the sources (hypervisor endpoints with their credentials) and
// the servers imported from them.
type Catalog interface {
	// CreateSource stores s with a new ID (CreatedAt set if zero).
	// ErrConflict if the name is taken, ErrInvalid on an unknown kind or
	// empty name.
	CreateSource(ctx context.Context, s Source) (Source, error)
	GetSource(ctx context.Context, id string) (Source, error)
	ListSources(ctx context.Context) ([]Source, error)
	// UpdateSource applies fn to the source and stores it, validated as in
	// CreateSource (e.g. new credentials); ID and CreatedAt cannot change.
	UpdateSource(ctx context.Context, id string, fn func(*Source) error) (Source, error)
	// DeleteSource fails with ErrConflict while servers of it remain.
	DeleteSource(ctx context.Context, id string) error

	// UpsertServer inserts or updates the catalog entry of (SourceID, VMID).
	// An existing entry keeps its ServerID; the returned Server is what is
	// stored. ImportedAt is set to now if zero.
	UpsertServer(ctx context.Context, s Server) (Server, error)
	// UpsertServers upserts each of ss as UpsertServer does, all in one
	// transaction: every one is stored or, on an error, none.
	UpsertServers(ctx context.Context, ss []Server) ([]Server, error)
	GetServer(ctx context.Context, serverID string) (Server, error)
	ListServers(ctx context.Context, f ServerFilter) ([]Server, error)
	// DeleteServer fails with ErrConflict while any job (even a deleted
	// one) refers to it, or an app has it in a server group.
	DeleteServer(ctx context.Context, serverID string) error
}

// Jobs is the replication jobs: one per server, each on a schedule (or
// once).
type Jobs interface {
	// CreateJob stores j with a new ReplicationJobID. State defaults to
	// PENDING and LicenseType to AWS. ErrInvalid on a bad frequency (see
	// ValidateFrequency), license type, state or a zero seed time;
	// ErrNotFound if the server does not exist; ErrConflict, naming the
	// existing job, if the server already has a job not DELETED.
	CreateJob(ctx context.Context, j ReplicationJob) (ReplicationJob, error)
	GetJob(ctx context.Context, id string) (ReplicationJob, error)
	// ListJobs lists jobs by creation time.
	ListJobs(ctx context.Context, f JobFilter) ([]ReplicationJob, error)
	// UpdateJob applies fn to the job and stores the result, validated as
	// in CreateJob; ReplicationJobID, ServerID and CreatedAt cannot change,
	// UpdatedAt is set by the store.
	UpdateJob(ctx context.Context, id string, fn func(*ReplicationJob) error) (ReplicationJob, error)
}

// Runs is the replication runs of the jobs, with the one rule that matters
// most: at most one PENDING or ACTIVE run per job.
type Runs interface {
	// CreateRuns inserts runs of one or more jobs in one transaction, each
	// with a new ReplicationRunID (State defaults to PENDING, Type to
	// AUTOMATIC). ErrConflict, naming the other run, if a run in PENDING
	// or ACTIVE would join another such run of the same job; ErrNotFound if
	// a job is missing.
	CreateRuns(ctx context.Context, runs ...ReplicationRun) ([]ReplicationRun, error)
	// ScheduleRuns reads the job, lets fn change it and return new runs for
	// it, and stores both in one transaction, with the rules of UpdateJob
	// and CreateRuns. It is how a scheduler records missed slots, a
	// catch-up run and the next start time atomically.
	ScheduleRuns(ctx context.Context, jobID string, fn func(*ReplicationJob) ([]ReplicationRun, error)) (ReplicationJob, []ReplicationRun, error)
	GetRun(ctx context.Context, id string) (ReplicationRun, error)
	// ListRuns lists a job's runs newest first (by ScheduledStartTime, then
	// creation); limit 0 means all.
	ListRuns(ctx context.Context, jobID string, limit int) ([]ReplicationRun, error)
	// RunsInState lists runs of every job in the given states, oldest
	// ScheduledStartTime first.
	RunsInState(ctx context.Context, states ...RunState) ([]ReplicationRun, error)
	// ServersWithRunsIn lists, each once and sorted, the ServerIDs of the
	// jobs (of any state) with a run in one of the given states: in one
	// query, what RunsInState and a GetJob per run would say.
	ServersWithRunsIn(ctx context.Context, states ...RunState) ([]string, error)
	// CountRuns counts a job's runs of the given type whose
	// ScheduledStartTime is at or after since.
	CountRuns(ctx context.Context, jobID string, typ RunType, since time.Time) (int, error)
	// UpdateRun applies fn to the run and stores it. ErrConflict if it
	// would make a second PENDING or ACTIVE run of the job.
	UpdateRun(ctx context.Context, id string, fn func(*ReplicationRun) error) (ReplicationRun, error)
	// UpdateRunAndJob applies fn to a run and its job and stores both in one
	// transaction, with the rules of UpdateRun and UpdateJob.
	UpdateRunAndJob(ctx context.Context, runID string, fn func(*ReplicationRun, *ReplicationJob) error) (ReplicationRun, ReplicationJob, error)
}

// Ledger is what runs made, or are about to make, outside the process:
// the record that drives resume and cleanup.
type Ledger interface {
	// RecordIntent appends a ledger entry in state intent and returns its
	// id; ids grow in insertion order. ErrNotFound if the run is missing.
	RecordIntent(ctx context.Context, runID, step, kind string, intent json.RawMessage) (int64, error)
	// RecordCreated moves the entry to created with the resource's id and
	// data (nil data keeps what is stored).
	RecordCreated(ctx context.Context, id int64, resourceID string, data json.RawMessage) error
	// UpdateData replaces the entry's data.
	UpdateData(ctx context.Context, id int64, data json.RawMessage) error
	// RecordParts stores pieces of an unreleased entry's resource (the parts
	// of a multipart upload), all in one transaction, each keyed by its
	// number within the entry: a number stored before is replaced. Writing
	// only the parts new since the last call costs the same whatever the
	// entry already holds. ErrNotFound if the entry is missing, ErrConflict
	// if it is released or handed over, ErrInvalid on a part number below 1
	// or data that is not JSON.
	RecordParts(ctx context.Context, id int64, parts []LedgerPart) error
	// LedgerParts lists an entry's parts by number (none for a released
	// entry: releasing drops them).
	LedgerParts(ctx context.Context, id int64) ([]LedgerPart, error)
	// RecordReleased marks the entry released: nothing left to undo. Its
	// parts are dropped.
	RecordReleased(ctx context.Context, id int64) error
	// HandOver gives an unreleased entry's resource to step toStep, in one
	// transaction: the entry becomes handed-over and a copy of it under
	// toStep (HandedFrom = id), its parts included, is appended and
	// returned. ErrConflict if the entry is released or handed over
	// already.
	HandOver(ctx context.Context, id int64, toStep string) (LedgerEntry, error)
	GetLedgerEntry(ctx context.Context, id int64) (LedgerEntry, error)
	// LedgerForRun lists the run's entries in insertion order; undo walks
	// it backwards.
	LedgerForRun(ctx context.Context, runID string) ([]LedgerEntry, error)
	// UnreleasedLedger lists entries in state intent or created, of every
	// run, in insertion order.
	UnreleasedLedger(ctx context.Context) ([]LedgerEntry, error)
}

// History is the append-only events of jobs and runs.
type History interface {
	// AddEvent appends e (Time set to now if zero) and returns it with its ID.
	AddEvent(ctx context.Context, e Event) (Event, error)
	// Events lists matching events newest first, at most f.Limit.
	Events(ctx context.Context, f EventFilter) ([]Event, error)
}

// Settings holds small values by key: the registration, API keys, the
// console's password hash. Values may be sealed by the caller; the store
// keeps them opaque.
type Settings interface {
	// GetSetting returns the value of key, ErrNotFound if unset.
	GetSetting(ctx context.Context, key string) ([]byte, error)
	// PutSetting sets key to value, replacing any previous value.
	PutSetting(ctx context.Context, key string, value []byte) error
	// DeleteSetting removes key; removing an unset key is not an error.
	DeleteSetting(ctx context.Context, key string) error
}

// ValidateFrequency checks a replication frequency in hours: SMS allows 1–24.
func ValidateFrequency(hours int) error {
	if hours < 1 || hours > 24 {
		return fmt.Errorf("%w: frequency %d h: must be a whole number of hours from 1 to 24", ErrInvalid, hours)
	}
	return nil
}

// SubHourly are the frequencies in minutes an incremental job may run at.
var SubHourly = []int{15, 20, 30}

// ValidateFrequencyMinutes checks a sub-hour frequency: 15, 20 or 30
// minutes, for an incremental job only.
func ValidateFrequencyMinutes(minutes int, mode string) error {
	if !slices.Contains(SubHourly, minutes) {
		return fmt.Errorf("%w: frequency %d min: a job runs every 15, 20 or 30 minutes, or every 1 to 24 hours", ErrInvalid, minutes)
	}
	if mode != ModeIncremental {
		return fmt.Errorf("%w: frequency %d min: runs below an hour apart need incremental mode (only changed blocks are copied); a full run copies every disk whole, every 1 to 24 hours", ErrInvalid, minutes)
	}
	return nil
}

// Interval is how far apart the job's automatic runs are.
func (j ReplicationJob) Interval() time.Duration {
	if j.FrequencyMinutes > 0 {
		return time.Duration(j.FrequencyMinutes) * time.Minute
	}
	return time.Duration(j.Frequency) * time.Hour
}

// ValidateJob checks the fields of a job the caller may set.
func ValidateJob(j ReplicationJob) error {
	if j.ServerID == "" {
		return fmt.Errorf("%w: replication job: server id is empty", ErrInvalid)
	}
	if j.SeedReplicationTime.IsZero() {
		return fmt.Errorf("%w: replication job for server %s: seed replication time is not set", ErrInvalid, j.ServerID)
	}
	switch j.Mode {
	case ModeFull, ModeIncremental:
	default:
		return fmt.Errorf("%w: replication job for server %s: mode %q: must be full or incremental", ErrInvalid, j.ServerID, j.Mode)
	}
	switch {
	case j.FrequencyMinutes != 0:
		if err := ValidateFrequencyMinutes(j.FrequencyMinutes, j.Mode); err != nil {
			return fmt.Errorf("replication job for server %s: %w", j.ServerID, err)
		}
		if j.Frequency != 0 {
			return fmt.Errorf("%w: replication job for server %s: a frequency in hours (%d) and in minutes (%d) given together", ErrInvalid, j.ServerID, j.Frequency, j.FrequencyMinutes)
		}
	case !j.RunOnce || j.Frequency != 0:
		// A run-once job needs no frequency, but a given one must still be valid.
		if err := ValidateFrequency(j.Frequency); err != nil {
			return fmt.Errorf("replication job for server %s: %w", j.ServerID, err)
		}
	}
	if j.NoConversion && j.Mode != ModeIncremental {
		return fmt.Errorf("%w: replication job for server %s: registering the AMI without conversion needs incremental mode (the replicas are the disks as they are)", ErrInvalid, j.ServerID)
	}
	switch j.LicenseType {
	case LicenseAWS, LicenseBYOL:
	default:
		return fmt.Errorf("%w: replication job for server %s: license type %q: must be AWS or BYOL", ErrInvalid, j.ServerID, j.LicenseType)
	}
	switch j.State {
	case JobPending, JobActive, JobFailed, JobDeleting, JobDeleted, JobCompleted, JobPausedOnFailure, JobFailing, JobPaused:
	default:
		return fmt.Errorf("%w: replication job for server %s: unknown state %q", ErrInvalid, j.ServerID, j.State)
	}
	if j.NumberOfRecentAmisToKeep < 0 {
		return fmt.Errorf("%w: replication job for server %s: number of recent AMIs to keep is negative", ErrInvalid, j.ServerID)
	}
	if j.ConsecutiveFailures < 0 {
		return fmt.Errorf("%w: replication job for server %s: consecutive failures is negative", ErrInvalid, j.ServerID)
	}
	return nil
}

// ValidateRun checks the enumerated fields of a run.
func ValidateRun(r ReplicationRun) error {
	switch r.Type {
	case RunAutomatic, RunOnDemand:
	default:
		return fmt.Errorf("%w: replication run of job %s: unknown type %q", ErrInvalid, r.ReplicationJobID, r.Type)
	}
	switch r.State {
	case RunPending, RunMissed, RunActive, RunFailed, RunCompleted, RunDeleting, RunDeleted:
	default:
		return fmt.Errorf("%w: replication run of job %s: unknown state %q", ErrInvalid, r.ReplicationJobID, r.State)
	}
	return nil
}

func validateSource(s Source) error {
	switch s.Kind {
	case SourceVSphere, SourceHyperV, SourceSCVMM, SourceAzure:
	default:
		return fmt.Errorf("%w: source %q: unknown kind %q (want vsphere, hyperv, scvmm or azure)", ErrInvalid, s.Name, s.Kind)
	}
	if len(s.Options) > 0 && !json.Valid(s.Options) {
		return fmt.Errorf("%w: source %q: options are not valid JSON", ErrInvalid, s.Name)
	}
	if s.Name == "" {
		return fmt.Errorf("%w: source: name is empty", ErrInvalid)
	}
	return nil
}

func validateLedgerState(s LedgerState) error {
	switch s {
	case LedgerIntent, LedgerCreated, LedgerReleased:
		return nil
	}
	return fmt.Errorf("%w: unknown ledger state %q", ErrInvalid, s)
}

// newID returns prefix followed by 17 random hex digits, the shape of SMS ids.
func newID(prefix string) string {
	var b [9]byte
	// Since Go 1.24 crypto/rand.Read never returns an error (it crashes the
	// program if the system source fails).
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])[:17]
}

// ID prefixes.
const (
	prefixSource = "src-"
	prefixServer = "s-"
	prefixJob    = "sms-job-"
	prefixRun    = "sms-run-"
	prefixApp    = "app-"
)
