// Package build assembles the rehost connector appliance: a pinned Debian
// kernel, an initramfs holding the appliance's init and the product binary,
// two system partitions (A and B: an upgrade writes the one not running)
// booted by GRUB — from the BIOS boot partition on BIOS, through Debian's
// signed shim and GRUB on UEFI, so Secure Boot stays on — an ext4 data
// partition for the state, and the disk in the containers hypervisors
// import: an OVA for vSphere, a fixed VHD for Hyper-V generation 1 and a
// VHDX for generation 2. Every output is signed with the release key.
//
// It runs as an ordinary user would: plain files, no mounts, loop devices,
// containers or virtualisation. The same commit gives byte-identical
// outputs: every input is pinned (Debian packages by version and SHA-256,
// Go modules by go.sum), every time stamp is SOURCE_DATE_EPOCH, every
// identifier is derived from the version, and Go builds with -trimpath.
package build

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Options of a build.
type Options struct {
	Root    string    // repository root
	Out     string    // output directory (appliance/out)
	Cache   string    // where downloaded .deb files are kept
	Version string    // the connector's version, stamped into both binaries
	Epoch   time.Time // SOURCE_DATE_EPOCH: every time stamp of the image
	// DiskSize of the virtual disk; the data partition takes what the
	// system partition leaves, and grows with the disk at boot.
	DiskSize int64
	// SystemOnly stops after the system partition image (an upgrade).
	SystemOnly bool
	// Key is the release key every output is signed with; the appliance
	// installs only upgrades it signed. DevKey is set by Build when it is
	// the development key (DevSigningKey), which the appliance then shows.
	Key    ed25519.PrivateKey
	DevKey bool
	// Rehost, when set, is the connector binary to put in the image
	// instead of building ./connector/cmd/rehost: the image tests' system
	// whose connector cannot start.
	Rehost string
	Log    io.Writer
}

// Partition layout of the appliance disk (GPT), release.Layout: GRUB's
// core image for BIOS, the EFI system partition (shim, GRUB, its
// configuration and grubenv), system partitions A and B (kernel and
// initramfs; an upgrade writes the one not running, whole), and the data
// partition, which holds the state and is never rewritten. Partition names
// and numbers are appliance/internal/boot's.
const (
	mib        = 1 << 20
	BIOSOff    = 1 * mib
	BIOSSize   = 1 * mib
	ESPOff     = BIOSOff + BIOSSize
	ESPSize    = 62 * mib
	SystemSize = 128 * mib
	SystemAOff = ESPOff + ESPSize
	SystemBOff = SystemAOff + SystemSize
	DataOff    = SystemBOff + SystemSize
)

// Output file names in Out.
const (
	OVAFile    = "rehost-connector.ova"
	VHDFile    = "rehost-connector.vhd"
	VHDXFile   = "rehost-connector.vhdx"
	RawFile    = "rehost-connector.raw"
	SystemFile = "rehost-connector-system.img"
	// ManifestFile is beside SystemFile: the upgrade's signed manifest
	// (release.Manifest), with its signature in ManifestFile.sig.
	ManifestFile = SystemFile + ".json"
	// PublicKeyFile and AllowedSignersFile hold the release key's public
	// half, for ssh-keygen -Y verify and rehost-lab verify-image.
	PublicKeyFile      = "rehost-release.pub"
	AllowedSignersFile = "rehost-release.allowed_signers"
)

// Result says what a build made.
type Result struct {
	Files         []string // output paths, each with a .sha256 and a .sig beside it
	KernelVersion string
	Modules       int
	InitramfsSize int64
}

// Build makes the appliance in o.Out.
func Build(ctx context.Context, o Options) (Result, error) {
	var res Result
	if o.DiskSize == 0 {
		o.DiskSize = 1 << 30
	}
	if o.DiskSize%mib != 0 || o.DiskSize < DataOff+64*mib {
		return res, fmt.Errorf("disk size %d: want a multiple of 1 MiB of at least %d MiB", o.DiskSize, (DataOff+64*mib)/mib)
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Version == "" {
		return res, fmt.Errorf("no version given: pass --version (make appliance derives it from git)")
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return res, fmt.Errorf("no release key given to sign the images with")
	}
	o.DevKey = o.Key.Equal(DevSigningKey())
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return res, err
	}
	work, err := os.MkdirTemp(o.Out, ".work-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(work)
	step := func(what string) func() {
		start := time.Now()
		fmt.Fprintf(o.Log, "appliance: %s…\n", what)
		return func() { fmt.Fprintf(o.Log, "appliance: %s: %.1fs\n", what, time.Since(start).Seconds()) }
	}

	done := step("pinned Debian packages")
	pins, err := ReadPins(filepath.Join(o.Root, "appliance", "pins.txt"))
	if err != nil {
		return res, err
	}
	pkgs := filepath.Join(work, "pkgs")
	var kernelPkg string
	for _, p := range pins {
		deb, err := fetchDeb(ctx, o.Cache, p)
		if err != nil {
			return res, err
		}
		dir := filepath.Join(pkgs, p.Name)
		if err := extractDeb(ctx, deb, dir); err != nil {
			return res, err
		}
		if strings.HasPrefix(p.Name, "linux-image-") {
			kernelPkg = dir
		}
	}
	if kernelPkg == "" {
		return res, fmt.Errorf("appliance/pins.txt pins no linux-image-* package")
	}
	vmlinuz, kver, err := findKernel(kernelPkg)
	if err != nil {
		return res, err
	}
	res.KernelVersion = kver
	done()

	done = step("go build rehost and the init")
	bins := filepath.Join(work, "bin")
	for _, b := range []struct{ pkg, out string }{
		{"./connector/cmd/rehost", "rehost"},
		{"./appliance/cmd/init", "init"},
	} {
		if b.out == "rehost" && o.Rehost != "" {
			if err := os.MkdirAll(bins, 0o755); err != nil {
				return res, err
			}
			if err := copyFile(filepath.Join(bins, b.out), o.Rehost); err != nil {
				return res, err
			}
			continue
		}
		if b.out == "rehost" {
			if err := generateConsole(ctx, o); err != nil {
				return res, err
			}
		}
		if err := goBuild(ctx, o, b.pkg, filepath.Join(bins, b.out)); err != nil {
			return res, err
		}
	}
	done()

	done = step("initramfs")
	initrd := filepath.Join(work, "initrd.img")
	n, size, err := makeInitramfs(o, initrd, kernelPkg, kver, pkgs, bins)
	if err != nil {
		return res, err
	}
	res.Modules, res.InitramfsSize = n, size
	done()

	done = step("system partition (FAT: kernel, initramfs)")
	sys := filepath.Join(work, "system.img")
	if err := makeSystem(ctx, o, sys, work, vmlinuz, initrd); err != nil {
		return res, err
	}
	sysOut := filepath.Join(o.Out, SystemFile)
	if err := os.Rename(sys, sysOut); err != nil {
		return res, err
	}
	done()
	outputs := []string{sysOut}
	if !o.SystemOnly {
		done = step("boot loaders (GRUB for BIOS; shim and GRUB, signed, for UEFI), data partition and the disk")
		raw := filepath.Join(o.Out, RawFile)
		if err := makeDisk(ctx, o, raw, sysOut, work, pkgs); err != nil {
			return res, err
		}
		done()

		done = step("OVA, VHD, VHDX")
		files, err := writeContainers(o, raw)
		if err != nil {
			return res, err
		}
		done()
		outputs = append([]string{raw, sysOut}, files...)
	}

	done = step("SHA-256 sums and signatures")
	for _, f := range outputs {
		if err := writeSum(f); err != nil {
			return res, err
		}
		if err := signFile(o.Key, f); err != nil {
			return res, err
		}
	}
	manifest, err := writeManifest(o, sysOut)
	if err != nil {
		return res, err
	}
	keys, err := writePublicKey(o)
	if err != nil {
		return res, err
	}
	done()
	res.Files = append(append(outputs, manifest), keys...)
	return res, nil
}

func findKernel(pkg string) (vmlinuz, version string, err error) {
	m, _ := filepath.Glob(filepath.Join(pkg, "boot", "vmlinuz-*"))
	if len(m) != 1 {
		return "", "", fmt.Errorf("kernel package %s: want one boot/vmlinuz-*, found %d", pkg, len(m))
	}
	return m[0], strings.TrimPrefix(filepath.Base(m[0]), "vmlinuz-"), nil
}

// generateConsole compiles the console's templ components to the Go code
// rehost links (connector/web/*_templ.go are generated, not committed). The
// generator is pinned by go.mod's tool directive and its output does not
// depend on the machine or the time, so the image stays reproducible.
func generateConsole(ctx context.Context, o Options) error {
	cmd := exec.CommandContext(ctx, "go", "tool", "templ", "generate", "-log-level", "warn")
	cmd.Dir = filepath.Join(o.Root, "connector", "web")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go tool templ generate in connector/web: %w\n%s", err, b)
	}
	return nil
}

// goBuild builds a static Linux binary with the flags that make it
// reproducible: no cgo, -trimpath, no build id or VCS stamp, the version
// stamped with -X.
func goBuild(ctx context.Context, o Options, pkg, out string) error {
	ldflags := "-s -w -buildid= -X github.com/rehost/rehost/connector/version.Version=" + o.Version
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=readonly")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// run runs a build tool, its output kept for the error.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(b)))
	}
	return nil
}

// lookTool finds a build tool on PATH or in the sbin directories an
// ordinary user's PATH lacks.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: run appliance/tools.sh (or make appliance) to install the build tools", name)
}

// writeSum writes PATH.sha256 in sha256sum's format.
func writeSum(path string) error {
	sum, err := fileSHA256(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path+".sha256", []byte(sum+"  "+filepath.Base(path)+"\n"), 0o644)
}

// uuidFrom derives a version 4 style UUID from the version and a purpose,
// so identifiers are stable for a version and differ between versions.
func uuidFrom(version, purpose string) [16]byte {
	h := sha256.Sum256([]byte("rehost appliance\x00" + version + "\x00" + purpose))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func uuidString(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// setTimes gives every file under dir the build's time stamps; access
// times go to the far future, which relatime never moves (see
// internal/lab/guestdisk), so reading the tree while building does not change
// what mkfs.ext4 -d copies.
func setTimes(dir string, epoch time.Time) error {
	atime := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, atime, epoch)
	})
}
