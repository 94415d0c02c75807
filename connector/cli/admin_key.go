package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/daemon"
)

// The access keys are managed on the appliance itself, against its state
// directory: no API call can mint a key.
func init() {
	Register(Command{
		Name:    "admin key create",
		Usage:   "[--name NAME] [--read-only] [--json]",
		Summary: "issue an API access key (SigV4); its secret is shown this once",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var dir string
			stateDirFlag(fs, &dir)
			name := fs.String("name", "", "what the key is for")
			ro := fs.Bool("read-only", false, "the key may only read (listings, status, metrics)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env Env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				d, err := openState(ctx, dir, true)
				if err != nil {
					return err
				}
				defer d.Close()
				k, err := d.CreateAccessKey(ctx, *name, *ro)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env.Stdout, k)
				}
				fmt.Fprintf(env.Stdout, "access key id:     %s\nsecret access key: %s\n\nThe secret is shown only now: keep it safe. Use it with\n  rehost login --endpoint https://<appliance> --access-key-id %s\nor as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY with any SMS client.\n", k.ID, k.Secret, k.ID)
				return nil
			}
		},
	})
	Register(Command{
		Name:    "admin key list",
		Usage:   "[--json]",
		Summary: "list the API access keys (never their secrets)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var dir string
			stateDirFlag(fs, &dir)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, env Env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				d, err := openState(ctx, dir, false)
				if err != nil {
					return err
				}
				defer d.Close()
				keys, err := d.AccessKeys(ctx)
				if err != nil {
					return err
				}
				return listing(env, *asJSON, keys, "ACCESS KEY ID\tNAME\tACCESS\tCREATED\tREVOKED", func(k daemon.AccessKey) []any {
					access := "read-write"
					if k.ReadOnly {
						access = "read-only"
					}
					return []any{k.ID, k.Name, access, k.CreatedAt, k.RevokedAt}
				})
			}
		},
	})
	Register(Command{
		Name:    "admin key revoke",
		Usage:   "ACCESS_KEY_ID",
		Summary: "revoke an API access key: refused from its next request on",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var dir string
			stateDirFlag(fs, &dir)
			return func(ctx context.Context, env Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one access key id", ErrUsage)
				}
				d, err := openState(ctx, dir, false)
				if err != nil {
					return err
				}
				defer d.Close()
				k, err := d.RevokeAccessKey(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "revoked access key %s (%s)\n", k.ID, k.Name)
				return nil
			}
		},
	})
}
