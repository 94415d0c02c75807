package cli

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/bandwidth"
)

func init() {
	Register(Command{
		Name:    "connector bandwidth show",
		Usage:   "[--json]",
		Summary: "show the bandwidth cap every run shares, its windows, the rate in force now and the live throughput (GetBandwidthCap)",
		Flags: reader[*api.BandwidthCap]{
			get: func(ctx context.Context, svc api.Service, _ []string) (*api.BandwidthCap, error) {
				return svc.GetBandwidthCap(ctx, &api.GetBandwidthCapInput{})
			},
			text: printBandwidthText,
		}.flags,
	})
}

// printBandwidth prints a cap as JSON when asJSON, else in words.
func printBandwidth(env Env, b *api.BandwidthCap, asJSON bool) error {
	return show(env, asJSON, b, func() { printBandwidthText(env, b) })
}

func printBandwidthText(env Env, b *api.BandwidthCap) {
	w := env.Stdout
	zone := b.Zone
	if zone == "" {
		zone = "the connector's local zone"
	}
	fmt.Fprintf(w, "default:    %s\n", b.Default)
	if len(b.Windows) > 0 {
		fmt.Fprintf(w, "windows:    in %s\n", zone)
		for i, win := range b.Windows {
			fmt.Fprintf(w, "  %d. %s %s-%s at %s\n", i+1, win.Days, win.Start, win.End, win.Rate)
		}
	}
	now := "the default"
	if b.Window > 0 {
		now = fmt.Sprintf("window %d", b.Window)
	}
	fmt.Fprintf(w, "in force:   %s (%s)", b.Rate, now)
	if !b.Until.IsZero() {
		fmt.Fprintf(w, " until %s", b.Until.Local().Format("Mon 2006-01-02 15:04 MST"))
	}
	fmt.Fprintln(w)
	if tp := b.ThroughputBytesPerSecond; tp != nil {
		fmt.Fprintf(w, "throughput: %s over the last 5 s\n", throughput(*tp))
	} else {
		fmt.Fprintln(w, "throughput: measured by the serving daemon: ask it through the API (--endpoint, or after 'rehost login')")
	}
}

// throughput writes bytes per second in bits per second, as rates are.
func throughput(bytesPerSecond float64) string {
	if bytesPerSecond < 1 {
		return "0 bit/s"
	}
	return bandwidth.Rate(bytesPerSecond).String()
}
