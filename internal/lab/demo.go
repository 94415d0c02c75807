package lab

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/connector/demo"
)

type demoOptions struct {
	dir            string
	json           bool
	exit           bool
	verbose        bool
	importDuration time.Duration
	timeout        time.Duration
}

func demoFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &demoOptions{}
	fs.StringVar(&o.dir, "dir", "", "directory for the peers' data and the connector's state (default: a new temporary directory)")
	fs.BoolVar(&o.json, "json", false, "print a machine-readable summary")
	fs.BoolVar(&o.exit, "exit", false, "exit when the runs are verified instead of serving until Ctrl-C")
	fs.BoolVar(&o.verbose, "v", false, "log the connector's structured logs to stderr")
	fs.DurationVar(&o.importDuration, "import-duration", 3*time.Second, "the emulator's simulated import time (booting the converted guest), on top of its real work")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up waiting for the runs after this long")
	return o.run
}
func (o *demoOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	dir := o.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "rehost-demo-")
		if err != nil {
			return err
		}
		dir = d
		// The peers die with the demo, so their data is of no further use.
		defer os.RemoveAll(d)
	} else if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	log := slog.New(slog.DiscardHandler)
	if o.verbose {
		log = slog.New(slog.NewTextHandler(env.Stderr, nil))
	}
	progress := env.Stdout
	if o.json {
		progress = env.Stderr
	}
	sum, denv, err := demo.Run(ctx, demo.Options{Dir: dir, Out: progress, Log: log, Timeout: o.timeout,
		Peers: demo.PeerOptions{ImportDuration: o.importDuration}})
	if err != nil {
		return err
	}
	defer denv.Close()
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		demo.PrintSummary(env.Stdout, sum)
	}
	if !o.exit {
		printServing(progress, sum, denv)
		<-ctx.Done()
		fmt.Fprintln(progress, "\nstopping …")
	}
	if !sum.OK {
		return demo.ErrFailed
	}
	return nil
}

func printServing(w io.Writer, s demo.Summary, e *demo.Env) {
	fmt.Fprintf(w, `
the connector keeps serving (jobs run every 12 h); look around while it does:
  state directory   %s   (try: rehost job list --state-dir %s)
  simulated vCenter %s   user %s
  S3 (versitygw)    %s   bucket %s
  AWS emulator      %s   (state: %s/_emulator/state)
press Ctrl-C to stop.
`, s.StateDir, s.StateDir, s.VCenter, e.Peers.Sim.User(), s.S3, s.Bucket, s.AWS, s.AWS)
}
