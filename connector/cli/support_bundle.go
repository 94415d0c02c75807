package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "support bundle",
		Usage:   "[--out FILE] [--file FILE]...",
		Summary: "write a zip for a support case: configuration, recent logs and events, versions, state summary; every secret redacted",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			var out string
			var files multiFlag
			fs.StringVar(&out, "out", "", "output file (default rehost-support-TIME.zip)")
			fs.StringVar(&out, "o", "", "short for --out")
			fs.Var(&files, "file", "a file of this machine to include too, e.g. the appliance's log (repeatable; on the appliance only)")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				if len(files) > 0 {
					l, ok := svc.(*api.Local)
					if !ok {
						return fmt.Errorf("%w: --file adds files of the appliance itself: run it there, on the state directory", ErrUsage)
					}
					l.ExtraFiles = files
				}
				path, _, err := createNew(out, "rehost-support-", ".zip", func(w io.Writer) error { return svc.SupportBundle(ctx, w) })
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "wrote %s\n", path)
				return nil
			})
		},
	})
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return fmt.Sprint([]string(*m)) }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
