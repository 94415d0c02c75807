package azuresim

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

func (s *Sim) snapID(rg, name string) string {
	return s.rgID(rg) + "/providers/Microsoft.Compute/snapshots/" + name
}

func (s *Sim) listVMs(rg string, expand bool) []*armcompute.VirtualMachine {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*armcompute.VirtualMachine
	for _, v := range s.vms {
		if rg == "" || inRG(*v.vm.ID, rg) {
			vm := vmView(v.vm, expand)
			out = append(out, &vm)
		}
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].ID < *out[j].ID })
	return out
}

func (s *Sim) listDisks(rg string) []*armcompute.Disk {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*armcompute.Disk
	for _, d := range s.disks {
		if rg == "" || inRG(*d.disk.ID, rg) {
			c := d.disk
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].ID < *out[j].ID })
	return out
}

func (s *Sim) listSnaps(rg string) []*armcompute.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*armcompute.Snapshot
	for _, sn := range s.snaps {
		if rg == "" || inRG(*sn.snap.ID, rg) {
			c := sn.snap
			out = append(out, &c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return *out[i].ID < *out[j].ID })
	return out
}

// createSnapshot makes (or, for an existing name, returns) a snapshot of a
// disk: an Azurite blob snapshot of the disk's page blob, taken now. It
// answers an error code for a request Azure would refuse.
func (s *Sim) createSnapshot(ctx context.Context, rg, name string, in armcompute.Snapshot) (armcompute.Snapshot, string) {
	id := s.snapID(rg, name)
	p := in.Properties
	if p == nil || p.CreationData == nil || val(p.CreationData.CreateOption) != armcompute.DiskCreateOptionCopy || p.CreationData.SourceResourceID == nil {
		return armcompute.Snapshot{}, "InvalidParameter"
	}
	s.mu.Lock()
	if sn, ok := s.snaps[strings.ToLower(id)]; ok {
		s.mu.Unlock()
		return sn.snap, ""
	}
	d, ok := s.disks[strings.ToLower(*p.CreationData.SourceResourceID)]
	s.mu.Unlock()
	if !ok {
		return armcompute.Snapshot{}, "ResourceNotFound"
	}
	sku := val(d.disk.SKU.Name)
	ultra := sku == armcompute.DiskStorageAccountTypesUltraSSDLRS || sku == armcompute.DiskStorageAccountTypesPremiumV2LRS
	if !strings.EqualFold(val(in.Location), val(d.disk.Location)) || (ultra && !val(p.Incremental)) {
		return armcompute.Snapshot{}, "InvalidParameter"
	}
	d.wmu.Lock()
	defer d.wmu.Unlock()
	r, err := s.pageBlob(d.blob).CreateSnapshot(ctx, nil)
	if err != nil {
		s.log.Error("azuresim: blob snapshot", "err", err)
		return armcompute.Snapshot{}, "InternalServerError"
	}
	dp := d.disk.Properties
	sn := armcompute.Snapshot{
		ID: to.Ptr(id), Name: to.Ptr(name), Location: d.disk.Location, Type: to.Ptr("Microsoft.Compute/snapshots"),
		Tags: in.Tags, SKU: &armcompute.SnapshotSKU{Name: to.Ptr(armcompute.SnapshotStorageAccountTypesStandardLRS)},
		Properties: &armcompute.SnapshotProperties{
			CreationData:                 p.CreationData,
			Incremental:                  p.Incremental,
			DiskSizeBytes:                dp.DiskSizeBytes,
			DiskSizeGB:                   dp.DiskSizeGB,
			DiskState:                    to.Ptr(armcompute.DiskStateUnattached),
			ProvisioningState:            to.Ptr("Succeeded"),
			TimeCreated:                  to.Ptr(time.Now()),
			DataAccessAuthMode:           dp.DataAccessAuthMode,
			Encryption:                   dp.Encryption,
			EncryptionSettingsCollection: dp.EncryptionSettingsCollection,
			SecurityProfile:              dp.SecurityProfile,
			OSType:                       dp.OSType,
			HyperVGeneration:             dp.HyperVGeneration,
			IncrementalSnapshotFamilyID:  to.Ptr("family-" + d.blob),
		},
	}
	if ultra {
		sn.Properties.CompletionPercent = to.Ptr[float32](0)
	}
	s.mu.Lock()
	old, raced := s.snaps[strings.ToLower(id)]
	if !raced {
		s.snaps[strings.ToLower(id)] = &snapState{snap: sn, blob: d.blob, ts: *r.Snapshot, disk: *d.disk.ID, ultraC: ultra, epoch: d.epoch}
		d.epoch++
	}
	s.mu.Unlock()
	if raced { // a concurrent PUT of the same name won: drop this blob snapshot
		if c, err := s.pageBlob(d.blob).WithSnapshot(*r.Snapshot); err == nil {
			c.Delete(ctx, nil)
		}
		return old.snap, ""
	}
	return sn, ""
}

// advanceCopy moves a background copy on by half at every read of the
// snapshot, as a client polling it sees.
func (sn *snapState) advanceCopy() {
	if !sn.ultraC {
		return
	}
	if c := sn.snap.Properties.CompletionPercent; c != nil && *c < 100 {
		sn.snap.Properties.CompletionPercent = to.Ptr(min(100, *c+50))
	}
}

// deleteSnapshot removes a snapshot and its blob snapshot: "" when done,
// "gone" when there was none, "busy" while a read grant is active.
func (s *Sim) deleteSnapshot(ctx context.Context, rg, name string) string {
	key := strings.ToLower(s.snapID(rg, name))
	s.mu.Lock()
	sn, ok := s.snaps[key]
	if !ok {
		s.mu.Unlock()
		return "gone"
	}
	for _, g := range s.grants {
		if strings.EqualFold(g.snap, *sn.snap.ID) && time.Now().Before(g.expiry) {
			s.mu.Unlock()
			return "busy"
		}
	}
	delete(s.snaps, key)
	s.mu.Unlock()
	c, err := s.pageBlob(sn.blob).WithSnapshot(sn.ts)
	if err == nil {
		_, err = c.Delete(ctx, nil)
	}
	if err != nil {
		s.log.Error("azuresim: delete blob snapshot", "err", err)
	}
	return ""
}

// grantAccess issues a read SAS of the snapshot's blob snapshot, pointing
// at the front; its signature identifies the grant there.
func (s *Sim) grantAccess(rg, name string, in armcompute.GrantAccessData) (string, int, string) {
	if val(in.Access) != armcompute.AccessLevelRead || val(in.DurationInSeconds) <= 0 {
		return "", http.StatusBadRequest, "InvalidParameter"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[strings.ToLower(s.snapID(rg, name))]
	if !ok {
		return "", http.StatusNotFound, "ResourceNotFound"
	}
	if c := sn.snap.Properties.CompletionPercent; c != nil && *c < 100 {
		return "", http.StatusConflict, "SnapshotCopyNotCompleted"
	}
	ts, err := time.Parse(time.RFC3339Nano, sn.ts)
	if err != nil {
		return "", http.StatusInternalServerError, "InternalServerError"
	}
	cred, err := azblob.NewSharedKeyCredential(s.az.account, s.az.key)
	if err != nil {
		return "", http.StatusInternalServerError, "InternalServerError"
	}
	now := time.Now().UTC()
	expiry := now.Add(time.Duration(*in.DurationInSeconds) * time.Second)
	q, err := sas.BlobSignatureValues{
		Protocol: sas.ProtocolHTTPSandHTTP, StartTime: now.Add(-time.Minute), ExpiryTime: expiry,
		Permissions: to.Ptr(sas.BlobPermissions{Read: true}).String(), ContainerName: container, BlobName: sn.blob, SnapshotTime: ts,
		// Unique per grant, so the signature names the grant at the front.
		CacheControl: "no-cache, grant=" + randHex(8),
	}.SignWithSharedKey(cred)
	if err != nil {
		return "", http.StatusInternalServerError, "InternalServerError"
	}
	g := &grant{snap: *sn.snap.ID, disk: sn.disk, expiry: expiry, failAfter: -1,
		entra: val(sn.snap.Properties.DataAccessAuthMode) == armcompute.DataAccessAuthModeAzureActiveDirectory}
	if f, ok := s.failNext[strings.ToLower(sn.disk)]; ok {
		g.failAfter = f.n
		if !f.always {
			delete(s.failNext, strings.ToLower(sn.disk))
		}
	}
	s.grants[q.Signature()] = g
	s.grantsIssued.Add(1)
	sn.snap.Properties.DiskState = to.Ptr(armcompute.DiskStateActiveSAS)
	return s.BlobURL + "/" + s.az.account + "/" + container + "/" + sn.blob + "?snapshot=" + url.QueryEscape(sn.ts) + "&" + q.Encode(), 0, ""
}

// revokeAccess ends every grant of the snapshot; false when there is no
// such snapshot.
func (s *Sim) revokeAccess(rg, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, ok := s.snaps[strings.ToLower(s.snapID(rg, name))]
	if !ok {
		return false
	}
	for sig, g := range s.grants {
		if strings.EqualFold(g.snap, *sn.snap.ID) {
			delete(s.grants, sig)
		}
	}
	sn.snap.Properties.DiskState = to.Ptr(armcompute.DiskStateUnattached)
	return true
}
