package azure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/track"
)

// Change tracking on Azure is its incremental snapshots: every checkpoint
// is one per managed disk, and Get Page Ranges of a snapshot with the
// previous snapshot's read URL (x-ms-previous-snapshot-url) answers the
// pages written between the two. A kept checkpoint is therefore its
// snapshots, tagged as a base and without read grants, until the next run
// has diffed against them and releases them; a disk's change id names its
// snapshot.

var (
	_ source.ChangeTracker    = (*Source)(nil)
	_ source.CheckpointReader = (*Source)(nil)
)

// tagBase marks the snapshots of a checkpoint kept as a base.
const tagBase = "rehost-base"

// EnableTracking checks that every disk of the VM is a managed disk, which
// Azure snapshots incrementally; there is nothing to turn on.
func (s *Source) EnableTracking(ctx context.Context, vmID string) error {
	v, err := s.getVM(ctx, vmID)
	if err != nil {
		return fmt.Errorf("enable change tracking: %w", err)
	}
	if _, err := s.attachedDisks(ctx, v, nil); err != nil {
		return fmt.Errorf("vm %s cannot be tracked: %v: %w", val(v.Name), err, source.ErrNoTracking)
	}
	return nil
}

// diskSnapshot finds the snapshot of disk key of checkpoint cp.
func (s *Source) diskSnapshot(ctx context.Context, cp source.Checkpoint, key, op string) (*armcompute.Snapshot, string, error) {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}
	name := cmpOr(cp.ID, cp.Name)
	snaps, err := s.snapshotsOf(ctx, rid.ResourceGroupName, cp.VMID, name)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}
	if len(snaps) == 0 {
		return nil, "", fmt.Errorf("%s: checkpoint %q has no snapshots: %w", op, name, source.ErrNotFound)
	}
	for _, sn := range snaps {
		if val(sn.Tags[tagDisk]) == key {
			if sn.Properties == nil || val(sn.Properties.ProvisioningState) != "Succeeded" {
				return nil, "", fmt.Errorf("%s: snapshot %s is not ready; take the checkpoint again", op, val(sn.Name))
			}
			return sn, rid.ResourceGroupName, nil
		}
	}
	return nil, "", fmt.Errorf("%s: checkpoint %q has no snapshot of disk %q: %w", op, name, key, source.ErrNotFound)
}

// grantFor is the read grant of a snapshot that ChangedAreas and OpenDisk
// share (it renews itself as it nears its end); revoke ends it.
func (s *Source) grantFor(ctx context.Context, rg string, sn *armcompute.Snapshot) (*readGrant, error) {
	key := rg + "/" + val(sn.Name)
	if g, ok := s.grants.Load(key); ok {
		return g.(*readGrant), nil
	}
	g := &readGrant{s: s, rg: rg, snap: val(sn.Name), entra: val(sn.Properties.DataAccessAuthMode) == armcompute.DataAccessAuthModeAzureActiveDirectory}
	if err := g.renew(ctx); err != nil {
		return nil, err
	}
	if prev, loaded := s.grants.LoadOrStore(key, g); loaded {
		return prev.(*readGrant), nil // another call's grant won; both are valid
	}
	return g, nil
}

// ChangedAreas pages through the snapshot's page ranges: all of them for a
// seed, or those changed since the snapshot the change id names (Get Page
// Ranges Diff with its read URL). A previous snapshot that is gone (deleted
// outside rehost) or of another disk (the disk was replaced) is a
// *source.ResyncError. The read grant on the previous snapshot is revoked
// once the last page is read; the checkpoint's own ends with Keep or
// Release.
func (s *Source) ChangedAreas(ctx context.Context, cp source.Checkpoint, q source.ChangeQuery) (source.Changes, error) {
	op := fmt.Sprintf("changed areas of disk %s of vm %s", q.Disk, cp.VMID)
	sn, rg, err := s.diskSnapshot(ctx, cp, q.Disk, op)
	if err != nil {
		return source.Changes{}, err
	}
	size := val(sn.Properties.DiskSizeBytes)
	ch := source.Changes{Capacity: size}
	g, err := s.grantFor(ctx, rg, sn)
	if err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	c, err := g.current(ctx)
	if err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	from := max(0, q.From/track.Sector*track.Sector)
	rng := blob.HTTPRange{Offset: from}
	var perPage *int32
	if s.cfg.PageRangesPerPage > 0 {
		perPage = to.Ptr(s.cfg.PageRangesPerPage)
	}
	// Each page is one call under the retry policy, from the marker the
	// page before answered: a pager that failed a fetch stays failed.
	var marker *string
	done := from >= size
	var fetch track.Fetch
	if q.Since == "" {
		op := "list the page ranges of snapshot " + g.snap
		fetch = func(ctx context.Context) ([]disk.Extent, bool, error) {
			if done {
				return nil, true, nil
			}
			var page pageblob.GetPageRangesResponse
			err := s.call(ctx, op, func(ctx context.Context) (err error) {
				page, err = c.NewGetPageRangesPager(&pageblob.GetPageRangesOptions{Range: rng, MaxResults: perPage, Marker: marker}).NextPage(ctx)
				s.forgetRefused(err, rg, g.snap)
				return err
			})
			if err != nil {
				return nil, false, err
			}
			marker, done = page.NextMarker, page.NextMarker == nil || *page.NextMarker == ""
			return ranges(page.PageRange, nil), done, nil
		}
	} else {
		prevSize, prevID, err := track.ParseID(q.Disk, q.Since)
		if err != nil {
			return source.Changes{}, err
		}
		if err := track.Resized(q.Disk, q.Since, prevSize, size); err != nil {
			return source.Changes{}, err
		}
		ch.PreviousCapacity = prevSize
		prev, prg, err := s.previousSnapshot(ctx, q, prevID, sn)
		if err != nil {
			return source.Changes{}, fmt.Errorf("%s: %w", op, err)
		}
		pg, err := s.grantFor(ctx, prg, prev)
		if err != nil {
			return source.Changes{}, fmt.Errorf("%s: grant read access to the previous snapshot: %w", op, err)
		}
		prevURL, err := pg.url(ctx)
		if err != nil {
			return source.Changes{}, fmt.Errorf("%s: %w", op, err)
		}
		op := "list the pages changed since snapshot " + val(prev.Name)
		fetch = func(ctx context.Context) ([]disk.Extent, bool, error) {
			if done {
				return nil, true, nil
			}
			var page pageblob.GetPageRangesDiffResponse
			var gone error
			err := s.call(ctx, op, func(ctx context.Context) (err error) {
				page, err = c.NewGetPageRangesDiffPager(&pageblob.GetPageRangesDiffOptions{PrevSnapshotURL: &prevURL, Range: rng, MaxResults: perPage, Marker: marker}).NextPage(ctx)
				s.forgetRefused(err, rg, g.snap)
				s.forgetRefused(err, prg, pg.snap)
				if prevGone(err) {
					gone = err
				}
				return err
			})
			if gone != nil {
				return nil, false, &source.ResyncError{Disk: q.Disk, Since: q.Since,
					Reason: fmt.Sprintf("azure cannot diff against the previous run's snapshot %s: %v", val(prev.Name), redactSAS(gone))}
			}
			if err != nil {
				return nil, false, err
			}
			marker, done = page.NextMarker, page.NextMarker == nil || *page.NextMarker == ""
			if done {
				if err := s.revoke(ctx, prg, []*armcompute.Snapshot{prev}); err != nil {
					s.log.Warn("revoke the read grant of the previous snapshot", "snapshot", val(prev.Name), "err", err)
				}
			}
			return ranges(page.PageRange, page.ClearRange), done, nil
		}
	}
	f, err := track.First(ctx, fetch)
	if err != nil {
		return source.Changes{}, fmt.Errorf("%s: %w", op, err)
	}
	ch.Areas = track.NewPages(op, q.From, size, f)
	return ch, nil
}

// forgetRefused drops the shared grant of a snapshot whose SAS was
// refused (revoked outside rehost), so the next call asks for a new one.
func (s *Source) forgetRefused(err error, rg, snap string) {
	if refused(err) {
		s.grants.Delete(rg + "/" + snap)
	}
}

// previousSnapshot reads the snapshot a change id names and checks it is an
// earlier incremental snapshot of the same disk.
func (s *Source) previousSnapshot(ctx context.Context, q source.ChangeQuery, id string, cur *armcompute.Snapshot) (*armcompute.Snapshot, string, error) {
	rid, err := parseID(id, "snapshots")
	if err != nil {
		return nil, "", &source.ResyncError{Disk: q.Disk, Since: q.Since, Reason: "the recorded change id names no azure snapshot"}
	}
	var r armcompute.SnapshotsClientGetResponse
	err = s.call(ctx, "read the previous run's snapshot "+rid.Name, func(ctx context.Context) (err error) {
		r, err = s.snaps.Get(ctx, rid.ResourceGroupName, rid.Name, nil)
		return err
	})
	if err != nil {
		if errors.Is(err, source.ErrNotFound) {
			return nil, "", &source.ResyncError{Disk: q.Disk, Since: q.Since,
				Reason: fmt.Sprintf("the previous run's snapshot %s is gone (deleted outside rehost?)", rid.Name)}
		}
		return nil, "", err
	}
	prev := &r.Snapshot
	if prev.Properties == nil || cur.Properties == nil || val(prev.Properties.IncrementalSnapshotFamilyID) != val(cur.Properties.IncrementalSnapshotFamilyID) ||
		!val(prev.Properties.Incremental) {
		return nil, "", &source.ResyncError{Disk: q.Disk, Since: q.Since,
			Reason: fmt.Sprintf("the previous run's snapshot %s is not an incremental snapshot of the same disk (was the disk replaced?)", rid.Name)}
	}
	return prev, rid.ResourceGroupName, nil
}

// prevGone reports an error of a diff whose previous snapshot Azure cannot
// use.
func prevGone(err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch re.ErrorCode {
	case "PreviousSnapshotNotFound", "PreviousSnapshotOperationNotSupported", "PreviousSnapshotCannotBeNewer":
		return true
	}
	return re.StatusCode == http.StatusNotFound
}

// ranges merges the written and cleared ranges of a page (each sorted):
// both changed.
func ranges(written []*pageblob.PageRange, cleared []*pageblob.ClearRange) []disk.Extent {
	var a, b []disk.Extent
	for _, r := range written {
		if r != nil && r.Start != nil && r.End != nil {
			a = append(a, disk.Extent{Offset: *r.Start, Length: *r.End - *r.Start + 1})
		}
	}
	for _, r := range cleared {
		if r != nil && r.Start != nil && r.End != nil {
			b = append(b, disk.Extent{Offset: *r.Start, Length: *r.End - *r.Start + 1})
		}
	}
	out := make([]disk.Extent, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].Offset <= b[0].Offset) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return out
}

// Keep revokes the read grants of the checkpoint's snapshots and tags them
// as a base; the change id of each disk names its snapshot. Idempotent.
func (s *Source) Keep(ctx context.Context, cp source.Checkpoint) (source.Base, error) {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return source.Base{}, fmt.Errorf("keep: %w", err)
	}
	name := cmpOr(cp.ID, cp.Name)
	rg := rid.ResourceGroupName
	snaps, err := s.snapshotsOf(ctx, rg, cp.VMID, name)
	if err != nil {
		return source.Base{}, fmt.Errorf("keep checkpoint %q: %w", name, err)
	}
	if len(snaps) == 0 {
		return source.Base{}, fmt.Errorf("keep checkpoint %q of vm %s: it has no snapshots: %w", name, cp.VMID, source.ErrNotFound)
	}
	if err := s.revoke(ctx, rg, snaps); err != nil {
		return source.Base{}, fmt.Errorf("keep checkpoint %q: %w", name, err)
	}
	ids := map[string]string{}
	var ps []*runtime.Poller[armcompute.SnapshotsClientUpdateResponse]
	for _, sn := range snaps {
		ids[val(sn.Tags[tagDisk])] = track.ID(val(sn.Properties.DiskSizeBytes), val(sn.ID))
		if val(sn.Tags[tagBase]) == "true" {
			continue
		}
		tags := map[string]*string{tagBase: to.Ptr("true")}
		for k, v := range sn.Tags {
			tags[k] = v
		}
		var p *runtime.Poller[armcompute.SnapshotsClientUpdateResponse]
		err := s.call(ctx, fmt.Sprintf("keep checkpoint %q: tag snapshot %s as a base", name, val(sn.Name)), func(ctx context.Context) (err error) {
			p, err = s.snaps.BeginUpdate(ctx, rg, val(sn.Name), armcompute.SnapshotUpdate{Tags: tags}, nil)
			return err
		})
		if err != nil {
			return source.Base{}, err
		}
		ps = append(ps, p)
	}
	if err := waitAll(ctx, s, fmt.Sprintf("keep checkpoint %q: tag its snapshots as a base", name), ps); err != nil {
		return source.Base{}, err
	}
	return source.Base{Checkpoint: source.Checkpoint{VMID: cp.VMID, ID: name, Name: name, Base: true}, ChangeIDs: ids}, nil
}

// OpenDisk grants read access to the snapshot of the disk and reads it
// with ranged GETs. The grant ends with Keep or Release of the checkpoint
// (or when it expires, after Config.GrantDuration); Close ends nothing.
func (s *Source) OpenDisk(ctx context.Context, cp source.Checkpoint, diskKey string) (source.DiskData, error) {
	op := fmt.Sprintf("open disk %s of checkpoint %q of vm %s", diskKey, cmpOr(cp.ID, cp.Name), cp.VMID)
	sn, rg, err := s.diskSnapshot(ctx, cp, diskKey, op)
	if err != nil {
		return nil, err
	}
	g, err := s.grantFor(ctx, rg, sn)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return &snapshotDisk{ctx: ctx, g: g, size: val(sn.Properties.DiskSizeBytes)}, nil
}

type snapshotDisk struct {
	ctx  context.Context
	g    *readGrant
	size int64
}

func (d *snapshotDisk) Size() int64  { return d.size }
func (d *snapshotDisk) Close() error { return nil }

func (d *snapshotDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.size {
		return 0, io.EOF
	}
	var eof error
	if rem := d.size - off; int64(len(p)) > rem {
		p, eof = p[:rem], io.EOF
	}
	if err := d.g.read(d.ctx, off, p); err != nil {
		return 0, err
	}
	return len(p), eof
}
