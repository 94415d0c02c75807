package cli

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/store"
)

func parseTime(flagName, v string) (api.Time, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return api.Time{}, fmt.Errorf("%w: --%s %q: want a time like 2026-11-25T22:00:00Z", ErrUsage, flagName, v)
	}
	return api.At(t), nil
}

// every is a job's frequency in words: "12 h", "15 min".
func every(j api.ReplicationJob) string {
	if j.Rehost != nil && j.Rehost.FrequencyMinutes > 0 {
		return fmt.Sprintf("%d min", j.Rehost.FrequencyMinutes)
	}
	return fmt.Sprintf("%d h", j.Frequency)
}

// jobMode is a job's mode: full or incremental.
func jobMode(j api.ReplicationJob) string {
	if j.Rehost != nil && j.Rehost.Mode != "" {
		return j.Rehost.Mode
	}
	return "full"
}

func init() {
	Register(Command{
		Name:    "job create",
		Usage:   "--server NAME|ID --frequency HOURS|--minutes 15|20|30 [--mode full|incremental] [--no-conversion] [--seed RFC3339] [--run-once] [--license AWS|BYOL] [--keep N] [--accept-warnings]",
		Summary: "create a replication job for a server (CreateReplicationJob)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			var in api.CreateReplicationJobInput
			server := fs.String("server", "", "server id (s-…) or VM name from the catalog")
			freq := fs.Int("frequency", 12, "hours between runs, 1–24")
			minutes := fs.Int("minutes", 0, "minutes between runs instead of hours: 15, 20 or 30 (incremental mode)")
			fs.StringVar(&in.RehostMode, "mode", "full", "full: copy each disk whole every run (S3 and VM Import); incremental: a seed, then only the changed blocks into EBS snapshots")
			fs.BoolVar(&in.RehostNoConversion, "no-conversion", false, "incremental mode: register the AMI on the replicas as they are, without VM Import")
			seed := fs.String("seed", "", "first run time, RFC 3339 (default now)")
			fs.BoolVar(&in.RunOnce, "run-once", false, "replicate once, then complete")
			fs.StringVar(&in.LicenseType, "license", store.LicenseAWS, "license type of the AMIs: AWS or BYOL")
			fs.StringVar(&in.RoleName, "role", "", "VM Import service role (default the registration's)")
			fs.IntVar(&in.NumberOfRecentAmisToKeep, "keep", 0, "number of recent AMIs to keep (0 keeps all)")
			fs.BoolVar(&in.Encrypted, "encrypted", false, "encrypt the AMIs' snapshots")
			fs.StringVar(&in.KmsKeyID, "kms-key", "", "KMS key for encrypted AMIs (default the account's EBS key)")
			fs.StringVar(&in.Description, "description", "", "description")
			fs.BoolVar(&in.RehostAcceptWarnings, "accept-warnings", false, "create the job though the server's preflight has warnings (a blocked server is always refused)")
			asJSON := fs.Bool("json", false, "print the job as JSON")
			return func(ctx context.Context, env Env, args []string) error {
				if len(args) > 0 || *server == "" {
					return fmt.Errorf("%w: --server is required", ErrUsage)
				}
				seedAt := api.At(time.Now())
				if *seed != "" {
					var err error
					if seedAt, err = parseTime("seed", *seed); err != nil {
						return err
					}
				}
				in.SeedReplicationTime, in.Frequency = &seedAt, freq
				if *minutes != 0 {
					in.Frequency, in.RehostFrequencyMinutes = nil, *minutes
				}
				svc, done, err := c.connect(ctx, false)
				if err != nil {
					return err
				}
				defer done()
				srv, err := resolveServer(ctx, svc, *server)
				if err != nil {
					return err
				}
				in.ServerID = srv.ServerID
				out, err := svc.CreateReplicationJob(ctx, &in)
				if err != nil {
					return err
				}
				j, err := getJob(ctx, svc, out.ReplicationJobID)
				if err != nil {
					return err
				}
				if *asJSON {
					return printJSON(env.Stdout, j)
				}
				fmt.Fprintf(env.Stdout, "created %s job %s for server %s: every %s, next run at %s\n", jobMode(j), j.ReplicationJobID, *server, every(j), cell(j.NextReplicationRunStartTime))
				return nil
			}
		},
	})
	Register(Command{
		Name:    "job list",
		Usage:   "[--json]",
		Summary: "list replication jobs (GetReplicationJobs)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			asJSON := fs.Bool("json", false, "print JSON")
			return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
				var jobs []api.ReplicationJob
				in := &api.GetReplicationJobsInput{MaxResults: 1000}
				for {
					out, err := svc.GetReplicationJobs(ctx, in)
					if err != nil {
						return err
					}
					jobs = append(jobs, out.ReplicationJobList...)
					if in.NextToken = out.NextToken; in.NextToken == "" {
						break
					}
				}
				return listing(env, *asJSON, jobs, "JOB ID\tSERVER\tSOURCE\tMODE\tFREQUENCY\tSTATE\tNEXT RUN\tLATEST AMI\tMESSAGE",
					func(j api.ReplicationJob) []any {
						vm := vmOf(api.Server{VmServer: j.VmServer})
						return []any{j.ReplicationJobID, vm.VmName, vm.VmManagerName, jobMode(j), every(j), j.State,
							j.NextReplicationRunStartTime, j.LatestAmiID, j.StatusMessage}
					})
			})
		},
	})
	Register(Command{
		Name:    "job update",
		Usage:   "JOB_ID [--frequency H|--minutes 15|20|30] [--mode full|incremental] [--no-conversion=BOOL] [--next-run RFC3339] [--license AWS|BYOL] [--keep N] [--description D] [--role R] [--encrypted=BOOL] [--kms-key K]",
		Summary: "change a replication job (UpdateReplicationJob)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			freq := fs.Int("frequency", 0, "hours between runs, 1–24")
			minutes := fs.Int("minutes", 0, "minutes between runs instead of hours: 15, 20 or 30 (incremental mode)")
			mode := fs.String("mode", "", "full or incremental")
			noConv := fs.Bool("no-conversion", false, "incremental mode: register the AMI on the replicas as they are, without VM Import")
			next := fs.String("next-run", "", "the next run's time, RFC 3339; later runs follow it every frequency hours")
			license := fs.String("license", "", "license type of the AMIs: AWS or BYOL")
			keep := fs.Int("keep", 0, "number of recent AMIs to keep (0 keeps all)")
			desc := fs.String("description", "", "description")
			role := fs.String("role", "", "VM Import service role")
			enc := fs.Bool("encrypted", false, "encrypt the AMIs' snapshots")
			kms := fs.String("kms-key", "", "KMS key for encrypted AMIs")
			return func(ctx context.Context, env Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one job id", ErrUsage)
				}
				in := &api.UpdateReplicationJobInput{ReplicationJobID: args[0]}
				changed := false
				fs.Visit(func(f *flag.Flag) {
					changed = changed || f.Name != "state-dir" && f.Name != "endpoint" && f.Name != "region" &&
						f.Name != "fingerprint" && f.Name != "ca-file" && f.Name != "profile"
					switch f.Name {
					case "frequency":
						in.Frequency = freq
					case "minutes":
						in.RehostFrequencyMinutes = minutes
					case "mode":
						in.RehostMode = mode
					case "no-conversion":
						in.RehostNoConversion = noConv
					case "license":
						in.LicenseType = license
					case "keep":
						in.NumberOfRecentAmisToKeep = keep
					case "description":
						in.Description = desc
					case "role":
						in.RoleName = role
					case "encrypted":
						in.Encrypted = enc
					case "kms-key":
						in.KmsKeyID = kms
					}
				})
				if !changed {
					return fmt.Errorf("%w: nothing to change: give at least one of --frequency, --minutes, --mode, --no-conversion, --next-run, --license, --keep, --description, --role, --encrypted, --kms-key", ErrUsage)
				}
				if *next != "" {
					t, err := parseTime("next-run", *next)
					if err != nil {
						return err
					}
					in.NextReplicationRunStartTime = &t
				}
				svc, done, err := c.connect(ctx, false)
				if err != nil {
					return err
				}
				defer done()
				if _, err := svc.UpdateReplicationJob(ctx, in); err != nil {
					return err
				}
				j, err := getJob(ctx, svc, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "updated %s job %s: every %s, next run at %s\n", jobMode(j), j.ReplicationJobID, every(j), cell(j.NextReplicationRunStartTime))
				return nil
			}
		},
	})
	Register(Command{
		Name:    "job delete",
		Usage:   "[--delete-amis] JOB_ID",
		Summary: "delete a replication job and its staged artifacts (DeleteReplicationJob)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			amis := fs.Bool("delete-amis", false, "also deregister the job's AMIs and delete their snapshots")
			return c.with(oneArg("job id"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
				if _, err := svc.DeleteReplicationJob(ctx, &api.DeleteReplicationJobInput{ReplicationJobID: args[0], RehostDeleteAmis: *amis}); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "deleted job %s\n", args[0])
				return nil
			})
		},
	})
	Register(Command{
		Name:    "job start",
		Usage:   "JOB_ID [--description D] [--watch]",
		Summary: "start an on-demand run of a job now (StartOnDemandReplicationRun)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			c := addConnFlags(fs)
			desc := fs.String("description", "", "description of the run")
			w := addWatchFlags(fs)
			return c.with(oneArg("job id"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
				out, err := svc.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: args[0], Description: *desc})
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "started run %s of job %s\n", out.ReplicationRunID, args[0])
				if !w.watch {
					fmt.Fprintf(env.Stdout, "follow it with: rehost run watch %s\n", out.ReplicationRunID)
					return nil
				}
				return w.run(ctx, env, svc, out.ReplicationRunID)
			})
		},
	})
}

func getJob(ctx context.Context, svc api.Service, id string) (api.ReplicationJob, error) {
	out, err := svc.GetReplicationJobs(ctx, &api.GetReplicationJobsInput{ReplicationJobID: id})
	if err != nil {
		return api.ReplicationJob{}, err
	}
	return out.ReplicationJobList[0], nil
}
