package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

type jobListOptions struct {
	stateDir string
	json     bool
}

func init() {
	Register(Command{
		Name:    "job list",
		Summary: "list replication jobs (GetReplicationJobs)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &jobListOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.BoolVar(&o.json, "json", false, "print JSON")
			return o.run
		},
	})
}

func (o *jobListOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	jobs, err := d.Store.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, jobs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tSERVER\tFREQUENCY\tSTATE\tNEXT RUN\tLATEST AMI\tMESSAGE")
	for _, j := range jobs {
		next := "-"
		if !j.NextReplicationRunStartTime.IsZero() {
			next = j.NextReplicationRunStartTime.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d h\t%s\t%s\t%s\t%s\n", j.ReplicationJobID, j.ServerID, j.Frequency, j.State, next, j.LatestAmiID, j.StatusMessage)
	}
	return tw.Flush()
}
