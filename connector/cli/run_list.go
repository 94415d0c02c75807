package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"
)

type runListOptions struct {
	stateDir string
	job      string
	limit    int
	json     bool
}

func init() {
	Register(Command{
		Name:    "run list",
		Usage:   "--job JOB_ID [--limit N]",
		Summary: "list a job's replication runs, newest first (GetReplicationRuns)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &runListOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.job, "job", "", "replication job id")
			fs.IntVar(&o.limit, "limit", 20, "at most this many runs (0: all)")
			fs.BoolVar(&o.json, "json", false, "print JSON")
			return o.run
		},
	})
}

func (o *runListOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 || o.job == "" {
		return fmt.Errorf("%w: --job is required", ErrUsage)
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.Store.GetJob(ctx, o.job); err != nil {
		return err
	}
	runs, err := d.Store.ListRuns(ctx, o.job, o.limit)
	if err != nil {
		return err
	}
	if o.json {
		return printJSON(env.Stdout, runs)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN ID\tTYPE\tSCHEDULED\tSTATE\tSTAGE\tPROGRESS\tAMI\tMESSAGE")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ReplicationRunID, r.Type, r.ScheduledStartTime.Format(time.RFC3339), r.State, r.Stage, r.StageProgress, r.AmiID, r.StatusMessage)
	}
	return tw.Flush()
}
