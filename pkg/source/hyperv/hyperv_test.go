package hyperv_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/internal/lab/smbpeer"
	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/source/sourcetest"
)

const mib = 1 << 20

// lab is Samba plus a simulated Hyper-V installation whose VM files Samba
// serves, shared by the subtests of one test (each gets its own folder).
type lab struct {
	smb  *smbpeer.Server
	n    atomic.Int32
	cut  *cutProxy
	dir  string
	base map[string]string // fixture images by name
}

var (
	labOnce sync.Once
	theLab  *lab
	labErr  error
)

// TestMain stops the shared Samba after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if theLab != nil {
		theLab.close()
	}
	os.Exit(code)
}

// newLab returns the package's lab, started on first use: one Samba and
// one set of fixtures for every test.
func newLab(t testing.TB) *lab {
	t.Helper()
	labOnce.Do(func() { theLab, labErr = startLab() })
	if labErr != nil {
		t.Fatal(labErr)
	}
	return theLab
}

func startLab() (_ *lab, err error) {
	s, err := smbpeer.Start(context.Background(), smbpeer.Options{})
	if err != nil {
		return nil, err
	}
	l := &lab{smb: s, base: map[string]string{}}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.cut, err = newCutProxy(s.Addr); err != nil {
		return nil, err
	}
	if l.dir, err = os.MkdirTemp("", "hyperv-lab-"); err != nil {
		return nil, err
	}
	// Two small disks with recognisable content: a dynamic VHDX and a
	// fixed VHD, made by qemu-img as a user would convert them.
	for name, c := range map[string]struct {
		size   int64
		format []string
		seed   byte
	}{
		"data.vhdx": {8 * mib, []string{"-O", "vhdx", "-o", "subformat=dynamic"}, 1},
		"logs.vhd":  {16 * mib, []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}, 2},
		"logs.vhdx": {16 * mib, []string{"-O", "vhdx", "-o", "subformat=dynamic"}, 3},
	} {
		raw := make([]byte, c.size)
		for i := 0; i < 2*mib; i++ {
			raw[mib+i] = byte(i*7) ^ c.seed
		}
		rawPath := filepath.Join(l.dir, name+".raw")
		if err := os.WriteFile(rawPath, raw, 0o644); err != nil {
			return nil, err
		}
		out := filepath.Join(l.dir, name)
		args := append(append([]string{"convert", "-f", "raw"}, c.format...), rawPath, out)
		if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu-img %v: %v\n%s", args, err, b)
		}
		l.base[name] = out
	}
	return l, nil
}

func (l *lab) close() {
	if l.cut != nil {
		l.cut.l.Close()
	}
	l.smb.Close()
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
}

// sim starts a simulated host whose files live in a new folder of the share.
func (l *lab) sim(t *testing.T, o hypervsim.Options) (*hypervsim.Sim, string) {
	t.Helper()
	sub := fmt.Sprintf("t%d", l.n.Add(1))
	o.Dir = filepath.Join(l.smb.ShareDir("vms"), sub)
	s, err := hypervsim.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, sub
}

// config reaches the simulated host with its certificate pinned and its
// files through the share.
func (l *lab) config(s *hypervsim.Sim, sub string) hyperv.Config {
	node := s.Nodes()[0]
	return hyperv.Config{
		Endpoint: s.Addr(""), User: s.User(), Password: l.smb.Password, Thumbprint: s.Thumbprint(""),
		SMBPort: l.smb.Port, Shares: []hyperv.Share{{Prefix: `C:\Hyper-V`, Share: `\\` + node + `\vms\` + sub}},
	}
}

// vm adds a VM with a dynamic VHDX and a fixed VHD.
func (l *lab) vm(t *testing.T, s *hypervsim.Sim, name string, tools bool) string {
	t.Helper()
	return l.addVM(t, s, hypervsim.VMSpec{Name: name, IntegrationServices: tools,
		Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"]}, {Image: l.base["logs.vhd"]}}})
}

// trackedVM adds a VM whose changes Hyper-V tracks: configuration version
// 9.0, two dynamic VHDX.
func (l *lab) trackedVM(t *testing.T, s *hypervsim.Sim, name string) string {
	t.Helper()
	return l.addVM(t, s, hypervsim.VMSpec{Name: name, IntegrationServices: true, Version: "9.0",
		Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"]}, {Image: l.base["logs.vhdx"], Name: "logs.vhdx"}}})
}

func (l *lab) addVM(t *testing.T, s *hypervsim.Sim, spec hypervsim.VMSpec) string {
	t.Helper()
	spec.CPUs, spec.MemoryMiB, spec.Running, spec.GuestOS = 2, 2048, true, "Debian GNU/Linux 12 (bookworm)"
	spec.NICs = []hypervsim.NICSpec{{Name: "Network Adapter", MAC: "00:15:5d:01:02:03", Switch: "External"}}
	id, err := s.AddVM(spec)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func connect(t *testing.T, cfg hyperv.Config) *hyperv.Source {
	t.Helper()
	s, err := hyperv.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	l := newLab(t)
	sourcetest.Run(t, func(t *testing.T) sourcetest.Harness {
		s, sub := l.sim(t, hypervsim.Options{Password: l.smb.Password})
		id := l.trackedVM(t, s, "app-01")
		// A VM of Windows Server 2012 R2's configuration version: no
		// resilient change tracking.
		old := l.addVM(t, s, hypervsim.VMSpec{Name: "old-01", Version: "5.0", Disks: []hypervsim.DiskSpec{{Image: l.base["data.vhdx"], Name: "old.vhdx"}}})
		cfg := l.config(s, sub)
		cfg.SMBPort = l.cut.port()
		cfg.AreasPerPage = 4 // so that clients page
		src := connect(t, cfg)
		return sourcetest.Harness{
			Source:          src,
			VMID:            id,
			UntrackableVMID: old,
			ResetTracking:   func() error { return s.ResetRCT("app-01") },
			ResizeDisk:      func(i int, size int64) error { return s.ResizeDisk("app-01", i, size) },
			Want: source.VM{
				Name: "app-01", Path: "/HV-LAB01/app-01", GuestOS: "Debian GNU/Linux 12 (bookworm)", CPUs: 2, MemoryMiB: 2048,
				Firmware: source.FirmwareEFI, PowerState: "poweredOn", ToolsRunning: true, CBTEnabled: true,
				Disks: []source.Disk{{CapacityBytes: 8 * mib}, {CapacityBytes: 16 * mib}},
				NICs:  []source.NIC{{Network: "External", Type: "synthetic"}},
			},
			WriteDisk:  func(i int, off int64, p []byte) error { return s.WriteDisk("app-01", i, off, p) },
			ReadDisk:   func(i int, off int64, p []byte) (int, error) { return s.ReadDisk("app-01", i, off, p) },
			FailExport: func(i int, n int64) error { l.cut.cutAfter(n); return nil },
		}
	})
}

// cutProxy forwards TCP to Samba and, when armed, cuts the connection
// whose client reads more than n bytes of disk data (SMB2 READs at file
// offsets past the 4 MiB of headers and tables both VHDX layouts keep
// there), as a network failure in the middle of a disk would.
type cutProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	armed  int64
}

func newCutProxy(target string) (*cutProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &cutProxy{l: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p, nil
}

func (p *cutProxy) port() int { return p.l.Addr().(*net.TCPAddr).Port }

func (p *cutProxy) cutAfter(n int64) {
	p.mu.Lock()
	p.armed = n
	p.mu.Unlock()
}

func (p *cutProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	go io.Copy(c, up)
	var read int64
	hdr := make([]byte, 4)
	for {
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		n := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
		msg := make([]byte, n)
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		// An SMB2 READ request: command 8; Length at body+4, Offset at
		// body+8 (the body follows the 64-byte header).
		if n >= 64+16 && string(msg[:4]) == "\xfeSMB" && msg[12] == 8 && msg[13] == 0 {
			length := int64(binary.LittleEndian.Uint32(msg[64+4:]))
			off := int64(binary.LittleEndian.Uint64(msg[64+8:]))
			if off >= 4*mib {
				p.mu.Lock()
				if p.armed > 0 {
					read += length
					if read > p.armed {
						p.armed = 0
						p.mu.Unlock()
						return
					}
				}
				p.mu.Unlock()
			}
		}
		if _, err := up.Write(append(hdr, msg...)); err != nil {
			return
		}
	}
}
