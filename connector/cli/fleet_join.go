package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/scheduler"
)

type fleetJoinOptions struct {
	conn              *connFlags
	from              string
	store             string
	storeCAFile       string
	storePasswordFile string
}

func init() {
	Register(Command{
		Name:  "fleet join",
		Usage: "--from https://MEMBER[:PORT] [--state-dir DIR] [--store-password-file FILE] [--store URL] [--store-ca-file FILE]",
		Summary: "prepare this connector's state directory to join a fleet: get the fleet's secret key from a member " +
			"(sealed for this connector only) and where the fleet's PostgreSQL store is; then 'rehost serve' joins",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &fleetJoinOptions{conn: addConnFlags(fs)}
			fs.StringVar(&o.from, "from", "", "a member of the fleet, https://HOST[:PORT] (its API; the access key as for any verb)")
			fs.StringVar(&o.store, "store", "", "the fleet's store, postgres://USER@HOST[:PORT]/DB (default: the member's)")
			fs.StringVar(&o.storeCAFile, "store-ca-file", "", "PEM file of the store's CA (default: the member's, saved in the state directory)")
			fs.StringVar(&o.storePasswordFile, "store-password-file", "", "file holding the store's password (else REHOST_STORE_PASSWORD when serving)")
			return o.run
		},
	})
}

func (o *fleetJoinOptions) run(ctx context.Context, env Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.from == "" {
		return fmt.Errorf("%w: --from is required: the API of a member of the fleet", ErrUsage)
	}
	dir := o.conn.stateDir
	if _, err := os.Stat(filepath.Join(dir, "rehost.db")); err == nil {
		return fmt.Errorf("fleet join: %s holds a connector's own state (rehost.db): move it into the fleet's store with 'rehost store migrate', or join from an empty state directory", dir)
	}
	login, _ := readLogin()
	svc, err := o.conn.client(ctx, o.from, login)
	if err != nil {
		return err
	}
	req, err := secret.NewShareRequest()
	if err != nil {
		return err
	}
	out, err := svc.ShareFleetKey(ctx, &api.ShareFleetKeyInput{PublicKey: req.Public()})
	if err != nil {
		return fmt.Errorf("fleet join: get the fleet's key from %s: %w", o.from, err)
	}
	key, err := req.Open(out.PublicKey, out.SealedKey)
	if err != nil {
		return fmt.Errorf("fleet join: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fleet join: %w", err)
	}
	if err := secret.Install(filepath.Join(dir, "master.key"), key); err != nil {
		return err
	}
	sc := daemon.StoreConfig{URL: cmp.Or(o.store, out.Store), CAFile: o.storeCAFile, PasswordFile: o.storePasswordFile}
	if sc.CAFile == "" && len(out.StoreCAPEM) > 0 {
		sc.CAFile = filepath.Join(dir, "store-ca.pem")
		if err := os.WriteFile(sc.CAFile, out.StoreCAPEM, 0o600); err != nil {
			return fmt.Errorf("fleet join: save the store's CA: %w", err)
		}
	}
	if sc.PasswordFile != "" {
		if sc.PasswordFile, err = filepath.Abs(sc.PasswordFile); err != nil {
			return err
		}
	}
	if err := daemon.WriteStoreConfig(dir, sc); err != nil {
		return fmt.Errorf("fleet join: %w", err)
	}
	// Check it all: the store answers and the key opens the fleet's
	// secrets.
	d, err := daemon.OpenExisting(ctx, dir, daemon.Options{Scheduler: scheduler.Options{Passive: true}})
	if err != nil {
		return fmt.Errorf("fleet join: the state directory is ready, but: %w", err)
	}
	d.Close()
	fmt.Fprintf(env.Stdout, "%s is ready to join the fleet on %s: start it with 'rehost serve --state-dir %s'\n", dir, sc.Where(dir), dir)
	return nil
}
