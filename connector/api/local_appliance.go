package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/appliance/status"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/source/vsphere"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// findSource looks a source up by id or name.
func (l *Local) findSource(ctx context.Context, ref string) (store.Source, error) {
	if ref == "" {
		return store.Source{}, Errorf(ErrMissingRequiredParameter, "source is required (a name or id)")
	}
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return store.Source{}, internal(err)
	}
	i := slices.IndexFunc(srcs, func(s store.Source) bool { return s.ID == ref || s.Name == ref })
	if i < 0 {
		return store.Source{}, Errorf(ErrInvalidParameter, "no source %q: see 'rehost source list'", ref)
	}
	return srcs[i], nil
}

func (l *Local) source(ctx context.Context, s store.Source) Source {
	servers, _ := l.D.Store.ListServers(ctx, store.ServerFilter{SourceID: s.ID})
	return Source{SourceID: s.ID, Kind: string(s.Kind), Name: s.Name, URL: s.Endpoint, User: s.User,
		Thumbprint: s.Thumbprint, Insecure: s.Insecure, Options: s.Options, CreatedAt: At(s.CreatedAt), ServerCount: len(servers)}
}

// sourceErr maps a source's connection failure.
func sourceErr(ctx context.Context, kind store.SourceKind, url string, err error) error {
	if errors.Is(err, source.ErrCertificate) {
		e := Errorf(ErrUntrustedCertificate, "%v", err)
		switch kind {
		case store.SourceVSphere:
			e.Thumbprint, _ = vsphere.FetchThumbprint(ctx, url)
		case store.SourceHyperV, store.SourceSCVMM:
			e.Thumbprint, _ = hyperv.FetchThumbprint(ctx, url)
		}
		return e
	}
	if errors.Is(err, source.ErrAuth) || errors.Is(err, source.ErrUnreachable) {
		return Errorf(ErrSourceUnavailable, "%v", err)
	}
	return storeErr(err, ErrInvalidParameter)
}

// AddSource connects to the source once, then stores it with its password
// sealed.
func (l *Local) AddSource(ctx context.Context, in *SourceInput) (*AddSourceOutput, error) {
	if err := checkSourceInput(in); err != nil {
		return nil, err
	}
	kind := store.SourceKind(cmp.Or(in.Kind, string(store.SourceVSphere)))
	s, err := l.D.AddSource(ctx, daemon.SourceInput{Kind: kind, Name: in.Name, URL: in.URL, User: in.User,
		Password: in.Password, Thumbprint: in.Thumbprint, Insecure: in.Insecure, Options: in.Options})
	if err != nil {
		return nil, sourceErr(ctx, kind, in.URL, err)
	}
	return &AddSourceOutput{Source: l.source(ctx, s)}, nil
}

// ListSources lists the sources by name.
func (l *Local) ListSources(ctx context.Context, _ *ListSourcesInput) (*ListSourcesOutput, error) {
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	out := &ListSourcesOutput{Sources: []Source{}}
	for _, s := range srcs {
		out.Sources = append(out.Sources, l.source(ctx, s))
	}
	slices.SortFunc(out.Sources, func(a, b Source) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// sourceCheckTimeout bounds one source's reachability check.
const sourceCheckTimeout = 20 * time.Second

// TestSource connects to a source and logs in, as a run would.
func (l *Local) TestSource(ctx context.Context, in *SourceRef) (*TestSourceOutput, error) {
	s, err := l.findSource(ctx, in.Source)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, sourceCheckTimeout)
	defer cancel()
	out := &TestSourceOutput{Source: l.source(ctx, s)}
	took, err := l.D.TestSource(ctx, s.ID)
	if err != nil {
		out.Message = err.Error()
		if e := sourceErr(ctx, s.Kind, s.Endpoint, err); IsType(e, ErrUntrustedCertificate) && e.(*Error).Thumbprint != "" {
			out.Message += " (it presents SHA-256 thumbprint " + e.(*Error).Thumbprint + ")"
		}
		return out, nil
	}
	out.Reachable, out.LatencySeconds = true, took.Seconds()
	return out, nil
}

// RemoveSource removes a source and its servers from the catalog; refused
// while replication jobs use them.
func (l *Local) RemoveSource(ctx context.Context, in *SourceRef) (*RemoveSourceOutput, error) {
	s, err := l.findSource(ctx, in.Source)
	if err != nil {
		return nil, err
	}
	if err := l.D.RemoveSource(ctx, s.ID); err != nil {
		return nil, storeErr(err, ErrInvalidParameter)
	}
	return &RemoveSourceOutput{}, nil
}

// GetRegistration reports the AWS registration without its credentials.
func (l *Local) GetRegistration(ctx context.Context, _ *GetRegistrationInput) (*Registration, error) {
	if ok, err := l.D.Registered(ctx); err != nil || !ok {
		return &Registration{}, err
	}
	s, err := l.D.Registration(ctx)
	if err != nil {
		return nil, internal(err)
	}
	r := &Registration{Registered: true, Region: s.Region, Bucket: s.Bucket, RoleName: s.RoleName, KmsKeyID: s.KMSKeyID,
		ImportMode: cmp.Or(s.ImportMode, "image"), Endpoint: s.Endpoint, S3Endpoint: s.S3Endpoint, Credentials: "default chain"}
	switch {
	case s.AccessKeyID != "":
		r.Credentials = "stored keys (" + s.AccessKeyID + ")"
	case s.Profile != "":
		r.Credentials = "profile " + s.Profile
	}
	if s.AssumeRoleARN != "" {
		r.Credentials = "role " + s.AssumeRoleARN + " assumed with " + r.Credentials
	}
	return r, nil
}

// Register registers the connector with an AWS account (see
// daemon.Register).
func (l *Local) Register(ctx context.Context, in *RegisterInput) (*RegisterOutput, error) {
	if err := checkSettings(&in.Settings); err != nil {
		return nil, err
	}
	if (in.Settings.AccessKeyID == "") != (in.Settings.SecretAccessKey == "") {
		e := Errorf(ErrInvalidParameter, "give both settings.accessKeyId and settings.secretAccessKey, or neither (the default credential chain)")
		e.Field = "settings.secretAccessKey"
		if in.Settings.AccessKeyID == "" {
			e.Field = "settings.accessKeyId"
		}
		return nil, e
	}
	rep, err := l.D.Register(ctx, in.Settings, awstarget.SetupOptions{CreateRole: in.CreateRole, FixBucket: in.FixBucket})
	if err != nil {
		return &RegisterOutput{Report: rep}, registerError(err)
	}
	l.notify()
	out := &RegisterOutput{Report: rep}
	// What the first run would still fail on is said now.
	if r, err := l.D.PreflightAccount(ctx); err != nil {
		l.D.Log.Warn("preflight of the account after registration", "err", err)
	} else {
		out.Preflight = preflightOf(r)
	}
	return out, nil
}

// awsCheckTimeout bounds the AWS reachability check.
const awsCheckTimeout = 20 * time.Second

// applianceStatusFile is the appliance's status file: this process's, or
// that of the daemon serving the state directory.
func (l *Local) applianceStatusFile() string {
	if l.ApplianceStatus != "" || !l.Started.IsZero() {
		return l.ApplianceStatus
	}
	info, ok, err := daemon.Serving(l.D.Dir)
	if err != nil || !ok {
		return ""
	}
	var c struct {
		ApplianceStatus string `json:"applianceStatus"`
	}
	json.Unmarshal(info.Config, &c)
	return c.ApplianceStatus
}

// GetConnectorStatus checks AWS and every source, and reports the daemon,
// the disk and the runs.
func (l *Local) GetConnectorStatus(ctx context.Context, _ *GetConnectorStatusInput) (*ConnectorStatus, error) {
	st := &ConnectorStatus{Version: version.String(), Daemon: "not running", Sources: []Check{}}
	if !l.Started.IsZero() {
		st.Daemon = fmt.Sprintf("serving since %s (pid %d)", l.Started.UTC().Format(time.RFC3339), os.Getpid())
		st.UptimeSeconds = int64(time.Since(l.Started).Seconds())
	} else if info, ok, err := daemon.Serving(l.D.Dir); err == nil && ok {
		st.Daemon = fmt.Sprintf("serving since %s (pid %d) on %s", info.Started.UTC().Format(time.RFC3339), info.PID, info.Listen)
		st.UptimeSeconds = int64(time.Since(info.Started).Seconds())
	}
	reg, err := l.GetRegistration(ctx, nil)
	if err != nil {
		return nil, err
	}
	st.Registration = *reg
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	var wg sync.WaitGroup
	st.Sources = make([]Check, len(srcs))
	for i, s := range srcs {
		wg.Go(func() {
			c := Check{Name: s.Name}
			cctx, cancel := context.WithTimeout(ctx, sourceCheckTimeout)
			defer cancel()
			if took, err := l.D.TestSource(cctx, s.ID); err != nil {
				c.Message = err.Error()
			} else {
				c.OK, c.LatencySeconds = true, took.Seconds()
			}
			st.Sources[i] = c
		})
	}
	wg.Go(func() { st.AWS = l.checkAWS(ctx, reg.Registered) })
	wg.Wait()
	st.FreeDiskBytes, st.TotalDiskBytes, _ = diskSpace(l.D.Dir)
	st.Backup = l.backupStatus(ctx)
	if p := l.applianceStatusFile(); p != "" {
		if r, err := status.Read(p); err == nil {
			st.Appliance = &r
		}
	}
	for _, state := range []store.RunState{store.RunPending, store.RunActive} {
		runs, err := l.D.Store.RunsInState(ctx, state)
		if err != nil {
			return nil, internal(err)
		}
		if state == store.RunPending {
			st.RunsPending = len(runs)
		} else {
			st.RunsActive = len(runs)
		}
	}
	if r, ok, err := l.D.Preflight(ctx, store.PreflightAccount); err != nil {
		return nil, internal(err)
	} else if ok && reg.Registered {
		st.Preflight = preflightOf(r)
	}
	st.Healthy = reg.Registered && st.AWS.OK && st.FreeDiskBytes >= minFreeDisk &&
		!slices.ContainsFunc(st.Sources, func(c Check) bool { return !c.OK }) &&
		(st.Preflight == nil || st.Preflight.Status != string(preflight.Blocked))
	return st, nil
}

// minFreeDisk is the free space below which the connector is unhealthy:
// SQLite and the logs need room, though disks stream through.
const minFreeDisk = 1 << 30

// checkAWS lists the staging bucket and describes images, as a run's first
// calls to S3 and EC2 do.
func (l *Local) checkAWS(ctx context.Context, registered bool) Check {
	c := Check{Name: "aws"}
	if !registered {
		c.Message = "not registered with an AWS account: run 'rehost register'"
		return c
	}
	ctx, cancel := context.WithTimeout(ctx, awsCheckTimeout)
	defer cancel()
	start := time.Now()
	t, err := l.D.Target(ctx)
	if err == nil {
		_, err = t.ListStaged(ctx, "rehost/.health-check/")
	}
	if err == nil {
		_, err = t.FindImages(ctx, map[string]string{replication.TagJob: "rehost-health-check"})
	}
	if err != nil {
		c.Message = err.Error()
		return c
	}
	c.OK, c.LatencySeconds = true, time.Since(start).Seconds()
	c.Message = strings.TrimSpace(fmt.Sprintf("staging bucket %s in %s reachable", t.Bucket(), t.Region()))
	return c
}
