package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "source list",
		Usage:   "[--json]",
		Summary: "list the sources (never their passwords)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				out, err := svc.ListSources(ctx, &api.ListSourcesInput{})
				if err != nil {
					return err
				}
				return listing(env, *asJSON, out.Sources, "SOURCE ID\tNAME\tKIND\tURL\tUSER\tSERVERS\tADDED", func(s api.Source) []any {
					return []any{s.SourceID, s.Name, s.Kind, s.URL, s.User, s.ServerCount, s.CreatedAt}
				})
			})
		},
	})
	Register(Command{
		Name:    "source test",
		Usage:   "NAME|ID [--json]",
		Summary: "connect to a source and log in, as a run would",
		Flags: reader[*api.TestSourceOutput]{
			args: oneArg("source name or id"),
			get: func(ctx context.Context, svc api.Service, args []string) (*api.TestSourceOutput, error) {
				return svc.TestSource(ctx, &api.SourceRef{Source: args[0]})
			},
			text: func(env Env, out *api.TestSourceOutput) {
				if out.Reachable {
					fmt.Fprintf(env.Stdout, "source %s at %s: reachable, logged in as %s in %.2f s\n", out.Source.Name, out.Source.URL, out.Source.User, out.LatencySeconds)
				}
			},
			verdict: func(out *api.TestSourceOutput) error {
				if !out.Reachable {
					return fmt.Errorf("source %s at %s: %s", out.Source.Name, out.Source.URL, out.Message)
				}
				return nil
			},
		}.flags,
	})
	Register(Command{
		Name:    "source remove",
		Usage:   "NAME|ID",
		Summary: "remove a source and its servers from the catalog (refused while replication jobs use them)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			return c.with(oneArg("source name or id"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
				if _, err := svc.RemoveSource(ctx, &api.SourceRef{Source: args[0]}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "removed source %s\n", args[0])
				return nil
			})
		},
	})
}
