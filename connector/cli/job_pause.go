package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/rehost/rehost/connector/api"
)

// job pause and job resume: the web console's buttons, over
// UpdateReplicationJob's rehostPaused member.
func init() {
	for _, v := range []struct {
		verb, summary, done string
		pause               bool
	}{
		{"pause", "stop a job's automatic runs until it is resumed ('job start' still runs it)", "paused", true},
		{"resume", "resume a paused job (also one paused after failures): its runs follow the schedule again", "resumed", false},
	} {
		Register(Command{
			Name:    "job " + v.verb,
			Usage:   "JOB_ID",
			Summary: v.summary,
			Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
				c := addConnFlags(fs)
				return c.with(oneArg("job id"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
					if _, err := svc.UpdateReplicationJob(ctx, &api.UpdateReplicationJobInput{ReplicationJobID: args[0], RehostPaused: &v.pause}); err != nil {
						return err
					}
					fmt.Fprintf(env.Stdout, "%s job %s\n", v.done, args[0])
					return nil
				})
			},
		})
	}
}
