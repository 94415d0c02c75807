package cli

import (
	"context"
	"flag"
	"fmt"
)

// SettingAdminPassword is the store setting holding the admin password's
// hash (the web console sets it on first setup).
const SettingAdminPassword = "admin.password"

type adminResetPasswordOptions struct {
	stateDir string
}

func init() {
	Register(Command{
		Name:    "admin reset-password",
		Summary: "remove the admin password so the setup page asks for a new one (physical-access reset)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &adminResetPasswordOptions{}
			stateDirFlag(fs, &o.stateDir)
			return o.run
		},
	})
}

// run deletes the password hash. Whoever can run this can already read the
// state directory, so it asks no further proof; the appliance's console
// menu offers it to those at the VM's console.
func (o *adminResetPasswordOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Store.DeleteSetting(ctx, SettingAdminPassword); err != nil {
		return fmt.Errorf("reset the admin password in %s: %w", o.stateDir, err)
	}
	fmt.Fprintln(env.Stdout, "The admin password is removed: the setup page asks for a new one at the next visit.")
	return nil
}
