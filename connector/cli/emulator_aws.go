package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/rehost/rehost/pkg/emulator"
)

func init() {
	Register(Command{
		Name:  "emulator aws",
		Usage: "--data DIR [--listen ADDR] [--s3-endpoint URL --s3-access-key KEY] [--region R] [--import-duration D] [--json]",
		Summary: "run the AWS emulator (EC2 VM Import, AMIs, snapshots, EBS direct, IAM, STS) on loopback " +
			"until interrupted, for tests and the demo",
		Flags: emulatorAWSFlags,
	})
}

type emulatorAWSOptions struct {
	listen         string
	dataDir        string
	region         string
	accountID      string
	s3Endpoint     string
	s3AccessKey    string
	s3SecretKey    string
	s3CA           string
	importDuration time.Duration
	imageDelay     time.Duration
	denyCreateRole bool
	json           bool
}

// Environment variables the emulator reads its keys from, so they stay off
// the command line.
const (
	envEmulatorAccessKey   = "REHOST_EMULATOR_ACCESS_KEY"
	envEmulatorSecretKey   = "REHOST_EMULATOR_SECRET_KEY"
	envEmulatorS3SecretKey = "REHOST_EMULATOR_S3_SECRET_KEY"
)

func emulatorAWSFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &emulatorAWSOptions{}
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to serve on (keep it on loopback: the emulator's debug endpoints are unauthenticated)")
	fs.StringVar(&o.dataDir, "data", "", "directory for snapshot contents and state.json (required; state survives restarts)")
	fs.StringVar(&o.region, "region", "us-east-1", "region of the emulated account")
	fs.StringVar(&o.accountID, "account-id", "", "12-digit account id (default: generated, then kept in state.json)")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint import tasks read staged disks from (path-style, e.g. versitygw)")
	fs.StringVar(&o.s3AccessKey, "s3-access-key", "", "access key id for --s3-endpoint")
	fs.StringVar(&o.s3SecretKey, "s3-secret-key", "", "secret key for --s3-endpoint (default: $"+envEmulatorS3SecretKey+")")
	fs.StringVar(&o.s3CA, "s3-ca", "", "PEM file of the CA that signed --s3-endpoint's certificate")
	fs.DurationVar(&o.importDuration, "import-duration", 20*time.Second, "how long an import task takes besides the real conversion work")
	fs.DurationVar(&o.imageDelay, "image-delay", 0, "how long a registered or copied image stays pending")
	fs.BoolVar(&o.denyCreateRole, "deny-create-role", false, "answer iam:CreateRole with AccessDenied")
	fs.BoolVar(&o.json, "json", false, "print the endpoint and keys as one JSON line")
	return o.run
}

// emulatorAWSInfo is what the command prints once it serves.
type emulatorAWSInfo struct {
	Endpoint        string `json:"endpoint"`
	Region          string `json:"region"`
	AccountID       string `json:"accountId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	DataDir         string `json:"dataDir"`
}

func (o *emulatorAWSOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q: %w", args, ErrUsage)
	}
	if o.dataDir == "" {
		return fmt.Errorf("--data is required: %w", ErrUsage)
	}
	if o.s3SecretKey == "" {
		o.s3SecretKey = os.Getenv(envEmulatorS3SecretKey)
	}
	cfg := emulator.Config{
		Region: o.region, AccountID: o.accountID,
		AccessKeyID: os.Getenv(envEmulatorAccessKey), SecretAccessKey: os.Getenv(envEmulatorSecretKey),
		S3Endpoint: o.s3Endpoint, S3AccessKey: o.s3AccessKey, S3SecretKey: o.s3SecretKey,
		DataDir: o.dataDir, ImportDuration: o.importDuration, ImageDelay: o.imageDelay, DenyCreateRole: o.denyCreateRole,
		Logger: slog.New(slog.NewTextHandler(env.Stderr, nil)),
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return fmt.Errorf("set both %s and %s, or neither", envEmulatorAccessKey, envEmulatorSecretKey)
	}
	if o.s3CA != "" {
		pem, err := os.ReadFile(o.s3CA)
		if err != nil {
			return fmt.Errorf("read --s3-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("read --s3-ca %s: no PEM certificate in it", o.s3CA)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		cfg.S3HTTPClient = &http.Client{Transport: tr}
	}
	em, err := emulator.New(cfg)
	if err != nil {
		return fmt.Errorf("start aws emulator: %w", err)
	}
	url, err := em.Start(o.listen)
	if err != nil {
		em.Close()
		return fmt.Errorf("start aws emulator: %w", err)
	}
	ak, sk := em.Credentials()
	info := emulatorAWSInfo{Endpoint: url, Region: em.Region(), AccountID: em.AccountID(), AccessKeyID: ak, SecretAccessKey: sk, DataDir: em.DataDir()}
	// The keys printed are the emulator's own, valid only against this
	// loopback listener; scripts need them to configure clients.
	if o.json {
		json.NewEncoder(env.Stdout).Encode(info)
	} else {
		fmt.Fprintf(env.Stdout, "aws emulator serving on %s\n  region             %s\n  account            %s\n  access key id      %s\n  secret access key  %s\n  data               %s\n  state (test only)  %s/_emulator/state\n",
			info.Endpoint, info.Region, info.AccountID, info.AccessKeyID, info.SecretAccessKey, info.DataDir, info.Endpoint)
	}
	if o.s3Endpoint == "" {
		fmt.Fprintln(env.Stderr, "rehost emulator aws: no --s3-endpoint: every import task will fail validation")
	}
	<-ctx.Done()
	if err := em.Close(); err != nil {
		return fmt.Errorf("stop aws emulator: %w", err)
	}
	return nil
}
