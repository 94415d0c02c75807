package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/web"
)

// The web console's admin password (web.SettingAdminPassword) is reset on
// the appliance itself: the console then leads to first-boot setup again.
func init() {
	Register(Command{
		Name:    "admin reset-password",
		Usage:   "",
		Summary: "forget the web console's admin password: the next visitor sets a new one (and every session ends)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var dir string
			stateDirFlag(fs, &dir)
			return func(ctx context.Context, env Env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				d, err := openState(ctx, dir, false)
				if err != nil {
					return err
				}
				defer d.Close()
				if err := d.Store.DeleteSetting(ctx, web.SettingAdminPassword); err != nil {
					return fmt.Errorf("reset the admin password: %w", err)
				}
				fmt.Fprintln(env.Stdout, "the admin password is reset: open the console and set a new one")
				return nil
			}
		},
	})
}
