package azure

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/rehost/rehost/pkg/source"
)

// Tags on every snapshot rehost makes. A checkpoint is the set of
// snapshots sharing tagCheckpoint and tagVM; after a crash they are found
// again by these tags.
const (
	tagCheckpoint = "rehost-checkpoint"
	tagVM         = "rehost-vm"
	tagDisk       = "rehost-disk"       // the disk's key: "os", "lun0", …
	tagIndex      = "rehost-disk-index" // its position in the VM
	tagRun        = "rehost-run"
	tagJob        = "rehost-job"
)

// Checkpoint takes an incremental snapshot of every managed disk of the
// VM, all started before any is waited for, tagged with the checkpoint
// name, the VM and the run and job (from source.Tags(ctx), or the run id
// from a "rehost-<run>" name). It is idempotent: the snapshots that exist
// are kept, the missing ones made. Azure snapshots are crash-consistent
// per disk, never quiesced. It refuses, with the reason, what cannot be
// replicated (confidential VMs, Azure Disk Encryption, customer-managed
// keys this identity cannot read) and warns for trusted launch. The ID of
// the checkpoint is its name.
func (s *Source) Checkpoint(ctx context.Context, vmID, name string) (source.Checkpoint, error) {
	if name == "" {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: empty name", vmID)
	}
	v, err := s.getVM(ctx, vmID)
	if err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	vmName := val(v.Name)
	refs, err := s.attachedDisks(ctx, v, nil)
	if err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint: %w", err)
	}
	if r := refusal(v, refs); r != "" {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: %s", vmName, r)
	}
	if err := s.checkCustomerKeys(ctx, vmName, refs); err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: %w", vmName, err)
	}
	if securityType(v) == SecurityTrustedLaunch {
		s.log.Warn("vm uses trusted launch: "+trustedLaunchWarning, "vm", vmName)
	}
	rg := mustRG(vmID)
	have, err := s.snapshotsOf(ctx, rg, vmID, name)
	if err != nil {
		return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: %w", vmName, err)
	}
	byKey := map[string]*armcompute.Snapshot{}
	for _, sn := range have {
		byKey[val(sn.Tags[tagDisk])] = sn
	}
	tags := s.tagsFor(ctx, vmID, name)
	var pollers []*runtime.Poller[armcompute.SnapshotsClientCreateOrUpdateResponse]
	for i, r := range refs {
		if sn, ok := byKey[r.key]; ok && val(sn.Properties.ProvisioningState) != "Failed" {
			continue
		}
		t := map[string]*string{tagDisk: to.Ptr(r.key), tagIndex: to.Ptr(strconv.Itoa(i))}
		for k, v := range tags {
			t[k] = to.Ptr(v)
		}
		var p *runtime.Poller[armcompute.SnapshotsClientCreateOrUpdateResponse]
		err := s.call(ctx, fmt.Sprintf("checkpoint vm %s: snapshot disk %s", vmName, r.key), func(ctx context.Context) (err error) {
			p, err = s.snaps.BeginCreateOrUpdate(ctx, rg, snapshotName(name, r.key), armcompute.Snapshot{
				Location: r.disk.Location,
				Tags:     t,
				Properties: &armcompute.SnapshotProperties{
					CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(r.id)},
					Incremental:  to.Ptr(true),
				},
			}, nil)
			return err
		})
		if err != nil {
			return source.Checkpoint{}, err
		}
		pollers = append(pollers, p)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.SnapshotTimeout)
	defer cancel()
	if err := waitAll(wctx, s, fmt.Sprintf("checkpoint vm %s: wait for its snapshots", vmName), pollers); err != nil {
		return source.Checkpoint{}, err
	}
	for _, r := range refs {
		if backgroundCopy(r.disk) {
			if err := s.waitCopy(wctx, rg, snapshotName(name, r.key)); err != nil {
				return source.Checkpoint{}, fmt.Errorf("checkpoint vm %s: disk %s: %w", vmName, r.key, err)
			}
		}
	}
	return source.Checkpoint{VMID: vmID, ID: name, Name: name}, nil
}

// tagsFor are the tags of a checkpoint's snapshots.
func (s *Source) tagsFor(ctx context.Context, vmID, name string) map[string]string {
	t := map[string]string{tagCheckpoint: name, tagVM: vmID}
	if run, ok := strings.CutPrefix(name, "rehost-"); ok {
		t[tagRun] = run
	}
	for k, v := range source.Tags(ctx) {
		// Azure tag names take no ':'; "rehost:job" becomes "rehost-job".
		t[strings.ReplaceAll(k, ":", "-")] = v
	}
	return t
}

// waitAll polls every poller until all are done (or ctx ends), logging
// progress between rounds, and returns the first failure, classified and
// naming op. Each poll and result is a call under the retry policy; the
// rounds between them are waiting, not retrying.
func waitAll[T any](ctx context.Context, s *Source, op string, ps []*runtime.Poller[T]) error {
	start := time.Now()
	for {
		done := 0
		for _, p := range ps {
			if !p.Done() {
				if err := s.call(ctx, op, func(ctx context.Context) error { _, err := p.Poll(ctx); return err }); err != nil {
					return err
				}
			}
			if p.Done() {
				done++
			}
		}
		if done == len(ps) {
			break
		}
		s.log.Info("waiting for azure", "what", op, "done", done, "of", len(ps), "elapsed", time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			return classify(op, fmt.Errorf("%d of %d not done after %v: %w", len(ps)-done, len(ps), time.Since(start).Round(time.Second), ctx.Err()))
		case <-time.After(s.cfg.PollInterval):
		}
	}
	for _, p := range ps {
		if err := s.call(ctx, op, func(ctx context.Context) error { _, err := p.Result(ctx); return err }); err != nil {
			return err
		}
	}
	return nil
}

// backgroundCopy reports whether the disk's snapshots fill in the
// background (Ultra Disk, Premium SSD v2) and must finish before a read.
func backgroundCopy(d *armcompute.Disk) bool {
	if d.SKU == nil || d.SKU.Name == nil {
		return false
	}
	n := *d.SKU.Name
	return n == armcompute.DiskStorageAccountTypesUltraSSDLRS || n == armcompute.DiskStorageAccountTypesPremiumV2LRS
}

// waitCopy waits for a snapshot's background copy (completionPercent).
func (s *Source) waitCopy(ctx context.Context, rg, name string) error {
	for {
		var r armcompute.SnapshotsClientGetResponse
		err := s.call(ctx, "read snapshot "+name, func(ctx context.Context) (err error) {
			r, err = s.snaps.Get(ctx, rg, name, nil)
			return err
		})
		if err != nil {
			return err
		}
		p := r.Properties
		if e := p.CopyCompletionError; e != nil {
			return fmt.Errorf("the background copy of snapshot %s failed: %s: %s", name, val(e.ErrorCode), val(e.ErrorMessage))
		}
		pct := float32(100)
		if p.CompletionPercent != nil {
			pct = *p.CompletionPercent
		}
		if pct >= 100 {
			return nil
		}
		s.log.Info("waiting for the background copy of an ultra or premium v2 disk snapshot", "snapshot", name, "percent", pct)
		select {
		case <-ctx.Done():
			return fmt.Errorf("the background copy of snapshot %s is at %.0f%%: %w", name, pct, ctx.Err())
		case <-time.After(s.cfg.PollInterval):
		}
	}
}

// refusal says why the VM cannot be replicated, or "".
func refusal(v *armcompute.VirtualMachine, refs []diskRef) string {
	if securityType(v) == SecurityConfidential {
		return "it is a confidential VM: its memory and OS disk are encrypted with keys bound to its hardware-backed vTPM, which never leave Azure; " +
			"EC2 cannot import such a disk. Move the workload to a standard VM (or rebuild it on an EC2 instance with AMD SEV-SNP) instead"
	}
	if od := v.Properties.StorageProfile.OSDisk; od != nil && od.EncryptionSettings != nil && val(od.EncryptionSettings.Enabled) {
		return adeRefusal("os")
	}
	for _, r := range refs {
		p := r.disk.Properties
		if p == nil {
			continue
		}
		if p.EncryptionSettingsCollection != nil && val(p.EncryptionSettingsCollection.Enabled) {
			return adeRefusal(r.key)
		}
		if p.SecurityProfile != nil && p.SecurityProfile.SecurityType != nil && strings.HasPrefix(string(*p.SecurityProfile.SecurityType), "ConfidentialVM") {
			return fmt.Sprintf("disk %s is a confidential VM disk (%s): its content is encrypted with a key bound to the VM's vTPM; EC2 cannot import it", r.key, *p.SecurityProfile.SecurityType)
		}
	}
	return ""
}

func adeRefusal(key string) string {
	return fmt.Sprintf("disk %s uses Azure Disk Encryption (BitLocker or dm-crypt inside the guest, keys in Key Vault): its bytes are ciphertext that EC2 cannot boot or read; "+
		"disable it (Disable-AzVMDiskEncryption, or az vm encryption disable) so the volumes are decrypted, then replicate", key)
}

// checkCustomerKeys makes sure each disk encrypted with a customer-managed
// key has a disk encryption set this identity can read with an active
// key: Azure decrypts a snapshot's data for a SAS reader only then.
func (s *Source) checkCustomerKeys(ctx context.Context, vmName string, refs []diskRef) error {
	for _, r := range refs {
		p := r.disk.Properties
		if p == nil || p.Encryption == nil || p.Encryption.DiskEncryptionSetID == nil {
			continue
		}
		switch val(p.Encryption.Type) {
		case armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey, armcompute.EncryptionTypeEncryptionAtRestWithPlatformAndCustomerKeys:
		default:
			continue
		}
		id := *p.Encryption.DiskEncryptionSetID
		rid, err := parseID(id, "diskEncryptionSets")
		if err != nil {
			return fmt.Errorf("disk %s: %w", r.key, err)
		}
		var des armcompute.DiskEncryptionSetsClientGetResponse
		err = s.call(ctx, "read its disk encryption set "+rid.Name, func(ctx context.Context) (err error) {
			des, err = s.des.Get(ctx, rid.ResourceGroupName, rid.Name, nil)
			return err
		})
		if err != nil {
			if errors.Is(err, source.ErrAuth) || errors.Is(err, source.ErrNotFound) {
				return fmt.Errorf("disk %s is encrypted with a customer-managed key of disk encryption set %s, which this identity cannot read, so its snapshots could not be read either: "+
					"give the identity Reader on the set (and keep its Key Vault key enabled): %w", r.key, rid.Name, err)
			}
			return fmt.Errorf("disk %s: %w", r.key, err)
		}
		if des.Properties == nil || des.Properties.ActiveKey == nil || des.Properties.ActiveKey.KeyURL == nil {
			return fmt.Errorf("disk %s: its disk encryption set %s has no active key: Azure cannot decrypt the disk; restore the key in Key Vault", r.key, rid.Name)
		}
	}
	return nil
}

// snapshotsOf lists the snapshots of a checkpoint of the VM (all rehost
// snapshots of the VM when name is ""), in disk order.
func (s *Source) snapshotsOf(ctx context.Context, rg, vmID, name string) ([]*armcompute.Snapshot, error) {
	var out []*armcompute.Snapshot
	err := drain(ctx, s, "list the snapshots of resource group "+rg, func() *runtime.Pager[armcompute.SnapshotsClientListByResourceGroupResponse] {
		return s.snaps.NewListByResourceGroupPager(rg, nil)
	}, func(p armcompute.SnapshotsClientListByResourceGroupResponse) {
		for _, sn := range p.Value {
			if sn != nil && strings.EqualFold(val(sn.Tags[tagVM]), vmID) && (name == "" || val(sn.Tags[tagCheckpoint]) == name) {
				out = append(out, sn)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, _ := strconv.Atoi(val(out[i].Tags[tagIndex]))
		b, _ := strconv.Atoi(val(out[j].Tags[tagIndex]))
		return a < b
	})
	return out, nil
}

// Checkpoints lists the VM's checkpoints whose name starts with prefix.
func (s *Source) Checkpoints(ctx context.Context, vmID, prefix string) ([]source.Checkpoint, error) {
	if _, err := s.getVM(ctx, vmID); err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	snaps, err := s.snapshotsOf(ctx, mustRG(vmID), vmID, "")
	if err != nil {
		return nil, fmt.Errorf("list checkpoints of vm %s: %w", vmID, err)
	}
	seen := map[string]bool{}
	out := []source.Checkpoint{}
	for _, sn := range snaps {
		name := val(sn.Tags[tagCheckpoint])
		if seen[name] || !strings.HasPrefix(name, prefix) {
			continue
		}
		seen[name] = true
		out = append(out, source.Checkpoint{VMID: vmID, ID: name, Name: name, Base: val(sn.Tags[tagBase]) == "true"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Release revokes any read grant on the checkpoint's snapshots and deletes
// them. Snapshots (or a VM, or a resource group) already gone are not an
// error.
func (s *Source) Release(ctx context.Context, cp source.Checkpoint) error {
	rid, err := parseID(cp.VMID, "virtualMachines")
	if err != nil {
		return nil
	}
	name := cmpOr(cp.ID, cp.Name)
	snaps, err := s.snapshotsOf(ctx, rid.ResourceGroupName, cp.VMID, name)
	if errors.Is(err, source.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release checkpoint %q: %w", name, err)
	}
	if err := s.revoke(ctx, rid.ResourceGroupName, snaps); err != nil {
		return fmt.Errorf("release checkpoint %q: %w", name, err)
	}
	var dels []*runtime.Poller[armcompute.SnapshotsClientDeleteResponse]
	for _, sn := range snaps {
		var p *runtime.Poller[armcompute.SnapshotsClientDeleteResponse]
		err := s.call(ctx, "delete snapshot "+val(sn.Name), func(ctx context.Context) (err error) {
			p, err = s.snaps.BeginDelete(ctx, rid.ResourceGroupName, val(sn.Name), nil)
			return err
		})
		if err != nil {
			if !errors.Is(err, source.ErrNotFound) {
				return fmt.Errorf("release checkpoint %q: %w", name, err)
			}
			continue
		}
		dels = append(dels, p)
	}
	if err := waitAll(ctx, s, "delete the snapshots of checkpoint "+name, dels); err != nil && !errors.Is(err, source.ErrNotFound) {
		return fmt.Errorf("release checkpoint %q: %w", name, err)
	}
	return nil
}

// revoke ends the read grants (SAS) of the snapshots; a snapshot without
// one, or gone, is fine.
func (s *Source) revoke(ctx context.Context, rg string, snaps []*armcompute.Snapshot) error {
	var ps []*runtime.Poller[armcompute.SnapshotsClientRevokeAccessResponse]
	for _, sn := range snaps {
		s.grants.Delete(rg + "/" + val(sn.Name))
		var p *runtime.Poller[armcompute.SnapshotsClientRevokeAccessResponse]
		err := s.call(ctx, "revoke access to snapshot "+val(sn.Name), func(ctx context.Context) (err error) {
			p, err = s.snaps.BeginRevokeAccess(ctx, rg, val(sn.Name), nil)
			return err
		})
		if err != nil {
			if !errors.Is(err, source.ErrNotFound) {
				return err
			}
			continue
		}
		ps = append(ps, p)
	}
	if err := waitAll(ctx, s, "revoke access", ps); err != nil && !errors.Is(err, source.ErrNotFound) {
		return err
	}
	return nil
}

// snapshotName is the Azure name of a checkpoint's snapshot of a disk:
// letters, digits, '_', '.', '-', at most 80 characters.
func snapshotName(checkpoint, key string) string {
	b := []byte(checkpoint + "-" + key)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			b[i] = '-'
		}
	}
	n := string(b)
	if len(n) > 80 {
		sum := sha256.Sum256(b)
		n = fmt.Sprintf("%s-%x-%s", n[:80-len(key)-10], sum[:4], key)
	}
	return n
}

// mustRG is the resource group of a resource id already parsed once.
func mustRG(id string) string {
	rid, err := parseID(id, "virtualMachines")
	if err != nil {
		return ""
	}
	return rid.ResourceGroupName
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
