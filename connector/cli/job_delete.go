package cli

import (
	"context"
	"flag"
	"fmt"
)

type jobDeleteOptions struct {
	stateDir   string
	deleteAMIs bool
}

func init() {
	Register(Command{
		Name:    "job delete",
		Usage:   "[--delete-amis] JOB_ID",
		Summary: "delete a replication job and its staged artifacts (DeleteReplicationJob)",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &jobDeleteOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.BoolVar(&o.deleteAMIs, "delete-amis", false, "also deregister the job's AMIs and delete their snapshots")
			return o.run
		},
	})
}

func (o *jobDeleteOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: give one job id", ErrUsage)
	}
	d, err := openState(ctx, o.stateDir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.DeleteJob(ctx, args[0], o.deleteAMIs); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "deleted job %s\n", args[0])
	return nil
}
