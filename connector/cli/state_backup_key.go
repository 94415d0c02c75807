package cli

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "state backup-key",
		Usage:   "[--json]",
		Summary: "show the recovery code of the key state backups are sealed with: a restore asks for it",
		Flags: reader[*api.GetBackupKeyOutput]{
			get: func(ctx context.Context, svc api.Service, _ []string) (*api.GetBackupKeyOutput, error) {
				return svc.GetBackupKey(ctx, &api.GetBackupKeyInput{})
			},
			text: func(env Env, k *api.GetBackupKeyOutput) {
				fmt.Fprintln(env.Stdout, k.RecoveryCode)
				fmt.Fprintln(env.Stderr, "Record this code where the appliance's disk is not (a password manager, a safe): every backup of this connector\n"+
					"opens with it and with nothing else, and 'rehost state restore' on a new appliance asks for it.")
			},
		}.flags,
	})
}
