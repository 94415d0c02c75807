package lab

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/s3peer"
)

type s3Options struct {
	dir, listen, plainListen, region string
	lifecycleEvery                   time.Duration
	json                             bool
}

// Environment variables the S3 peer takes its root keys from.
const (
	envS3AccessKey = "REHOST_LAB_S3_ACCESS_KEY"
	envS3SecretKey = "REHOST_LAB_S3_SECRET_KEY"
)

func s3Flags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &s3Options{}
	fs.StringVar(&o.dir, "dir", "", "directory for the buckets, the TLS pair and the keys (required; all survive restarts)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address of the HTTPS endpoint")
	fs.StringVar(&o.plainListen, "plain-listen", "127.0.0.1:0", "address of the plain HTTP endpoint (refused by a bucket policy denying insecure transport)")
	fs.StringVar(&o.region, "region", "us-east-1", "region the server reports")
	fs.DurationVar(&o.lifecycleEvery, "lifecycle-every", time.Minute, "how often the buckets' lifecycle rules run")
	fs.BoolVar(&o.json, "json", false, "print the endpoints and keys as one JSON line")
	return o.run
}

// s3Info is what the verb prints once it serves; rehost-lab aws --s3 reads
// it back.
type s3Info struct {
	Endpoint        string `json:"endpoint"`
	PlainEndpoint   string `json:"plainEndpoint"`
	Region          string `json:"region"`
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
	CAFile          string `json:"caFile"`
	Dir             string `json:"dir"`
	StateURL        string `json:"stateUrl"`
}

// s3Keys are the root keys, kept in DIR so a restart keeps them.
type s3Keys struct {
	AccessKeyID     string `json:"accessKeyId"`
	SecretAccessKey string `json:"secretAccessKey"`
}

func (o *s3Options) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.dir == "" {
		return fmt.Errorf("--dir is required: %w", cli.ErrUsage)
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create --dir: %w", err)
	}
	keys := s3Keys{os.Getenv(envS3AccessKey), os.Getenv(envS3SecretKey)}
	keyFile := filepath.Join(dir, "keys.json")
	if keys.AccessKeyID == "" {
		b, err := os.ReadFile(keyFile)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &keys); err != nil {
				return fmt.Errorf("read %s: %w", keyFile, err)
			}
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("read %s: %w", keyFile, err)
		}
	}
	fmt.Fprintf(env.Stderr, "rehost-lab s3: starting versitygw %s (installing it into .tools/bin first if needed) …\n", s3peer.Version)
	srv, err := s3peer.StartProcess(ctx, s3peer.Options{TLS: true, Dir: dir, Region: o.region,
		AccessKeyID: keys.AccessKeyID, SecretAccessKey: keys.SecretAccessKey,
		Listen: o.listen, PlainListen: o.plainListen, LifecycleEvery: o.lifecycleEvery})
	if err != nil {
		return fmt.Errorf("start the S3 peer: %w", err)
	}
	defer srv.Close()
	if keys.AccessKeyID == "" {
		b, _ := json.Marshal(s3Keys{srv.AccessKeyID, srv.SecretAccessKey})
		if err := os.WriteFile(keyFile, b, 0o600); err != nil {
			return fmt.Errorf("keep the keys in %s: %w", keyFile, err)
		}
	}
	info := s3Info{Endpoint: srv.URL, PlainEndpoint: srv.PlainURL, Region: srv.Region, AccessKeyID: srv.AccessKeyID,
		SecretAccessKey: srv.SecretAccessKey, CAFile: srv.CertFile, Dir: dir, StateURL: srv.PlainURL + "/_s3peer/state"}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("S3 (versitygw behind the rehost front) serving\n  endpoint (TLS)     %s\n  plain HTTP         %s\n  region             %s\n  access key id      %s\n  secret access key  %s\n  CA certificate     %s\n  state (test only)  %s\nInterrupt to stop.\n",
		info.Endpoint, info.PlainEndpoint, info.Region, info.AccessKeyID, info.SecretAccessKey, info.CAFile, info.StateURL))
	<-ctx.Done()
	return nil
}
