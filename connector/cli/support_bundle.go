package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "support bundle",
		Usage:   "[-o FILE]",
		Summary: "write a zip for a support case: configuration, recent logs and events, versions, state summary; every secret redacted",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			out := fs.String("o", "", "output file (default rehost-support-TIME.zip)")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				path := *out
				if path == "" {
					path = "rehost-support-" + time.Now().UTC().Format("20060102T150405Z") + ".zip"
				}
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				if err := svc.SupportBundle(ctx, f); err != nil {
					f.Close()
					os.Remove(path)
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "wrote %s\n", path)
				return nil
			})
		},
	})
}
