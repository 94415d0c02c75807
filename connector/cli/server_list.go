package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
)

type serverListOptions struct {
	stateDir string
	json     bool
}

func init() {
	Register(Command{
		Name:    "server list",
		Summary: "list the server catalog",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &serverListOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.BoolVar(&o.json, "json", false, "print JSON")
			return o.run
		},
	})
}

func (o *serverListOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	servers, err := d.Store.ListServers(ctx, store.ServerFilter{})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, servers)
	}
	printServers(env, servers)
	return nil
}
