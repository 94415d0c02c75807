package lab

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/emulator"
)

type awsOptions struct {
	listen              string
	dataDir             string
	region              string
	accountID           string
	s3Info              string
	s3Endpoint          string
	s3AccessKey         string
	s3SecretKey         string
	s3CA                string
	simulatedImportWait time.Duration
	imageDelay          time.Duration
	delays              string
	denyCreateRole      bool
	instanceBootTime    time.Duration
	json                bool
}

// Environment variables the emulator reads its keys from, so they stay off
// the command line.
const (
	envEmulatorAccessKey   = "REHOST_EMULATOR_ACCESS_KEY"
	envEmulatorSecretKey   = "REHOST_EMULATOR_SECRET_KEY"
	envEmulatorS3SecretKey = "REHOST_EMULATOR_S3_SECRET_KEY"
)

func awsFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &awsOptions{}
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to serve on (keep it on loopback: the emulator's state endpoint is unauthenticated)")
	fs.StringVar(&o.dataDir, "data", "", "directory for snapshot contents and state.json (required; state survives restarts)")
	fs.StringVar(&o.region, "region", "", "region of the emulated account (default: the S3 peer's, else us-east-1)")
	fs.StringVar(&o.accountID, "account-id", "", "12-digit account id (default: generated, then kept in state.json)")
	fs.StringVar(&o.s3Info, "s3", "", "the JSON `rehost-lab s3 --json` printed (a file): its endpoint, CA and keys, which become the account's keys too, as in a real account")
	fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "S3 endpoint import tasks read staged disks from (path-style)")
	fs.StringVar(&o.s3AccessKey, "s3-access-key", "", "access key id for --s3-endpoint")
	fs.StringVar(&o.s3SecretKey, "s3-secret-key", "", "secret key for --s3-endpoint (default: $"+envEmulatorS3SecretKey+")")
	fs.StringVar(&o.s3CA, "s3-ca", "", "PEM file of the CA that signed --s3-endpoint's certificate")
	fs.DurationVar(&o.simulatedImportWait, "simulated-import-wait", 5*time.Second, "simulated time an import spends booting the converted guest (the rest of an import is real work)")
	fs.DurationVar(&o.imageDelay, "image-delay", 0, "how long a registered or copied image stays pending")
	fs.DurationVar(&o.instanceBootTime, "instance-boot-time", 3*time.Second, "how long a launched instance takes to boot (running at a quarter, console output from half of it)")
	fs.StringVar(&o.delays, "delay", "", "slow API calls by name, e.g. DeregisterImage=2s,DeleteSnapshot=1s (to land a kill while a client waits)")
	fs.BoolVar(&o.denyCreateRole, "deny-create-role", false, "answer iam:CreateRole with AccessDenied")
	fs.BoolVar(&o.json, "json", false, "print the endpoint and keys as one JSON line")
	return o.run
}

// awsInfo is what the verb prints once it serves.
type awsInfo struct {
	Endpoint        string `json:"endpoint"`
	Region          string `json:"region"`
	AccountID       string `json:"accountId"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	DataDir         string `json:"dataDir"`
	StateURL        string `json:"stateUrl"`
}

func (o *awsOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.dataDir == "" {
		return fmt.Errorf("--data is required: %w", cli.ErrUsage)
	}
	delays, err := emulator.ParseDelays(o.delays)
	if err != nil {
		return fmt.Errorf("--delay: %w", err)
	}
	cfg := emulator.Config{
		Region: o.region, AccountID: o.accountID,
		AccessKeyID: os.Getenv(envEmulatorAccessKey), SecretAccessKey: os.Getenv(envEmulatorSecretKey),
		S3Endpoint: o.s3Endpoint, S3AccessKey: o.s3AccessKey, S3SecretKey: o.s3SecretKey,
		DataDir: o.dataDir, SimulatedImportWait: o.simulatedImportWait, ImageDelay: o.imageDelay, Delays: delays,
		InstanceBootTime: o.instanceBootTime,
		DenyCreateRole:   o.denyCreateRole, Logger: slog.New(slog.NewTextHandler(env.Stderr, nil)),
	}
	caFile := o.s3CA
	if o.s3Info != "" {
		var s s3Info
		b, err := os.ReadFile(o.s3Info)
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err != nil {
			return fmt.Errorf("read --s3 %s (the JSON line of rehost-lab s3 --json): %w", o.s3Info, err)
		}
		cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey, caFile = s.Endpoint, s.AccessKeyID, s.SecretAccessKey, s.CAFile
		if cfg.Region == "" {
			cfg.Region = s.Region
		}
		if cfg.AccessKeyID == "" {
			// One set of keys for S3 and the rest, as in a real account:
			// the connector is registered with one.
			cfg.AccessKeyID, cfg.SecretAccessKey = s.AccessKeyID, s.SecretAccessKey
		}
	}
	if cfg.S3SecretKey == "" {
		cfg.S3SecretKey = os.Getenv(envEmulatorS3SecretKey)
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return fmt.Errorf("set both %s and %s, or neither", envEmulatorAccessKey, envEmulatorSecretKey)
	}
	if caFile != "" {
		if cfg.S3HTTPClient, err = trusting(caFile); err != nil {
			return fmt.Errorf("read the S3 CA: %w", err)
		}
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
	info := awsInfo{Endpoint: url, Region: em.Region(), AccountID: em.AccountID(), AccessKeyID: ak, SecretAccessKey: sk,
		DataDir: em.DataDir(), StateURL: url + "/_emulator/state"}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("aws emulator serving on %s\n  region             %s\n  account            %s\n  access key id      %s\n  secret access key  %s\n  data               %s\n  state (test only)  %s\n",
		info.Endpoint, info.Region, info.AccountID, info.AccessKeyID, info.SecretAccessKey, info.DataDir, info.StateURL))
	if cfg.S3Endpoint == "" {
		fmt.Fprintln(env.Stderr, "rehost-lab aws: no --s3 or --s3-endpoint: every import task will fail validation")
	}
	<-ctx.Done()
	if err := em.Close(); err != nil {
		return fmt.Errorf("stop aws emulator: %w", err)
	}
	return nil
}
