package api

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

// Local runs the API's operations on an open state directory: in the
// daemon behind the HTTPS endpoint, and in the CLI on the appliance itself.
type Local struct {
	D *daemon.Daemon
	// Started is when the serving process started; zero in the CLI.
	Started time.Time
	// Config is the daemon's effective configuration, for the support
	// bundle; nil in the CLI, which reads the running daemon's.
	Config json.RawMessage
	// Notify, when set, is called after a change the serving daemon must
	// pick up: the CLI signals the daemon beside it.
	Notify func()
	// ExtraFiles are files the support bundle carries too (the appliance's
	// own log and settings), their last 2 MiB each, redacted like the rest.
	ExtraFiles []string
	// ApplianceStatus is the appliance init's status file (appliance/status);
	// empty in the CLI, which uses the serving daemon's.
	ApplianceStatus string
}

var _ Service = (*Local)(nil)

func (l *Local) notify() {
	if l.Notify != nil {
		l.Notify()
	}
}

// internal wraps an unexpected failure.
func internal(err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return Errorf(ErrInternal, "%v", err)
}

// storeErr maps the store's error classes to SMS's exceptions.
func storeErr(err error, notFound string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return Errorf(notFound, "%v", err)
	case errors.Is(err, store.ErrConflict):
		return Errorf(ErrOperationNotPermitted, "%v", err)
	case errors.Is(err, store.ErrInvalid):
		return Errorf(ErrInvalidParameter, "%v", err)
	}
	return internal(err)
}

// Paging: a token is the offset of the next item, opaque to clients.

const (
	defaultPage = 50
	maxPage     = 1000
)

func page[T any](items []T, token string, max int) ([]T, string, error) {
	if max < 0 || max > maxPage {
		return nil, "", Errorf(ErrInvalidParameter, "maxResults %d: must be from 1 to %d", max, maxPage)
	}
	if max == 0 {
		max = defaultPage
	}
	off := 0
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		n, cerr := strconv.Atoi(strings.TrimPrefix(string(b), "o:"))
		if err != nil || cerr != nil || !strings.HasPrefix(string(b), "o:") || n < 0 || n > len(items) {
			return nil, "", Errorf(ErrInvalidParameter, "nextToken %q is not one this connector gave: start again without it", token)
		}
		off = n
	}
	end := min(off+max, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(end)))
	}
	return items[off:end], next, nil
}

// catalog is the state a listing needs, read once per call.
type catalog struct {
	sources    map[string]store.Source
	servers    map[string]store.Server
	jobs       []store.ReplicationJob
	preflights map[string]daemon.Report
}

func (l *Local) catalog(ctx context.Context) (*catalog, error) {
	c := &catalog{sources: map[string]store.Source{}, servers: map[string]store.Server{}}
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	for _, s := range srcs {
		c.sources[s.ID] = s
	}
	servers, err := l.D.Store.ListServers(ctx, store.ServerFilter{})
	if err != nil {
		return nil, internal(err)
	}
	for _, s := range servers {
		c.servers[s.ServerID] = s
	}
	if c.jobs, err = l.D.Store.ListJobs(ctx, store.JobFilter{}); err != nil {
		return nil, internal(err)
	}
	if c.preflights, err = l.D.Preflights(ctx); err != nil {
		return nil, internal(err)
	}
	return c, nil
}

// vmManagerType is SMS's name of a source kind.
func vmManagerType(k store.SourceKind) string {
	switch k {
	case store.SourceVSphere:
		return "VSPHERE"
	case store.SourceHyperV:
		return "HYPERV-MANAGER"
	case store.SourceSCVMM:
		return "SCVMM"
	}
	return strings.ToUpper(string(k))
}

func (c *catalog) vmServer(serverID string) *VmServer {
	s, ok := c.servers[serverID]
	if !ok {
		return nil
	}
	src := c.sources[s.SourceID]
	return &VmServer{
		VmServerAddress: &VmServerAddress{VmManagerID: s.SourceID, VmID: s.VMID},
		VmName:          s.Name, VmManagerName: src.Name, VmManagerType: vmManagerType(src.Kind), VmPath: s.Path,
	}
}

func (c *catalog) server(s store.Server) Server {
	out := Server{ServerID: s.ServerID, ServerType: ServerTypeVirtualMachine, VmServer: c.vmServer(s.ServerID),
		Rehost: &ServerDetails{SourceID: s.SourceID, GuestOS: s.GuestOS, Firmware: s.Firmware, CPUs: s.CPUs,
			MemoryMiB: s.MemoryMiB, DiskCount: s.DiskCount, ImportedAt: At(s.ImportedAt)}}
	if r, ok := c.preflights[s.ServerID]; ok {
		out.Rehost.Preflight = preflightOf(r)
	}
	// The live job, else the latest deleted one.
	for _, j := range c.jobs {
		if j.ServerID != s.ServerID {
			continue
		}
		if out.ReplicationJobID == "" || out.ReplicationJobTerminated {
			out.ReplicationJobID = j.ReplicationJobID
			out.ReplicationJobTerminated = j.State == store.JobDeleted || j.State == store.JobFailed
		}
	}
	return out
}

// sortedServers lists the catalog by source name, VM name and id.
func (c *catalog) sortedServers() []store.Server {
	out := make([]store.Server, 0, len(c.servers))
	for _, s := range c.servers {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b store.Server) int {
		return cmp.Or(cmp.Compare(c.sources[a.SourceID].Name, c.sources[b.SourceID].Name),
			cmp.Compare(a.Name, b.Name), cmp.Compare(a.ServerID, b.ServerID))
	})
	return out
}

func (c *catalog) job(j store.ReplicationJob, runs []ReplicationRun) ReplicationJob {
	return ReplicationJob{
		ReplicationJobID: j.ReplicationJobID, ServerID: j.ServerID, ServerType: ServerTypeVirtualMachine,
		VmServer: c.vmServer(j.ServerID), SeedReplicationTime: At(j.SeedReplicationTime), Frequency: j.Frequency,
		RunOnce: j.RunOnce, NextReplicationRunStartTime: At(j.NextReplicationRunStartTime), LicenseType: j.LicenseType,
		RoleName: j.RoleName, LatestAmiID: j.LatestAmiID, State: string(j.State), StatusMessage: j.StatusMessage,
		Description: j.Description, NumberOfRecentAmisToKeep: j.NumberOfRecentAmisToKeep, Encrypted: j.Encrypted,
		KmsKeyID: j.KmsKeyID, ReplicationRunList: runs,
		Rehost: &ReplicationJobEx{ConsecutiveFailures: j.ConsecutiveFailures, CreatedAt: At(j.CreatedAt), Mode: modeName(j.Mode),
			FrequencyMinutes: j.FrequencyMinutes, NoConversion: j.NoConversion, VerifyRequested: j.VerifyRequested},
	}
}

// replicas is what an incremental job keeps, nil when it keeps nothing.
func replicas(set store.ReplicaSet) *JobReplicas {
	out := &JobReplicas{RunID: set.RunID, VerifiedAt: At(set.VerifiedAt), Disks: []ReplicaDiskRef{}}
	for _, d := range set.Disks {
		out.Disks = append(out.Disks, ReplicaDiskRef{Disk: d.Disk, SnapshotID: d.SnapshotID, Capacity: d.Capacity, VolumeGiB: d.VolumeGiB, Tracked: d.ChangeID != ""})
	}
	return out
}

// runReplication is what a run moved and proved, nil before it moved
// anything.
func runReplication(r store.ReplicationRun) *RunReplication {
	if r.Progress.Mode == "" && r.Replication == nil {
		return nil
	}
	out := &RunReplication{Mode: cmp.Or(r.Progress.Mode, replicationMode(r))}
	if rep := r.Replication; rep != nil {
		out.FullBecause, out.BytesRead, out.BytesSent, out.BlocksChanged = rep.FullBecause, rep.BytesRead, rep.BytesSent, rep.BlocksChanged
		out.Disks, out.Verification = rep.Disks, rep.Verification
		if rep.Verification != nil {
			out.Verified = rep.Verification.String()
		}
	}
	if out.Mode == "full" {
		// A full run sends each disk's staged image, made of the bytes it
		// read from the source (a run recorded before they were counted
		// says the image's size).
		for _, d := range r.Progress.Disks {
			read := d.BytesDone
			if d.BytesRead != nil {
				read = *d.BytesRead
			}
			out.BytesRead, out.BytesSent = out.BytesRead+read, out.BytesSent+d.BytesDone
		}
	}
	for _, d := range r.Progress.Disks {
		if d.Pacing != nil {
			out.Encodings = append(out.Encodings, DiskEncoding{Disk: d.Disk, Pacing: *d.Pacing, Summary: d.Pacing.Summary()})
		}
	}
	return out
}

func replicationMode(r store.ReplicationRun) string {
	if r.Replication != nil && r.Replication.FullBecause == "" {
		return store.ModeIncremental
	}
	return "full"
}

// run converts a run, with its progress while it is in progress.
func (l *Local) run(ctx context.Context, r store.ReplicationRun) ReplicationRun {
	out := ReplicationRun{
		ReplicationRunID: r.ReplicationRunID, State: string(r.State), Type: string(r.Type),
		StatusMessage: r.StatusMessage, AmiID: r.AmiID, ScheduledStartTime: At(r.ScheduledStartTime),
		CompletedTime: At(r.CompletedTime), Description: r.Description, Encrypted: r.Encrypted, KmsKeyID: r.KmsKeyID,
		Rehost: &ReplicationRunEx{ReplicationJobID: r.ReplicationJobID, StartedAt: At(r.StartedAt)},
	}
	if r.Stage != "" || r.StageProgress != "" {
		out.StageDetails = &ReplicationRunStageDetails{Stage: r.Stage, StageProgress: r.StageProgress}
	}
	out.Rehost.Replication = runReplication(r)
	if r.State == store.RunActive {
		if p, err := l.D.RunProgress(ctx, r); err == nil {
			out.Rehost.Progress = &p
		}
	}
	return out
}

// ImportServerCatalog reads the inventory of every source (or of the one
// named by RehostSource) into the catalog. Unlike SMS it returns when the
// import is done, with what it imported.
func (l *Local) ImportServerCatalog(ctx context.Context, in *ImportServerCatalogInput) (*ImportServerCatalogOutput, error) {
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	if in.RehostSource != "" {
		srcs = slices.DeleteFunc(srcs, func(s store.Source) bool { return s.Name != in.RehostSource && s.ID != in.RehostSource })
		if len(srcs) == 0 {
			return nil, Errorf(ErrInvalidParameter, "no source %q: see 'rehost source list'", in.RehostSource)
		}
	}
	if len(srcs) == 0 {
		return nil, Errorf(ErrNoConnectorsAvailable, "no source to import servers from: add one with 'rehost source add'")
	}
	var imported []store.Server
	var failed []string
	for _, s := range srcs {
		servers, err := l.D.ImportCatalog(ctx, s.ID)
		if err != nil {
			failed = append(failed, fmt.Sprintf("source %q: %v", s.Name, err))
			continue
		}
		imported = append(imported, servers...)
	}
	if len(failed) > 0 {
		return nil, Errorf(ErrNoConnectorsAvailable, "import server catalog: %s (check it with 'rehost source test')", strings.Join(failed, "; "))
	}
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	out := &ImportServerCatalogOutput{RehostServers: []Server{}}
	for _, s := range imported {
		out.RehostServers = append(out.RehostServers, c.server(c.servers[s.ServerID]))
	}
	return out, nil
}

// GetServers pages through the catalog; vmServerAddressList keeps the
// servers matching any address (an empty member matches every value).
func (l *Local) GetServers(ctx context.Context, in *GetServersInput) (*GetServersOutput, error) {
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	out := &GetServersOutput{ServerCatalogStatus: CatalogNotImported, ServerList: []Server{}}
	var all []Server
	for _, s := range c.sortedServers() {
		if s.ImportedAt.After(out.LastModifiedOn.Time) {
			out.LastModifiedOn = At(s.ImportedAt)
		}
		if len(in.VmServerAddressList) > 0 && !slices.ContainsFunc(in.VmServerAddressList, func(a VmServerAddress) bool {
			return (a.VmManagerID == "" || a.VmManagerID == s.SourceID) && (a.VmID == "" || a.VmID == s.VMID)
		}) {
			continue
		}
		all = append(all, c.server(s))
	}
	if len(c.servers) > 0 {
		out.ServerCatalogStatus = CatalogAvailable
	}
	pg, next, err := page(all, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out.ServerList, out.NextToken = append(out.ServerList, pg...), next
	return out, nil
}

// DeleteServerCatalog removes every server from the catalog. It is refused
// while replication jobs exist; servers whose deleted jobs keep their
// history stay.
func (l *Local) DeleteServerCatalog(ctx context.Context, _ *DeleteServerCatalogInput) (*DeleteServerCatalogOutput, error) {
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	kept := map[string]bool{}
	for _, j := range c.jobs {
		if j.State != store.JobDeleted {
			return nil, Errorf(ErrOperationNotPermitted, "server %s has replication job %s (%s): delete the replication jobs first",
				j.ServerID, j.ReplicationJobID, j.State)
		}
		kept[j.ServerID] = true
	}
	for id := range c.servers {
		if kept[id] {
			continue
		}
		if err := l.D.Store.DeleteServer(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, storeErr(err, ErrInvalidParameter)
		}
		if err := l.D.Store.DeletePreflight(ctx, id); err != nil {
			return nil, internal(err)
		}
	}
	return &DeleteServerCatalogOutput{}, nil
}

func connectorID(sourceID string) string { return "c-" + strings.TrimPrefix(sourceID, "src-") }

// GetConnectors lists this appliance once per source, as SMS listed one
// connector per VM manager; in a fleet, every member once.
func (l *Local) GetConnectors(ctx context.Context, in *GetConnectorsInput) (*GetConnectorsOutput, error) {
	if l.D.StoreConfig.Postgres() {
		all, err := l.fleetConnectors(ctx)
		if err != nil {
			return nil, err
		}
		pg, next, err := page(all, in.NextToken, in.MaxResults)
		if err != nil {
			return nil, err
		}
		return &GetConnectorsOutput{ConnectorList: append([]Connector{}, pg...), NextToken: next}, nil
	}
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	status := ConnectorHealthy
	if _, err := l.D.Registration(ctx); err != nil {
		status = ConnectorUnhealthy
	}
	ip, mac := daemon.HostAddress()
	var all []Connector
	for _, s := range srcs {
		all = append(all, Connector{
			ConnectorID: connectorID(s.ID), Version: version.String(), Status: status,
			CapabilityList: []string{vmManagerType(s.Kind)}, VmManagerName: s.Name, VmManagerType: vmManagerType(s.Kind),
			VmManagerID: s.ID, IPAddress: ip, MacAddress: mac, AssociatedOn: At(s.CreatedAt),
		})
	}
	pg, next, err := page(all, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	return &GetConnectorsOutput{ConnectorList: append([]Connector{}, pg...), NextToken: next}, nil
}

// DisassociateConnector removes the source a connector id stands for (see
// RemoveSource); in a fleet, the member.
func (l *Local) DisassociateConnector(ctx context.Context, in *DisassociateConnectorInput) (*DisassociateConnectorOutput, error) {
	if in.ConnectorID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "connectorId is required")
	}
	if l.D.StoreConfig.Postgres() {
		// In a fleet a connector is a member: removing it ends its leases
		// (others resume its runs) and stops it at its next heartbeat.
		if err := l.D.Store.RemoveMember(ctx, in.ConnectorID); errors.Is(err, store.ErrNotFound) {
			return nil, Errorf(ErrInvalidParameter, "no connector %q in the fleet: see GetConnectors", in.ConnectorID)
		} else if err != nil {
			return nil, internal(err)
		}
		l.D.Log.Warn("connector removed from the fleet", "removed", in.ConnectorID)
		return &DisassociateConnectorOutput{}, nil
	}
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	i := slices.IndexFunc(srcs, func(s store.Source) bool { return connectorID(s.ID) == in.ConnectorID })
	if i < 0 {
		return nil, Errorf(ErrInvalidParameter, "no connector %q: see GetConnectors", in.ConnectorID)
	}
	if _, err := l.RemoveSource(ctx, &SourceRef{Source: srcs[i].ID}); err != nil {
		return nil, err
	}
	return &DisassociateConnectorOutput{}, nil
}

// maxSeedAhead is how far ahead a seed time may be.
const maxSeedAhead = 366 * 24 * time.Hour

// checkMode reads a job mode as the API spells it.
func checkMode(m string) (string, error) {
	switch m {
	case "", "full":
		return store.ModeFull, nil
	case store.ModeIncremental:
		return store.ModeIncremental, nil
	}
	return "", Errorf(ErrInvalidParameter, "rehostMode %q: must be full or incremental", m)
}

// modeName is a job mode as the API spells it.
func modeName(m string) string { return cmp.Or(m, "full") }

func checkFrequency(f int) error {
	if f < 1 || f > 24 {
		return Errorf(ErrInvalidParameter, "frequency %d: must be a whole number of hours from 1 to 24", f)
	}
	return nil
}

func checkTime(name string, t Time) error {
	if t.Year() < 2000 || t.After(time.Now().Add(maxSeedAhead)) {
		return Errorf(ErrInvalidParameter, "%s %s: must be a time from now to a year ahead (or past, for the seed), in seconds since the epoch",
			name, t.UTC().Format(time.RFC3339))
	}
	return nil
}

func checkLicense(l string) error {
	if l != store.LicenseAWS && l != store.LicenseBYOL {
		return Errorf(ErrInvalidParameter, "licenseType %q: must be AWS or BYOL", l)
	}
	return nil
}

// CreateReplicationJob creates a job for a server of the catalog.
func (l *Local) CreateReplicationJob(ctx context.Context, in *CreateReplicationJobInput) (*CreateReplicationJobOutput, error) {
	switch {
	case in.ServerID == "":
		return nil, Errorf(ErrMissingRequiredParameter, "serverId is required")
	case in.SeedReplicationTime == nil:
		return nil, Errorf(ErrMissingRequiredParameter, "seedReplicationTime is required")
	case in.Frequency == nil && !in.RunOnce && in.RehostFrequencyMinutes == 0:
		return nil, Errorf(ErrInvalidParameter, "frequency is required unless runOnce: a whole number of hours from 1 to 24 (or rehostFrequencyMinutes 15, 20 or 30 for an incremental job)")
	case in.Frequency != nil && in.RehostFrequencyMinutes != 0:
		return nil, Errorf(ErrInvalidParameter, "frequency (hours) and rehostFrequencyMinutes are given together: give one")
	}
	mode, err := checkMode(in.RehostMode)
	if err != nil {
		return nil, err
	}
	if err := checkMembers(member{"serverId", limit.ServerID, in.ServerID}, member{"description", limit.Description, in.Description},
		member{"roleName", limit.RoleName, in.RoleName}, member{"kmsKeyId", limit.KMSKeyID, in.KmsKeyID}); err != nil {
		return nil, err
	}
	j := store.ReplicationJob{
		ServerID: in.ServerID, SeedReplicationTime: in.SeedReplicationTime.Time, RunOnce: in.RunOnce,
		LicenseType: cmp.Or(in.LicenseType, store.LicenseAWS), RoleName: in.RoleName, Description: in.Description,
		NumberOfRecentAmisToKeep: in.NumberOfRecentAmisToKeep, Encrypted: in.Encrypted, KmsKeyID: in.KmsKeyID,
		Mode: mode, FrequencyMinutes: in.RehostFrequencyMinutes, NoConversion: in.RehostNoConversion,
	}
	if j.FrequencyMinutes != 0 {
		if err := store.ValidateFrequencyMinutes(j.FrequencyMinutes, j.Mode); err != nil {
			return nil, Errorf(ErrInvalidParameter, "rehostFrequencyMinutes: %v", strings.TrimPrefix(err.Error(), "invalid: "))
		}
	}
	if j.NoConversion && j.Mode != store.ModeIncremental {
		return nil, Errorf(ErrInvalidParameter, "rehostNoConversion needs rehostMode incremental: the AMI is registered on the replicas")
	}
	if in.Frequency != nil {
		if err := checkFrequency(*in.Frequency); err != nil {
			return nil, err
		}
		j.Frequency = *in.Frequency
	}
	if err := checkTime("seedReplicationTime", *in.SeedReplicationTime); err != nil {
		return nil, err
	}
	if err := checkLicense(j.LicenseType); err != nil {
		return nil, err
	}
	if j.NumberOfRecentAmisToKeep < 0 {
		return nil, Errorf(ErrInvalidParameter, "numberOfRecentAmisToKeep %d: must not be negative", j.NumberOfRecentAmisToKeep)
	}
	if j.KmsKeyID != "" && !j.Encrypted {
		return nil, Errorf(ErrInvalidParameter, "kmsKeyId is given but encrypted is not set")
	}
	srv, err := l.D.Store.GetServer(ctx, in.ServerID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, Errorf(ErrInvalidParameter, "server %s is not in the server catalog: import it (ImportServerCatalog, 'rehost server import') and list it (GetServers)", in.ServerID)
	}
	if err != nil {
		return nil, internal(err)
	}
	if srv.DiskCount == 0 {
		return nil, Errorf(ErrServerCannotBeReplicated, "server %s (%q) has no disks to replicate", srv.ServerID, srv.Name)
	}
	if _, err := l.D.Store.GetSource(ctx, srv.SourceID); err != nil {
		return nil, Errorf(ErrServerCannotBeReplicated, "server %s (%q): its source is gone: %v", srv.ServerID, srv.Name, err)
	}
	if err := l.admit(ctx, srv, in.RehostAcceptWarnings); err != nil {
		return nil, err
	}
	created, err := l.D.CreateJob(ctx, j)
	if errors.Is(err, store.ErrConflict) {
		return nil, Errorf(ErrJobAlreadyExists, "%v", err)
	}
	if err != nil && created.ReplicationJobID == "" {
		return nil, storeErr(err, ErrInvalidParameter)
	}
	if err != nil {
		// Stored but not scheduled: the daemon's next resync schedules it.
		l.D.Log.Warn("schedule a new job; the daemon's resync will", "job", created.ReplicationJobID, "err", err)
	}
	l.notify()
	return &CreateReplicationJobOutput{ReplicationJobID: created.ReplicationJobID}, nil
}

// recentRuns is how many runs GetReplicationJobs lists per job.
const recentRuns = 5

// GetReplicationJobs gets one job or pages through all, each with its most
// recent runs.
func (l *Local) GetReplicationJobs(ctx context.Context, in *GetReplicationJobsInput) (*GetReplicationJobsOutput, error) {
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	jobs := c.jobs
	if in.ReplicationJobID != "" {
		jobs = slices.DeleteFunc(jobs, func(j store.ReplicationJob) bool { return j.ReplicationJobID != in.ReplicationJobID })
		if len(jobs) == 0 {
			return nil, Errorf(ErrJobNotFound, "replication job %s does not exist", in.ReplicationJobID)
		}
	}
	pg, next, err := page(jobs, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	out := &GetReplicationJobsOutput{ReplicationJobList: []ReplicationJob{}, NextToken: next}
	for _, j := range pg {
		rs, err := l.D.Store.ListRuns(ctx, j.ReplicationJobID, recentRuns)
		if err != nil {
			return nil, internal(err)
		}
		var runs []ReplicationRun
		for _, r := range rs {
			runs = append(runs, l.run(ctx, r))
		}
		job := c.job(j, runs)
		if set, err := l.D.Store.GetReplicaSet(ctx, j.ReplicationJobID); err == nil {
			job.Rehost.Replicas = replicas(set)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, internal(err)
		}
		out.ReplicationJobList = append(out.ReplicationJobList, job)
	}
	return out, nil
}

var errJobGone = errors.New("job deleted")

// UpdateReplicationJob changes the members given and reschedules the job.
// A new nextReplicationRunStartTime also becomes the schedule's anchor, so
// later runs follow it every frequency hours.
func (l *Local) UpdateReplicationJob(ctx context.Context, in *UpdateReplicationJobInput) (*UpdateReplicationJobOutput, error) {
	if in.ReplicationJobID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationJobId is required")
	}
	if err := checkMembers(member{"replicationJobId", limit.JobID, in.ReplicationJobID}, member{"description", limit.Description, deref(in.Description)},
		member{"roleName", limit.RoleName, deref(in.RoleName)}, member{"kmsKeyId", limit.KMSKeyID, deref(in.KmsKeyID)}); err != nil {
		return nil, err
	}
	if in.Frequency != nil {
		if err := checkFrequency(*in.Frequency); err != nil {
			return nil, err
		}
	}
	if in.Frequency != nil && in.RehostFrequencyMinutes != nil && *in.RehostFrequencyMinutes != 0 {
		return nil, Errorf(ErrInvalidParameter, "frequency (hours) and rehostFrequencyMinutes are given together: give one")
	}
	var mode *string
	if in.RehostMode != nil {
		m, err := checkMode(*in.RehostMode)
		if err != nil {
			return nil, err
		}
		mode = &m
	}
	if in.LicenseType != nil {
		if err := checkLicense(*in.LicenseType); err != nil {
			return nil, err
		}
	}
	if in.NumberOfRecentAmisToKeep != nil && *in.NumberOfRecentAmisToKeep < 0 {
		return nil, Errorf(ErrInvalidParameter, "numberOfRecentAmisToKeep %d: must not be negative", *in.NumberOfRecentAmisToKeep)
	}
	if t := in.NextReplicationRunStartTime; t != nil {
		if err := checkTime("nextReplicationRunStartTime", *t); err != nil {
			return nil, err
		}
		if t.Before(time.Now().Add(-time.Minute)) {
			return nil, Errorf(ErrInvalidParameter, "nextReplicationRunStartTime %s is in the past", t.UTC().Format(time.RFC3339))
		}
	}
	_, err := l.D.Store.UpdateJob(ctx, in.ReplicationJobID, func(j *store.ReplicationJob) error {
		if j.State == store.JobDeleted || j.State == store.JobDeleting {
			return fmt.Errorf("%w: replication job %s is %s", errJobGone, j.ReplicationJobID, j.State)
		}
		if in.Frequency != nil {
			j.Frequency, j.FrequencyMinutes = *in.Frequency, 0
		}
		if mode != nil {
			j.Mode = *mode
		}
		if m := in.RehostFrequencyMinutes; m != nil {
			j.FrequencyMinutes = *m
			if *m != 0 {
				j.Frequency = 0
			} else if j.Frequency == 0 {
				return fmt.Errorf("%w: rehostFrequencyMinutes 0 goes back to a frequency in hours: give frequency too", store.ErrInvalid)
			}
		}
		if in.RehostNoConversion != nil {
			j.NoConversion = *in.RehostNoConversion
		}
		if t := in.NextReplicationRunStartTime; t != nil {
			j.SeedReplicationTime, j.NextReplicationRunStartTime = t.Time, t.Time
		}
		if in.LicenseType != nil {
			j.LicenseType = *in.LicenseType
		}
		if in.RoleName != nil {
			j.RoleName = *in.RoleName
		}
		if in.Description != nil {
			j.Description = *in.Description
		}
		if in.NumberOfRecentAmisToKeep != nil {
			j.NumberOfRecentAmisToKeep = *in.NumberOfRecentAmisToKeep
		}
		if in.Encrypted != nil {
			j.Encrypted = *in.Encrypted
		}
		if in.KmsKeyID != nil {
			j.KmsKeyID = *in.KmsKeyID
		}
		if j.KmsKeyID != "" && !j.Encrypted {
			return fmt.Errorf("%w: kmsKeyId is set but encrypted is not", store.ErrInvalid)
		}
		return nil
	})
	switch {
	case errors.Is(err, errJobGone):
		return nil, Errorf(ErrOperationNotPermitted, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return nil, Errorf(ErrJobNotFound, "replication job %s does not exist", in.ReplicationJobID)
	case err != nil:
		return nil, storeErr(err, ErrJobNotFound)
	}
	if err := l.D.Sched.Reschedule(ctx, in.ReplicationJobID); err != nil {
		l.D.Log.Warn("reschedule an updated job; the daemon's resync will", "job", in.ReplicationJobID, "err", err)
	}
	if in.RehostPaused != nil {
		pause := l.D.Sched.ResumeJob
		if *in.RehostPaused {
			pause = l.D.Sched.PauseJob
		}
		if err := pause(ctx, in.ReplicationJobID); errors.Is(err, scheduler.ErrJobState) {
			return nil, Errorf(ErrOperationNotPermitted, "%v", err)
		} else if err != nil {
			return nil, storeErr(err, ErrJobNotFound)
		}
	}
	l.notify()
	return &UpdateReplicationJobOutput{}, nil
}

// DeleteReplicationJob deletes a job and its staged artifacts; its AMIs stay,
// as in SMS, unless RehostDeleteAmis.
func (l *Local) DeleteReplicationJob(ctx context.Context, in *DeleteReplicationJobInput) (*DeleteReplicationJobOutput, error) {
	if in.ReplicationJobID == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "replicationJobId is required")
	}
	j, err := l.D.Store.GetJob(ctx, in.ReplicationJobID)
	if err != nil {
		return nil, storeErr(err, ErrJobNotFound)
	}
	if j.State == store.JobDeleted {
		return nil, Errorf(ErrOperationNotPermitted, "replication job %s is already deleted", j.ReplicationJobID)
	}
	runs, err := l.D.Store.RunsInState(ctx, store.RunActive)
	if err != nil {
		return nil, internal(err)
	}
	for _, r := range runs {
		if r.ReplicationJobID == j.ReplicationJobID {
			return nil, Errorf(ErrOperationNotPermitted, "replication job %s has run %s in progress (%s): retry when it has ended",
				j.ReplicationJobID, r.ReplicationRunID, cmp.Or(r.Stage, "starting"))
		}
	}
	if err := l.D.DeleteJob(ctx, in.ReplicationJobID, in.RehostDeleteAmis); err != nil {
		return nil, storeErr(err, ErrJobNotFound)
	}
	if err := l.D.Sched.Reschedule(ctx, in.ReplicationJobID); err != nil {
		l.D.Log.Warn("unschedule a deleted job; the daemon's resync will", "job", in.ReplicationJobID, "err", err)
	}
	l.notify()
	return &DeleteReplicationJobOutput{}, nil
}
