// Package demo runs the embedded default of rehost: a simulated vCenter,
// versitygw as S3 and the AWS emulator, all on loopback, with the connector
// configured against them. `rehost demo` and the end-to-end tests use it; it
// also checks the result (content of every AMI's snapshots against the
// source disks) and counts what the peers still hold, for leak checks.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/internal/s3peer"
	"github.com/rehost/rehost/pkg/emulator"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/pkg/vspheresim"
)

// PeerOptions configure StartPeers.
type PeerOptions struct {
	// Dir holds every peer's data; required.
	Dir string
	// VMs of the simulated vCenter; default vspheresim.DemoVMs().
	VMs []vspheresim.VMSpec
	// ImportDuration is how long an emulated import takes (default 3 s).
	ImportDuration time.Duration
	// LeaseTimeout expires NFC leases without progress (default 5 min,
	// as vCenter), so a connector killed mid-export does not hold one.
	LeaseTimeout time.Duration
	Log          *slog.Logger
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
		AccessKeyID:     p.S3.AccessKeyID,
		SecretAccessKey: p.S3.SecretAccessKey,
		S3Endpoint:      p.S3.URL,
		S3AccessKey:     p.S3.AccessKeyID,
		S3SecretKey:     p.S3.SecretAccessKey,
		S3HTTPClient:    p.S3.HTTPClient(),
		DataDir:         filepath.Join(o.Dir, "aws"),
		ImportDuration:  o.ImportDuration,
		Logger:          o.Log,
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

// DiskSHA256 hashes the current content of a simulated VM's disk.
func (p *Peers) DiskSHA256(vm string, disk int) (string, int64, error) {
	size, err := p.Sim.DiskCapacity(vm, disk)
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(readerAt{p.Sim, vm, disk}, 0, size)); err != nil {
		return "", 0, fmt.Errorf("read disk %d of vm %q: %w", disk, vm, err)
	}
	return hex.EncodeToString(h.Sum(nil)), size, nil
}

type readerAt struct {
	sim  *vspheresim.Sim
	vm   string
	disk int
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	return r.sim.ReadDisk(r.vm, r.disk, off, p)
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

// Verify compares every disk of vm with the snapshots of the AMI.
func (p *Peers) Verify(vm, imageID string) ([]DiskCheck, error) {
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
		src, size, err := p.DiskSHA256(vm, i)
		if err != nil {
			return out, err
		}
		dst, dsize, err := p.AWS.SnapshotSHA256(dev.SnapshotID)
		if err != nil {
			return out, fmt.Errorf("verify vm %q disk %d: %w", vm, i, err)
		}
		out = append(out, DiskCheck{Disk: i, SnapshotID: dev.SnapshotID, Size: size, SourceHash: src, TargetHash: dst, Equal: src == dst && size == dsize})
	}
	return out, nil
}

// Leftovers is what the peers still hold that a finished run should have
// removed.
type Leftovers struct {
	VMSnapshots      []string `json:"vmSnapshots,omitempty"`
	OpenLeases       int      `json:"openLeases,omitempty"`
	Uploads          []string `json:"multipartUploads,omitempty"`
	Objects          []string `json:"objects,omitempty"`
	ActiveImports    []string `json:"activeImports,omitempty"`
	OrphanSnapshots  []string `json:"orphanSnapshots,omitempty"`
	UntrackedImages  []string `json:"untrackedImages,omitempty"` // AMIs no completed run claims
	DuplicateAMIRuns []string `json:"duplicateAmiRuns,omitempty"`
}

// Empty reports whether nothing leaked.
func (l Leftovers) Empty() bool {
	return len(l.VMSnapshots) == 0 && l.OpenLeases == 0 && len(l.Uploads) == 0 && len(l.Objects) == 0 &&
		len(l.ActiveImports) == 0 && len(l.OrphanSnapshots) == 0 && len(l.UntrackedImages) == 0 && len(l.DuplicateAMIRuns) == 0
}

func (l Leftovers) String() string {
	var parts []string
	add := func(name string, v []string) {
		if len(v) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", name, strings.Join(v, ", ")))
		}
	}
	add("vm snapshots", l.VMSnapshots)
	if l.OpenLeases > 0 {
		parts = append(parts, fmt.Sprintf("open nfc leases: %d", l.OpenLeases))
	}
	add("multipart uploads", l.Uploads)
	add("objects", l.Objects)
	add("active imports", l.ActiveImports)
	add("orphan ebs snapshots", l.OrphanSnapshots)
	add("untracked amis", l.UntrackedImages)
	add("runs with several amis", l.DuplicateAMIRuns)
	if len(parts) == 0 {
		return "nothing left behind"
	}
	return strings.Join(parts, "; ")
}

// Leftovers counts what the peers hold beyond the AMIs of completed runs
// (claimed, the AMI ids that completed runs recorded).
func (p *Peers) Leftovers(ctx context.Context, bucket string, claimed map[string]bool) (Leftovers, error) {
	var l Leftovers
	for _, vm := range p.VMs {
		snaps, err := p.Sim.Snapshots(vm.Name)
		if err != nil {
			return l, err
		}
		for _, s := range snaps {
			l.VMSnapshots = append(l.VMSnapshots, vm.Name+"/"+s)
		}
	}
	l.OpenLeases = p.Sim.OpenLeases()
	cl := p.S3.S3Client()
	if bucket != "" {
		objs, err := listKeys(ctx, cl, bucket)
		if err != nil {
			return l, err
		}
		l.Objects = objs
		ups, err := listUploads(ctx, cl, bucket)
		if err != nil {
			return l, err
		}
		l.Uploads = ups
	}
	inImage := map[string]bool{}
	perRun := map[string][]string{}
	for _, im := range p.AWS.Images() {
		if im.State == "deregistered" {
			continue
		}
		for _, d := range im.Devices {
			inImage[d.SnapshotID] = true
		}
		if !claimed[im.ID] {
			l.UntrackedImages = append(l.UntrackedImages, im.ID)
		}
		for _, t := range im.Tags {
			if t.Key == replication.TagRun {
				perRun[t.Value] = append(perRun[t.Value], im.ID)
			}
		}
	}
	for run, ids := range perRun {
		if len(ids) > 1 {
			l.DuplicateAMIRuns = append(l.DuplicateAMIRuns, run+"="+strings.Join(ids, "+"))
		}
	}
	for _, s := range p.AWS.Snapshots() {
		if !inImage[s.ID] {
			l.OrphanSnapshots = append(l.OrphanSnapshots, s.ID)
		}
	}
	for _, t := range p.AWS.ImportTasks() {
		if t.Status == "active" || t.Status == "deleting" {
			l.ActiveImports = append(l.ActiveImports, t.ID)
		}
	}
	sort.Strings(l.DuplicateAMIRuns)
	return l, nil
}
