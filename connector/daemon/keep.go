package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// keeper keeps the catalogs of the imported sources current while the
// daemon serves: a source that reports its changes (source.Watcher, a
// vCenter) is watched, any other has its inventory compared with the
// catalog every poll, and only what changed is written.
type keeper struct {
	poll time.Duration

	mu      sync.Mutex
	ctx     context.Context // Serve's; nil until it starts
	pending map[string]bool // sources to keep once Serve starts
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

// keepCatalog keeps the catalog of the source current from now on (from
// Serve's start if it has not started). Keeping one already kept is a
// no-op.
func (d *Daemon) keepCatalog(sourceID string) {
	k := &d.catalogs
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ctx == nil {
		if k.pending == nil {
			k.pending = map[string]bool{}
		}
		k.pending[sourceID] = true
		return
	}
	if _, ok := k.running[sourceID]; ok || k.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(k.ctx)
	k.running[sourceID] = cancel
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		d.keepCurrent(ctx, sourceID)
		k.mu.Lock()
		delete(k.running, sourceID)
		k.mu.Unlock()
		cancel()
	}()
}

// forgetCatalog stops keeping the source's catalog (it is being removed).
func (d *Daemon) forgetCatalog(sourceID string) {
	k := &d.catalogs
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.pending, sourceID)
	if cancel, ok := k.running[sourceID]; ok {
		cancel()
	}
}

// catalogRescan is how often the daemon looks for sources imported by
// another process (the CLI on the same state) to keep their catalogs.
const catalogRescan = time.Minute

// keepCatalogs keeps every source that has servers in the catalog, and
// those imported from now on, until ctx ends; then it waits for them.
func (d *Daemon) keepCatalogs(ctx context.Context) {
	k := &d.catalogs
	k.mu.Lock()
	k.ctx, k.running = ctx, map[string]context.CancelFunc{}
	pending := k.pending
	k.pending = nil
	k.mu.Unlock()
	for id := range pending {
		d.keepCatalog(id)
	}
	t := time.NewTicker(catalogRescan)
	defer t.Stop()
	for {
		d.keepImported(ctx)
		select {
		case <-ctx.Done():
			k.wg.Wait()
			return
		case <-t.C:
		}
	}
}

// keepImported keeps the catalogs of the sources with servers that are
// not kept yet.
func (d *Daemon) keepImported(ctx context.Context) {
	srcs, err := d.Store.ListSources(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.Log.Warn("catalog: list the sources to keep current", "err", err)
		}
		return
	}
	for _, s := range srcs {
		d.catalogs.mu.Lock()
		_, kept := d.catalogs.running[s.ID]
		d.catalogs.mu.Unlock()
		if kept {
			continue
		}
		if servers, err := d.Store.ListServers(ctx, store.ServerFilter{SourceID: s.ID}); err == nil && len(servers) > 0 {
			d.keepCatalog(s.ID)
		}
	}
}

// keepCurrent keeps one source's catalog current until ctx ends or the
// source is removed, connecting again (backing off) after errors.
func (d *Daemon) keepCurrent(ctx context.Context, sourceID string) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := d.keepOnce(ctx, sourceID)
		if errors.Is(err, store.ErrNotFound) || ctx.Err() != nil {
			return // the source was removed, or the daemon stops
		}
		d.Log.Warn("catalog: keeping the source's servers current failed; trying again", "source", sourceID, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Minute)
	}
}

func (d *Daemon) keepOnce(ctx context.Context, sourceID string) error {
	src, err := d.OpenSource(ctx, sourceID)
	if err != nil {
		return err
	}
	defer src.Close()
	held := &holds{vms: map[string]source.VM{}}
	apply := func(ch source.Change) error {
		if ch.Err != nil {
			d.Log.Warn("catalog: the source's changes are not coming in", "source", sourceID, "err", ch.Err)
			return nil
		}
		return held.apply(ch, func(ch source.Change) ([]source.VM, error) {
			return d.applyChange(ctx, src, sourceID, ch)
		})
	}
	if w, ok := src.(source.Watcher); ok {
		// A watch reports a VM once: while some are held, a tick applies
		// the empty change, which tries them again.
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			t := time.NewTicker(d.catalogs.poll)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
				}
				if !held.any() {
					continue
				}
				if err := apply(source.Change{}); err != nil && wctx.Err() == nil {
					d.Log.Warn("catalog: write the changes of VMs whose runs ended", "source", sourceID, "err", err)
				}
			}
		}()
		return w.Watch(ctx, apply)
	}
	t := time.NewTicker(d.catalogs.poll)
	defer t.Stop()
	fp, _ := src.(source.Fingerprinter)
	var prints map[string]string // as of the last poll; nil: list in full next
	for polls := 0; ; polls++ {
		var ch source.Change
		var err error
		if fp != nil && prints != nil && polls%fullPollEvery != 0 {
			ch, prints, err = lightPoll(ctx, src, fp, prints)
		} else {
			ch, prints, err = fullPoll(ctx, src, fp)
		}
		if err != nil {
			return err
		}
		if err := apply(ch); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// holds are the VMs of a source whose changes wait for their runs to end
// (the latest seen of each). Every change applied through them tries
// those it does not name again, as of what it says of them.
type holds struct {
	mu  sync.Mutex
	vms map[string]source.VM
}

// apply applies ch, with the held VMs it does not name added unless it is
// Full (which names every VM there is), through write, and holds what
// write returns.
func (h *holds) apply(ch source.Change, write func(source.Change) ([]source.VM, error)) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch.Full {
		clear(h.vms)
	}
	for _, id := range ch.Gone {
		delete(h.vms, id)
	}
	named := make(map[string]bool, len(ch.VMs)+len(ch.Moved))
	for _, vm := range ch.VMs {
		delete(h.vms, vm.ID)
		named[vm.ID] = true
	}
	for _, m := range ch.Moved {
		named[m.ID] = true
		if vm, ok := h.vms[m.ID]; ok {
			vm.Path = m.Path
			h.vms[m.ID] = vm
		}
	}
	for id, vm := range h.vms {
		if !named[id] {
			ch.VMs = append(ch.VMs, vm) // tried again: its run may have ended
			delete(h.vms, id)
		}
	}
	later, err := write(ch)
	for _, vm := range later {
		h.vms[vm.ID] = vm
	}
	return err
}

// any reports whether some VMs are held.
func (h *holds) any() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.vms) > 0
}

// fullPollEvery is how often (in polls) a source with fingerprints is
// listed in full all the same, for what its fingerprints do not show.
const fullPollEvery = 10

// fullPoll lists the source's inventory whole; with fp, the fingerprints
// the next light poll compares with are taken first, so a change made
// while the inventory is read shows then (none where this connection of
// the source has none: errors.ErrUnsupported).
func fullPoll(ctx context.Context, src source.Source, fp source.Fingerprinter) (source.Change, map[string]string, error) {
	var prints map[string]string
	if fp != nil {
		var err error
		if prints, err = fp.Fingerprints(ctx); err != nil && !errors.Is(err, errors.ErrUnsupported) {
			return source.Change{}, nil, err
		}
	}
	vms, err := src.Inventory(ctx)
	if err != nil {
		return source.Change{}, nil, err
	}
	return source.Change{Full: true, VMs: vms}, prints, nil
}

// lightPoll compares the source's fingerprints with those of the last
// poll: the VMs whose fingerprint changed or that are new are read one by
// one, those missing are gone. When many changed, it lists in full.
func lightPoll(ctx context.Context, src source.Source, fp source.Fingerprinter, last map[string]string) (source.Change, map[string]string, error) {
	prints, err := fp.Fingerprints(ctx)
	if err != nil {
		return source.Change{}, nil, err
	}
	var ch source.Change
	var changed []string
	for id, f := range prints {
		if last[id] != f {
			changed = append(changed, id)
		}
	}
	for id := range last {
		if _, ok := prints[id]; !ok {
			ch.Gone = append(ch.Gone, id)
		}
	}
	if len(changed) > max(8, len(prints)/8) {
		return fullPoll(ctx, src, fp)
	}
	for _, id := range changed {
		vm, err := src.VM(ctx, id)
		switch {
		case errors.Is(err, source.ErrNotFound):
			ch.Gone = append(ch.Gone, id)
		case err != nil:
			return source.Change{}, nil, err
		default:
			ch.VMs = append(ch.VMs, vm)
		}
	}
	return ch, prints, nil
}

// applyChange writes a change of the source's inventory to the catalog:
// the servers of VMs added or changed (with their preflight), those of VMs
// moved given their new path (nothing else of theirs changed, so their
// preflight stands), a server whose VM is gone deleted, or kept and marked
// gone while jobs or apps refer to it. A change is compared with the
// catalog first where it is read (always for a Full one), so only servers
// that differ are written. The VMs of servers being replicated are not
// written: they are returned, to be applied once their runs end.
func (d *Daemon) applyChange(ctx context.Context, src source.Source, sourceID string, ch source.Change) (held []source.VM, err error) {
	if _, err := d.Store.GetSource(ctx, sourceID); err != nil {
		return nil, err
	}
	gone := ch.Gone
	var marked map[string]bool
	if ch.Full || len(ch.VMs) > 0 {
		if marked, err = d.goneServers(ctx); err != nil {
			return nil, err
		}
	}
	busy, err := d.replicating(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	// The catalog as it was: what the change is compared with, and where
	// the servers of gone VMs are found (those are never written below).
	var byVM map[string]store.Server
	if ch.Full || len(gone) > 0 || len(busy) > 0 || len(ch.Moved) > 0 {
		servers, err := d.Store.ListServers(ctx, store.ServerFilter{SourceID: sourceID})
		if err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		byVM = make(map[string]store.Server, len(servers))
		for _, s := range servers {
			byVM[s.VMID] = s
		}
	}
	var vms []source.VM
	moved := slices.Clone(ch.Moved)
	for _, vm := range ch.VMs {
		s, ok := byVM[vm.ID]
		switch {
		case ok && busy[s.ServerID]:
			// A VM being replicated shows rehost's own snapshot (its disks
			// are the snapshot's delta files until the run removes it): its
			// entry stays, and what it looks like after the run counts;
			// but for its path when a container above it moved (its name
			// the same), which the snapshot has nothing to do with.
			held = append(held, vm)
			if vm.Path != s.Path && vm.Name == s.Name {
				moved = append(moved, source.Move{ID: vm.ID, Path: vm.Path})
			}
		case ok && !marked[s.ServerID] && sameServer(s, serverOf(sourceID, vm)):
		default:
			vms = append(vms, vm)
		}
	}
	if ch.Full {
		seen := make(map[string]bool, len(ch.VMs))
		for _, vm := range ch.VMs {
			seen[vm.ID] = true
		}
		for id, s := range byVM {
			if !seen[id] && !marked[s.ServerID] {
				gone = append(gone, id)
			}
		}
	}
	if len(vms) > 0 {
		stored, err := d.writeCatalog(ctx, src, sourceID, vms)
		if err != nil {
			return held, fmt.Errorf("catalog: %w", err)
		}
		for _, s := range stored {
			if marked[s.ServerID] {
				d.vmBack(ctx, s)
			}
		}
	}
	if err := d.moveServers(ctx, sourceID, byVM, moved); err != nil {
		return held, err
	}
	for _, id := range gone {
		if s, ok := byVM[id]; ok {
			if err := d.vmGone(ctx, sourceID, s); err != nil {
				return held, err
			}
		}
	}
	return held, nil
}

// moveServers gives the servers of the VMs moved their new paths,
// catalogBatch at a time; a VM not in the catalog (byVM) is not written.
func (d *Daemon) moveServers(ctx context.Context, sourceID string, byVM map[string]store.Server, moved []source.Move) error {
	var servers []store.Server
	for _, m := range moved {
		s, ok := byVM[m.ID]
		if !ok || s.Path == m.Path {
			continue
		}
		var vm source.VM
		if err := json.Unmarshal([]byte(s.Details), &vm); err == nil && vm.ID == m.ID {
			vm.Path = m.Path
			s = serverOf(sourceID, vm)
		} else {
			s.Path, s.ImportedAt = m.Path, time.Time{}
		}
		servers = append(servers, s)
	}
	for batch := range slices.Chunk(servers, catalogBatch) {
		if _, err := d.Store.UpsertServers(ctx, batch); err != nil {
			return fmt.Errorf("catalog: write the paths of vms moved: %w", err)
		}
	}
	if len(servers) > 0 {
		d.Log.Info("catalog: vms moved in their source's inventory", "source", sourceID, "servers", len(servers))
	}
	return nil
}

// replicating names the servers with a run in flight, on this appliance
// or another of its fleet.
func (d *Daemon) replicating(ctx context.Context) (map[string]bool, error) {
	ids, err := d.Store.ServersWithRunsIn(ctx, store.RunActive)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// sameServer reports whether two catalog entries of a VM say the same.
func sameServer(a, b store.Server) bool {
	a.ServerID, a.ImportedAt, b.ServerID, b.ImportedAt = "", time.Time{}, "", time.Time{}
	return a == b
}

// goneServers are the servers whose preflight says their VM left the
// source.
func (d *Daemon) goneServers(ctx context.Context) (map[string]bool, error) {
	ps, err := d.Store.ListPreflights(ctx)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	out := map[string]bool{}
	for _, p := range ps {
		if strings.Contains(string(p.Findings), CodeVMGone) {
			out[p.Subject] = true
		}
	}
	return out, nil
}

// goneMessage is what a job says while its VM is gone from its source.
func goneMessage(s store.Server, src string) string {
	return fmt.Sprintf("vm %q is gone from source %q (the catalog saw it leave at %s): runs fail at once until it is back; delete the job if it is gone for good",
		s.Name, src, time.Now().UTC().Format(time.RFC3339))
}

// goneMarker is in every goneMessage and in the error of each run
// vmGoneError refused (which the scheduler makes the job's message): how
// a job's message is known to be about its VM gone.
const goneMarker = "is gone from source"

// vmGone deals with a VM that left the source: its server is deleted if
// nothing refers to it; otherwise it stays, its preflight says the VM is
// gone and its jobs say so in their status message.
func (d *Daemon) vmGone(ctx context.Context, sourceID string, s store.Server) error {
	jobs, err := d.Store.ListJobs(ctx, store.JobFilter{ServerID: s.ServerID})
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if len(jobs) == 0 {
		err := d.Store.DeleteServer(ctx, s.ServerID)
		if err == nil {
			d.Store.DeletePreflight(ctx, s.ServerID)
			d.Log.Info("catalog: vm left its source; server removed", "source", sourceID, "server", s.ServerID, "vm", s.Name)
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("catalog: remove server %q: %w", s.Name, err)
		}
		// An application's server group has it: it stays, marked.
	}
	srcName := sourceID
	if src, err := d.Store.GetSource(ctx, sourceID); err == nil {
		srcName = src.Name
	}
	if _, err := d.putReport(ctx, s.ServerID, []preflight.Finding{{Level: preflight.Blocker, Code: CodeVMGone,
		Message: fmt.Sprintf("The VM %q is no longer in its source's inventory (source %q).", s.Name, srcName),
		Action:  "Delete the server's job if the VM is gone for good; if it comes back, the job recovers by itself."}}); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	msg := goneMessage(s, srcName)
	for _, j := range jobs {
		if j.State == store.JobDeleted || j.State == store.JobDeleting {
			continue
		}
		if _, err := d.Store.UpdateJob(ctx, j.ReplicationJobID, func(x *store.ReplicationJob) error {
			x.StatusMessage = msg
			return nil
		}); err != nil {
			return fmt.Errorf("catalog: job %s: %w", j.ReplicationJobID, err)
		}
	}
	d.Log.Warn("catalog: vm left its source; its jobs say so", "source", sourceID, "server", s.ServerID, "vm", s.Name, "jobs", len(jobs))
	return nil
}

// vmBack clears what vmGone (and the runs it refused) said on the jobs of
// a server whose VM is back, and resumes a job those runs paused.
func (d *Daemon) vmBack(ctx context.Context, s store.Server) {
	jobs, err := d.Store.ListJobs(ctx, store.JobFilter{ServerID: s.ServerID})
	if err != nil {
		d.Log.Warn("catalog: vm back in its source: list its jobs", "server", s.ServerID, "err", err)
		return
	}
	for _, j := range jobs {
		if !strings.Contains(j.StatusMessage, goneMarker) {
			continue
		}
		if j.State == store.JobPausedOnFailure && d.Sched != nil {
			// Paused by the runs that failed for want of the VM.
			if err := d.Sched.ResumeJob(ctx, j.ReplicationJobID); err != nil {
				d.Log.Warn("catalog: vm back in its source: resume its job", "job", j.ReplicationJobID, "err", err)
			}
			continue
		}
		if _, err := d.Store.UpdateJob(ctx, j.ReplicationJobID, func(x *store.ReplicationJob) error {
			if strings.Contains(x.StatusMessage, goneMarker) {
				x.StatusMessage = ""
			}
			return nil
		}); err != nil {
			d.Log.Warn("catalog: vm back in its source: clear its job's message", "job", j.ReplicationJobID, "err", err)
		}
	}
	d.Log.Info("catalog: vm back in its source", "server", s.ServerID, "vm", s.Name)
}

// vmGoneError is why a run of a job whose VM left its source does not
// start (nil when the VM is there, as far as the catalog knows).
func (d *Daemon) vmGoneError(ctx context.Context, run store.ReplicationRun) error {
	j, err := d.Store.GetJob(ctx, run.ReplicationJobID)
	if err != nil {
		return nil // the engine reports it
	}
	p, err := d.Store.GetPreflight(ctx, j.ServerID)
	if err != nil || !strings.Contains(string(p.Findings), CodeVMGone) {
		return nil
	}
	s, err := d.Store.GetServer(ctx, j.ServerID)
	if err != nil {
		return nil
	}
	srcName := s.SourceID
	if src, err := d.Store.GetSource(ctx, s.SourceID); err == nil {
		srcName = src.Name
	}
	return fmt.Errorf("vm %q (%s) is gone from source %q (the catalog saw it leave at %s): the run did not start; delete the job ('rehost job delete %s') if the VM is gone for good — when it is back, the job recovers by itself",
		s.Name, s.VMID, srcName, p.CheckedAt.UTC().Format(time.RFC3339), j.ReplicationJobID)
}
