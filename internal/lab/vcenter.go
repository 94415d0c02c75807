package lab

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/vspheresim"
)

type vcenterOptions struct {
	listen       string
	dir          string
	demo         bool
	user         string
	leaseTimeout time.Duration
	json         bool
}

func vcenterFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &vcenterOptions{}
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to serve HTTPS on (its /_vcenter/state is unauthenticated: keep it on loopback)")
	fs.StringVar(&o.dir, "dir", "", "directory for disk contents and the TLS key pair (required; the key pair, and so the thumbprint, survive restarts)")
	fs.BoolVar(&o.demo, "demo", false, "create the demo VMs (web-01, app-01, db-01) with real guest disks")
	fs.StringVar(&o.user, "user", "administrator@vsphere.local", "the user name to accept")
	fs.DurationVar(&o.leaseTimeout, "lease-timeout", 5*time.Minute, "how long an NFC export lease lives without a progress call (vCenter: 5 min)")
	fs.BoolVar(&o.json, "json", false, "print the endpoint as one JSON line")
	return o.run
}

// vcenterInfo is what the verb prints once it serves. Password is printed
// only when it was generated (not read from the environment).
type vcenterInfo struct {
	URL            string   `json:"url"`
	User           string   `json:"user"`
	Password       string   `json:"password,omitempty"`
	Thumbprint     string   `json:"thumbprint"`
	ThumbprintSHA1 string   `json:"thumbprintSHA1"`
	Dir            string   `json:"dir"`
	VMs            []string `json:"vms"`
	StateURL       string   `json:"stateUrl"`
	// WriteURL takes POSTed requests to write blocks into a VM's disk
	// (internal/lab/diskwrite), with User and Password.
	WriteURL string `json:"writeUrl"`
}

func (o *vcenterOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.dir == "" {
		return fmt.Errorf("--dir is required: %w", cli.ErrUsage)
	}
	password, generated := os.Getenv(cli.EnvVCenterPassword), false
	if password == "" {
		password, generated = vspheresim.RandomPassword(), true
	}
	opts := vspheresim.Options{Dir: o.dir, Listen: o.listen, User: o.user, Password: password, LeaseTimeout: o.leaseTimeout}
	if o.demo {
		opts.VMs = vspheresim.DemoVMs()
	}
	sim, err := vspheresim.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start the simulated vCenter: %w", err)
	}
	defer sim.Close()
	info := vcenterInfo{URL: sim.URL(), User: sim.User(), Thumbprint: sim.Thumbprint(), ThumbprintSHA1: sim.ThumbprintSHA1(),
		Dir: o.dir, VMs: []string{}, StateURL: sim.StateURL(), WriteURL: sim.WriteURL()}
	if generated {
		info.Password = password
	}
	for _, vm := range opts.VMs {
		info.VMs = append(info.VMs, vm.Name)
	}
	pw := "from $" + cli.EnvVCenterPassword
	if generated {
		pw = password + "   (generated; set " + cli.EnvVCenterPassword + " to choose one)"
	}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("simulated vCenter serving\n  url:        %s\n  user:       %s\n  password:   %s\n  thumbprint: %s\n  vms:        %v\n  state:      %s (test only)\n  write:      %s (POST blocks into a VM's disk; docs/lab.md)\nInterrupt to stop.\n",
		info.URL, info.User, pw, info.Thumbprint, info.VMs, info.StateURL, info.WriteURL))
	<-ctx.Done()
	return nil
}
