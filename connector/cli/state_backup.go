package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
)

// The "rehost state …" verbs: a backup of a running connector's state, the
// key it is sealed with, and its restore into a stopped one.
func init() {
	Register(
		Command{
			Name:    "state backup",
			Usage:   "[--out FILE | --to-bucket] [--json]",
			Summary: "back up the connector's state (store, sealed secrets, keys, TLS) while it runs, sealed with the backup key",
			Flags:   stateBackup,
		},
		Command{
			Name:    "state backup-key",
			Usage:   "[--json]",
			Summary: "show the recovery code of the key state backups are sealed with: a restore asks for it",
			Flags: reader[*api.GetBackupKeyOutput]{
				get: func(ctx context.Context, svc api.Service, _ []string) (*api.GetBackupKeyOutput, error) {
					return svc.GetBackupKey(ctx, &api.GetBackupKeyInput{})
				},
				text: func(env Env, k *api.GetBackupKeyOutput) {
					fmt.Fprintln(env.Stdout, k.RecoveryCode)
					fmt.Fprintln(env.Stderr, "Record this code where the appliance's disk is not (a password manager, a safe): every backup of this connector\n"+
						"opens with it and with nothing else, and 'rehost state restore' on a new appliance asks for it.")
				},
			}.flags,
		},
		Command{
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
		},
	)
}

func stateBackup(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	c := addConnFlags(fs)
	out := fs.String("out", "", "file to write (default rehost-state-TIME.rehost-backup)")
	toBucket := fs.Bool("to-bucket", false, "back up into the staging bucket (under rehost-backup/, outside the 7-day lifecycle rule) instead")
	asJSON := fs.Bool("json", false, "print JSON")
	return c.with(noArgs, func(ctx context.Context, env Env, svc api.Service, args []string) error {
		if *toBucket && *out != "" {
			return fmt.Errorf("%w: give --out or --to-bucket, not both", ErrUsage)
		}
		res := &api.BackupStateOutput{}
		var err error
		if *toBucket {
			res, err = svc.BackupStateToBucket(ctx, &api.BackupStateToBucketInput{})
		} else {
			res.Location, res.Bytes, err = createNew(*out, "rehost-state-", ".rehost-backup", func(w io.Writer) error { return svc.BackupState(ctx, w) })
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.Stdout, res)
		}
		fmt.Fprintf(env.Stdout, "backed up to %s (%s)\n", res.Location, bytesIEC(res.Bytes))
		fmt.Fprintln(env.Stderr, "Only the backup key opens it: 'rehost state backup-key' shows its recovery code; keep that apart from the backup.")
		return nil
	})
}

// createNew writes a file that must not exist yet and that only its owner
// can read: at path, or where path is empty at prefix, the time now (UTC)
// and ext. A failed write removes it. It returns the path and the bytes
// written.
func createNew(path, prefix, ext string, write func(io.Writer) error) (string, int64, error) {
	if path == "" {
		path = prefix + time.Now().UTC().Format("20060102T150405Z") + ext
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, err
	}
	if err := write(f); err != nil {
		f.Close()
		os.Remove(path)
		return "", 0, err
	}
	n, _ := f.Seek(0, io.SeekCurrent)
	if err := f.Close(); err != nil {
		return "", 0, err
	}
	return path, n, nil
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
