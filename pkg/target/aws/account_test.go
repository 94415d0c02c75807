package aws

import (
	"cmp"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"context"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/s3peer"
)

// account is an emulated AWS account: versitygw (TLS, behind the recording
// front) for S3 and internal/lab/emulator for EC2, IAM and STS.
type account struct {
	srv  *s3peer.Server
	emu  *emulator.Emulator
	t    *Target
	base string // the emulator's endpoint
}

func newAccount(tb testing.TB, emuCfg emulator.Config, cfg Config) *account {
	tb.Helper()
	return newAccountOn(tb, s3peer.Options{TLS: true, Region: emuCfg.Region}, emuCfg, cfg)
}

// newAccountOn is newAccount on an S3 peer started with s3opts.
func newAccountOn(tb testing.TB, s3opts s3peer.Options, emuCfg emulator.Config, cfg Config) *account {
	tb.Helper()
	srv := s3peer.Start(tb, s3opts)
	emuCfg.S3Endpoint = srv.URL
	emuCfg.S3AccessKey, emuCfg.S3SecretKey = srv.AccessKeyID, srv.SecretAccessKey
	emuCfg.S3HTTPClient = srv.HTTPClient()
	emuCfg.AccessKeyID, emuCfg.SecretAccessKey = srv.AccessKeyID, srv.SecretAccessKey
	if emuCfg.SimulatedImportWait == 0 {
		emuCfg.SimulatedImportWait = 300 * time.Millisecond
	}
	emu, err := emulator.New(emuCfg)
	if err != nil {
		tb.Fatalf("emulator: %v", err)
	}
	base, err := emu.Start("127.0.0.1:0")
	if err != nil {
		tb.Fatalf("emulator: %v", err)
	}
	tb.Cleanup(func() { emu.Close() })
	cfg.Region = emu.Region()
	cfg.AccessKeyID, cfg.SecretAccessKey = srv.AccessKeyID, srv.SecretAccessKey
	cfg.Endpoints = Endpoints{S3: srv.URL, EC2: base, IAM: base, STS: base, EBS: cmp.Or(cfg.Endpoints.EBS, base), KMS: base, Quotas: base}
	cfg.S3PathStyle = true
	cfg.HTTPClient = srv.HTTPClient()
	if cfg.RetryBaseDelay == 0 {
		cfg.RetryBaseDelay = 10 * time.Millisecond
	}
	if cfg.PollInitial == 0 {
		cfg.PollInitial, cfg.PollMax = 20*time.Millisecond, 100*time.Millisecond
	}
	tg, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("new target: %v", err)
	}
	return &account{srv: srv, emu: emu, t: tg, base: base}
}

func createBucket(name string) *s3.CreateBucketInput {
	return &s3.CreateBucketInput{Bucket: sdk.String(name)}
}
