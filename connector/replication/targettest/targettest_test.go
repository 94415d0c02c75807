package targettest_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/replication/memtarget"
	"github.com/rehost/rehost/connector/replication/targettest"
	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/s3peer"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

var (
	diskOnce sync.Once
	diskData []byte
	diskErr  error
)

// guestDisk is a small real guest disk (MBR, ext4 with /etc/os-release),
// which an importer as strict as AWS accepts.
func guestDisk(t *testing.T) []byte {
	diskOnce.Do(func() {
		dir, err := os.MkdirTemp("", "targettest-")
		if err != nil {
			diskErr = err
			return
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "disk.raw")
		if _, diskErr = guestdisk.Build(context.Background(), p, guestdisk.Options{Size: 32 << 20, DataBytes: 3 << 20, Seed: 11}); diskErr != nil {
			return
		}
		diskData, diskErr = os.ReadFile(p)
	})
	if diskErr != nil {
		t.Fatal(diskErr)
	}
	return diskData
}

func TestMemTarget(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targettest.Env {
		const part = 64 << 10
		return targettest.Env{Target: memtarget.New(part), Disk: guestDisk(t), PartSize: part}
	})
}

// TestAWSTarget runs the suite against pkg/target/aws over the real SDK:
// versitygw for S3 and the emulator for EC2, IAM and STS.
func TestAWSTarget(t *testing.T) {
	targettest.Run(t, func(t *testing.T) targettest.Env {
		srv := s3peer.Start(t, s3peer.Options{TLS: true})
		emu, err := emulator.New(emulator.Config{
			Region: srv.Region, AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey,
			S3Endpoint: srv.URL, S3AccessKey: srv.AccessKeyID, S3SecretKey: srv.SecretAccessKey,
			S3HTTPClient: srv.HTTPClient(), SimulatedImportWait: 300 * time.Millisecond, DataDir: t.TempDir(),
		})
		if err != nil {
			t.Fatal(err)
		}
		base, err := emu.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { emu.Close() })
		const part = 5 << 20
		tg, err := awstarget.New(context.Background(), awstarget.Config{
			Region: emu.Region(), AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey,
			Endpoints:   awstarget.Endpoints{S3: srv.URL, EC2: base, IAM: base, STS: base, EBS: base},
			S3PathStyle: true, HTTPClient: srv.HTTPClient(), PartSize: part, RetryBaseDelay: 10 * time.Millisecond,
			PollInitial: 20 * time.Millisecond, PollMax: 100 * time.Millisecond, IAMPropagation: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tg.Setup(context.Background(), awstarget.SetupOptions{Bucket: "staging", CreateRole: true}); err != nil {
			t.Fatal(err)
		}
		return targettest.Env{Target: tg, Disk: guestDisk(t), PartSize: part}
	})
}
