package cli

import (
	"context"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "connector bandwidth clear",
		Usage:   "[--json]",
		Summary: "remove the bandwidth cap: runs send as fast as the link allows (SetBandwidthCap with no cap)",
		Flags: reader[*api.BandwidthCap]{
			get: func(ctx context.Context, svc api.Service, _ []string) (*api.BandwidthCap, error) {
				return svc.SetBandwidthCap(ctx, &api.SetBandwidthCapInput{})
			},
			text: printBandwidthText,
		}.flags,
	})
}
