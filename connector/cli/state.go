package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/connector/daemon"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
	"github.com/rehost/rehost/scheduler"
)

// defaultStateDir is where the appliance keeps its state.
const defaultStateDir = "/var/lib/rehost"

// stateDirFlag registers --state-dir, defaulting to $REHOST_STATE_DIR.
func stateDirFlag(fs *flag.FlagSet, p *string) {
	fs.StringVar(p, "state-dir", cmp.Or(os.Getenv("REHOST_STATE_DIR"), defaultStateDir), "connector state directory (env REHOST_STATE_DIR)")
}

// openState opens the state directory for a verb that works on it only
// (register, admin key): create says whether it may make a new one.
func openState(ctx context.Context, dir string, create bool) (*daemon.Daemon, error) {
	o := daemon.Options{Log: slog.New(slog.DiscardHandler), Scheduler: scheduler.Options{Passive: true}}
	if create {
		return daemon.Open(ctx, dir, o)
	}
	return daemon.OpenExisting(ctx, dir, o)
}

// connFlags choose the connector a verb talks to: the local state directory
// (on the appliance itself) or a connector's API over HTTPS.
type connFlags struct {
	fs          *flag.FlagSet
	stateDir    string
	endpoint    string
	region      string
	fingerprint string
	caFile      string
	profile     string
}

func addConnFlags(fs *flag.FlagSet) *connFlags {
	c := &connFlags{fs: fs}
	stateDirFlag(fs, &c.stateDir)
	fs.StringVar(&c.endpoint, "endpoint", os.Getenv("REHOST_ENDPOINT"), "connector API, https://HOST[:PORT] (env REHOST_ENDPOINT; default: the one 'rehost login' saved, else the local state directory)")
	fs.StringVar(&c.region, "region", "", "region requests are signed for: the connector's registration region (default: rehost login's, else AWS_REGION)")
	fs.StringVar(&c.fingerprint, "fingerprint", "", "the connector certificate's SHA-256 fingerprint to pin (as 'rehost serve' prints it)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM file of the CA that signed the connector's certificate")
	fs.StringVar(&c.profile, "profile", "", "AWS shared-config profile holding the access key (default: rehost login's key, else AWS_ACCESS_KEY_ID or the default chain)")
	return c
}

func (c *connFlags) set(name string) bool { return given(c.fs, name) }

// given reports whether the command line set the flag name of fs.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// connect returns the Service the verb calls and a function to release it.
// An explicit --state-dir means the local state directory; otherwise an
// endpoint (flag, REHOST_ENDPOINT, or rehost login's) means the API, and
// without one the local state directory. create says whether the verb may
// make a new state directory.
func (c *connFlags) connect(ctx context.Context, create bool) (api.Service, func(), error) {
	login, _ := readLogin()
	endpoint := c.endpoint
	if endpoint == "" && !c.set("state-dir") && os.Getenv("REHOST_STATE_DIR") == "" {
		endpoint = login.Endpoint
	}
	if endpoint == "" || c.set("state-dir") {
		d, err := openState(ctx, c.stateDir, create)
		if err != nil {
			return nil, nil, err
		}
		dir := c.stateDir
		return &api.Local{D: d, Notify: func() { daemon.NotifyServing(dir) }}, func() { d.Close() }, nil
	}
	cl, err := c.client(ctx, endpoint, login)
	if err != nil {
		return nil, nil, err
	}
	return cl, func() {}, nil
}

// client reaches the connector at endpoint over HTTPS, with the certificate
// pin and the key rehost login saved when endpoint is the login's.
func (c *connFlags) client(ctx context.Context, endpoint string, login loginFile) (api.Service, error) {
	o := client.Options{Endpoint: endpoint, Region: cmp.Or(c.region, login.Region, os.Getenv("AWS_REGION")), Fingerprint: c.fingerprint}
	if endpoint == login.Endpoint && o.Fingerprint == "" && c.caFile == "" {
		o.Fingerprint, o.CAPEM = login.Fingerprint, login.CAPEM
	}
	if c.caFile != "" {
		b, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		o.CAPEM = b
	}
	creds, err := c.credentials(ctx, login)
	if err != nil {
		return nil, err
	}
	o.Credentials = creds
	return client.New(o)
}

// credentials: a --profile or AWS_ACCESS_KEY_ID picks the AWS chain; else
// the key rehost login saved; else the AWS default chain.
func (c *connFlags) credentials(ctx context.Context, login loginFile) (aws.CredentialsProvider, error) {
	if c.profile == "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" && login.AccessKeyID != "" {
		return credentials.NewStaticCredentialsProvider(login.AccessKeyID, login.SecretAccessKey, ""), nil
	}
	cfg, err := awstarget.LoadConfig(ctx, "", c.profile, awstarget.LoadOptions{})
	if err != nil {
		return nil, fmt.Errorf("access key for the connector: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, errors.New("no access key for the connector: run 'rehost login', or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	return cfg.Credentials, nil
}

// loginFile is what rehost login saves: the connector and the key to reach
// it with (readable by the user only, like ~/.aws/credentials).
type loginFile struct {
	Endpoint        string `json:"endpoint"`
	Region          string `json:"region,omitempty"`
	Fingerprint     string `json:"fingerprint,omitempty"`
	CAPEM           []byte `json:"caPem,omitempty"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

// loginPath is $REHOST_LOGIN_FILE, else rehost/login.json in the user's
// configuration directory.
func loginPath() (string, error) {
	if p := os.Getenv("REHOST_LOGIN_FILE"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "rehost", "login.json"), nil
}

func readLogin() (loginFile, error) {
	var l loginFile
	p, err := loginPath()
	if err != nil {
		return l, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return l, err
	}
	return l, json.Unmarshal(b, &l)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readSecret returns the value of the environment variable env, or reads
// one line from stdin when it is unset: secrets never travel as flags, which
// other users see in the process list.
func readSecret(e Env, env, what string) (string, error) {
	if v, ok := os.LookupEnv(env); ok {
		return v, nil
	}
	fmt.Fprintf(e.Stderr, "%s (or set %s): ", what, env)
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := e.Stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			break
		}
	}
	v := strings.TrimRight(b.String(), "\r")
	if v == "" {
		return "", fmt.Errorf("no %s given: set %s or type it on standard input", what, env)
	}
	return v, nil
}

// noArgs refuses positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	return nil
}

// oneArg wants exactly one positional argument, named what.
func oneArg(what string) func([]string) error {
	return func(args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%w: give one %s", ErrUsage, what)
		}
		return nil
	}
}

// with returns a verb's run function: it checks the arguments, connects
// (to the local state directory or the API, never creating state) and calls
// fn with the Service.
func (c *connFlags) with(check func([]string) error, fn func(context.Context, Env, api.Service, []string) error) func(context.Context, Env, []string) error {
	return func(ctx context.Context, env Env, args []string) error {
		if err := check(args); err != nil {
			return err
		}
		svc, done, err := c.connect(ctx, false)
		if err != nil {
			return err
		}
		defer done()
		return fn(ctx, env, svc, args)
	}
}
