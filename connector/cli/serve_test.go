package cli

import (
	"context"
	"database/sql"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/store"
)

// serveEnv lists every variable serve reads; each test starts with all unset.
var serveEnv = []string{"REHOST_CONFIG", "REHOST_STATE_DIR", "REHOST_LISTEN", "REHOST_LOG_LEVEL", "REHOST_LOG_FORMAT",
	"REHOST_MAX_CONCURRENT_RUNS", "REHOST_IMPORT_LIMIT", "REHOST_SNAPSHOT_IMPORT_LIMIT", "REHOST_ON_DEMAND_PER_24H", "REHOST_PAUSE_AFTER_FAILURES", "REHOST_APPLIANCE_STATUS",
	"REHOST_STORE", "REHOST_STORE_CA_FILE", "REHOST_STORE_PASSWORD_FILE", "REHOST_STORE_PASSWORD", "REHOST_CONNECTOR_ID",
	"REHOST_STAGING_MEMORY_MIB"}

func clearServeEnv(t *testing.T) {
	for _, k := range serveEnv {
		t.Setenv(k, "")
	}
}

// serveFlags defines serve's flags on a fresh FlagSet through the registered
// command and returns options whose flags mirror them, parsed from args. The
// registered set is parsed too, so a flag config() knows but serve does not
// define fails the parse.
func serveFlags(t *testing.T, configFile string, args ...string) *serveOptions {
	t.Helper()
	cmd, ok := rehost.commands["serve"]
	if !ok {
		t.Fatal("serve is not registered")
	}
	reg := flag.NewFlagSet("serve", flag.ContinueOnError)
	reg.SetOutput(io.Discard)
	cmd.Flags(reg)
	if err := reg.Parse(args); err != nil {
		t.Fatalf("serve's flags refuse %v: %v", args, err)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	o := &serveOptions{fs: fs, configFile: configFile}
	fs.StringVar(&o.flags.StateDir, "state-dir", "", "")
	fs.IntVar(&o.flags.MaxConcurrentRuns, "max-concurrent-runs", 0, "")
	fs.IntVar(&o.flags.ImportLimitPerRegion, "import-limit", 0, "")
	fs.IntVar(&o.flags.SnapshotImportLimit, "snapshot-import-limit", 0, "")
	fs.IntVar(&o.flags.OnDemandPer24h, "on-demand-per-24h", 0, "")
	fs.IntVar(&o.flags.PauseAfterFailures, "pause-after-failures", 0, "")
	fs.IntVar(&o.flags.StagingMemoryMiB, "staging-memory", 0, "")
	fs.StringVar(&o.flags.ResyncInterval, "resync", "", "")
	fs.StringVar(&o.flags.LogLevel, "log-level", "", "")
	fs.StringVar(&o.flags.LogFormat, "log-format", "", "")
	fs.VisitAll(func(f *flag.Flag) {
		if reg.Lookup(f.Name) == nil {
			t.Errorf("serve does not define --%s", f.Name)
		}
	})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rehost.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServeConfigPrecedence(t *testing.T) {
	clearServeEnv(t)
	file := writeConfig(t, `{"stateDir": "/file/state", "maxConcurrentRuns": 4, "importLimitPerRegion": 7,
		"onDemandRunsPer24h": 5, "pauseAfterFailures": 6, "resyncInterval": "1m", "logLevel": "warn", "logFormat": "text",
		"stagingMemoryMiB": 300}`)
	t.Setenv("REHOST_STATE_DIR", "/env/state")
	t.Setenv("REHOST_MAX_CONCURRENT_RUNS", "8")
	t.Setenv("REHOST_LOG_LEVEL", "debug")
	t.Setenv("REHOST_PAUSE_AFTER_FAILURES", "2")
	t.Setenv("REHOST_SNAPSHOT_IMPORT_LIMIT", "11")
	t.Setenv("REHOST_STAGING_MEMORY_MIB", "400")
	o := serveFlags(t, file, "--state-dir", "/flag/state", "--import-limit", "9", "--pause-after-failures", "0", "--staging-memory", "500")
	c, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	want := serveConfig{
		StateDir:             "/flag/state", // flag over env over file
		MaxConcurrentRuns:    8,             // env over file
		ImportLimitPerRegion: 9,             // flag over file
		SnapshotImportLimit:  11,            // env
		OnDemandPer24h:       5,             // file
		PauseAfterFailures:   0,             // a flag given as 0 still wins over env
		StagingMemoryMiB:     500,           // flag over env over file
		ResyncInterval:       "1m",
		LogLevel:             "debug",
		LogFormat:            "text",
		Listen:               defaultListen,
	}
	if c != want {
		t.Errorf("config = %+v\nwant     %+v", c, want)
	}
}

func TestServeConfigDefaults(t *testing.T) {
	clearServeEnv(t)
	c, err := serveFlags(t, "").config()
	if err != nil {
		t.Fatal(err)
	}
	want := serveConfig{StateDir: defaultStateDir, Listen: defaultListen, ResyncInterval: "30s", LogLevel: "info", LogFormat: "json"}
	if c != want {
		t.Errorf("config = %+v, want %+v", c, want)
	}
	// A file setting only some fields keeps the defaults of the others.
	c, err = serveFlags(t, writeConfig(t, `{"logFormat": "text"}`)).config()
	if err != nil {
		t.Fatal(err)
	}
	want.LogFormat = "text"
	if c != want {
		t.Errorf("config = %+v, want %+v", c, want)
	}
}

func TestServeConfigFromEnvFile(t *testing.T) {
	clearServeEnv(t)
	file := writeConfig(t, `{"stateDir": "/file/state"}`)
	t.Setenv("REHOST_CONFIG", file)
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	rehost.commands["serve"].Flags(fs)
	if got := fs.Lookup("config").DefValue; got != file {
		t.Errorf("--config defaults to %q, want REHOST_CONFIG %q", got, file)
	}
}

func TestServeConfigErrors(t *testing.T) {
	clearServeEnv(t)
	missing := filepath.Join(t.TempDir(), "none.json")
	bad := writeConfig(t, `{"maxConcurrentRuns": "two"}`)
	for _, c := range []struct {
		name, file, env, val, want string
	}{
		{"missing file", missing, "", "", "read configuration"},
		{"bad json", bad, "", "", bad},
		{"bad number", "", "REHOST_IMPORT_LIMIT", "five", `REHOST_IMPORT_LIMIT="five": not a number`},
		{"staging pool too small", "", "REHOST_STAGING_MEMORY_MIB", "32", "stagingMemoryMiB 32: want at least 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.env != "" {
				t.Setenv(c.env, c.val)
			}
			_, err := serveFlags(t, c.file).config()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("config() error = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

// A state a newer rehost migrated is refused with ExitStateNewer, which
// the appliance's init acts on after a rollback, and a message saying so.
func TestServeRefusesNewerStateWithItsExitStatus(t *testing.T) {
	clearServeEnv(t)
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "rehost.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_version (version, name, applied_at) VALUES (9999, 'future', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	var stderr strings.Builder
	code := Main(context.Background(), Env{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: &stderr},
		[]string{"serve", "--state-dir", dir, "--listen", "127.0.0.1:0"})
	if code != ExitStateNewer || !strings.Contains(stderr.String(), "newer than this rehost knows") {
		t.Fatalf("serve on a newer state: exit %d, %s", code, stderr.String())
	}
}
