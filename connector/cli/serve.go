package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/connector/web"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

// serveConfig is the daemon's configuration file (JSON). Flags override
// environment variables, which override the file.
type serveConfig struct {
	StateDir             string `json:"stateDir"`
	Listen               string `json:"listen"`
	MaxConcurrentRuns    int    `json:"maxConcurrentRuns"`
	ImportLimitPerRegion int    `json:"importLimitPerRegion"`
	SnapshotImportLimit  int    `json:"snapshotImportLimitPerRegion"`
	OnDemandPer24h       int    `json:"onDemandRunsPer24h"`
	PauseAfterFailures   int    `json:"pauseAfterFailures"`
	ResyncInterval       string `json:"resyncInterval"`
	LogLevel             string `json:"logLevel"`
	LogFormat            string `json:"logFormat"`
	// StagingMemoryMiB is the MiB of part buffers all runs' S3 staging
	// share (0: awstarget.DefaultBufferPool).
	StagingMemoryMiB int `json:"stagingMemoryMiB,omitempty"`
	// ApplianceStatus is the appliance's report of itself (system
	// partition, Secure Boot, last upgrade), which its init writes; the
	// status and the console show it.
	ApplianceStatus string `json:"applianceStatus,omitempty"`
	// Store is a PostgreSQL store shared by a fleet (default: the state
	// directory's own, as store.json says, else its SQLite database).
	Store             string `json:"store,omitempty"`
	StoreCAFile       string `json:"storeCaFile,omitempty"`
	StorePasswordFile string `json:"storePasswordFile,omitempty"`
	// ConnectorID names this member of the fleet; LeaseTTL is how long its
	// runs' leases live unrenewed.
	ConnectorID string `json:"connectorId,omitempty"`
	LeaseTTL    string `json:"leaseTtl,omitempty"`
}

// minStagingMemoryMiB is the smallest staging pool accepted: four parts of
// the default size, so two runs' parts can be in flight while a third is
// being filled.
const minStagingMemoryMiB = 64

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
			fs.IntVar(&o.flags.ImportLimitPerRegion, "import-limit", 0, "concurrent ImportImage tasks per region (default 20, AWS's default quota)")
			fs.IntVar(&o.flags.SnapshotImportLimit, "snapshot-import-limit", 0, "concurrent ImportSnapshot tasks per region, one per disk imported as a snapshot (default 20, AWS's default quota)")
			fs.IntVar(&o.flags.StagingMemoryMiB, "staging-memory", 0, "MiB of part buffers shared by every run's S3 staging (default 256)")
			fs.IntVar(&o.flags.OnDemandPer24h, "on-demand-per-24h", 0, "on-demand runs per job per 24 h (default 2; -1 unlimited)")
			fs.IntVar(&o.flags.PauseAfterFailures, "pause-after-failures", 0, "consecutive failures that pause a job (default 3)")
			fs.StringVar(&o.flags.ResyncInterval, "resync", "", "how often to pick up jobs changed by other processes (default 30s)")
			fs.StringVar(&o.flags.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
			fs.StringVar(&o.flags.LogFormat, "log-format", "", "text or json (default json)")
			fs.StringVar(&o.flags.ApplianceStatus, "appliance-status", "", "the appliance's status file, written by its init (env REHOST_APPLIANCE_STATUS)")
			fs.StringVar(&o.flags.Store, "store", "", "PostgreSQL store shared by a fleet, postgres://USER@HOST[:PORT]/DB (env REHOST_STORE; default the state directory's)")
			fs.StringVar(&o.flags.StoreCAFile, "store-ca-file", "", "PEM file of the CA of the store's server certificate (env REHOST_STORE_CA_FILE)")
			fs.StringVar(&o.flags.StorePasswordFile, "store-password-file", "", "file holding the store's password (env REHOST_STORE_PASSWORD_FILE; or REHOST_STORE_PASSWORD)")
			fs.StringVar(&o.flags.ConnectorID, "connector-id", "", "this connector's id in the fleet (env REHOST_CONNECTOR_ID; default the state directory's own)")
			fs.StringVar(&o.flags.LeaseTTL, "lease-ttl", "", "how long a run's lease lives unrenewed; a stopped member's runs move after it (default 30s)")
			return o.run
		},
	})
}

func (o *serveOptions) config() (serveConfig, error) {
	c := serveConfig{StateDir: defaultStateDir, Listen: defaultListen, ResyncInterval: scheduler.DefaultResyncInterval.String(), LogLevel: "info", LogFormat: "json"}
	if o.configFile != "" {
		b, err := os.ReadFile(o.configFile)
		if err != nil {
			return c, fmt.Errorf("read configuration: %w", err)
		}
		if err := decodeConfig(b, &c); err != nil {
			return c, fmt.Errorf("configuration %s: %w", o.configFile, err)
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
	envStr("REHOST_APPLIANCE_STATUS", &c.ApplianceStatus)
	envStr("REHOST_STORE", &c.Store)
	envStr("REHOST_STORE_CA_FILE", &c.StoreCAFile)
	envStr("REHOST_STORE_PASSWORD_FILE", &c.StorePasswordFile)
	envStr("REHOST_CONNECTOR_ID", &c.ConnectorID)
	for name, p := range map[string]*int{
		"REHOST_MAX_CONCURRENT_RUNS": &c.MaxConcurrentRuns, "REHOST_IMPORT_LIMIT": &c.ImportLimitPerRegion,
		"REHOST_SNAPSHOT_IMPORT_LIMIT": &c.SnapshotImportLimit,
		"REHOST_ON_DEMAND_PER_24H":     &c.OnDemandPer24h, "REHOST_PAUSE_AFTER_FAILURES": &c.PauseAfterFailures,
		"REHOST_STAGING_MEMORY_MIB": &c.StagingMemoryMiB,
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
		case "snapshot-import-limit":
			c.SnapshotImportLimit = o.flags.SnapshotImportLimit
		case "staging-memory":
			c.StagingMemoryMiB = o.flags.StagingMemoryMiB
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
		case "appliance-status":
			c.ApplianceStatus = o.flags.ApplianceStatus
		case "store":
			c.Store = o.flags.Store
		case "store-ca-file":
			c.StoreCAFile = o.flags.StoreCAFile
		case "store-password-file":
			c.StorePasswordFile = o.flags.StorePasswordFile
		case "connector-id":
			c.ConnectorID = o.flags.ConnectorID
		case "lease-ttl":
			c.LeaseTTL = o.flags.LeaseTTL
		}
	})
	if c.StagingMemoryMiB != 0 && c.StagingMemoryMiB < minStagingMemoryMiB {
		return c, fmt.Errorf("stagingMemoryMiB %d: want at least %d (four 16 MiB parts), or 0 for the default", c.StagingMemoryMiB, minStagingMemoryMiB)
	}
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
	if err != nil || resync <= 0 {
		return fmt.Errorf("resyncInterval %q: want a positive duration such as 30s or 2m", c.ResyncInterval)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("logLevel %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("logFormat %q: want text or json", c.LogFormat)
	}
	storeCfg, err := c.storeConfig()
	if err != nil {
		return err
	}
	var ttl time.Duration
	if c.LeaseTTL != "" {
		if ttl, err = time.ParseDuration(c.LeaseTTL); err != nil || ttl < time.Second {
			return fmt.Errorf("leaseTtl %q: want a duration of a second or more, such as 30s", c.LeaseTTL)
		}
	}
	if err := os.MkdirAll(c.StateDir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	started := time.Now()
	cfgJSON, _ := json.Marshal(c)
	info := daemon.ServeInfo{PID: os.Getpid(), Started: started, Listen: c.Listen, Version: version.String(), Config: cfgJSON}
	lock, err := daemon.LockServe(c.StateDir, info)
	if err != nil {
		return err
	}
	defer lock.Release()
	logFile, err := daemon.OpenLogFile(c.StateDir)
	if err != nil {
		return fmt.Errorf("open the log file: %w", err)
	}
	defer logFile.Close()
	hopts := &slog.HandlerOptions{Level: level}
	logOut := io.MultiWriter(env.Stderr, logFile)
	log := slog.New(slog.NewJSONHandler(logOut, hopts))
	if c.LogFormat == "text" {
		log = slog.New(slog.NewTextHandler(logOut, hopts))
	}
	// A launch in progress is looked at as often as jobs are resynced, at
	// least every 5 s.
	d, err := openServing(ctx, env, c.StateDir, log, daemon.Options{Log: log, Store: storeCfg, WaitForStore: true,
		Fleet:         &daemon.FleetOptions{ID: c.ConnectorID, TTL: ttl},
		LaunchPoll:    min(resync, 5*time.Second),
		StagingMemory: int64(c.StagingMemoryMiB) << 20,
		Scheduler: scheduler.Options{
			MaxConcurrent: c.MaxConcurrentRuns, ImportLimitPerRegion: c.ImportLimitPerRegion, SnapshotImportLimitPerRegion: c.SnapshotImportLimit,
			OnDemandPer24h: c.OnDemandPer24h, PauseAfterFailures: c.PauseAfterFailures,
			ResyncInterval: resync, Logger: log,
		}})
	if err != nil || d == nil {
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
	info.Listen = ln.Addr().String()
	if err := lock.Update(info); err != nil {
		log.Warn("record the listening address in the lock file", "err", err)
	}
	fp := api.Fingerprint(cert.Certificate[0])
	log.Info("rehost connector serving", "version", version.String(), "stateDir", c.StateDir, "pid", os.Getpid(),
		"https", ln.Addr().String(), "certificateSHA256", fp)
	fmt.Fprintf(env.Stderr, "rehost %s: serving https://%s/ — certificate SHA-256 fingerprint %s\n", version.String(), ln.Addr(), fp)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.ResyncOnSignal(ctx)
	metrics := api.NewMetrics(d, log)
	go metrics.Watch(ctx, time.Second)
	svc := &api.Local{D: d, Started: started, Config: cfgJSON, ApplianceStatus: c.ApplianceStatus}
	console, err := web.New(web.Options{Service: svc, Keys: d, Settings: d.Store, Fingerprint: fp, Log: log})
	if err != nil {
		return err
	}
	ep := api.New(api.Options{
		Service: svc,
		Auth:    &api.KeyAuth{Keys: d, Region: api.RegistrationRegion(d)},
		Metrics: metrics,
		Log:     log,
		Console: console.Handler(),
	})
	apiDone := make(chan error, 1)
	go func() {
		apiDone <- ep.Serve(ctx, ln)
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

// storeConfig is the store the configuration names, nil for the state
// directory's own choice.
func (c serveConfig) storeConfig() (*daemon.StoreConfig, error) {
	if c.Store == "" {
		if c.StoreCAFile != "" || c.StorePasswordFile != "" {
			return nil, errors.New("storeCaFile and storePasswordFile need a store (--store postgres://…)")
		}
		return nil, nil
	}
	sc := &daemon.StoreConfig{URL: c.Store, CAFile: c.StoreCAFile, PasswordFile: c.StorePasswordFile}
	if err := sc.Check(); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return sc, nil
}

// storeRetry is how long serve waits between tries of a store it cannot
// reach at start.
var storeRetry = 5 * time.Second

// openServing opens the state for the daemon. A PostgreSQL store that
// cannot be reached is tried again every storeRetry, saying so each time,
// until it answers or ctx ends (nil, nil): nothing serves meanwhile, so no
// daemon half starts.
func openServing(ctx context.Context, env Env, dir string, log *slog.Logger, o daemon.Options) (*daemon.Daemon, error) {
	for {
		d, err := daemon.Open(ctx, dir, o)
		if err == nil || !errors.Is(err, store.ErrUnreachable) {
			return d, err
		}
		log.Error("the store is unreachable; the connector starts once it answers", "err", err, "retryIn", storeRetry)
		fmt.Fprintf(env.Stderr, "rehost: %v — retrying in %s\n", err, storeRetry)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(storeRetry):
		}
	}
}

// defaultListen is the appliance's HTTPS address.
const defaultListen = ":443"

// decodeConfig reads the configuration file strictly: a misspelt key is an
// error naming it, a value of the wrong type names the key and the type.
func decodeConfig(b []byte, c *serveConfig) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(c)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		if dec.More() {
			return errors.New("more than one JSON value: want one object")
		}
		return nil
	case errors.As(err, &te):
		want := map[reflect.Kind]string{reflect.Int: "a whole number", reflect.String: "a string"}[te.Type.Kind()]
		return fmt.Errorf("key %q: want %s, got a %s", te.Field, cmp.Or(want, te.Type.String()), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		known := make([]string, 0, 9)
		for f := range reflect.TypeFor[serveConfig]().Fields() {
			known = append(known, f.Tag.Get("json"))
		}
		return fmt.Errorf("unknown key %s (known keys: %s)", strings.TrimPrefix(err.Error(), "json: unknown field "), strings.Join(known, ", "))
	}
	return err
}
