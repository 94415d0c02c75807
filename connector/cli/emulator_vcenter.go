package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/pkg/vspheresim"
)

func init() {
	Register(Command{
		Name:  "emulator vcenter",
		Usage: "--dir DIR [--listen ADDR] [--demo] [--user USER] [--json]",
		Summary: "run a simulated vCenter (govmomi's simulator with snapshot export, CBT and real disk content) " +
			"until interrupted, for tests and the demo",
		Flags: emulatorVCenterFlags,
	})
}

// envVCenterPassword holds a vCenter password, so it stays off the command
// line (and out of ps and shell history).
const envVCenterPassword = "REHOST_VCENTER_PASSWORD"

type emulatorVCenterOptions struct {
	listen string
	dir    string
	demo   bool
	user   string
	json   bool
}

func emulatorVCenterFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &emulatorVCenterOptions{}
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to serve HTTPS on")
	fs.StringVar(&o.dir, "dir", "", "directory for disk contents and the TLS key pair (required; the key pair, and so the thumbprint, survive restarts)")
	fs.BoolVar(&o.demo, "demo", false, "create the demo VMs (web-01, app-01, db-01) with recognisable disk content")
	fs.StringVar(&o.user, "user", "administrator@vsphere.local", "the user name to accept")
	fs.BoolVar(&o.json, "json", false, "print the endpoint as one JSON line")
	return o.run
}

// emulatorVCenterInfo is what the command prints once it serves. Password
// is printed only when it was generated (not read from the environment).
type emulatorVCenterInfo struct {
	URL            string   `json:"url"`
	User           string   `json:"user"`
	Password       string   `json:"password,omitempty"`
	Thumbprint     string   `json:"thumbprint"`
	ThumbprintSHA1 string   `json:"thumbprintSHA1"`
	Dir            string   `json:"dir"`
	VMs            []string `json:"vms"`
}

func (o *emulatorVCenterOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q: %w", args, ErrUsage)
	}
	if o.dir == "" {
		return fmt.Errorf("--dir is required: %w", ErrUsage)
	}
	password, generated := os.Getenv(envVCenterPassword), false
	if password == "" {
		password, generated = vspheresim.RandomPassword(), true
	}
	opts := vspheresim.Options{Dir: o.dir, Listen: o.listen, User: o.user, Password: password}
	if o.demo {
		opts.VMs = vspheresim.DemoVMs()
	}
	sim, err := vspheresim.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start vcenter emulator: %w", err)
	}
	defer sim.Close()
	info := emulatorVCenterInfo{URL: sim.URL(), User: sim.User(), Thumbprint: sim.Thumbprint(), ThumbprintSHA1: sim.ThumbprintSHA1(), Dir: o.dir, VMs: []string{}}
	if generated {
		info.Password = password
	}
	for _, vm := range opts.VMs {
		info.VMs = append(info.VMs, vm.Name)
	}
	if o.json {
		b, _ := json.Marshal(info)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		fmt.Fprintf(env.Stdout, "vcenter emulator serving\n  url:        %s\n  user:       %s\n", info.URL, info.User)
		if generated {
			fmt.Fprintf(env.Stdout, "  password:   %s   (generated; set %s to choose one)\n", password, envVCenterPassword)
		} else {
			fmt.Fprintf(env.Stdout, "  password:   from $%s\n", envVCenterPassword)
		}
		fmt.Fprintf(env.Stdout, "  thumbprint: %s\n  vms:        %v\nInterrupt to stop.\n", info.Thumbprint, info.VMs)
	}
	<-ctx.Done()
	return nil
}
