package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// PreflightEvery is how often the daemon checks every server and the
// account again, besides at start, after a catalog import and on demand.
var PreflightEvery = 24 * time.Hour

// Report is a preflight result as the connector shows it.
type Report struct {
	Subject   string              `json:"subject"` // a server id, or store.PreflightAccount
	Status    preflight.Status    `json:"status"`
	Findings  []preflight.Finding `json:"findings"`
	CheckedAt time.Time           `json:"checkedAt"`
}

// Codes of findings the daemon adds to a server's.
const (
	// CodeVMGone: the VM is no longer in its source's inventory.
	CodeVMGone = "VM_NOT_IN_SOURCE"
	// CodeCatalogOnly: the source could not be reached, so the check used
	// the catalog's description of the VM.
	CodeCatalogOnly = "CHECKED_FROM_CATALOG"
)

func (d *Daemon) putReport(ctx context.Context, subject string, fs []preflight.Finding) (Report, error) {
	r, p, err := newReport(subject, fs)
	if err != nil {
		return r, err
	}
	if err := d.Store.PutPreflight(ctx, p); err != nil {
		return r, fmt.Errorf("save the preflight of %s: %w", subject, err)
	}
	return r, nil
}

// newReport is the report of subject's findings, and its record.
func newReport(subject string, fs []preflight.Finding) (Report, store.Preflight, error) {
	preflight.Sort(fs)
	if fs == nil {
		fs = []preflight.Finding{}
	}
	r := Report{Subject: subject, Status: preflight.StatusOf(fs), Findings: fs, CheckedAt: time.Now().UTC()}
	b, err := json.Marshal(fs)
	if err != nil {
		return r, store.Preflight{}, err
	}
	return r, store.Preflight{Subject: subject, Status: string(r.Status), Findings: b, CheckedAt: r.CheckedAt}, nil
}

func reportOf(p store.Preflight) Report {
	r := Report{Subject: p.Subject, Status: preflight.Status(p.Status), CheckedAt: p.CheckedAt, Findings: []preflight.Finding{}}
	json.Unmarshal(p.Findings, &r.Findings) // the daemon wrote it
	return r
}

// Preflights returns the stored results by subject (servers never
// checked are absent).
func (d *Daemon) Preflights(ctx context.Context) (map[string]Report, error) {
	ps, err := d.Store.ListPreflights(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]Report{}
	for _, p := range ps {
		out[p.Subject] = reportOf(p)
	}
	return out, nil
}

// Preflight returns the stored result of one subject; ok is false when it
// was never checked.
func (d *Daemon) Preflight(ctx context.Context, subject string) (Report, bool, error) {
	p, err := d.Store.GetPreflight(ctx, subject)
	if errors.Is(err, store.ErrNotFound) {
		return Report{}, false, nil
	}
	if err != nil {
		return Report{}, false, err
	}
	return reportOf(p), true, nil
}

// checkVM checks one VM as its source describes it now, reading the boot
// disk where the source can.
func checkVM(ctx context.Context, src source.Source, vm source.VM, snapshotImport bool) []preflight.Finding {
	var boot, berr = preflight.ReadBoot(ctx, src, vm)
	return preflight.Server(preflight.Input{VM: vm, Boot: boot, BootErr: berr, SnapshotImport: snapshotImport})
}

// snapshotImport reports whether the registration imports disk by disk.
func (d *Daemon) snapshotImport(ctx context.Context) bool {
	s, err := d.Registration(ctx)
	return err == nil && s.ImportMode == string(awstarget.ModeImportSnapshot)
}

// PreflightServers checks the servers given (every server of the catalog
// when none is), each as its source describes it now: one inventory per
// source, the boot disk read where the source reads disks. A source that
// cannot be reached leaves its servers checked from the catalog, saying so.
// The results are stored and returned by server id.
func (d *Daemon) PreflightServers(ctx context.Context, serverIDs ...string) (map[string]Report, error) {
	servers, err := d.Store.ListServers(ctx, store.ServerFilter{})
	if err != nil {
		return nil, fmt.Errorf("preflight: list the catalog: %w", err)
	}
	if len(serverIDs) > 0 {
		servers = slices.DeleteFunc(servers, func(s store.Server) bool { return !slices.Contains(serverIDs, s.ServerID) })
	}
	bySource := map[string][]store.Server{}
	for _, s := range servers {
		bySource[s.SourceID] = append(bySource[s.SourceID], s)
	}
	snap := d.snapshotImport(ctx)
	out := map[string]Report{}
	for srcID, ss := range bySource {
		live, src, why := d.liveVMs(ctx, srcID, ss)
		for _, s := range ss {
			var fs []preflight.Finding
			switch vm, ok := live[s.VMID]; {
			case why != nil:
				fs = preflight.Server(preflight.Input{VM: catalogVM(s), SnapshotImport: snap})
				fs = append(fs, preflight.Finding{Level: preflight.Note, Code: CodeCatalogOnly,
					Message: fmt.Sprintf("The source could not be reached (%v), so the VM was checked as the catalog of %s describes it.", why, s.ImportedAt.UTC().Format(time.RFC3339))})
			case !ok:
				fs = []preflight.Finding{{Level: preflight.Blocker, Code: CodeVMGone,
					Message: fmt.Sprintf("The VM %q is no longer in its source's inventory.", s.Name),
					Action:  "Re-import the server catalog ('rehost server import'), and delete the server's job if the VM is gone for good."}}
			default:
				fs = checkVM(ctx, src, vm, snap)
			}
			r, err := d.putReport(ctx, s.ServerID, fs)
			if err != nil {
				if src != nil {
					src.Close()
				}
				return out, err
			}
			out[s.ServerID] = r
		}
		if src != nil {
			src.Close()
		}
	}
	return out, nil
}

// liveVMs describes the servers' VMs as their source sees them now, by
// VM id: one by one for a few, else from one inventory. An error says the
// source could not be reached (or listed); src is then nil.
func (d *Daemon) liveVMs(ctx context.Context, srcID string, ss []store.Server) (map[string]source.VM, source.Source, error) {
	src, err := d.OpenSource(ctx, srcID)
	if err != nil {
		return nil, nil, err
	}
	live := map[string]source.VM{}
	if len(ss) <= fewVMs {
		for _, s := range ss {
			vm, err := src.VM(ctx, s.VMID)
			switch {
			case errors.Is(err, source.ErrNotFound):
			case err != nil:
				src.Close()
				return nil, nil, err
			default:
				live[vm.ID] = vm
			}
		}
		return live, src, nil
	}
	vms, err := src.Inventory(ctx)
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	for _, vm := range vms {
		live[vm.ID] = vm
	}
	return live, src, nil
}

// fewVMs is how many servers of a source are checked one VM at a time
// rather than from a whole inventory.
const fewVMs = 3

// catalogVM is the VM as the catalog's description holds it.
func catalogVM(s store.Server) source.VM {
	var vm source.VM
	if json.Unmarshal([]byte(s.Details), &vm) != nil || vm.ID == "" {
		vm = source.VM{ID: s.VMID, Name: s.Name, GuestOS: s.GuestOS, Firmware: s.Firmware}
	}
	return vm
}

// PreflightAccount checks the AWS account as registered (see
// aws.Target.Preflight) against what the jobs need — their KMS keys, the
// snapshots they keep, the imports the scheduler runs at once — and stores
// the result.
func (d *Daemon) PreflightAccount(ctx context.Context) (Report, error) {
	t, err := d.Target(ctx)
	if err != nil {
		return d.putReport(ctx, store.PreflightAccount, []preflight.Finding{{Level: preflight.Blocker, Code: awstarget.CodeCredentials,
			Message: fmt.Sprintf("The connector cannot reach its AWS account: %v.", err), Action: "Register the connector ('rehost register')."}})
	}
	c := awstarget.AccountCheck{ImportSlots: d.Sched.ImportLimit(), SnapshotImportSlots: d.Sched.SnapshotImportLimit()}
	if s, err := d.Registration(ctx); err == nil {
		c.RoleName = s.RoleName
	}
	jobs, err := d.Store.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return Report{}, fmt.Errorf("preflight: list jobs: %w", err)
	}
	for _, j := range jobs {
		if j.State == store.JobDeleted || j.State == store.JobDeleting {
			continue
		}
		if j.Encrypted && j.KmsKeyID != "" {
			c.JobKeys = append(c.JobKeys, j.KmsKeyID)
		}
		if srv, err := d.Store.GetServer(ctx, j.ServerID); err == nil {
			// The AMIs kept, and the one a run is making.
			c.Snapshots += (cmp.Or(j.NumberOfRecentAmisToKeep, 1) + 1) * srv.DiskCount
		}
	}
	return d.putReport(ctx, store.PreflightAccount, t.Preflight(ctx, c))
}

// preflightAll checks the account and every server, logging what it
// found; the daemon runs it at start and every PreflightEvery.
func (d *Daemon) preflightAll(ctx context.Context) {
	if r, err := d.PreflightAccount(ctx); err != nil {
		d.Log.Error("preflight of the account", "err", err)
	} else if r.Status != preflight.Ready {
		d.Log.Warn("preflight of the account", "status", r.Status, "findings", len(r.Findings))
	}
	rs, err := d.PreflightServers(ctx)
	if err != nil {
		d.Log.Error("preflight of the servers", "err", err)
		return
	}
	blocked := 0
	for _, r := range rs {
		if r.Status == preflight.Blocked {
			blocked++
		}
	}
	d.Log.Info("preflight of the servers", "servers", len(rs), "blocked", blocked)
}
