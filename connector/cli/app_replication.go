package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/store"
)

// Verbs on an application's replication (their entries are in app.go;
// start-replication and stop-replication are appCall).

func appConfigureReplication(fs *flag.FlagSet) appRun {
	var params api.ServerReplicationParameters
	freq := fs.Int("frequency", 12, "hours between runs, 1–24")
	seed := fs.String("seed", "", "first run time, RFC 3339 (default: when replication starts)")
	runOnce := fs.Bool("run-once", false, "replicate once, then complete")
	fs.StringVar(&params.LicenseType, "license", store.LicenseAWS, "license type of the AMIs: AWS or BYOL")
	keep := fs.Int("keep", 0, "number of recent AMIs to keep (0 keeps all)")
	encrypted := fs.Bool("encrypted", false, "encrypt the AMIs' snapshots")
	fs.StringVar(&params.KmsKeyID, "kms-key", "", "KMS key for encrypted AMIs")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		if *seed != "" {
			t, err := time.Parse(time.RFC3339, *seed)
			if err != nil {
				return fmt.Errorf("%w: --seed %q: want a time like 2026-11-25T22:00:00Z", ErrUsage, *seed)
			}
			at := api.At(t)
			params.SeedTime = &at
		}
		params.Frequency, params.NumberOfRecentAmisToKeep, params.RunOnce, params.Encrypted = freq, keep, runOnce, encrypted
		app, err := svc.GetApp(ctx, &api.GetAppInput{AppID: a.AppID})
		if err != nil {
			return err
		}
		in := &api.PutAppReplicationConfigurationInput{AppID: a.AppID}
		for _, g := range app.ServerGroups {
			sg := api.ServerGroupReplicationConfiguration{ServerGroupID: g.ServerGroupID}
			for _, s := range g.ServerList {
				p := params
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
}

func appReplicate(fs *flag.FlagSet) appRun {
	description := fs.String("description", "", "description of the runs")
	return func(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
		out, err := svc.StartOnDemandAppReplication(ctx, &api.StartOnDemandAppReplicationInput{AppID: a.AppID, Description: *description})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "started %s; follow with 'rehost app show %s'\n", strings.Join(out.RehostReplicationRunIDs, ", "), a.Name)
		return nil
	}
}
