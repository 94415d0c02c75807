package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere"
)

func init() {
	Register(Command{
		Name:    "source inventory",
		Usage:   "--url URL --user USER [--thumbprint T | --ca FILE | --insecure] [--datacenter DC] [--json]",
		Summary: "list the VMs of a vCenter (password from $" + EnvVCenterPassword + ")",
		Flags:   sourceInventoryFlags,
	})
}

// EnvVCenterPassword holds a vCenter password, so it stays off the command
// line (and out of ps and shell history).
const EnvVCenterPassword = "REHOST_VCENTER_PASSWORD"

type sourceInventoryOptions struct {
	url        string
	user       string
	thumbprint string
	ca         string
	insecure   bool
	datacenter string
	json       bool
}

func sourceInventoryFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &sourceInventoryOptions{}
	fs.StringVar(&o.url, "url", "", "vCenter address, e.g. https://vcenter.example.com (required)")
	fs.StringVar(&o.user, "user", "", "vCenter user, e.g. migration@vsphere.local (required)")
	fs.StringVar(&o.thumbprint, "thumbprint", "", "accept the vCenter certificate with this SHA-256 or SHA-1 thumbprint")
	fs.StringVar(&o.ca, "ca", "", "PEM file of a CA to trust besides the system roots (e.g. the VMCA root)")
	fs.BoolVar(&o.insecure, "insecure", false, "accept any certificate (labs only)")
	fs.StringVar(&o.datacenter, "datacenter", "", "list only this datacenter's VMs")
	fs.BoolVar(&o.json, "json", false, "print the inventory as JSON")
	return o.run
}

func (o *sourceInventoryOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q: %w", args, ErrUsage)
	}
	if o.url == "" || o.user == "" {
		return fmt.Errorf("--url and --user are required: %w", ErrUsage)
	}
	if o.insecure && (o.thumbprint != "" || o.ca != "") {
		return fmt.Errorf("--insecure excludes --thumbprint and --ca: %w", ErrUsage)
	}
	password := os.Getenv(EnvVCenterPassword)
	if password == "" {
		return fmt.Errorf("set the vCenter password in $%s", EnvVCenterPassword)
	}
	cfg := vsphere.Config{URL: o.url, User: o.user, Password: password, Thumbprint: o.thumbprint,
		Insecure: o.insecure, Datacenter: o.datacenter}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return fmt.Errorf("read --ca: %w", err)
		}
		cfg.CA = pem
	}
	src, err := vsphere.New(ctx, cfg)
	if err != nil {
		var ce *vsphere.CertificateError
		if errors.As(err, &ce) {
			return fmt.Errorf("%w\nto accept it: rehost source inventory --url %s --user %s --thumbprint %s", err, o.url, o.user, ce.Presented)
		}
		return err
	}
	defer src.Close()
	vms, err := src.Inventory(ctx)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(vms)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPOWER\tCPUS\tMEMORY\tFIRMWARE\tDISKS\tCBT\tTOOLS\tGUEST OS\tPATH\tID")
	for _, vm := range vms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d MiB\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", vm.Name, vm.PowerState, vm.CPUs, vm.MemoryMiB,
			vm.Firmware, inventoryDisks(vm.Disks), inventoryYesNo(vm.CBTEnabled), inventoryYesNo(vm.ToolsRunning), vm.GuestOS, vm.Path, vm.ID)
	}
	return tw.Flush()
}

func inventoryDisks(d []source.Disk) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = inventorySize(x.CapacityBytes)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "+")
}

func inventorySize(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%dM", n>>20)
}

func inventoryYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
