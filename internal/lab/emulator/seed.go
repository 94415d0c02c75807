package emulator

import (
	"bytes"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/disk"
)

// SeedImage registers an AMI whose one volume (/dev/sda1) holds raw, as a
// test's fixture: what a replication would have left, without staging and
// importing it. The snapshot content is stored as an import's is, so
// instances launched from the AMI boot (or fail to boot) what raw holds.
// The AMI is pending for pendingFor, then available.
func (e *Emulator) SeedImage(name string, raw []byte, pendingFor time.Duration) (string, error) {
	id := newID("snap")
	src := disk.NewRaw(bytes.NewReader(raw), int64(len(raw)))
	blocks, sum, err := writeSnapshotFile(e.snapPath(id), src)
	if err != nil {
		return "", fmt.Errorf("seed image %s: %w", name, err)
	}
	now := e.clock.Now().UTC()
	s := &Snapshot{ID: id, Description: "seeded for " + name, State: "completed", Progress: "100%", Started: now,
		VolumeSize: volumeGiB(src.Size()), SourceSize: src.Size(), SHA256: sum, Blocks: map[int32]string{}}
	for _, b := range blocks {
		s.Blocks[b] = id
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.nameFreeLocked(name); err != nil {
		return "", err
	}
	im := &Image{ID: newID("ami"), Name: name, State: "pending", Created: now, AvailableAt: now.Add(pendingFor), Architecture: "x86_64",
		RootDeviceName: "/dev/sda1", UsageOp: "RunInstances",
		Devices: []BlockDevice{{DeviceName: "/dev/sda1", SnapshotID: id, VolumeSize: s.VolumeSize, VolumeType: "gp2", DeleteOnTermination: true}}}
	e.st.Snapshots[id] = s
	e.st.Images[im.ID] = im
	e.saveLocked()
	return im.ID, nil
}
