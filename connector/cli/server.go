package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(
		Command{
			Name:    "server import",
			Usage:   "[--source NAME] [--json]",
			Summary: "import the server catalog (the VMs) of a source, or of every source (ImportServerCatalog)",
			Flags:   serverImport,
		},
		Command{
			Name:    "server list",
			Usage:   "[--source NAME] [--json]",
			Summary: "list the server catalog (GetServers)",
			Flags:   serverList,
		},
	)
}

func serverImport(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	src := fs.String("source", "", "source name or id (default: every source)")
	asJSON := fs.Bool("json", false, "print the servers as JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		out, err := svc.ImportServerCatalog(ctx, &api.ImportServerCatalogInput{RehostSource: *src})
		if err != nil {
			return err
		}
		return printServers(env, *asJSON, out.RehostServers)
	})
}

func serverList(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	src := fs.String("source", "", "only this source's servers (name or id)")
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		servers, err := allServers(ctx, svc)
		if err != nil {
			return err
		}
		if *src != "" {
			var keep []api.Server
			for _, s := range servers {
				if s.VmServer.VmManagerName == *src || s.VmServer.VmServerAddress.VmManagerID == *src {
					keep = append(keep, s)
				}
			}
			servers = keep
		}
		return printServers(env, *asJSON, servers)
	})
}

func printServers(env Env, asJSON bool, servers []api.Server) error {
	return listing(env, asJSON, servers, "SERVER ID\tNAME\tSOURCE\tGUEST OS\tFIRMWARE\tCPUS\tMEMORY\tDISKS\tPREFLIGHT\tJOB",
		func(s api.Server) []any {
			vm, d := vmOf(s), detailsOf(s)
			job := s.ReplicationJobID
			if s.ReplicationJobTerminated {
				job += " (ended)"
			}
			return []any{s.ServerID, vm.VmName, vm.VmManagerName, d.GuestOS, d.Firmware, d.CPUs, fmt.Sprintf("%d MiB", d.MemoryMiB), d.DiskCount,
				preflightCell(d.Preflight), job}
		})
}

func vmOf(s api.Server) api.VmServer {
	if s.VmServer == nil {
		return api.VmServer{VmServerAddress: &api.VmServerAddress{}}
	}
	if s.VmServer.VmServerAddress == nil {
		s.VmServer.VmServerAddress = &api.VmServerAddress{}
	}
	return *s.VmServer
}

func detailsOf(s api.Server) api.ServerDetails {
	if s.Rehost == nil {
		return api.ServerDetails{}
	}
	return *s.Rehost
}

// allServers pages through the whole catalog.
func allServers(ctx context.Context, svc api.Service) ([]api.Server, error) {
	var all []api.Server
	in := &api.GetServersInput{MaxResults: 1000}
	for {
		out, err := svc.GetServers(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, out.ServerList...)
		if out.NextToken == "" {
			return all, nil
		}
		in.NextToken = out.NextToken
	}
}

// resolveServer finds a server by id or VM name; a name several servers
// bear is refused with the candidates and their sources.
func resolveServer(ctx context.Context, svc api.Service, ref string) (api.Server, error) {
	servers, err := allServers(ctx, svc)
	if err != nil {
		return api.Server{}, err
	}
	var found []api.Server
	for _, s := range servers {
		if s.ServerID == ref || vmOf(s).VmName == ref {
			found = append(found, s)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return api.Server{}, fmt.Errorf("no server %q in the catalog: run 'rehost server import' and 'rehost server list'", ref)
	}
	var b strings.Builder
	for _, s := range found {
		vm := vmOf(s)
		fmt.Fprintf(&b, "\n  %s  %s  source %s  %s", s.ServerID, vm.VmName, vm.VmManagerName, vm.VmPath)
	}
	return api.Server{}, fmt.Errorf("%d servers are named %q; give the server id of one:%s", len(found), ref, b.String())
}
