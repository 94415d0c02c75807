package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/scheduler"
)

// serveConfig is the daemon's configuration file (JSON). Flags override
// environment variables, which override the file.
type serveConfig struct {
	StateDir             string `json:"stateDir"`
	Listen               string `json:"listen"`
	MaxConcurrentRuns    int    `json:"maxConcurrentRuns"`
	ImportLimitPerRegion int    `json:"importLimitPerRegion"`
	OnDemandPer24h       int    `json:"onDemandRunsPer24h"`
	PauseAfterFailures   int    `json:"pauseAfterFailures"`
	ResyncInterval       string `json:"resyncInterval"`
	LogLevel             string `json:"logLevel"`
	LogFormat            string `json:"logFormat"`
}

type serveOptions struct {
	configFile string
	flags      serveConfig
	fs         *flag.FlagSet
}

func init() {
	Register(Command{
		Name:    "serve",
		Usage:   "[--config FILE] [--state-dir DIR]",
		Summary: "run the connector daemon: schedule and run replication jobs, resume after restarts",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &serveOptions{fs: fs}
			fs.StringVar(&o.configFile, "config", os.Getenv("REHOST_CONFIG"), "JSON configuration file (env REHOST_CONFIG)")
			fs.StringVar(&o.flags.StateDir, "state-dir", "", "state directory (env REHOST_STATE_DIR; default "+defaultStateDir+")")
			fs.StringVar(&o.flags.Listen, "listen", "", "HTTPS address of the API and console (env REHOST_LISTEN; default "+defaultListen+")")
			fs.IntVar(&o.flags.MaxConcurrentRuns, "max-concurrent-runs", 0, "runs at once across all jobs (default 2)")
			fs.IntVar(&o.flags.ImportLimitPerRegion, "import-limit", 0, "concurrent VM Import tasks per region (default 5)")
			fs.IntVar(&o.flags.OnDemandPer24h, "on-demand-per-24h", 0, "on-demand runs per job per 24 h (default 2; -1 unlimited)")
			fs.IntVar(&o.flags.PauseAfterFailures, "pause-after-failures", 0, "consecutive failures that pause a job (default 3)")
			fs.StringVar(&o.flags.ResyncInterval, "resync", "", "how often to pick up jobs changed by other processes (default 30s)")
			fs.StringVar(&o.flags.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
			fs.StringVar(&o.flags.LogFormat, "log-format", "", "text or json (default json)")
			return o.run
		},
	})
}

func (o *serveOptions) config() (serveConfig, error) {
	c := serveConfig{StateDir: defaultStateDir, Listen: defaultListen, ResyncInterval: "30s", LogLevel: "info", LogFormat: "json"}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return c, fmt.Errorf("read configuration: %w", err)
		}
		if err := json.Unmarshal(b, &c); err != nil {
			return c, fmt.Errorf("read configuration %s: %w", o.configFile, err)
		}
	}
	envStr := func(name string, p *string) {
		if v := os.Getenv(name); v != "" {
			*p = v
		}
	}
	envInt := func(name string, p *int) error {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s=%q: not a number", name, v)
			}
			*p = n
		}
		return nil
	}
	envStr("REHOST_STATE_DIR", &c.StateDir)
	envStr("REHOST_LISTEN", &c.Listen)
	envStr("REHOST_LOG_LEVEL", &c.LogLevel)
	envStr("REHOST_LOG_FORMAT", &c.LogFormat)
	envStr("REHOST_RESYNC_INTERVAL", &c.ResyncInterval)
	for name, p := range map[string]*int{
		"REHOST_MAX_CONCURRENT_RUNS": &c.MaxConcurrentRuns, "REHOST_IMPORT_LIMIT": &c.ImportLimitPerRegion,
		"REHOST_ON_DEMAND_PER_24H": &c.OnDemandPer24h, "REHOST_PAUSE_AFTER_FAILURES": &c.PauseAfterFailures,
	} {
		if err := envInt(name, p); err != nil {
			return c, err
		}
	}
	o.fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "state-dir":
			c.StateDir = o.flags.StateDir
		case "listen":
			c.Listen = o.flags.Listen
		case "max-concurrent-runs":
			c.MaxConcurrentRuns = o.flags.MaxConcurrentRuns
		case "import-limit":
			c.ImportLimitPerRegion = o.flags.ImportLimitPerRegion
		case "on-demand-per-24h":
			c.OnDemandPer24h = o.flags.OnDemandPer24h
		case "pause-after-failures":
			c.PauseAfterFailures = o.flags.PauseAfterFailures
		case "resync":
			c.ResyncInterval = o.flags.ResyncInterval
		case "log-level":
			c.LogLevel = o.flags.LogLevel
		case "log-format":
			c.LogFormat = o.flags.LogFormat
		}
	})
	return c, nil
}

func (o *serveOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	c, err := o.config()
	if err != nil {
		return err
	}
	resync, err := time.ParseDuration(c.ResyncInterval)
	if err != nil {
		return fmt.Errorf("resync interval %q: %w", c.ResyncInterval, err)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", c.LogLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var log *slog.Logger
	switch c.LogFormat {
	case "json":
		log = slog.New(slog.NewJSONHandler(env.Stderr, hopts))
	case "text":
		log = slog.New(slog.NewTextHandler(env.Stderr, hopts))
	default:
		return fmt.Errorf("log format %q: want text or json", c.LogFormat)
	}
	d, err := daemon.Open(ctx, c.StateDir, daemon.Options{Log: log, Scheduler: scheduler.Options{
		MaxConcurrent: c.MaxConcurrentRuns, ImportLimitPerRegion: c.ImportLimitPerRegion,
		OnDemandPer24h: c.OnDemandPer24h, PauseAfterFailures: c.PauseAfterFailures,
		ResyncInterval: resync, Logger: log,
	}})
	if err != nil {
		return err
	}
	defer d.Close()
	cert, err := api.LoadOrCreateCertificate(c.StateDir)
	if err != nil {
		return err
	}
	ln, err := api.Listen(c.Listen, cert)
	if err != nil {
		return err
	}
	fp := api.Fingerprint(cert.Certificate[0])
	log.Info("rehost connector serving", "version", version.String(), "stateDir", c.StateDir, "pid", os.Getpid(),
		"https", ln.Addr().String(), "certificateSHA256", fp)
	fmt.Fprintf(env.Stderr, "rehost %s: serving https://%s/ — certificate SHA-256 fingerprint %s\n", version.String(), ln.Addr(), fp)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- api.New(d, log).Serve(ctx, ln)
	}()
	err = d.Serve(ctx)
	cancel()
	if aerr := <-apiDone; aerr != nil && err == nil {
		err = fmt.Errorf("https: %w", aerr)
	}
	if err != nil {
		return err
	}
	log.Info("rehost connector stopped")
	return nil
}

// defaultListen is the appliance's HTTPS address.
const defaultListen = ":443"
