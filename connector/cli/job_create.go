package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

type jobCreateOptions struct {
	stateDir string
	server   string
	seed     string
	job      store.ReplicationJob
	json     bool
}

func init() {
	Register(Command{
		Name:    "job create",
		Usage:   "--server NAME|ID --frequency HOURS [--seed RFC3339] [--run-once] [--license AWS|BYOL] [--keep N]",
		Summary: "create a replication job for a server (CreateReplicationJob)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &jobCreateOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.server, "server", "", "server id (s-…) or VM name from the catalog")
			fs.IntVar(&o.job.Frequency, "frequency", 12, "hours between runs, 1–24")
			fs.StringVar(&o.seed, "seed", "", "first run time, RFC 3339 (default now)")
			fs.BoolVar(&o.job.RunOnce, "run-once", false, "replicate once, then complete")
			fs.StringVar(&o.job.LicenseType, "license", store.LicenseAWS, "license type of the AMIs: AWS or BYOL")
			fs.StringVar(&o.job.RoleName, "role", "", "VM Import service role (default the registration's)")
			fs.IntVar(&o.job.NumberOfRecentAmisToKeep, "keep", 0, "number of recent AMIs to keep (0 keeps all)")
			fs.BoolVar(&o.job.Encrypted, "encrypted", false, "encrypt the AMIs' snapshots")
			fs.StringVar(&o.job.KmsKeyID, "kms-key", "", "KMS key for encrypted AMIs (default the account's EBS key)")
			fs.StringVar(&o.job.Description, "description", "", "description")
			fs.BoolVar(&o.json, "json", false, "print the job as JSON")
			return o.run
		},
	})
}

func (o *jobCreateOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 || o.server == "" {
		return fmt.Errorf("%w: --server is required", ErrUsage)
	}
	if err := store.ValidateFrequency(o.job.Frequency); err != nil {
		return err
	}
	o.job.SeedReplicationTime = time.Now()
	if o.seed != "" {
		t, err := time.Parse(time.RFC3339, o.seed)
		if err != nil {
			return fmt.Errorf("--seed %q: want a time like 2026-11-25T22:00:00Z: %w", o.seed, err)
		}
		o.job.SeedReplicationTime = t
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
	for _, s := range servers {
		if s.ServerID == o.server || s.Name == o.server {
			if o.job.ServerID != "" {
				return fmt.Errorf("several servers are named %q: give the server id", o.server)
			}
			o.job.ServerID = s.ServerID
		}
	}
	if o.job.ServerID == "" {
		return fmt.Errorf("no server %q in the catalog: run 'rehost server import' and 'rehost server list'", o.server)
	}
	j, err := d.CreateJob(ctx, o.job)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, j)
	}
	fmt.Fprintf(env.Stdout, "created job %s for server %s: every %d h, next run at %s\n", j.ReplicationJobID, o.server, j.Frequency, j.NextReplicationRunStartTime.Format(time.RFC3339))
	return nil
}
