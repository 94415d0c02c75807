// Package daemon ties the connector together: the state directory (store and
// secret key), the AWS registration, the sources and their server catalog,
// the replication engine and the scheduler. `rehost serve` runs it; the CLI
// verbs and `rehost demo` use the same calls.
package daemon

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rehost/rehost/connector/app"
	"github.com/rehost/rehost/connector/bandwidth"
	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// AWSSettings is the connector's registration with an AWS account. It is
// stored sealed, since it may hold keys.
type AWSSettings struct {
	Region   string `json:"region"`
	Bucket   string `json:"bucket,omitempty"`
	RoleName string `json:"roleName,omitempty"`
	KMSKeyID string `json:"kmsKeyId,omitempty"`
	// Static credentials; empty means the SDK's standard chain.
	AccessKeyID     string `json:"accessKeyId,omitempty"`
	SecretAccessKey string `json:"secretAccessKey,omitempty"`
	SessionToken    string `json:"sessionToken,omitempty"`
	Profile         string `json:"profile,omitempty"`
	// AssumeRoleARN, when set, is a role the connector assumes (with the
	// credentials above, or the default chain: an EC2 instance role) and
	// acts as; ExternalID is passed when the role's trust policy asks for
	// one.
	AssumeRoleARN string `json:"assumeRoleArn,omitempty"`
	ExternalID    string `json:"externalId,omitempty"`
	// Endpoint overrides EC2, IAM, STS, EBS, KMS and Service Quotas (an emulator, a VPC
	// endpoint); S3Endpoint overrides S3 (path-style addressing).
	Endpoint   string `json:"endpoint,omitempty"`
	S3Endpoint string `json:"s3Endpoint,omitempty"`
	// CAPEM is trusted in addition to the system roots (private endpoints).
	CAPEM []byte `json:"caPem,omitempty"`
	// ImportMode is "image" (ImportImage, default) or "snapshot"
	// (ImportSnapshot per disk + RegisterImage).
	ImportMode string `json:"importMode,omitempty"`
	// PollInitial/PollMax tune import polling (defaults 2 s / 30 s).
	PollInitial time.Duration `json:"pollInitial,omitempty"`
	PollMax     time.Duration `json:"pollMax,omitempty"`
}

const settingAWS = "aws"

// Options tune a Daemon.
type Options struct {
	Scheduler scheduler.Options
	Log       *slog.Logger
	// Hook is called at the start of every run step (fault-injection tests).
	Hook func(runID, step string)
	// ProgressEvery throttles progress writes (default 1 s).
	ProgressEvery time.Duration
	// CatalogPoll is how often the catalog of a source that does not
	// report its changes (Hyper-V, Azure) is compared with its inventory
	// (default 30 s); vCenter sources are watched instead.
	CatalogPoll time.Duration
	// LaunchPoll is how often an application launch in progress is looked
	// at (default 5 s); BootTimeout is each server group's time to boot, in
	// seconds (default app.DefaultBootTimeout).
	LaunchPoll  time.Duration
	BootTimeout int
	// AgentGrace is how long a launched server's SSM agent has to register
	// before its validation command is given up (default 3 minutes).
	AgentGrace time.Duration
	// Store overrides the state directory's store selection (store.json).
	Store *StoreConfig
	// WaitForStore makes store calls that lose the connection to a
	// PostgreSQL store wait for it (the daemon) instead of failing (the
	// CLI).
	WaitForStore bool
	// StagingMemory is the bytes of part buffers every run's S3 staging
	// draws from together (default awstarget.DefaultBufferPool, 256 MiB):
	// buffers are reused from part to part and run to run, and a run waits
	// for one while the others hold them all.
	StagingMemory int64
	// StageConcurrency and StagePartSize tune every run's S3 staging: the
	// parts uploaded at once and their size (zero: the target's defaults,
	// 4 and 16 MiB). Smaller parts hold less memory and feel a slow link
	// sooner.
	StageConcurrency int
	StagePartSize    int64
	// Fleet, on a PostgreSQL store, makes the daemon a member of the fleet
	// sharing it (rehost serve); without it the daemon only reads and
	// writes the store (the CLI).
	Fleet *FleetOptions
}

// Daemon is an open connector state directory.
type Daemon struct {
	Dir    string
	Store  store.Store
	Box    *secret.Box
	Log    *slog.Logger
	Engine *replication.Engine
	Sched  *scheduler.Scheduler
	// Apps launches applications and watches their stacks.
	Apps *app.Launcher
	// StoreConfig is where the state is; Member is this connector's
	// membership of the fleet (nil unless it serves a PostgreSQL store).
	StoreConfig StoreConfig
	Member      *fleet.Member
	// Bandwidth is the connector's bandwidth cap, shared by every run's S3
	// staging and EBS writes; Serve keeps it at the stored cap.
	Bandwidth *bandwidth.Cap
	// bandwidthWake makes Serve read the stored cap now (the CLI's signal).
	bandwidthWake chan struct{}

	mu     sync.Mutex
	target *awstarget.Target
	stage  stageTuning
	// buffers are the part buffers of every run's staging, kept across
	// re-registrations (a new target draws from the same pool).
	buffers *awstarget.Buffers

	// backupMu holds backups to the staging bucket to one at a time.
	backupMu sync.Mutex

	keysMu     sync.Mutex
	keysSealed []byte
	keysParsed []AccessKey

	catalogs keeper
}

// Open opens (creating if needed) the state directory dir: rehost.db and the
// secret key master.key, both private to the owner.
func Open(ctx context.Context, dir string, o Options) (*Daemon, error) {
	if dir == "" {
		return nil, errors.New("open state: no state directory given (--state-dir or REHOST_STATE_DIR)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	box, err := secret.LoadOrCreate(filepath.Join(dir, "master.key"))
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	sc, err := ReadStoreConfig(dir)
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	if o.Store != nil {
		sc = *o.Store
	}
	st, err := openStore(ctx, dir, sc, box, o, log)
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	d := &Daemon{Dir: dir, Store: st, Box: box, Log: log, StoreConfig: sc,
		Bandwidth: bandwidth.New(nil), bandwidthWake: make(chan struct{}, 1), buffers: awstarget.NewBuffers(o.StagingMemory),
		stage: stageTuning{o.StageConcurrency, o.StagePartSize}}
	d.catalogs.poll = cmp.Or(o.CatalogPoll, 30*time.Second)
	if sc.Postgres() {
		if err := fleet.CheckKey(ctx, st, box, dir); err != nil {
			st.Close()
			return nil, fmt.Errorf("open state %s on %s: %w", dir, sc.Where(dir), err)
		}
	}
	d.Engine = &replication.Engine{
		Store:  st,
		Source: d.OpenSource,
		// Asked at each run, so a daemon started before registration picks
		// the registration up.
		Target:        func(ctx context.Context) (replication.Target, error) { return d.Target(ctx) },
		Log:           log,
		Hook:          o.Hook,
		ProgressEvery: o.ProgressEvery,
		// One budget for the connector: staging to S3 and EBS writes alike.
		Limiter:   d.Bandwidth,
		Bandwidth: d.Bandwidth,
	}
	so := o.Scheduler
	if so.Logger == nil {
		so.Logger = log
	}
	if sc.Postgres() && o.Fleet != nil && !so.Passive {
		if so.MaxConcurrent <= 0 {
			so.MaxConcurrent = 2
		}
		m, err := d.joinFleet(ctx, *o.Fleet, so.MaxConcurrent)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("open state %s on %s: %w", dir, sc.Where(dir), err)
		}
		d.Member = m
		d.Log = log.With("connector", m.ID())
		d.Engine.Log = d.Log
		so.Logger = so.Logger.With("connector", m.ID())
		so.Fleet, so.FleetTick = m, m.Tick()
	}
	d.Sched = scheduler.New(st, runner{d}, so)
	d.Apps = &app.Launcher{Store: st, Log: log, Poll: o.LaunchPoll, BootTimeout: o.BootTimeout, AgentGrace: o.AgentGrace,
		Cloud: func(ctx context.Context) (app.Cloud, error) { return d.Target(ctx) }}
	d.Engine.ImportSlot = func(ctx context.Context, runID string, tasks awstarget.ImportTasks) (func(), error) {
		t, err := d.Target(ctx)
		if err != nil {
			return nil, err
		}
		return d.Sched.ImportSlot(ctx, t.Region(), runID, tasks.Image, tasks.Snapshot)
	}
	return d, nil
}

// StagingBuffers is the pool of part buffers every run's S3 staging draws
// from (Options.StagingMemory).
func (d *Daemon) StagingBuffers() *awstarget.Buffers { return d.buffers }

// WakeBandwidth makes a serving daemon read the stored bandwidth cap now
// rather than at its next poll.
func (d *Daemon) WakeBandwidth() {
	select {
	case d.bandwidthWake <- struct{}{}:
	default:
	}
}

// Close closes the store.
func (d *Daemon) Close() error { return d.Store.Close() }

type runner struct{ d *Daemon }

func (r runner) Run(ctx context.Context, run store.ReplicationRun) error {
	if err := r.d.vmGoneError(ctx, run); err != nil {
		return err
	}
	_, err := r.d.Engine.Run(ctx, run)
	return err
}

// Register checks the AWS account, prepares the staging bucket and the
// vmimport role (as setup allows) and stores the registration sealed.
func (d *Daemon) Register(ctx context.Context, s AWSSettings, setup awstarget.SetupOptions) (awstarget.SetupReport, error) {
	if s.AccessKeyID == "" {
		// The chain is this process's, as at run time: say what to set
		// rather than pass on the SDK's last word (the metadata service's).
		if err := checkCredentials(ctx, s.Region, s.Profile, s.Endpoint); err != nil {
			return awstarget.SetupReport{}, err
		}
	}
	t, err := newTarget(ctx, s, d.Log, nil, d.stage)
	if err != nil {
		return awstarget.SetupReport{}, err
	}
	if setup.Bucket == "" {
		setup.Bucket = s.Bucket
	}
	if setup.RoleName == "" {
		setup.RoleName = s.RoleName
	}
	if setup.KMSKeyID == "" {
		setup.KMSKeyID = s.KMSKeyID
	}
	rep, err := t.Setup(ctx, setup)
	if err != nil {
		return rep, fmt.Errorf("register with AWS: %w", err)
	}
	s.Bucket, s.RoleName, s.Region = rep.Bucket, rep.RoleName, rep.Region
	b, err := json.Marshal(s)
	if err != nil {
		return rep, err
	}
	if err := d.Store.PutSetting(ctx, settingAWS, d.Box.Seal(b)); err != nil {
		return rep, fmt.Errorf("save the registration: %w", err)
	}
	d.mu.Lock()
	d.target = nil
	d.mu.Unlock()
	return rep, nil
}

// Registration returns the stored AWS registration.
func (d *Daemon) Registration(ctx context.Context) (AWSSettings, error) {
	var s AWSSettings
	sealed, err := d.Store.GetSetting(ctx, settingAWS)
	if errors.Is(err, store.ErrNotFound) {
		return s, errors.New("the connector is not registered with an AWS account: run 'rehost register'")
	}
	if err != nil {
		return s, fmt.Errorf("read the registration: %w", err)
	}
	b, err := d.Box.Open(sealed)
	if err != nil {
		return s, fmt.Errorf("read the registration: %w", err)
	}
	return s, json.Unmarshal(b, &s)
}

// Target returns the registered AWS target, built once per registration.
func (d *Daemon) Target(ctx context.Context) (*awstarget.Target, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.target != nil {
		return d.target, nil
	}
	s, err := d.Registration(ctx)
	if err != nil {
		return nil, err
	}
	t, err := newTarget(ctx, s, d.Log, d.buffers, d.stage)
	if err != nil {
		return nil, err
	}
	d.target = t
	return t, nil
}

// stageTuning is Options' staging parts.
type stageTuning struct {
	concurrency int
	partSize    int64
}

// newTarget builds the target of a registration; its stages draw part
// buffers from bufs (nil: a pool of the target's own), with parts as
// stage says (zero: the target's defaults).
func newTarget(ctx context.Context, s AWSSettings, log *slog.Logger, bufs *awstarget.Buffers, stage stageTuning) (*awstarget.Target, error) {
	cfg := awstarget.Config{
		Concurrency:     stage.concurrency,
		PartSize:        stage.partSize,
		Region:          s.Region,
		AccessKeyID:     s.AccessKeyID,
		SecretAccessKey: s.SecretAccessKey,
		SessionToken:    s.SessionToken,
		Profile:         s.Profile,
		AssumeRoleARN:   s.AssumeRoleARN,
		ExternalID:      s.ExternalID,
		Endpoints: awstarget.Endpoints{
			S3: s.S3Endpoint, EC2: s.Endpoint, IAM: s.Endpoint, STS: s.Endpoint, EBS: s.Endpoint, KMS: s.Endpoint, Quotas: s.Endpoint,
			CloudFormation: s.Endpoint, SSM: s.Endpoint,
		},
		S3PathStyle: s.S3Endpoint != "",
		Bucket:      s.Bucket,
		KMSKeyID:    s.KMSKeyID,
		PollInitial: s.PollInitial,
		PollMax:     s.PollMax,
		ImportMode:  awstarget.ImportMode(s.ImportMode),
		Buffers:     bufs,
		Logger:      log,
	}
	if len(s.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(s.CAPEM) {
			return nil, errors.New("aws registration: the extra CA certificate is not valid PEM")
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	switch cfg.ImportMode {
	case "", awstarget.ModeImportImage, awstarget.ModeImportSnapshot:
	default:
		return nil, fmt.Errorf("aws registration: import mode %q is not image or snapshot", s.ImportMode)
	}
	return awstarget.New(ctx, cfg)
}

// SourceInput adds a source.
type SourceInput struct {
	Kind       store.SourceKind
	Name       string
	URL        string
	User       string
	Password   string
	Thumbprint string
	Insecure   bool
	// Options are the kind's own non-secret settings (JSON), read by its
	// connector.
	Options json.RawMessage
}

// AddSource connects to the source once (so bad credentials or an untrusted
// certificate are reported now, not at the first run) and stores it with
// its password sealed.
func (d *Daemon) AddSource(ctx context.Context, in SourceInput) (store.Source, error) {
	s := store.Source{Kind: in.Kind, Name: in.Name, Endpoint: in.URL, User: in.User,
		Secret: d.Box.Seal([]byte(in.Password)), Thumbprint: in.Thumbprint, Insecure: in.Insecure, Options: in.Options}
	src, err := d.connect(ctx, s)
	if err != nil {
		return store.Source{}, fmt.Errorf("add source %q: %w", in.Name, err)
	}
	src.Close()
	stored, err := d.Store.CreateSource(ctx, s)
	if err == nil && d.Member != nil {
		d.Member.Refresh() // it reaches this one
	}
	return stored, err
}

// OpenSource connects to a stored source.
func (d *Daemon) OpenSource(ctx context.Context, id string) (source.Source, error) {
	s, err := d.Store.GetSource(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.connect(ctx, s)
}

func (d *Daemon) connect(ctx context.Context, s store.Source) (source.Source, error) {
	c, ok := connectors[s.Kind]
	if !ok {
		return nil, fmt.Errorf("source %q: kind %q is not supported by this connector", s.Name, s.Kind)
	}
	secret, err := d.Box.Open(s.Secret)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", s.Name, err)
	}
	return c(ctx, s, secret, d.Log)
}

// ImportCatalog reads the source's inventory into the server catalog.
func (d *Daemon) ImportCatalog(ctx context.Context, sourceID string) ([]store.Server, error) {
	src, err := d.OpenSource(ctx, sourceID)
	if err != nil {
		return nil, fmt.Errorf("import server catalog: %w", err)
	}
	defer src.Close()
	out, err := d.importInventory(ctx, src, sourceID)
	if err != nil {
		return nil, fmt.Errorf("import server catalog: %w", err)
	}
	d.keepCatalog(sourceID)
	return out, nil
}

// CreateJob stores a replication job and schedules it.
func (d *Daemon) CreateJob(ctx context.Context, j store.ReplicationJob) (store.ReplicationJob, error) {
	j, err := d.Store.CreateJob(ctx, j)
	if err != nil {
		return j, err
	}
	if err := d.Sched.Reschedule(ctx, j.ReplicationJobID); err != nil {
		return j, fmt.Errorf("schedule job %s: %w", j.ReplicationJobID, err)
	}
	return d.Store.GetJob(ctx, j.ReplicationJobID)
}

// Serve undoes what finished runs left behind, starts the scheduler (which
// resumes runs a crash left active) and runs until ctx ends; then it stops
// the scheduler, leaving interrupted runs to resume at the next start.
//
// A connector not yet registered (the appliance's first boot) waits for the
// registration, checking every RegistrationPoll, and then starts.
func (d *Daemon) Serve(ctx context.Context) error {
	// A member heartbeats from the start, registered or not.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	memberDone := make(chan struct{})
	if d.Member != nil {
		go func() {
			defer close(memberDone)
			if err := d.Member.Run(ctx); err != nil {
				d.Log.Error("this connector was removed from the fleet: it stops", "err", err)
				stop(err)
			}
		}()
	} else {
		close(memberDone)
	}
	// failed stops the member and says why Serve ends early: its removal
	// from the fleet, else err (nil: stopped while starting, a clean stop).
	failed := func(err error) error {
		stop(nil)
		<-memberDone
		if cause := removedErr(ctx); cause != nil {
			return cause
		}
		return err
	}
	bandwidthDone := make(chan struct{})
	go func() {
		defer close(bandwidthDone)
		d.Bandwidth.Watch(ctx, d.Store, d.bandwidthWake, d.Log)
	}()
	defer func() { stop(nil); <-bandwidthDone }()
	if err := d.waitRegistered(ctx); err != nil {
		if ctx.Err() != nil {
			return failed(nil)
		}
		return failed(err)
	}
	if err := d.Sched.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return failed(nil)
		}
		return failed(err)
	}
	// After the start, so an unreachable source's slow cleanup does not
	// hold up the runs; Recoverable never picks a run that is active.
	janitorDone := make(chan struct{})
	go func() {
		defer close(janitorDone)
		d.janitor(ctx, true)
		d.autoBackup(ctx)
	}()
	preflightDone := make(chan struct{})
	go func() {
		defer close(preflightDone)
		d.preflightAll(ctx)
	}()
	// Launches a crash left in progress are picked up where they stood.
	appsDone := make(chan struct{})
	go func() {
		defer close(appsDone)
		d.Apps.Run(ctx)
	}()
	catalogsDone := make(chan struct{})
	go func() {
		defer close(catalogsDone)
		d.keepCatalogs(ctx)
	}()
	tick := time.NewTicker(30 * time.Minute)
	defer tick.Stop()
	lastSweep, lastPreflight := time.Now(), time.Now()
	for {
		select {
		case <-ctx.Done():
			d.Sched.Stop()
			d.Sched.Wait()
			<-janitorDone
			<-preflightDone
			<-appsDone
			<-catalogsDone
			<-memberDone
			return removedErr(ctx)
		case <-tick.C:
			sweep := time.Since(lastSweep) >= SweepEvery
			if sweep {
				lastSweep = time.Now()
			}
			d.janitor(ctx, sweep)
			if time.Since(lastPreflight) >= PreflightEvery {
				lastPreflight = time.Now()
				d.preflightAll(ctx)
			}
			d.autoBackup(ctx)
		}
	}
}

// removedErr is why Serve stopped: nil for a clean stop, the removal from
// the fleet otherwise.
func removedErr(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, fleet.ErrRemoved) {
		return err
	}
	return nil
}

// SweepEvery is how often the daemon looks for AMIs and EBS snapshots of
// its runs that nothing owns (see replication.Engine.Sweep), besides at
// start.
var SweepEvery = 24 * time.Hour

// RegistrationPoll is how often an unregistered daemon looks for a
// registration made by another process (the CLI, the setup page).
var RegistrationPoll = 5 * time.Second

func (d *Daemon) waitRegistered(ctx context.Context) error {
	logged := false
	for {
		_, err := d.Target(ctx)
		if err == nil {
			return nil
		}
		if _, rerr := d.Registration(ctx); rerr == nil {
			return err // registered, but the registration does not work
		}
		if !logged {
			d.Log.Info("waiting for registration with an AWS account (rehost register, or the setup page)")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(RegistrationPoll):
		}
	}
}

// janitor undoes the leftovers of runs that ended without their cleanup
// completing (the source or AWS was unreachable then), and with sweep also
// removes what no ledger knows of.
func (d *Daemon) janitor(ctx context.Context, sweep bool) {
	_, undo, err := d.Engine.Recoverable(ctx)
	if err != nil {
		d.Log.Error("look for leftovers", "err", err)
		return
	}
	for _, id := range undo {
		uctx, release, ok := d.cleanupLease(ctx, id)
		if !ok {
			continue
		}
		err := d.Engine.Undo(uctx, id)
		release()
		if err != nil {
			d.Log.Error("clean up leftovers of a run; retried later", "run", id, "err", err)
		} else {
			d.Log.Info("cleaned up leftovers of a run", "run", id)
		}
	}
	if !sweep || (d.Member != nil && !d.Member.Leader()) {
		return // in a fleet, the member that schedules sweeps
	}
	removed, err := d.Engine.Sweep(ctx)
	if err != nil && ctx.Err() == nil {
		d.Log.Error("sweep for orphaned AMIs and EBS snapshots; retried later", "err", err)
	}
	if len(removed) > 0 {
		d.Log.Warn("removed orphaned AMIs and EBS snapshots of earlier runs", "removed", removed)
	}
}

// cleanupLease, in a fleet, leases a finished run for its cleanup, so one
// member at a time undoes it, and only one that reaches its source: ok is
// false when this member leaves it to another. Alone, it is ctx as it is.
func (d *Daemon) cleanupLease(ctx context.Context, runID string) (context.Context, func(), bool) {
	if d.Member == nil {
		return ctx, func() {}, true
	}
	run, err := d.Store.GetRun(ctx, runID)
	if err != nil {
		return ctx, nil, false
	}
	if job, err := d.Store.GetJob(ctx, run.ReplicationJobID); err == nil {
		if srv, err := d.Store.GetServer(ctx, job.ServerID); err == nil && !d.Member.Reaches(srv.SourceID) {
			return ctx, nil, false
		}
	}
	l, err := d.Member.LeaseRun(ctx, runID)
	if err != nil {
		if !errors.Is(err, store.ErrConflict) {
			d.Log.Warn("lease a finished run for its cleanup; retried later", "run", runID, "err", err)
		}
		return ctx, nil, false
	}
	return store.WithLease(ctx, l), func() { d.Member.Release(context.WithoutCancel(ctx), l) }, true
}

// DeleteJob deletes a replication job as SMS does: its staged artifacts go,
// and its AMIs too when deleteAMIs is set. A job with an active run is
// refused; pending runs are dropped.
func (d *Daemon) DeleteJob(ctx context.Context, jobID string, deleteAMIs bool) error {
	runs, err := d.Store.ListRuns(ctx, jobID, 0)
	if err != nil {
		return fmt.Errorf("delete job %s: %w", jobID, err)
	}
	for _, r := range runs {
		if r.State == store.RunActive {
			return fmt.Errorf("delete job %s: run %s is active (%s); retry when it has ended", jobID, r.ReplicationRunID, r.Stage)
		}
	}
	if _, err := d.Store.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
		if j.State == store.JobDeleted {
			return fmt.Errorf("%w: job %s is already deleted", store.ErrConflict, jobID)
		}
		j.State, j.StatusMessage = store.JobDeleting, "deleting"
		return nil
	}); err != nil {
		return fmt.Errorf("delete job %s: %w", jobID, err)
	}
	var errs []error
	for _, r := range runs {
		if r.State == store.RunPending {
			if _, err := d.Store.UpdateRun(ctx, r.ReplicationRunID, func(x *store.ReplicationRun) error {
				// The scheduler may have started it since it was listed.
				if x.State != store.RunPending {
					return fmt.Errorf("%w: run %s started meanwhile (%s); retry when it has ended", store.ErrConflict, x.ReplicationRunID, x.State)
				}
				x.State, x.StatusMessage = store.RunDeleted, "job deleted before the run started"
				return nil
			}); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := d.Engine.Undo(ctx, r.ReplicationRunID); err != nil {
			errs = append(errs, err)
		}
	}
	if deleteAMIs {
		if _, err := d.Engine.DeleteJobImages(ctx, jobID); err != nil {
			errs = append(errs, err)
		}
	}
	// What an incremental job keeps between runs goes with it (but the
	// snapshots of AMIs it leaves).
	if err := d.Engine.DeleteJobReplicas(ctx, jobID); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		d.Store.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
			j.StatusMessage = "deletion incomplete, retry 'rehost job delete': " + err.Error()
			return nil
		})
		return fmt.Errorf("delete job %s: %w", jobID, err)
	}
	_, err = d.Store.UpdateJob(ctx, jobID, func(j *store.ReplicationJob) error {
		j.State, j.StatusMessage = store.JobDeleted, ""
		return nil
	})
	return err
}
