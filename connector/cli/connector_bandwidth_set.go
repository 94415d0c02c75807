package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/bandwidth"
)

// windowsFlag collects --window, one window each.
type windowsFlag []bandwidth.WindowSpec

func (w *windowsFlag) String() string { return fmt.Sprint([]bandwidth.WindowSpec(*w)) }

func (w *windowsFlag) Set(s string) error {
	win, err := bandwidth.ParseWindow(s)
	if err != nil {
		return err
	}
	*w = append(*w, win)
	return nil
}

func init() {
	Register(Command{
		Name:    "connector bandwidth set",
		Usage:   "[--rate RATE] [--window 'DAYS HH:MM-HH:MM RATE']... [--zone ZONE] [--json]",
		Summary: "cap the bandwidth every run shares (S3 staging and EBS writes together), optionally per weekly window; in force within seconds (SetBandwidthCap)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			rate := fs.String("rate", bandwidth.Unlimited, "the rate outside every window: "+bandwidth.RateGrammar)
			var windows windowsFlag
			fs.Var(&windows, "window", "a weekly window with its own rate, repeatable: "+bandwidth.WindowGrammar)
			zone := fs.String("zone", "", "IANA time zone of the windows' times, e.g. Europe/Paris (default: the connector's local zone)")
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				out, err := svc.SetBandwidthCap(ctx, &api.SetBandwidthCapInput{Spec: bandwidth.Spec{Default: *rate, Zone: *zone, Windows: windows}})
				if err != nil {
					return err
				}
				return printBandwidth(env, out, *asJSON)
			})
		},
	})
}
