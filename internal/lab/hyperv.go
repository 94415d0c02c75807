package lab

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/internal/lab/hypervsim"
	"github.com/rehost/rehost/internal/lab/smbpeer"
)

type hypervOptions struct {
	demo bool
	json bool
}

func hypervFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &hypervOptions{}
	fs.BoolVar(&o.demo, "demo", false, "create the demo VM hv-app-01 (configuration version 9.0, a real guest boot disk and a data disk, both VHDX)")
	fs.BoolVar(&o.json, "json", false, "print the endpoint as one JSON line")
	return o.run
}

// hypervInfo is what the verb prints once it serves: what `rehost source
// add --type hyperv` needs, and the write URL.
type hypervInfo struct {
	Endpoint   string            `json:"endpoint"` // host:port of WinRM over HTTPS
	User       string            `json:"user"`
	Password   string            `json:"password"`
	Thumbprint string            `json:"thumbprint"`
	CertFile   string            `json:"certFile"` // the WinRM listener's certificate (PEM), for curl --cacert
	SMBPort    int               `json:"smbPort"`
	NodeSMB    string            `json:"nodeSmb"` // --node-smb NAME=HOST:PORT: where the host's SMB server is
	Share      string            `json:"share"`   // --share PATH=SHARE
	VMs        map[string]string `json:"vms"`     // name → id
	WriteURL   string            `json:"writeUrl"`
}

func (o *hypervOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	smb, err := smbpeer.Start(ctx, smbpeer.Options{})
	if err != nil {
		return fmt.Errorf("start samba for the simulated Hyper-V host: %w", err)
	}
	defer smb.Close()
	sim, err := hypervsim.Start(hypervsim.Options{Dir: filepath.Join(smb.ShareDir("vms"), "lab"), User: smb.User, Domain: smb.Domain, Password: smb.Password})
	if err != nil {
		return fmt.Errorf("start the simulated Hyper-V host: %w", err)
	}
	defer sim.Close()
	node := sim.Nodes()[0]
	certDir, err := os.MkdirTemp("", "rehost-lab-hyperv-cert-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(certDir)
	certFile := filepath.Join(certDir, "winrm-cert.pem")
	if err := os.WriteFile(certFile, sim.CertificatePEM(""), 0o644); err != nil {
		return err
	}
	info := hypervInfo{Endpoint: sim.Addr(""), User: sim.User(), Password: sim.Password(), Thumbprint: sim.Thumbprint(""), CertFile: certFile,
		SMBPort: smb.Port, NodeSMB: node + "=" + smb.Addr, Share: `C:\Hyper-V=\\` + node + `\vms\lab`, VMs: map[string]string{}, WriteURL: sim.WriteURL()}
	if o.demo {
		id, err := addDemoHyperVVM(ctx, sim)
		if err != nil {
			return err
		}
		info.VMs["hv-app-01"] = id
	}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("simulated Hyper-V host serving\n  endpoint:   %s\n  user:       %s\n  password:   %s\n  thumbprint: %s\n  smb port:   %d\n  share:      %s\n  vms:        %v\n  write:      %s (POST blocks into a VM's disk; docs/lab.md)\nInterrupt to stop.\n",
		info.Endpoint, info.User, info.Password, info.Thumbprint, info.SMBPort, info.Share, info.VMs, info.WriteURL))
	<-ctx.Done()
	return nil
}

// addDemoHyperVVM adds hv-app-01: a running generation 2 VM with
// integration services, a 48 MiB EFI guest boot disk and a 16 MiB data
// disk, both dynamic VHDX, of configuration version 9.0 (tracked).
func addDemoHyperVVM(ctx context.Context, sim *hypervsim.Sim) (string, error) {
	dir, err := os.MkdirTemp("", "rehost-lab-hyperv-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	raw := filepath.Join(dir, "boot.raw")
	if _, err := guestdisk.Build(ctx, raw, guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, DataBytes: 4 << 20, Seed: 21}); err != nil {
		return "", fmt.Errorf("build the demo guest disk: %w", err)
	}
	boot, data := filepath.Join(dir, "boot.vhdx"), filepath.Join(dir, "data.vhdx")
	if err := rawToVHDX(raw, boot); err != nil {
		return "", err
	}
	empty, err := hvdisk.NewVHDX(16<<20, 2<<20, 512, nil)
	if err != nil {
		return "", err
	}
	if err := empty.Save(data); err != nil {
		return "", err
	}
	return sim.AddVM(hypervsim.VMSpec{Name: "hv-app-01", CPUs: 2, MemoryMiB: 4096, Running: true, IntegrationServices: true,
		Version: "9.0", GuestOS: "Debian GNU/Linux 12 (bookworm)",
		Disks: []hypervsim.DiskSpec{{Image: boot}, {Image: data}},
		NICs:  []hypervsim.NICSpec{{Name: "Network Adapter", MAC: "00:15:5d:00:20:01", Switch: "External"}}})
}

// rawToVHDX writes the non-zero 64 KiB regions of a raw image into a new
// dynamic VHDX.
func rawToVHDX(raw, out string) error {
	f, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	x, err := hvdisk.NewVHDX(st.Size(), 2<<20, 512, nil)
	if err != nil {
		return err
	}
	buf, zero := make([]byte, 64<<10), make([]byte, 64<<10)
	for off := int64(0); off < st.Size(); off += int64(len(buf)) {
		n, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			x.WriteAt(buf[:n], off)
		}
	}
	return x.Save(out)
}
