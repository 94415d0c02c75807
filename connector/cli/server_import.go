package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/rehost/rehost/pkg/store"
)

type serverImportOptions struct {
	stateDir string
	source   string
	json     bool
}

func init() {
	Register(Command{
		Name:    "server import",
		Usage:   "[--source NAME]",
		Summary: "import the server catalog (the VMs) of a source, or of every source",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &serverImportOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.source, "source", "", "source name or id (default: every source)")
			fs.BoolVar(&o.json, "json", false, "print the servers as JSON")
			return o.run
		},
	})
}

func (o *serverImportOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	sources, err := d.Store.ListSources(ctx)
	if err != nil {
		return err
	}
	var all []store.Server
	found := false
	for _, s := range sources {
		if o.source != "" && s.Name != o.source && s.ID != o.source {
			continue
		}
		found = true
		servers, err := d.ImportCatalog(ctx, s.ID)
		if err != nil {
			return fmt.Errorf("source %s: %w", s.Name, err)
		}
		all = append(all, servers...)
	}
	if !found {
		return fmt.Errorf("no source %q: add one with 'rehost source add'", o.source)
	}
	if o.json {
		return printJSON(env.Stdout, all)
	}
	printServers(env, all)
	return nil
}

func printServers(env Env, servers []store.Server) {
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER ID\tNAME\tGUEST OS\tFIRMWARE\tCPUS\tMEMORY\tDISKS")
	for _, s := range servers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d MiB\t%d\n", s.ServerID, s.Name, s.GuestOS, s.Firmware, s.CPUs, s.MemoryMiB, s.DiskCount)
	}
	tw.Flush()
}
