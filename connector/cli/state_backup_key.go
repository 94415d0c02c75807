package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "state backup-key",
		Usage:   "[--json]",
		Summary: "show the recovery code of the key state backups are sealed with: a restore asks for it",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				k, err := svc.GetBackupKey(ctx, &api.GetBackupKeyInput{})
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env.Stdout, k)
				}
				fmt.Fprintln(env.Stdout, k.RecoveryCode)
				fmt.Fprintln(env.Stderr, "Record this code where the appliance's disk is not (a password manager, a safe): every backup of this connector\n"+
					"opens with it and with nothing else, and 'rehost state restore' on a new appliance asks for it.")
				return nil
			})
		},
	})
}
