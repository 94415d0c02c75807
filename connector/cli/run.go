package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/store"
)

func init() {
	Register(
		Command{
			Name:    "run list",
			Usage:   "--job JOB_ID [--limit N] [--json]",
			Summary: "list a job's replication runs, newest first, with start and end times (GetReplicationRuns)",
			Flags:   runList,
		},
		Command{
			Name:    "run show",
			Usage:   "RUN_ID [--json]",
			Summary: "show a run: its state, steps, what it moved and, for disks the connector encoded, how and on what measured rates (GetReplicationRun)",
			Flags:   runShow,
		},
		Command{
			Name:    "run watch",
			Usage:   "RUN_ID | --job JOB_ID",
			Summary: "follow a run (a job's latest with --job) to its end with progress bars; exits 0 when it completes, 1 when it fails",
			Flags:   runWatch,
		},
		Command{
			Name:    "run verify",
			Usage:   "--job JOB_ID [--watch]",
			Summary: "read back every block of an incremental job's replicas and compare them with the source's checksums, in a run started now or the next (VerifyReplicationJob)",
			Flags:   runVerify,
		},
		Command{
			Name:    "run events",
			Usage:   "[--job JOB_ID] [--run RUN_ID] [--limit N] [--json]",
			Summary: "list what happened to jobs and runs, newest first",
			Flags:   runEvents,
		},
	)
}

// needJob checks the arguments of a verb on the job --job names, and none
// else.
func needJob(job *string) func([]string) error {
	return func(args []string) error {
		if len(args) > 0 || *job == "" {
			return fmt.Errorf("%w: --job is required", ErrUsage)
		}
		return nil
	}
}

func runList(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	job := fs.String("job", "", "replication job id")
	limit := fs.Int("limit", 20, "at most this many runs (1–1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(needJob(job), func(ctx context.Context, env Env, svc api.Service, args []string) error {
		out, err := svc.GetReplicationRuns(ctx, &api.GetReplicationRunsInput{ReplicationJobID: *job, MaxResults: *limit})
		if err != nil {
			return err
		}
		return listing(env, *asJSON, out.ReplicationRunList, "RUN ID\tTYPE\tSTATE\tSCHEDULED\tSTARTED\tENDED\tSTAGE\tSENT\tVERIFIED\tAMI\tMESSAGE",
			func(r api.ReplicationRun) []any {
				stage := ""
				if r.StageDetails != nil {
					stage = strings.TrimSpace(r.StageDetails.Stage + " " + r.StageDetails.StageProgress)
				}
				sent, verified := "", ""
				if rep := runEx(r).Replication; rep != nil {
					sent = bytesIEC(rep.BytesSent)
					if rep.Mode == "incremental" {
						sent = fmt.Sprintf("%s (%d blocks)", sent, rep.BlocksChanged)
					}
					verified = strings.TrimPrefix(rep.Verified, "verified: ")
				}
				return []any{r.ReplicationRunID, r.Type, r.State, r.ScheduledStartTime, runEx(r).StartedAt, r.CompletedTime, stage, sent, verified, r.AmiID, r.StatusMessage}
			})
	})
}

func runShow(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(oneArg("run id"), func(ctx context.Context, env Env, svc api.Service, args []string) error {
		out, err := svc.GetReplicationRun(ctx, &api.GetReplicationRunInput{ReplicationRunID: args[0]})
		if err != nil {
			return err
		}
		r := out.ReplicationRun
		if *asJSON {
			return printJSON(env.Stdout, r)
		}
		lines := renderRun(r)
		ex := runEx(r)
		if p := ex.Progress; p != nil {
			for _, s := range p.Steps {
				lines = append(lines, fmt.Sprintf("  %-10s %s", s.Step, s.Duration.Round(time.Millisecond)))
			}
		}
		for _, l := range proofLines(ex.Replication) {
			lines = append(lines, "  "+l)
		}
		lines = append(lines, encodingLines(ex.Replication)...)
		if r.AmiID != "" {
			lines = append(lines, "  AMI "+r.AmiID)
		}
		if r.StatusMessage != "" {
			lines = append(lines, "  "+r.StatusMessage)
		}
		fmt.Fprintln(env.Stdout, strings.Join(lines, "\n"))
		return nil
	})
}

// encodingLines say how each disk the connector encoded was, and why.
func encodingLines(rep *api.RunReplication) []string {
	if rep == nil {
		return nil
	}
	var out []string
	for _, e := range rep.Encodings {
		out = append(out, fmt.Sprintf("  disk %d encoding: %s", e.Disk+1, e.Summary))
	}
	return out
}

func runWatch(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	job := fs.String("job", "", "follow the latest run of this job")
	w := addWatchFlags(fs)
	return c.with(func(args []string) error {
		if len(args) > 1 || (len(args) == 1) == (*job != "") {
			return fmt.Errorf("%w: give a run id or --job", ErrUsage)
		}
		return nil
	}, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		id := ""
		if len(args) == 1 {
			id = args[0]
		} else {
			out, err := svc.GetReplicationRuns(ctx, &api.GetReplicationRunsInput{ReplicationJobID: *job, MaxResults: 1})
			if err != nil {
				return err
			}
			if len(out.ReplicationRunList) == 0 {
				return fmt.Errorf("job %s has no runs yet: start one with 'rehost job start %s'", *job, *job)
			}
			id = out.ReplicationRunList[0].ReplicationRunID
		}
		return w.run(ctx, env, svc, id)
	})
}

func runVerify(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	job := fs.String("job", "", "replication job id")
	w := addWatchFlags(fs)
	return c.with(needJob(job), func(ctx context.Context, env Env, svc api.Service, args []string) error {
		out, err := svc.VerifyReplicationJob(ctx, &api.VerifyReplicationJobInput{ReplicationJobID: *job})
		if err != nil {
			return err
		}
		fmt.Fprintln(env.Stdout, out.Message)
		if w.watch && out.ReplicationRunID != "" {
			return w.run(ctx, env, svc, out.ReplicationRunID)
		}
		return nil
	})
}

func runEvents(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	var in api.GetEventsInput
	fs.StringVar(&in.ReplicationJobID, "job", "", "only this job's events")
	fs.StringVar(&in.ReplicationRunID, "run", "", "only this run's events")
	fs.IntVar(&in.MaxResults, "limit", 50, "at most this many (1–1000)")
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		out, err := svc.GetEvents(ctx, &in)
		if err != nil {
			return err
		}
		return listing(env, *asJSON, out.Events, "TIME\tLEVEL\tJOB\tRUN\tMESSAGE", func(e api.Event) []any {
			return []any{e.Time, e.Level, e.ReplicationJobID, e.ReplicationRunID, e.Message}
		})
	})
}

// proofLines say what a run moved and how its replicas were verified.
func proofLines(rep *api.RunReplication) []string {
	if rep == nil {
		return nil
	}
	if rep.Mode != "incremental" {
		if rep.FullBecause != "" {
			return []string{"copied whole (full mode): " + rep.FullBecause}
		}
		return nil
	}
	out := []string{fmt.Sprintf("read %s, sent %s: %d blocks changed", bytesIEC(rep.BytesRead), bytesIEC(rep.BytesSent), rep.BlocksChanged)}
	for _, d := range rep.Disks {
		if d.Resync != "" {
			out = append(out, fmt.Sprintf("disk %d read whole: %s", d.Disk+1, d.Resync))
		}
	}
	if rep.Verified != "" {
		out = append(out, rep.Verified)
	}
	return out
}

func runEx(r api.ReplicationRun) api.ReplicationRunEx {
	if r.Rehost == nil {
		return api.ReplicationRunEx{}
	}
	return *r.Rehost
}

// watchFlags are run watch's (and job start --watch's).
type watchFlags struct {
	watch    bool
	interval time.Duration
}

func addWatchFlags(fs *flag.FlagSet) *watchFlags {
	w := &watchFlags{}
	if fs.Name() != "rehost run watch" {
		fs.BoolVar(&w.watch, "watch", false, "follow the run to its end (as 'rehost run watch')")
	}
	fs.DurationVar(&w.interval, "interval", time.Second, "how often to look at the run")
	return w
}

// errRunFailed is what run watch returns for a run that did not complete.
var errRunFailed = errors.New("run did not complete")

// run follows a run until it ends: a bar per disk while it stages (or the
// stage's own words where the connector records no numbers), the step it is
// in, and at the end the AMI or why it failed.
func (w *watchFlags) run(ctx context.Context, env Env, svc api.Service, id string) error {
	tty := false
	if f, ok := env.Stdout.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	var last []string
	for {
		out, err := svc.GetReplicationRun(ctx, &api.GetReplicationRunInput{ReplicationRunID: id})
		if err != nil {
			return err
		}
		r := out.ReplicationRun
		lines := renderRun(r)
		if strings.Join(lines, "\n") != strings.Join(last, "\n") {
			if tty && last != nil {
				fmt.Fprintf(env.Stdout, "\033[%dA\033[J", len(last)) // redraw in place
			}
			fmt.Fprintln(env.Stdout, strings.Join(lines, "\n"))
			last = lines
		}
		switch store.RunState(r.State) {
		case store.RunCompleted:
			for _, l := range proofLines(runEx(r).Replication) {
				fmt.Fprintln(env.Stdout, l)
			}
			for _, l := range encodingLines(runEx(r).Replication) {
				fmt.Fprintln(env.Stdout, strings.TrimSpace(l))
			}
			fmt.Fprintf(env.Stdout, "run %s COMPLETED: AMI %s\n", r.ReplicationRunID, r.AmiID)
			return nil
		case store.RunFailed, store.RunMissed, store.RunDeleted:
			return fmt.Errorf("%w: run %s %s: %s", errRunFailed, r.ReplicationRunID, r.State, r.StatusMessage)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.interval):
		}
	}
}

// barWidth is the width of a progress bar in characters.
const barWidth = 30

func renderRun(r api.ReplicationRun) []string {
	ex := runEx(r)
	head := fmt.Sprintf("run %s of job %s: %s", r.ReplicationRunID, ex.ReplicationJobID, r.State)
	if r.State == string(store.RunPending) {
		return []string{head + " (waiting for a run slot)"}
	}
	p := ex.Progress
	if p == nil {
		if r.StageDetails != nil && r.State == string(store.RunActive) {
			return []string{head, "  " + strings.TrimSpace(r.StageDetails.Stage+": "+r.StageDetails.StageProgress)}
		}
		return []string{head}
	}
	step := "starting"
	if p.Step != "" {
		step = cmp.Or(p.Title, p.Step)
	}
	lines := []string{fmt.Sprintf("%s, %d%%, step: %s", head, p.Percent, step)}
	for _, d := range p.Disks {
		lines = append(lines, diskLine(d))
	}
	if w := p.SlotWait; w != nil {
		lines = append(lines, "  "+w.String())
	} else if p.Text != "" {
		lines = append(lines, "  "+cmp.Or(p.Title, p.Step)+": "+p.Text)
	}
	return lines
}

func diskLine(d daemon.DiskProgress) string {
	label := fmt.Sprintf("  disk %d ", d.Disk+1)
	switch {
	case d.Staged:
		return label + bar(1) + fmt.Sprintf(" staged, %s", bytesIEC(d.Sent))
	case d.Sent > 0 && cmp.Or(d.Total, d.Capacity) > 0:
		total := cmp.Or(d.Total, d.Capacity)
		f := min(float64(d.Sent)/float64(total), 1)
		return label + bar(f) + fmt.Sprintf(" %3.0f%% %s of %s", 100*f, bytesIEC(d.Sent), bytesIEC(total))
	case d.Capacity > 0:
		return label + fmt.Sprintf("%s (%s)", strings.Repeat(" ", barWidth+2), bytesIEC(d.Capacity))
	}
	return label
}

func bar(f float64) string {
	n := int(f * barWidth)
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", barWidth-n) + "]"
}
