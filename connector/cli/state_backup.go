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
		Name:    "state backup",
		Usage:   "[--out FILE | --to-bucket] [--json]",
		Summary: "back up the connector's state (store, sealed secrets, keys, TLS) while it runs, sealed with the backup key",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			out := fs.String("out", "", "file to write (default rehost-state-TIME.rehost-backup)")
			toBucket := fs.Bool("to-bucket", false, "back up into the staging bucket (under rehost-backup/, outside the 7-day lifecycle rule) instead")
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				if *toBucket && *out != "" {
					return fmt.Errorf("%w: give --out or --to-bucket, not both", ErrUsage)
				}
				res := &api.BackupStateOutput{}
				if *toBucket {
					var err error
					if res, err = svc.BackupStateToBucket(ctx, &api.BackupStateToBucketInput{}); err != nil {
						return err
					}
				} else {
					path := *out
					if path == "" {
						path = "rehost-state-" + time.Now().UTC().Format("20060102T150405Z") + ".rehost-backup"
					}
					f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
					if err != nil {
						return err
					}
					if err := svc.BackupState(ctx, f); err != nil {
						f.Close()
						os.Remove(path)
						return err
					}
					n, _ := f.Seek(0, 1)
					if err := f.Close(); err != nil {
						return err
					}
					res.Location, res.Bytes = path, n
				}
				if *asJSON {
					return printJSON(env.Stdout, res)
				}
				fmt.Fprintf(env.Stdout, "backed up to %s (%s)\n", res.Location, bytesIEC(res.Bytes))
				fmt.Fprintln(env.Stderr, "Only the backup key opens it: 'rehost state backup-key' shows its recovery code; keep that apart from the backup.")
				return nil
			})
		},
	})
}
