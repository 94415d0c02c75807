package cli

import (
	"context"
	"flag"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "connector bandwidth clear",
		Usage:   "[--json]",
		Summary: "remove the bandwidth cap: runs send as fast as the link allows (SetBandwidthCap with no cap)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				out, err := svc.SetBandwidthCap(ctx, &api.SetBandwidthCapInput{})
				if err != nil {
					return err
				}
				return printBandwidth(env, out, *asJSON)
			})
		},
	})
}
