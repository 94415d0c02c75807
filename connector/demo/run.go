package demo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Options configure Run.
type Options struct {
	// Dir holds the peers' data and the connector's state directory.
	Dir string
	// Out receives progress and the result table.
	Out io.Writer
	Log *slog.Logger
	// Peers overrides the peers' options (VMs, import duration).
	Peers PeerOptions
	// Timeout bounds the wait for the runs (default 10 minutes).
	Timeout time.Duration
}

// VMResult is the outcome of one VM's replication.
type VMResult struct {
	VM       string `json:"vm"`
	Firmware string `json:"firmware"`
	ServerID string `json:"serverId"`
	JobID    string `json:"replicationJobId"`
	RunID    string `json:"replicationRunId"`
	State    string `json:"state"`
	AMI      string `json:"amiId,omitempty"`
	// Platform and Distribution are what VM Import detected on the boot
	// disk of the AMI.
	Platform     string      `json:"platform,omitempty"`
	Distribution string      `json:"distribution,omitempty"`
	Message      string      `json:"statusMessage,omitempty"`
	Disks        []DiskCheck `json:"disks"`
	Verified     bool        `json:"verified"`
	// Preflight is the server's preflight status when its catalog was
	// imported; FirstStep the step its run began with.
	Preflight string `json:"preflight"`
	FirstStep string `json:"firstStep"`
}

// Summary is the demo's result.
type Summary struct {
	Account   string     `json:"account"`
	Region    string     `json:"region"`
	Bucket    string     `json:"bucket"`
	VMs       []VMResult `json:"vms"`
	Leftovers Leftovers  `json:"leftovers"`
	OK        bool       `json:"ok"`
	StateDir  string     `json:"stateDir"`
	VCenter   string     `json:"vcenterUrl"`
	S3        string     `json:"s3Url"`
	AWS       string     `json:"awsUrl"`
}

// Env is a running demo: the peers and the connector serving against them.
type Env struct {
	Peers  *Peers
	Daemon *daemon.Daemon
	stop   context.CancelFunc
	done   chan error
}

// Close stops the connector, then the peers.
func (e *Env) Close() {
	if e.stop != nil {
		e.stop()
		<-e.done
	}
	if e.Daemon != nil {
		e.Daemon.Close()
	}
	e.Peers.Close()
}

// Run starts the peers, registers a connector with the emulated account,
// adds the simulated vCenter, imports its catalog, creates a replication job
// per VM, waits for the first run of each with progress on o.Out, and
// verifies every AMI's snapshots against the source disks. The returned Env
// keeps serving until closed.
func Run(ctx context.Context, o Options) (Summary, *Env, error) {
	var sum Summary
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	po := o.Peers
	po.Dir = o.Dir
	po.Log = o.Log
	fmt.Fprintln(o.Out, "starting peers: simulated vCenter, versitygw (S3 over TLS), AWS emulator …")
	peers, err := StartPeers(ctx, po)
	if err != nil {
		return sum, nil, err
	}
	env := &Env{Peers: peers}
	fail := func(err error) (Summary, *Env, error) {
		env.Close()
		return sum, nil, err
	}
	sum.VCenter, sum.S3, sum.AWS = peers.Sim.URL(), peers.S3.URL, peers.AWSURL
	sum.StateDir = filepath.Join(o.Dir, "state")

	d, err := daemon.Open(ctx, sum.StateDir, daemon.Options{Log: o.Log, ProgressEvery: 200 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	env.Daemon = d

	settings, err := peers.AWSSettings()
	if err != nil {
		return fail(err)
	}
	rep, err := d.Register(ctx, settings, awstarget.SetupOptions{CreateRole: true, FixBucket: true})
	if err != nil {
		return fail(err)
	}
	sum.Account, sum.Region, sum.Bucket = rep.Account, rep.Region, rep.Bucket
	fmt.Fprintf(o.Out, "registered with account %s in %s; staging bucket %s, role %s\n", rep.Account, rep.Region, rep.Bucket, rep.RoleName)
	for _, c := range rep.Changes {
		fmt.Fprintf(o.Out, "  setup: %s\n", c)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(o.Out, "  setup warning: %s\n", w)
	}

	src, err := d.AddSource(ctx, peers.SourceInput())
	if err != nil {
		return fail(err)
	}
	servers, err := d.ImportCatalog(ctx, src.ID)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(o.Out, "imported %d servers from %s\n", len(servers), peers.Sim.URL())
	reports, err := d.Preflights(ctx)
	if err != nil {
		return fail(err)
	}
	for _, s := range servers {
		fmt.Fprintf(o.Out, "  %s: preflight %s\n", s.Name, reports[s.ServerID].Status)
	}

	now := time.Now()
	jobs := map[string]store.Server{}
	var order []string
	for _, s := range servers {
		j, err := d.CreateJob(ctx, store.ReplicationJob{
			ServerID: s.ServerID, SeedReplicationTime: now, Frequency: 12, LicenseType: store.LicenseBYOL,
			NumberOfRecentAmisToKeep: 2, Description: "rehost demo",
		})
		if err != nil {
			return fail(err)
		}
		jobs[j.ReplicationJobID] = s
		order = append(order, j.ReplicationJobID)
		fmt.Fprintf(o.Out, "created job %s for %s (every %d h from %s)\n", j.ReplicationJobID, s.Name, j.Frequency, j.SeedReplicationTime.Format(time.RFC3339))
	}

	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	env.stop, env.done = stop, make(chan error, 1)
	go func() { env.done <- d.Serve(sctx) }()

	runs, err := watch(ctx, d.Store, order, jobs, o.Out, o.Timeout)
	if err != nil {
		return fail(err)
	}

	claimed := map[string]bool{}
	sum.OK = true
	for _, jobID := range order {
		s, r := jobs[jobID], runs[jobID]
		vr := VMResult{VM: s.Name, Firmware: s.Firmware, ServerID: s.ServerID, JobID: jobID, RunID: r.ReplicationRunID,
			State: string(r.State), AMI: r.AmiID, Message: r.StatusMessage, Preflight: string(reports[s.ServerID].Status)}
		if len(r.Progress.Steps) > 0 {
			vr.FirstStep = r.Progress.Steps[0].Step
		}
		if r.State == store.RunCompleted && r.AmiID != "" {
			claimed[r.AmiID] = true
			checks, err := peers.Verify(s.Name, r.AmiID)
			if err != nil {
				vr.Message = err.Error()
			}
			vr.Disks = checks
			if g, ok := peers.ImageGuest(r.AmiID); ok {
				vr.Platform, vr.Distribution = g.Platform, g.Distribution
			}
			vr.Verified = err == nil && len(checks) == s.DiskCount
			for _, c := range checks {
				vr.Verified = vr.Verified && c.Equal
			}
		}
		sum.OK = sum.OK && vr.Verified && vr.Preflight == string(preflight.Ready)
		sum.VMs = append(sum.VMs, vr)
	}
	if sum.Leftovers, err = peers.Leftovers(ctx, sum.Bucket, claimed); err != nil {
		return fail(err)
	}
	sum.OK = sum.OK && sum.Leftovers.Empty()
	return sum, env, nil
}

// watch waits for the first run of every job to end, drawing a progress bar
// per VM whenever a run's stage or progress changes.
func watch(ctx context.Context, st store.Runs, order []string, jobs map[string]store.Server, out io.Writer, timeout time.Duration) (map[string]store.ReplicationRun, error) {
	deadline := time.Now().Add(timeout)
	last := map[string]string{}
	done := map[string]store.ReplicationRun{}
	for len(done) < len(order) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("runs did not finish within %v", timeout)
		}
		for _, jobID := range order {
			if _, ok := done[jobID]; ok {
				continue
			}
			rs, err := st.ListRuns(ctx, jobID, 1)
			if err != nil {
				return nil, err
			}
			if len(rs) == 0 {
				continue
			}
			r := rs[0]
			line := fmt.Sprintf("%-8s %s %-16s %s", jobs[jobID].Name, bar(r), r.Stage, r.StageProgress)
			if r.State == store.RunCompleted || r.State == store.RunFailed {
				done[jobID] = r
				line = fmt.Sprintf("%-8s %s %s %s", jobs[jobID].Name, bar(r), r.State, cmp.Or(r.AmiID, r.StatusMessage))
			}
			if line != last[jobID] {
				last[jobID] = line
				fmt.Fprintln(out, line)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return done, nil
}

// overall is a run's share done, from the step table's weights.
func overall(r store.ReplicationRun) int {
	if r.State == store.RunCompleted {
		return 100
	}
	return replication.Overall(r.Progress)
}

func bar(r store.ReplicationRun) string {
	const width = 24
	n := overall(r) * width / 100
	return fmt.Sprintf("[%s%s] %3d%%", strings.Repeat("#", n), strings.Repeat("-", width-n), overall(r))
}

// PrintSummary writes the result table.
func PrintSummary(w io.Writer, s Summary) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nVM\tPREFLIGHT\tFIRMWARE\tRUN\tAMI\tDETECTED OS\tDISK\tSOURCE SHA-256\tSNAPSHOT SHA-256\tCONTENT")
	for _, v := range s.VMs {
		osName := cmp.Or(strings.TrimSuffix(v.Platform+" ("+v.Distribution+")", " ()"), "-")
		if len(v.Disks) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t%s\n", v.VM, v.Preflight, v.Firmware, v.State, cmp.Or(v.AMI, "-"), osName, cmp.Or(v.Message, "not verified"))
		}
		for _, d := range v.Disks {
			verdict := "equal"
			if !d.Equal {
				verdict = "DIFFERENT"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d (%d MiB)\t%s…\t%s…\t%s\n", v.VM, v.Preflight, v.Firmware, v.State, v.AMI, osName, d.Disk, d.Size>>20, d.SourceHash[:16], d.TargetHash[:min(16, len(d.TargetHash))], verdict)
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\nleft behind on the peers: %s\n", s.Leftovers)
	if s.OK {
		fmt.Fprintln(w, "demo: every VM replicated; every AMI snapshot holds exactly its source disk's bytes")
	} else {
		fmt.Fprintln(w, "demo: FAILED — see the table above")
	}
}

// ErrFailed is returned by the CLI when the demo's result is not OK.
var ErrFailed = errors.New("demo failed")
