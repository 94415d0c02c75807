package build

import (
	"bufio"
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/pkg/sshsig"
)

// The initramfs layout the init relies on.
const (
	InitrdModuleList = "/etc/rehost/modules" // module paths in load order
	InitrdVersion    = "/etc/rehost/version"
	// InitrdRelease is the running release (release.Manifest without an
	// image), against which an upgrade is checked.
	InitrdRelease = "/etc/rehost/release.json"
	// InitrdReleaseKey is the public release key (authorized_keys form)
	// an upgrade's manifest must be signed with.
	InitrdReleaseKey = "/etc/rehost/release.pub"
)

// makeInitramfs writes the zstd-compressed initramfs: the init as /init,
// the product binary as /bin/rehost, the kernel modules of modules.txt with
// their dependencies, the CA certificates, and the few files and empty
// directories the init expects. It returns the module count and the
// compressed size.
func makeInitramfs(o Options, out, kernelPkg, kver, pkgs, bins string) (int, int64, error) {
	roots, err := ReadModuleList(filepath.Join(o.Root, "appliance", "modules.txt"))
	if err != nil {
		return 0, 0, err
	}
	tree := filepath.Join(kernelPkg, "lib", "modules", kver)
	mods, err := ResolveModules(tree, roots)
	if err != nil {
		return 0, 0, err
	}
	modDir := "/lib/modules/" + kver + "/"
	var list strings.Builder
	entries := []cpioEntry{
		{Path: "/init", Mode: 0o755, Src: filepath.Join(bins, "init")},
		{Path: "/bin/rehost", Mode: 0o755, Src: filepath.Join(bins, "rehost")},
		// The kernel runs these for a host-initiated shutdown (Hyper-V's
		// integration service calls orderly_poweroff): the init answers
		// to either name by signalling itself.
		{Path: "/sbin/poweroff", Link: "/init"},
		{Path: "/sbin/reboot", Link: "/init"},
		{Path: InitrdVersion, Mode: 0o644, Data: []byte(o.Version + "\n")},
		{Path: InitrdRelease, Mode: 0o644, Data: runningRelease(o).Marshal()},
		{Path: InitrdReleaseKey, Mode: 0o644, Data: []byte(sshsig.MarshalPublicKey(o.Key.Public().(ed25519.PublicKey), release.Identity) + "\n")},
		{Path: "/etc/hosts", Mode: 0o644, Data: []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n")},
		{Path: "/etc/os-release", Mode: 0o644, Data: []byte(fmt.Sprintf(
			"NAME=\"rehost connector\"\nID=rehost\nVERSION_ID=%q\nPRETTY_NAME=\"rehost connector %s\"\nHOME_URL=\"https://github.com/rehost/rehost\"\n", o.Version, o.Version))},
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/run", "/tmp", "/data", "/boot", "/var/lib"} {
		entries = append(entries, cpioEntry{Path: d, Mode: fs.ModeDir | 0o755})
	}
	for _, m := range mods {
		entries = append(entries, cpioEntry{Path: modDir + m, Mode: 0o644, Src: filepath.Join(tree, m)})
		list.WriteString(modDir + m + "\n")
	}
	entries = append(entries, cpioEntry{Path: InitrdModuleList, Mode: 0o644, Data: []byte(list.String())})
	ca, err := caBundle(filepath.Join(pkgs, "ca-certificates"))
	if err != nil {
		return 0, 0, err
	}
	entries = append(entries, cpioEntry{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: ca})

	f, err := os.Create(out)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	// One encoder goroutine and a fixed level: the same input gives the
	// same frames. The kernel unpacks zstd initramfs (CONFIG_RD_ZSTD).
	zw, err := zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(8<<20), zstd.WithEncoderCRC(true))
	if err != nil {
		return 0, 0, err
	}
	if err := writeCPIO(zw, entries, o.Epoch.Unix()); err != nil {
		return 0, 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	return len(mods), st.Size(), f.Close()
}

// caBundle concatenates the Mozilla CA certificates the ca-certificates
// package ships, in name order: the file update-ca-certificates would make.
func caBundle(pkg string) ([]byte, error) {
	m, err := filepath.Glob(filepath.Join(pkg, "usr", "share", "ca-certificates", "mozilla", "*.crt"))
	if err != nil || len(m) == 0 {
		return nil, fmt.Errorf("ca-certificates package: no certificates under usr/share/ca-certificates/mozilla (%v)", err)
	}
	sort.Strings(m)
	var b []byte
	for _, p := range m {
		c, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		b = append(b, c...)
		if len(c) > 0 && c[len(c)-1] != '\n' {
			b = append(b, '\n')
		}
	}
	return b, nil
}
