package cli

import (
	"context"
	"flag"

	"github.com/rehost/rehost/connector/api"
)

// reader makes the Flags of a verb that makes one call to the connector
// (a read, or a change with no flags of its own) and prints the answer:
// with --json as JSON, else by text.
type reader[T any] struct {
	// args checks the positional arguments; nil refuses any.
	args func([]string) error
	get  func(ctx context.Context, svc api.Service, args []string) (T, error)
	text func(env Env, v T)
	// verdict, when set, turns what was read into the verb's error once it
	// is printed (an unhealthy connector, an unreachable source), JSON or not.
	verdict func(v T) error
}

func (r reader[T]) flags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	args := r.args
	if args == nil {
		args = noArgs
	}
	return c.with(args, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		v, err := r.get(ctx, svc, args)
		if err != nil {
			return err
		}
		if err := show(env, *asJSON, v, func() { r.text(env, v) }); err != nil || r.verdict == nil {
			return err
		}
		return r.verdict(v)
	})
}

// show prints v, what a verb read: as JSON when asJSON, else by text.
func show(env Env, asJSON bool, v any, text func()) error {
	if asJSON {
		return printJSON(env.Stdout, v)
	}
	text()
	return nil
}
