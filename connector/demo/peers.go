// Package demo runs the embedded default of rehost: a simulated vCenter,
// versitygw as S3 and the AWS emulator, all on loopback, with the connector
// configured against them. `rehost demo` and the end-to-end tests use it; it
// also checks the result (content of every AMI's snapshots against the
// source disks) and counts what the peers still hold, for leak checks.
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/s3peer"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
)

// PeerOptions configure StartPeers.
type PeerOptions struct {
	// Dir holds every peer's data; required.
	Dir string
	// VMs of the simulated vCenter; default vspheresim.DemoVMs().
	VMs []vspheresim.VMSpec
	// ImportDuration is the emulator's simulated import time (its
	// SimulatedImportWait: what stands for booting the converted guest),
	// default 3 s; the rest of an import is the emulator's real work.
	ImportDuration time.Duration
	// LeaseTimeout expires NFC leases without progress (default 5 min,
	// as vCenter), so a connector killed mid-export does not hold one.
	LeaseTimeout time.Duration
	// Delays slow the emulator's API calls by name (emulator.Config.Delays),
	// e.g. DeregisterImage and DeleteSnapshot so kills land in retention.
	Delays map[string]time.Duration
	// Quotas set the emulator's Service Quotas by name
	// (emulator.Config.Quotas); ImportImage honours "Concurrent import
	// image tasks", ImportSnapshot "Concurrent import snapshot tasks".
	Quotas map[string]float64
	// InstanceBootTime is how long the emulator's instances take to boot
	// (default the emulator's, 3 s).
	InstanceBootTime time.Duration
	Log              *slog.Logger
}

// Peers are the running stand-ins for vCenter, S3 and AWS.
type Peers struct {
	Sim    *vspheresim.Sim
	S3     *s3peer.Server
	AWS    *emulator.Emulator
	AWSURL string
	VMs    []vspheresim.VMSpec
}

// StartPeers starts the simulated vCenter and the AWS emulator in-process and
// versitygw as a process of its own, over TLS (installing it first if
// needed).
func StartPeers(ctx context.Context, o PeerOptions) (_ *Peers, err error) {
	if o.Dir == "" {
		return nil, errors.New("start peers: no directory")
	}
	if o.VMs == nil {
		o.VMs = vspheresim.DemoVMs()
	}
	if o.ImportDuration == 0 {
		o.ImportDuration = 3 * time.Second
	}
	p := &Peers{VMs: o.VMs}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.Sim, err = vspheresim.Start(ctx, vspheresim.Options{VMs: o.VMs, Dir: filepath.Join(o.Dir, "vcenter"), LeaseTimeout: o.LeaseTimeout}); err != nil {
		return nil, fmt.Errorf("start the simulated vCenter: %w", err)
	}
	s3dir := filepath.Join(o.Dir, "s3")
	if err := os.MkdirAll(s3dir, 0o700); err != nil {
		return nil, err
	}
	if p.S3, err = s3peer.StartProcess(ctx, s3peer.Options{TLS: true, Dir: s3dir}); err != nil {
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	p.AWS, err = emulator.New(emulator.Config{
		Region: p.S3.Region,
		// One set of keys for S3 and the rest, as in a real account.
		AccessKeyID:         p.S3.AccessKeyID,
		SecretAccessKey:     p.S3.SecretAccessKey,
		S3Endpoint:          p.S3.URL,
		S3AccessKey:         p.S3.AccessKeyID,
		S3SecretKey:         p.S3.SecretAccessKey,
		S3HTTPClient:        p.S3.HTTPClient(),
		DataDir:             filepath.Join(o.Dir, "aws"),
		SimulatedImportWait: o.ImportDuration,
		InstanceBootTime:    o.InstanceBootTime,
		Delays:              o.Delays,
		Quotas:              o.Quotas,
		Logger:              o.Log,
	})
	if err != nil {
		return nil, fmt.Errorf("start the AWS emulator: %w", err)
	}
	if p.AWSURL, err = p.AWS.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return p, nil
}

// Close stops every peer.
func (p *Peers) Close() {
	if p.AWS != nil {
		p.AWS.Close()
	}
	if p.S3 != nil {
		p.S3.Close()
	}
	if p.Sim != nil {
		p.Sim.Close()
	}
}

// AWSSettings registers a connector with the emulated account.
func (p *Peers) AWSSettings() (daemon.AWSSettings, error) {
	ca, err := os.ReadFile(p.S3.CertFile)
	if err != nil {
		return daemon.AWSSettings{}, fmt.Errorf("read the S3 certificate: %w", err)
	}
	ak, sk := p.AWS.Credentials()
	return daemon.AWSSettings{
		Region:          p.AWS.Region(),
		AccessKeyID:     ak,
		SecretAccessKey: sk,
		Endpoint:        p.AWSURL,
		S3Endpoint:      p.S3.URL,
		CAPEM:           ca,
		PollInitial:     200 * time.Millisecond,
		PollMax:         time.Second,
	}, nil
}

// SourceInput adds the simulated vCenter, its certificate pinned by
// thumbprint.
func (p *Peers) SourceInput() daemon.SourceInput {
	return daemon.SourceInput{Kind: store.SourceVSphere, Name: "vcenter", URL: p.Sim.URL(),
		User: p.Sim.User(), Password: p.Sim.Password(), Thumbprint: p.Sim.Thumbprint()}
}

// DiskCheck compares one source disk with the EBS snapshot made of it.
type DiskCheck struct {
	Disk       int    `json:"disk"`
	SnapshotID string `json:"snapshotId"`
	Size       int64  `json:"size"`
	SourceHash string `json:"sourceSha256"`
	TargetHash string `json:"snapshotSha256"`
	Equal      bool   `json:"equal"`
}

// Disks reads the live disks of a simulated source's VMs (vspheresim's
// through VCenterDisks, hypervsim's and azuresim's as they are): what
// replicas and AMIs are compared with.
type Disks interface {
	DiskSize(vm string, i int) (int64, error)
	ReadDisk(vm string, i int, off int64, p []byte) (int, error)
}

// VCenterDisks reads the simulated vCenter's disks as Disks.
type VCenterDisks struct{ *vspheresim.Sim }

// DiskSize is the disk's capacity.
func (v VCenterDisks) DiskSize(vm string, i int) (int64, error) { return v.DiskCapacity(vm, i) }

// Verify compares every disk of vm with the snapshots of the AMI, reading
// both back: the simulated vCenter's live disk and the emulator's stored
// snapshot content, byte for byte.
func (p *Peers) Verify(vm, imageID string) ([]DiskCheck, error) {
	return p.VerifyWith(VCenterDisks{p.Sim}, vm, imageID)
}

// VerifyWith is Verify against the disks of another source.
func (p *Peers) VerifyWith(src Disks, vm, imageID string) ([]DiskCheck, error) {
	var img *emulator.Image
	for _, im := range p.AWS.Images() {
		if im.ID == imageID {
			img = &im
			break
		}
	}
	if img == nil {
		return nil, fmt.Errorf("verify vm %q: image %s not found in the emulator", vm, imageID)
	}
	var out []DiskCheck
	for i, dev := range img.Devices {
		c, err := p.CompareWith(src, vm, i, dev.SnapshotID)
		if err != nil {
			return out, fmt.Errorf("verify vm %q disk %d: %w", vm, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// compare reads disk i of vm of the simulated vCenter and the snapshot
// side by side.
func (p *Peers) compare(vm string, i int, snapID string) (DiskCheck, error) {
	return p.CompareWith(VCenterDisks{p.Sim}, vm, i, snapID)
}

// CompareWith reads disk i of vm of src and the snapshot side by side.
func (p *Peers) CompareWith(src Disks, vm string, i int, snapID string) (DiskCheck, error) {
	c := DiskCheck{Disk: i, SnapshotID: snapID}
	size, err := src.DiskSize(vm, i)
	if err != nil {
		return c, err
	}
	snap, snapSize, err := p.AWS.SnapshotContent(snapID)
	if err != nil {
		return c, err
	}
	defer snap.Close()
	c.Size = size
	// An EBS direct replica is a whole number of GiB: beyond the disk it
	// must read as zeros. Both hashes are of the disk's size.
	c.Equal = size == snapSize || snapSize > size && snapSize%(1<<30) == 0
	hs, ht := sha256.New(), sha256.New()
	// Large reads: a simulated Hyper-V host opens the disk's whole chain
	// for every ReadDisk, so 1 MiB reads made comparing a 48 MiB disk cost
	// 48 reads of every file of its chain.
	a, b := make([]byte, 16<<20), make([]byte, 16<<20)
	for off := int64(0); off < max(size, snapSize); off += int64(len(a)) {
		na, nb := max(0, min(int64(len(a)), size-off)), max(0, min(int64(len(b)), snapSize-off))
		if na == 0 {
			// Past the disk: the replica's zeros, not worth asking the source.
		} else if _, err := src.ReadDisk(vm, i, off, a[:na]); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("read the source disk at %d: %w", off, err)
		}
		if _, err := snap.ReadAt(b[:nb], off); err != nil && !errors.Is(err, io.EOF) {
			return c, fmt.Errorf("read snapshot %s at %d: %w", snapID, off, err)
		}
		hs.Write(a[:na])
		if na < nb {
			c.Equal = c.Equal && bytes.Equal(a[:na], b[:na]) && allZero(b[na:nb])
			ht.Write(b[:na])
			continue
		}
		ht.Write(b[:nb])
		c.Equal = c.Equal && bytes.Equal(a[:na], b[:nb])
	}
	c.SourceHash, c.TargetHash = hex.EncodeToString(hs.Sum(nil)), hex.EncodeToString(ht.Sum(nil))
	return c, nil
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// ImageGuest is what VM Import found on the boot disk of an AMI the
// emulator made by ImportImage: its platform and distribution.
func (p *Peers) ImageGuest(imageID string) (emulator.Guest, bool) {
	for _, im := range p.AWS.Images() {
		if im.ID != imageID {
			continue
		}
		for _, t := range p.AWS.ImportTasks() {
			if t.ID == im.ImportTaskID && t.Guest != nil {
				return *t.Guest, true
			}
		}
	}
	return emulator.Guest{}, false
}

// States reads what every peer holds.
func (p *Peers) States(ctx context.Context) (PeerStates, error) {
	var st PeerStates
	var err error
	if st.VCenter, err = p.Sim.State(); err != nil {
		return st, err
	}
	if st.S3, err = p.S3.Front.State(ctx); err != nil {
		return st, err
	}
	st.AWS = p.AWS.State()
	return st, nil
}

// Leftovers counts what the peers hold beyond the AMIs of completed runs
// (claimed, the AMI ids that completed runs recorded) in bucket.
func (p *Peers) Leftovers(ctx context.Context, bucket string, claimed map[string]bool) (Leftovers, error) {
	st, err := p.States(ctx)
	if err != nil {
		return Leftovers{}, err
	}
	return st.Leftovers(bucket, claimed), nil
}
