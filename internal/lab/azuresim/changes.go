package azuresim

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/rehost/rehost/internal/lab/diskwrite"
)

// Incremental snapshots and their page-range diff. Azure answers Get Page
// Ranges with a previous snapshot (x-ms-previous-snapshot-url, or the
// prevsnapshot parameter) with the pages written between the two
// snapshots. Azurite 3.35.0 ignores both and answers every page of the
// blob, so the front answers the diff itself, from the pages WriteDisk
// wrote in each epoch between snapshots.

// writePath takes diskwrite requests on the Resource Manager endpoint,
// with the application's client id and secret in Basic authentication.
const writePath = "/_azure/write"

// WriteURL is where blocks are written into a VM's disk on request
// (internal/lab/diskwrite), with ClientID and ClientSecret.
func (s *Sim) WriteURL() string { return s.ARMURL + writePath }

func (s *Sim) writable(vm string, i int) (diskwrite.Disk, error) {
	n, err := s.DiskSize(vm, i)
	if err != nil {
		return diskwrite.Disk{}, fmt.Errorf("%v: %w", err, diskwrite.ErrNoDisk)
	}
	return diskwrite.Disk{Capacity: n, Write: func(off int64, p []byte) error { return s.WriteDisk(vm, i, off, p) }}, nil
}

// pageWrite is a range of pages written in an epoch.
type pageWrite struct {
	epoch      int
	start, end int64 // bytes, 512-aligned
}

// recordWrite notes pages written into the live disk (under d.wmu).
func (s *Sim) recordWrite(d *diskState, off, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.writes = append(d.writes, pageWrite{epoch: d.epoch, start: off, end: off + n})
}

// changedBetween lists, merged and sorted, the pages of disk d written
// after snapshot prev and up to snapshot cur, within cur's size.
func (s *Sim) changedBetween(d *diskState, prev, cur *snapState) [][2]int64 {
	size := val(cur.snap.Properties.DiskSizeBytes)
	var rs [][2]int64
	for _, w := range d.writes {
		if w.epoch > prev.epoch && w.epoch <= cur.epoch && w.start < size {
			rs = append(rs, [2]int64{w.start, min(w.end, size)})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var out [][2]int64
	for _, r := range rs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// updateSnapshot is PATCH of a snapshot: its tags, the one property rehost
// changes.
func (s *Sim) updateSnapshot(rg, name string, in armcompute.SnapshotUpdate) (armcompute.Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[strings.ToLower(s.snapID(rg, name))]
	if !ok {
		return armcompute.Snapshot{}, false
	}
	if in.Tags != nil {
		sn.snap.Tags = in.Tags
	}
	return sn.snap, true
}

// ResizeDisk grows disk i of vm to size bytes (a multiple of 512), as an
// administrator expanding a managed disk does; later snapshots have the new
// size, the new tail reads as zeros.
func (s *Sim) ResizeDisk(vm string, i int, size int64) error {
	d, err := s.diskOf(vm, i)
	if err != nil {
		return err
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	s.mu.Lock()
	old := val(d.disk.Properties.DiskSizeBytes)
	s.mu.Unlock()
	if size < old || size%512 != 0 {
		return fmt.Errorf("azuresim: resize disk %d of %q to %d: below %d or not a multiple of 512", i, vm, size, old)
	}
	if _, err := s.pageBlob(d.blob).Resize(context.Background(), size, nil); err != nil {
		return fmt.Errorf("azuresim: resize disk %d of %q: %w", i, vm, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.disk.Properties.DiskSizeBytes = to.Ptr(size)
	d.disk.Properties.DiskSizeGB = to.Ptr(int32((size + 1<<30 - 1) >> 30))
	return nil
}

// DeleteSnapshots deletes every snapshot of vm's disks, ending their read
// grants, as a user in the portal does behind rehost's back; it returns
// their names.
func (s *Sim) DeleteSnapshots(vm string) ([]string, error) {
	s.mu.Lock()
	var v *vmState
	for _, x := range s.vms {
		if val(x.vm.Name) == vm {
			v = x
		}
	}
	type victim struct{ rg, name string }
	var vs []victim
	if v != nil {
		for _, sn := range s.snaps {
			for _, d := range v.disks {
				if strings.EqualFold(sn.disk, d) {
					rid := strings.Split(strings.TrimPrefix(*sn.snap.ID, "/subscriptions/"), "/")
					vs = append(vs, victim{rid[2], val(sn.snap.Name)})
				}
			}
		}
	}
	s.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("azuresim: no vm %q", vm)
	}
	var names []string
	for _, x := range vs {
		s.revokeAccess(x.rg, x.name)
		if r := s.deleteSnapshot(context.Background(), x.rg, x.name); r != "" {
			return names, fmt.Errorf("azuresim: delete snapshot %q: %s", x.name, r)
		}
		names = append(names, x.name)
	}
	return names, nil
}

// grantSnap is the snapshot a valid grant's SAS reads, from its signature.
func (s *Sim) grantSnap(sig string) (*grant, *snapState, *diskState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.grants[sig]
	if !ok || time.Now().After(g.expiry) {
		return nil, nil, nil, false
	}
	sn := s.snaps[strings.ToLower(g.snap)]
	d := s.disks[strings.ToLower(g.disk)]
	return g, sn, d, sn != nil && d != nil
}

// pageList is the Get Page Ranges answer.
type pageList struct {
	XMLName    xml.Name    `xml:"PageList"`
	PageRange  []pageRange `xml:"PageRange"`
	ClearRange []pageRange `xml:"ClearRange"`
	NextMarker string      `xml:"NextMarker"`
}

type pageRange struct {
	Start int64 `xml:"Start"`
	End   int64 `xml:"End"`
}

// isDiff reports whether a request is a page-range diff.
func isDiff(r *http.Request) bool {
	q := r.URL.Query()
	return r.Method == http.MethodGet && q.Get("comp") == "pagelist" &&
		(q.Get("prevsnapshot") != "" || r.Header.Get("x-ms-previous-snapshot-url") != "")
}

// serveDiff answers Get Page Ranges Diff for the snapshot the grant g
// reads: the previous snapshot is named by a URL with its own valid grant
// (managed disks) or by its timestamp; it must be an older snapshot of the
// same disk. x-ms-range (or Range), maxresults and marker are honoured.
func (s *Sim) serveDiff(w http.ResponseWriter, r *http.Request, sig string) {
	_, cur, d, ok := s.grantSnap(sig)
	if !ok {
		blobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	var prev *snapState
	if pu := r.Header.Get("x-ms-previous-snapshot-url"); pu != "" {
		u, err := url.Parse(pu)
		if err == nil {
			_, prev, _, _ = s.grantSnap(u.Query().Get("sig"))
		}
		if prev == nil {
			blobError(w, http.StatusNotFound, "PreviousSnapshotNotFound", "The previous snapshot is not found or its access signature is no longer valid.")
			return
		}
	} else {
		ts := r.URL.Query().Get("prevsnapshot")
		s.mu.Lock()
		for _, sn := range s.snaps {
			if sn.blob == cur.blob && sn.ts == ts {
				prev = sn
			}
		}
		s.mu.Unlock()
		if prev == nil {
			blobError(w, http.StatusNotFound, "PreviousSnapshotNotFound", "The previous snapshot is not found.")
			return
		}
	}
	if prev.blob != cur.blob {
		blobError(w, http.StatusConflict, "PreviousSnapshotOperationNotSupported", "The previous snapshot is not a snapshot of the same disk.")
		return
	}
	if prev.epoch > cur.epoch {
		blobError(w, http.StatusConflict, "PreviousSnapshotCannotBeNewer", "The previous snapshot is newer than the target snapshot.")
		return
	}
	s.mu.Lock()
	ranges := s.changedBetween(d, prev, cur)
	size := val(cur.snap.Properties.DiskSizeBytes)
	s.mu.Unlock()
	lo, hi := int64(0), size
	if rg := cmpOr(r.Header.Get("x-ms-range"), r.Header.Get("Range")); rg != "" {
		a, b, _ := strings.Cut(strings.TrimPrefix(rg, "bytes="), "-")
		lo, _ = strconv.ParseInt(a, 10, 64)
		if b != "" {
			v, _ := strconv.ParseInt(b, 10, 64)
			hi = min(hi, v+1)
		}
	}
	if m := r.URL.Query().Get("marker"); m != "" {
		v, err := strconv.ParseInt(m, 10, 64)
		if err != nil {
			blobError(w, http.StatusBadRequest, "InvalidQueryParameterValue", "The marker is not one this service handed out.")
			return
		}
		lo = max(lo, v)
	}
	limit := 5000
	if v, err := strconv.Atoi(r.URL.Query().Get("maxresults")); err == nil && v > 0 && v < limit {
		limit = v
	}
	var pl pageList
	for _, rr := range ranges {
		a, b := max(rr[0], lo), min(rr[1], hi)
		if a >= b {
			continue
		}
		if len(pl.PageRange) == limit {
			pl.NextMarker = strconv.FormatInt(a, 10)
			break
		}
		pl.PageRange = append(pl.PageRange, pageRange{Start: a, End: b - 1})
	}
	body, _ := xml.Marshal(pl)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-blob-content-length", strconv.FormatInt(size, 10))
	w.Header().Set("x-ms-version", cmpOr(r.Header.Get("x-ms-version"), "2021-12-02"))
	w.Header().Set("ETag", fmt.Sprintf(`"0x%X"`, cur.epoch+1))
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.Header().Set("Date", time.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(xml.Header))
	w.Write(body)
}

// RemoveVM deletes VM name, keeping its disks, as deleting a VM in the
// portal does by default.
func (s *Sim) RemoveVM(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, v := range s.vms {
		if val(v.vm.Name) == name {
			if s.removed == nil {
				s.removed = map[string]*vmState{}
			}
			s.removed[name] = v
			delete(s.vms, id)
			return nil
		}
	}
	return fmt.Errorf("azuresim: remove vm %q: no such vm", name)
}

// RestoreVM creates again a VM RemoveVM deleted, from its kept disks and
// under its name: the same resource id, so the same VM to its clients.
func (s *Sim) RestoreVM(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.removed[name]
	if !ok {
		return fmt.Errorf("azuresim: restore vm %q: it was not removed", name)
	}
	delete(s.removed, name)
	s.vms[strings.ToLower(val(v.vm.ID))] = v
	return nil
}
