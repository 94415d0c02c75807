package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/store"
)

func init() {
	Register(Command{
		Name:    "app configure-replication",
		Usage:   "APP [--frequency HOURS] [--seed RFC3339] [--run-once] [--license AWS|BYOL] [--keep N] [--encrypted] [--kms-key K]",
		Summary: "set the replication of every server of an application (PutAppReplicationConfiguration)",
		Flags:   onApp[appConfigureReplicationOptions],
	})
}

type appConfigureReplicationOptions struct {
	params    api.ServerReplicationParameters
	seed      string
	freq      int
	keep      int
	runOnce   bool
	encrypted bool
}

func (o *appConfigureReplicationOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&o.freq, "frequency", 12, "hours between runs, 1–24")
	fs.StringVar(&o.seed, "seed", "", "first run time, RFC 3339 (default: when replication starts)")
	fs.BoolVar(&o.runOnce, "run-once", false, "replicate once, then complete")
	fs.StringVar(&o.params.LicenseType, "license", store.LicenseAWS, "license type of the AMIs: AWS or BYOL")
	fs.IntVar(&o.keep, "keep", 0, "number of recent AMIs to keep (0 keeps all)")
	fs.BoolVar(&o.encrypted, "encrypted", false, "encrypt the AMIs' snapshots")
	fs.StringVar(&o.params.KmsKeyID, "kms-key", "", "KMS key for encrypted AMIs")
}

func (o *appConfigureReplicationOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	if o.seed != "" {
		t, err := time.Parse(time.RFC3339, o.seed)
		if err != nil {
			return fmt.Errorf("%w: --seed %q: want a time like 2026-11-25T22:00:00Z", ErrUsage, o.seed)
		}
		seed := api.At(t)
		o.params.SeedTime = &seed
	}
	o.params.Frequency, o.params.NumberOfRecentAmisToKeep, o.params.RunOnce, o.params.Encrypted = &o.freq, &o.keep, &o.runOnce, &o.encrypted
	app, err := svc.GetApp(ctx, &api.GetAppInput{AppID: a.AppID})
	if err != nil {
		return err
	}
	in := &api.PutAppReplicationConfigurationInput{AppID: a.AppID}
	for _, g := range app.ServerGroups {
		sg := api.ServerGroupReplicationConfiguration{ServerGroupID: g.ServerGroupID}
		for _, s := range g.ServerList {
			s := s
			p := o.params
			sg.ServerReplicationConfigurations = append(sg.ServerReplicationConfigurations, api.ServerReplicationConfiguration{Server: &s, ServerReplicationParameters: &p})
		}
		in.ServerGroupReplicationConfigurations = append(in.ServerGroupReplicationConfigurations, sg)
	}
	if _, err := svc.PutAppReplicationConfiguration(ctx, in); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "replication of app %s set for %d servers: start it with 'rehost app start-replication %s'\n", a.Name, a.TotalServers, a.Name)
	return nil
}
