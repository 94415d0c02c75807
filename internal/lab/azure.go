package lab

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/azuresim"
)

type azureOptions struct {
	dir  string
	demo bool
	json bool
}

func azureFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &azureOptions{}
	fs.StringVar(&o.dir, "dir", "", "directory for the certificate and Azurite's work (required)")
	fs.BoolVar(&o.demo, "demo", false, "create the demo VM az-app-01 (an 8 MiB OS disk and a 16 MiB data disk)")
	fs.BoolVar(&o.json, "json", false, "print the endpoint as one JSON line")
	return o.run
}

// azureInfo is what the verb prints once it serves. The application's
// secret signs in at AuthorityURL (a client-credentials grant) and, with
// ClientID, authorizes writes at WriteURL.
type azureInfo struct {
	SubscriptionID  string            `json:"subscriptionId"`
	TenantID        string            `json:"tenantId"`
	ClientID        string            `json:"clientId"`
	ClientSecret    string            `json:"clientSecret"`
	ResourceManager string            `json:"resourceManager"`
	AuthorityURL    string            `json:"authorityHost"`
	CAFile          string            `json:"caFile"`
	VMs             map[string]string `json:"vms"` // name → resource id
	WriteURL        string            `json:"writeUrl"`
}

func (o *azureOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.dir == "" {
		return fmt.Errorf("--dir is required: %w", cli.ErrUsage)
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	opts := azuresim.Options{Dir: o.dir}
	if o.demo {
		opts.VMs = []azuresim.VMSpec{{Name: "az-app-01", Generation: "V2", AgentReady: true,
			Disks: []azuresim.DiskSpec{{SizeBytes: 8 << 20}, {SizeBytes: 16 << 20, SKU: "StandardSSD_LRS"}},
			NICs:  []azuresim.NICSpec{{PrivateIP: "10.0.0.4"}}}}
	}
	sim, err := azuresim.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start the faked Azure subscription: %w", err)
	}
	defer sim.Close()
	ca, err := sim.WriteCA(o.dir)
	if err != nil {
		return err
	}
	info := azureInfo{SubscriptionID: sim.SubscriptionID, TenantID: sim.TenantID, ClientID: sim.ClientID, ClientSecret: sim.ClientSecret,
		ResourceManager: sim.ARMURL, AuthorityURL: sim.AuthorityURL, CAFile: ca, VMs: map[string]string{}, WriteURL: sim.WriteURL()}
	for _, vm := range opts.VMs {
		info.VMs[vm.Name] = sim.VMID(vm.Name)
	}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("faked Azure subscription serving\n  subscription:     %s\n  tenant:           %s\n  client id:        %s\n  client secret:    %s\n  resource manager: %s\n  ca file:          %s\n  vms:              %v\n  write:            %s (POST blocks into a VM's disk; docs/lab.md)\nInterrupt to stop.\n",
		info.SubscriptionID, info.TenantID, info.ClientID, info.ClientSecret, info.ResourceManager, info.CAFile, info.VMs, info.WriteURL))
	<-ctx.Done()
	return nil
}
