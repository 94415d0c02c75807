package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/rehost/rehost/appliance/status"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The shapes below are the SMS API model's (sms-2016-10-24), member for
// member, so an SMS client of any AWS SDK reads them. Members rehost adds
// are named rehost…; SDK clients skip members they do not know.

// Time is a timestamp on the wire: seconds since the epoch, as AWS JSON 1.1
// sends them (fractions allowed).
type Time struct{ time.Time }

// At wraps t; the zero time stays zero (and is left out of responses).
func At(t time.Time) Time { return Time{t} }

// MarshalJSON writes epoch seconds with millisecond precision.
func (t Time) MarshalJSON() ([]byte, error) {
	ms := t.UnixMilli()
	if ms%1000 == 0 {
		return strconv.AppendInt(nil, ms/1000, 10), nil
	}
	return strconv.AppendFloat(nil, float64(ms)/1000, 'f', 3, 64), nil
}

// UnmarshalJSON reads epoch seconds.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = Time{}
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return fmt.Errorf("timestamp %s: want seconds since 1970-01-01T00:00:00Z", b)
	}
	sec, frac := math.Modf(f)
	*t = Time{time.Unix(int64(sec), int64(math.Round(frac*1000))*int64(time.Millisecond)).UTC()}
	return nil
}

// Enumerations of the model.
const (
	ServerTypeVirtualMachine = "VIRTUAL_MACHINE"
	CatalogNotImported       = "NOT_IMPORTED"
	CatalogAvailable         = "AVAILABLE"
	ConnectorHealthy         = "HEALTHY"
	ConnectorUnhealthy       = "UNHEALTHY"
)

// VmServerAddress identifies a VM: its manager (the source) and its id there.
type VmServerAddress struct {
	VmManagerID string `json:"vmManagerId,omitempty"`
	VmID        string `json:"vmId,omitempty"`
}

// VmServer describes a VM.
type VmServer struct {
	VmServerAddress *VmServerAddress `json:"vmServerAddress,omitempty"`
	VmName          string           `json:"vmName,omitempty"`
	VmManagerName   string           `json:"vmManagerName,omitempty"`
	VmManagerType   string           `json:"vmManagerType,omitempty"`
	VmPath          string           `json:"vmPath,omitempty"`
}

// Server is an entry of the server catalog.
type Server struct {
	ServerID                 string         `json:"serverId"`
	ServerType               string         `json:"serverType,omitempty"`
	VmServer                 *VmServer      `json:"vmServer,omitempty"`
	ReplicationJobID         string         `json:"replicationJobId,omitempty"`
	ReplicationJobTerminated bool           `json:"replicationJobTerminated,omitempty"`
	Rehost                   *ServerDetails `json:"rehostDetails,omitempty"`
}

// ServerDetails is what rehost knows of a server beyond SMS's shape.
type ServerDetails struct {
	SourceID   string `json:"sourceId"`
	GuestOS    string `json:"guestOS,omitempty"`
	Firmware   string `json:"firmware,omitempty"`
	CPUs       int    `json:"cpus,omitempty"`
	MemoryMiB  int64  `json:"memoryMiB,omitempty"`
	DiskCount  int    `json:"diskCount"`
	ImportedAt Time   `json:"importedAt,omitzero"`
	// Preflight is whether the server will migrate (absent until checked).
	Preflight *Preflight `json:"preflight,omitempty"`
}

// Preflight is a server's or the account's latest preflight: ready, ready
// with warnings, or blocked, with each finding (its level, code, one
// sentence and what to do).
type Preflight struct {
	Status    string              `json:"status"`
	Findings  []preflight.Finding `json:"findings"`
	CheckedAt Time                `json:"checkedAt,omitzero"`
}

func preflightOf(r daemon.Report) *Preflight {
	return &Preflight{Status: string(r.Status), Findings: r.Findings, CheckedAt: At(r.CheckedAt)}
}

// PreflightInput asks for a preflight now: of the servers named (ids or
// names; every server of the catalog when none is) and of the account.
type PreflightInput struct {
	Servers []string `json:"servers,omitempty"`
	// SkipAccount leaves the account out (its stored result is returned).
	SkipAccount bool `json:"skipAccount,omitempty"`
}

// ServerPreflight is one server's preflight.
type ServerPreflight struct {
	ServerID string `json:"serverId"`
	Name     string `json:"name"`
	Preflight
}

// PreflightOutput is the result, servers by name.
type PreflightOutput struct {
	Account *Preflight        `json:"account,omitempty"`
	Servers []ServerPreflight `json:"servers"`
}

// ImportServerCatalogInput asks for the catalog of every source, or of one
// (a rehost member).
type ImportServerCatalogInput struct {
	RehostSource string `json:"rehostSource,omitempty"` // source name or id
}

// ImportServerCatalogOutput lists, beyond SMS, what was imported.
type ImportServerCatalogOutput struct {
	RehostServers []Server `json:"rehostServers,omitempty"`
}

// GetServersInput pages through the catalog, optionally filtered.
type GetServersInput struct {
	NextToken           string            `json:"nextToken,omitempty"`
	MaxResults          int               `json:"maxResults,omitempty"`
	VmServerAddressList []VmServerAddress `json:"vmServerAddressList,omitempty"`
}

// GetServersOutput is a page of the catalog.
type GetServersOutput struct {
	LastModifiedOn      Time     `json:"lastModifiedOn,omitzero"`
	ServerCatalogStatus string   `json:"serverCatalogStatus"`
	ServerList          []Server `json:"serverList"`
	NextToken           string   `json:"nextToken,omitempty"`
}

// DeleteServerCatalogInput has no members.
type DeleteServerCatalogInput struct{}

// DeleteServerCatalogOutput has no members.
type DeleteServerCatalogOutput struct{}

// GetConnectorsInput pages through the connectors.
type GetConnectorsInput struct {
	NextToken  string `json:"nextToken,omitempty"`
	MaxResults int    `json:"maxResults,omitempty"`
}

// Connector is this appliance as associated with one source: SMS had one
// connector per VM manager, rehost serves several from one appliance.
type Connector struct {
	ConnectorID    string   `json:"connectorId"`
	Version        string   `json:"version,omitempty"`
	Status         string   `json:"status"`
	CapabilityList []string `json:"capabilityList,omitempty"`
	VmManagerName  string   `json:"vmManagerName,omitempty"`
	VmManagerType  string   `json:"vmManagerType,omitempty"`
	VmManagerID    string   `json:"vmManagerId,omitempty"`
	IPAddress      string   `json:"ipAddress,omitempty"`
	MacAddress     string   `json:"macAddress,omitempty"`
	AssociatedOn   Time     `json:"associatedOn,omitzero"`
	// SourceList names the sources a member of a fleet serves (rehost's).
	SourceList []string `json:"sourceList,omitempty"`
}

// GetConnectorsOutput is a page of connectors.
type GetConnectorsOutput struct {
	ConnectorList []Connector `json:"connectorList"`
	NextToken     string      `json:"nextToken,omitempty"`
}

// DisassociateConnectorInput names the connector (source) to remove.
type DisassociateConnectorInput struct {
	ConnectorID string `json:"connectorId"`
}

// DisassociateConnectorOutput has no members.
type DisassociateConnectorOutput struct{}

// CreateReplicationJobInput creates a job. Pointers tell a member left out
// from a zero value.
type CreateReplicationJobInput struct {
	ServerID                 string `json:"serverId"`
	SeedReplicationTime      *Time  `json:"seedReplicationTime,omitempty"`
	Frequency                *int   `json:"frequency,omitempty"`
	RunOnce                  bool   `json:"runOnce,omitempty"`
	LicenseType              string `json:"licenseType,omitempty"`
	RoleName                 string `json:"roleName,omitempty"`
	Description              string `json:"description,omitempty"`
	NumberOfRecentAmisToKeep int    `json:"numberOfRecentAmisToKeep,omitempty"`
	Encrypted                bool   `json:"encrypted,omitempty"`
	KmsKeyID                 string `json:"kmsKeyId,omitempty"`
	// RehostMode is "full" (the default: every run copies each disk whole
	// through S3 and VM Import, as SMS) or "incremental" (EBS direct
	// replicas: a seed, then only the changed blocks).
	RehostMode string `json:"rehostMode,omitempty"`
	// RehostFrequencyMinutes runs an incremental job every 15, 20 or 30
	// minutes. SMS's frequency is whole hours: leave frequency out then
	// (GetReplicationJobs answers frequency 0 and this member).
	RehostFrequencyMinutes int `json:"rehostFrequencyMinutes,omitempty"`
	// RehostNoConversion builds an incremental job's AMIs with
	// RegisterImage on the replicas as they are, without VM Import, for a
	// guest that needs no conversion (drivers, licensing).
	RehostNoConversion bool `json:"rehostNoConversion,omitempty"`
	// RehostAcceptWarnings creates the job for a server whose preflight
	// has warnings (never for a blocked one).
	RehostAcceptWarnings bool `json:"rehostAcceptWarnings,omitempty"`
}

// CreateReplicationJobOutput names the new job.
type CreateReplicationJobOutput struct {
	ReplicationJobID string `json:"replicationJobId"`
}

// GetReplicationJobsInput gets one job or pages through all.
type GetReplicationJobsInput struct {
	ReplicationJobID string `json:"replicationJobId,omitempty"`
	NextToken        string `json:"nextToken,omitempty"`
	MaxResults       int    `json:"maxResults,omitempty"`
}

// ReplicationJob is a job with its most recent runs.
type ReplicationJob struct {
	ReplicationJobID            string            `json:"replicationJobId"`
	ServerID                    string            `json:"serverId"`
	ServerType                  string            `json:"serverType,omitempty"`
	VmServer                    *VmServer         `json:"vmServer,omitempty"`
	SeedReplicationTime         Time              `json:"seedReplicationTime,omitzero"`
	Frequency                   int               `json:"frequency,omitempty"`
	RunOnce                     bool              `json:"runOnce,omitempty"`
	NextReplicationRunStartTime Time              `json:"nextReplicationRunStartTime,omitzero"`
	LicenseType                 string            `json:"licenseType,omitempty"`
	RoleName                    string            `json:"roleName,omitempty"`
	LatestAmiID                 string            `json:"latestAmiId,omitempty"`
	State                       string            `json:"state"`
	StatusMessage               string            `json:"statusMessage,omitempty"`
	Description                 string            `json:"description,omitempty"`
	NumberOfRecentAmisToKeep    int               `json:"numberOfRecentAmisToKeep"`
	Encrypted                   bool              `json:"encrypted,omitempty"`
	KmsKeyID                    string            `json:"kmsKeyId,omitempty"`
	ReplicationRunList          []ReplicationRun  `json:"replicationRunList,omitempty"`
	Rehost                      *ReplicationJobEx `json:"rehostDetails,omitempty"`
}

// ReplicationJobEx is what rehost keeps of a job beyond SMS's shape.
type ReplicationJobEx struct {
	ConsecutiveFailures int  `json:"consecutiveFailures"`
	CreatedAt           Time `json:"createdAt,omitzero"`
	// Mode is "full" or "incremental"; FrequencyMinutes the sub-hour
	// frequency of an incremental job (frequency is then 0).
	Mode             string `json:"mode"`
	FrequencyMinutes int    `json:"frequencyMinutes,omitempty"`
	NoConversion     bool   `json:"noConversion,omitempty"`
	// VerifyRequested: the next run reads back every block.
	VerifyRequested bool `json:"verifyRequested,omitempty"`
	// Replicas are what an incremental job keeps between runs: each
	// disk's replica the next run writes on top of.
	Replicas *JobReplicas `json:"replicas,omitempty"`
}

// JobReplicas is an incremental job's replica chains.
type JobReplicas struct {
	// RunID made them current; VerifiedAt is when every block was last
	// read back equal (zero: not yet).
	RunID      string           `json:"replicationRunId"`
	VerifiedAt Time             `json:"verifiedAt,omitzero"`
	Disks      []ReplicaDiskRef `json:"disks"`
}

// ReplicaDiskRef is one disk's replica.
type ReplicaDiskRef struct {
	Disk       int    `json:"disk"`
	SnapshotID string `json:"snapshotId"`
	Capacity   int64  `json:"capacity"`
	VolumeGiB  int64  `json:"volumeGiB"`
	// Tracked is set when the source kept a change id: the next run reads
	// only what changed (otherwise it reads the disk whole).
	Tracked bool `json:"tracked"`
}

// GetReplicationJobsOutput is a page of jobs.
type GetReplicationJobsOutput struct {
	ReplicationJobList []ReplicationJob `json:"replicationJobList"`
	NextToken          string           `json:"nextToken,omitempty"`
}

// UpdateReplicationJobInput changes the members given.
type UpdateReplicationJobInput struct {
	ReplicationJobID            string  `json:"replicationJobId"`
	Frequency                   *int    `json:"frequency,omitempty"`
	NextReplicationRunStartTime *Time   `json:"nextReplicationRunStartTime,omitempty"`
	LicenseType                 *string `json:"licenseType,omitempty"`
	RoleName                    *string `json:"roleName,omitempty"`
	Description                 *string `json:"description,omitempty"`
	NumberOfRecentAmisToKeep    *int    `json:"numberOfRecentAmisToKeep,omitempty"`
	Encrypted                   *bool   `json:"encrypted,omitempty"`
	KmsKeyID                    *string `json:"kmsKeyId,omitempty"`
	// RehostPaused pauses the job's automatic runs (true) or resumes a
	// paused job (false; also one paused on failure).
	RehostPaused *bool `json:"rehostPaused,omitempty"`
	// RehostMode, RehostFrequencyMinutes and RehostNoConversion change
	// what CreateReplicationJobInput's members set. A frequency in hours
	// replaces a frequency in minutes and the other way round.
	RehostMode             *string `json:"rehostMode,omitempty"`
	RehostFrequencyMinutes *int    `json:"rehostFrequencyMinutes,omitempty"`
	RehostNoConversion     *bool   `json:"rehostNoConversion,omitempty"`
}

// UpdateReplicationJobOutput has no members.
type UpdateReplicationJobOutput struct{}

// DeleteReplicationJobInput names the job; AMIs stay unless
// RehostDeleteAmis.
type DeleteReplicationJobInput struct {
	ReplicationJobID string `json:"replicationJobId"`
	RehostDeleteAmis bool   `json:"rehostDeleteAmis,omitempty"`
}

// DeleteReplicationJobOutput has no members.
type DeleteReplicationJobOutput struct{}

// StartOnDemandReplicationRunInput names the job.
type StartOnDemandReplicationRunInput struct {
	ReplicationJobID string `json:"replicationJobId"`
	Description      string `json:"description,omitempty"`
}

// StartOnDemandReplicationRunOutput names the new run.
type StartOnDemandReplicationRunOutput struct {
	ReplicationRunID string `json:"replicationRunId"`
}

// GetReplicationRunsInput pages through a job's runs, newest first.
type GetReplicationRunsInput struct {
	ReplicationJobID string `json:"replicationJobId"`
	NextToken        string `json:"nextToken,omitempty"`
	MaxResults       int    `json:"maxResults,omitempty"`
}

// ReplicationRunStageDetails is the run's stage in words.
type ReplicationRunStageDetails struct {
	Stage         string `json:"stage,omitempty"`
	StageProgress string `json:"stageProgress,omitempty"`
}

// ReplicationRun is one run of a job.
type ReplicationRun struct {
	ReplicationRunID   string                      `json:"replicationRunId"`
	State              string                      `json:"state"`
	Type               string                      `json:"type"`
	StageDetails       *ReplicationRunStageDetails `json:"stageDetails,omitempty"`
	StatusMessage      string                      `json:"statusMessage,omitempty"`
	AmiID              string                      `json:"amiId,omitempty"`
	ScheduledStartTime Time                        `json:"scheduledStartTime,omitzero"`
	CompletedTime      Time                        `json:"completedTime,omitzero"`
	Description        string                      `json:"description,omitempty"`
	Encrypted          bool                        `json:"encrypted,omitempty"`
	KmsKeyID           string                      `json:"kmsKeyId,omitempty"`
	Rehost             *ReplicationRunEx           `json:"rehostDetails,omitempty"`
}

// ReplicationRunEx is what rehost keeps of a run beyond SMS's shape.
type ReplicationRunEx struct {
	ReplicationJobID string `json:"replicationJobId"`
	StartedAt        Time   `json:"startedAt,omitzero"`
	// Progress is set for runs in progress, and by GetReplicationRun for
	// finished runs too (each step's time, the step a failed run failed
	// in).
	Progress *daemon.RunProgress `json:"progress,omitempty"`
	// Replication is what the run moved and, for an incremental run, its
	// proof: the verification of its replicas.
	Replication *RunReplication `json:"replication,omitempty"`
}

// RunReplication is what a run moved, and how its replicas were proven.
type RunReplication struct {
	// Mode is the run's: "full" or "incremental" (an incremental job's run
	// is full where change tracking or EBS direct was not to be had, and
	// FullBecause says why).
	Mode        string `json:"mode"`
	FullBecause string `json:"fullBecause,omitempty"`
	// BytesRead from the source, BytesSent to AWS (a full run's staged
	// bytes), BlocksChanged the 512 KiB blocks an incremental run put.
	BytesRead     int64                   `json:"bytesRead"`
	BytesSent     int64                   `json:"bytesSent"`
	BlocksChanged int64                   `json:"blocksChanged"`
	Disks         []store.DiskReplication `json:"disks,omitempty"`
	Verification  *store.Verification     `json:"verification,omitempty"`
	// Encodings say, for each disk the connector encoded itself (Hyper-V,
	// Azure), how: the format, for a VMDK whether its grains were
	// deflated, Huffman-coded or stored, what the stream waited on and the
	// rates measured during the run that the choice was made on.
	Encodings []DiskEncoding `json:"encodings,omitempty"`
	// Verified says the verification in words: "verified: 812 blocks (64
	// sampled), 0 mismatches".
	Verified string `json:"verified,omitempty"`
}

// DiskEncoding is how one disk's image was encoded (see disk.Pacing);
// Summary says it in words.
type DiskEncoding struct {
	Disk int `json:"disk"`
	disk.Pacing
	Summary string `json:"summary"`
}

// VerifyReplicationJobInput asks for a full verification of a job's
// replicas: every block read back and compared with the source's
// checksums.
type VerifyReplicationJobInput struct {
	ReplicationJobID string `json:"replicationJobId"`
}

// VerifyReplicationJobOutput says which run verifies: one started now, or
// the job's next (a run already in progress, the on-demand limit reached).
type VerifyReplicationJobOutput struct {
	ReplicationRunID string `json:"replicationRunId,omitempty"`
	Message          string `json:"message"`
}

// GetReplicationRunsOutput is the job and a page of its runs.
type GetReplicationRunsOutput struct {
	ReplicationJob     *ReplicationJob  `json:"replicationJob,omitempty"`
	ReplicationRunList []ReplicationRun `json:"replicationRunList"`
	NextToken          string           `json:"nextToken,omitempty"`
}

// The appliance's own operations (target prefix RehostConnector_V1).

// SourceInput adds a source. Password is write-only: no answer carries it.
type SourceInput struct {
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	URL        string          `json:"url"`
	User       string          `json:"user"`
	Password   string          `json:"password"`
	Thumbprint string          `json:"thumbprint,omitempty"`
	Insecure   bool            `json:"insecure,omitempty"`
	Options    json.RawMessage `json:"options,omitempty"`
}

// Source is a stored source, without its credential.
type Source struct {
	SourceID    string          `json:"sourceId"`
	Kind        string          `json:"kind"`
	Name        string          `json:"name"`
	URL         string          `json:"url"`
	User        string          `json:"user"`
	Thumbprint  string          `json:"thumbprint,omitempty"`
	Insecure    bool            `json:"insecure,omitempty"`
	Options     json.RawMessage `json:"options,omitempty"`
	CreatedAt   Time            `json:"createdAt,omitzero"`
	ServerCount int             `json:"serverCount"`
}

// AddSourceOutput is the stored source.
type AddSourceOutput struct {
	Source Source `json:"source"`
}

// ListSourcesInput has no members.
type ListSourcesInput struct{}

// ListSourcesOutput lists the sources by name.
type ListSourcesOutput struct {
	Sources []Source `json:"sources"`
}

// SourceRef names a source by name or id.
type SourceRef struct {
	Source string `json:"source"`
}

// TestSourceOutput says whether the connector reaches the source and logs
// in.
type TestSourceOutput struct {
	Source         Source  `json:"source"`
	Reachable      bool    `json:"reachable"`
	Message        string  `json:"message,omitempty"`
	LatencySeconds float64 `json:"latencySeconds,omitempty"`
}

// RemoveSourceOutput has no members.
type RemoveSourceOutput struct{}

// GetRegistrationInput has no members.
type GetRegistrationInput struct{}

// Registration is the connector's AWS registration without its credentials.
type Registration struct {
	Registered  bool   `json:"registered"`
	Region      string `json:"region,omitempty"`
	Bucket      string `json:"bucket,omitempty"`
	RoleName    string `json:"roleName,omitempty"`
	KmsKeyID    string `json:"kmsKeyId,omitempty"`
	ImportMode  string `json:"importMode,omitempty"`
	Endpoint    string `json:"endpoint,omitempty"`
	S3Endpoint  string `json:"s3Endpoint,omitempty"`
	Credentials string `json:"credentials,omitempty"` // "stored keys", "profile NAME" or "default chain"
}

// RegisterInput registers the connector with an AWS account. The secret
// access key and session token are write-only.
type RegisterInput struct {
	Settings   daemon.AWSSettings `json:"settings"`
	CreateRole bool               `json:"createRole,omitempty"`
	FixBucket  bool               `json:"fixBucket,omitempty"`
}

// RegisterOutput is what setup found and changed.
type RegisterOutput struct {
	Report awstarget.SetupReport `json:"report"`
	// Preflight is the account's preflight right after the setup: what
	// the first run would still fail on (a KMS key the role may not use).
	Preflight *Preflight `json:"preflight,omitempty"`
}

// GetReplicationRunInput names a run.
type GetReplicationRunInput struct {
	ReplicationRunID string `json:"replicationRunId"`
}

// GetReplicationRunOutput is the run with its progress.
type GetReplicationRunOutput struct {
	ReplicationRun ReplicationRun `json:"replicationRun"`
}

// GetConnectorStatusInput has no members.
type GetConnectorStatusInput struct{}

// Check is the outcome of one reachability check.
type Check struct {
	Name           string  `json:"name"`
	OK             bool    `json:"ok"`
	Message        string  `json:"message,omitempty"`
	LatencySeconds float64 `json:"latencySeconds,omitempty"`
}

// ConnectorStatus is the connector's health.
type ConnectorStatus struct {
	Version       string       `json:"version"`
	Daemon        string       `json:"daemon"` // "serving since …, pid N" or "not running"
	UptimeSeconds int64        `json:"uptimeSeconds,omitempty"`
	Registration  Registration `json:"registration"`
	AWS           Check        `json:"aws"`
	Sources       []Check      `json:"sources"`
	// FreeDiskBytes and TotalDiskBytes are of the state directory's file
	// system.
	FreeDiskBytes  uint64 `json:"freeDiskBytes"`
	TotalDiskBytes uint64 `json:"totalDiskBytes"`
	RunsPending    int    `json:"runsPending"`
	RunsActive     int    `json:"runsActive"`
	// Preflight is the account's latest preflight (re-run daily and by
	// 'rehost preflight'); a blocked account is not healthy.
	Preflight *Preflight `json:"preflight,omitempty"`
	Healthy   bool       `json:"healthy"`
	// Backup is the state backups' status.
	Backup BackupStatus `json:"backup"`
	// Appliance is the appliance's report of itself — the system partition
	// running, Secure Boot, the release key, the last upgrade and why it
	// was rolled back — when the connector runs on the appliance.
	Appliance *status.Report `json:"appliance,omitempty"`
}

// GetEventsInput selects events, newest first.
type GetEventsInput struct {
	ReplicationJobID string `json:"replicationJobId,omitempty"`
	ReplicationRunID string `json:"replicationRunId,omitempty"`
	MaxResults       int    `json:"maxResults,omitempty"`
}

// Event is a line of a job's or run's history.
type Event struct {
	Time             Time   `json:"time"`
	ReplicationJobID string `json:"replicationJobId,omitempty"`
	ReplicationRunID string `json:"replicationRunId,omitempty"`
	Level            string `json:"level"`
	Message          string `json:"message"`
}

// GetEventsOutput lists events newest first.
type GetEventsOutput struct {
	Events []Event `json:"events"`
}

// BackupStatus says how the state is backed up.
type BackupStatus struct {
	// KeyRecorded: the backup key's recovery code was shown (GetBackupKey)
	// at KeyShownAt. Until then no backup can be restored: nobody holds
	// the code.
	KeyRecorded bool `json:"keyRecorded"`
	KeyShownAt  Time `json:"keyShownAt,omitzero"`
	// EverySeconds is the interval of the automatic backups to the staging
	// bucket once registered (0: off).
	EverySeconds int64 `json:"everySeconds"`
	// Last is the last automatic (or to-bucket) backup.
	Last *BackupStateOutput `json:"last,omitempty"`
}

// BackupStateToBucketInput takes a backup into the staging bucket.
type BackupStateToBucketInput struct{}

// BackupStateOutput describes a backup.
type BackupStateOutput struct {
	Location  string `json:"location,omitempty"` // s3://bucket/key
	Bytes     int64  `json:"bytes,omitempty"`
	CreatedAt Time   `json:"createdAt,omitzero"`
	StateID   string `json:"stateId,omitempty"`
	Version   string `json:"version,omitempty"`
	// Error says why the backup failed (in a status's Last).
	Error string `json:"error,omitempty"`
}

// GetBackupKeyInput asks for the backup key.
type GetBackupKeyInput struct{}

// GetBackupKeyOutput is the backup key as its recovery code.
type GetBackupKeyOutput struct {
	RecoveryCode string `json:"recoveryCode"`
}
