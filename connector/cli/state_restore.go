package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/rehost/rehost/connector/daemon"
)

func init() {
	Register(Command{
		Name:    "state restore",
		Usage:   "--from FILE|https://URL|s3://BUCKET/KEY [--state-dir DIR] [--force] [--region R] [--s3-endpoint URL] [--ca-file PEM]",
		Summary: "restore a state backup into a connector's state directory (the daemon stopped); the recovery code from REHOST_BACKUP_KEY or stdin",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var o restoreOptions
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.from, "from", "", "the backup: a file, an https:// URL (an S3 presigned URL), or s3://BUCKET/KEY (s3://BUCKET/rehost-backup/ID/ for the newest of a state)")
			fs.BoolVar(&o.force, "force", false, "replace a state that holds a registration, sources or jobs")
			fs.StringVar(&o.region, "region", os.Getenv("AWS_REGION"), "the bucket's region, for s3:// (credentials: the AWS default chain)")
			fs.StringVar(&o.s3Endpoint, "s3-endpoint", "", "an S3 endpoint other than AWS's, for s3://")
			fs.StringVar(&o.caFile, "ca-file", "", "PEM file of a CA to trust for the S3 endpoint")
			return o.run
		},
	})
}

type restoreOptions struct {
	stateDir, from, region, s3Endpoint, caFile string
	force                                      bool
}

func (o *restoreOptions) run(ctx context.Context, env Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.from == "" {
		return fmt.Errorf("%w: --from is required", ErrUsage)
	}
	code, err := readSecret(env, "REHOST_BACKUP_KEY", "the backup key's recovery code (RBK1-…)")
	if err != nil {
		return err
	}
	key, err := daemon.ParseRecoveryCode(code)
	if err != nil {
		return err
	}
	var r io.ReadCloser
	from := o.from
	if rest, ok := strings.CutPrefix(o.from, "s3://"); ok {
		bucket, objKey, _ := strings.Cut(rest, "/")
		if bucket == "" || o.region == "" {
			return fmt.Errorf("%w: s3:// wants s3://BUCKET/KEY and --region (or AWS_REGION)", ErrUsage)
		}
		s := daemon.AWSSettings{Region: o.region, Bucket: bucket, S3Endpoint: o.s3Endpoint}
		if o.caFile != "" {
			if s.CAPEM, err = os.ReadFile(o.caFile); err != nil {
				return fmt.Errorf("--ca-file: %w", err)
			}
		}
		r, objKey, err = daemon.OpenBucketBackup(ctx, s, objKey)
		if err != nil {
			return err
		}
		from = "s3://" + bucket + "/" + objKey
	} else if strings.HasPrefix(o.from, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.from, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("download the backup: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("download the backup: %s answered %s", req.URL.Host, resp.Status)
		}
		r, from = resp.Body, req.URL.Scheme+"://"+req.URL.Host+req.URL.Path
	} else if r, err = os.Open(o.from); err != nil {
		return err
	}
	defer r.Close()
	info, err := daemon.Restore(ctx, o.stateDir, r, key, o.force)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "restored %s into %s: the state of connector %s as it was at %s (state %s, schema %d)\n",
		from, o.stateDir, info.Version, info.CreatedAt.Format("2006-01-02 15:04:05Z"), info.StateID, info.SchemaVersion)
	fmt.Fprintln(env.Stdout, "start 'rehost serve' on it: runs in progress at the backup resume from their ledger")
	return nil
}
