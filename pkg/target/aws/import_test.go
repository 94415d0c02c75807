package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/emulator"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/pkg/disk"
)

// readyAccount is an account after Setup, with the role in place.
func readyAccount(t *testing.T, emuCfg emulator.Config) *account {
	t.Helper()
	acc := newAccount(t, emuCfg, Config{IAMPropagation: 200 * time.Millisecond})
	if _, err := acc.t.Setup(context.Background(), SetupOptions{Bucket: "staging", CreateRole: true}); err != nil {
		t.Fatalf("setup: %v", err)
	}
	return acc
}

// stageRaw stages a raw disk of n random bytes and returns it with its SHA-256.
func stageRaw(t *testing.T, acc *account, key string, seed uint64, n int) (Object, string) {
	t.Helper()
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 99))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	obj, err := acc.t.Stage(context.Background(), StageInput{Key: key, Body: bytes.NewReader(data), SizeHint: int64(n), Format: disk.Raw})
	if err != nil {
		t.Fatalf("stage %s: %v", key, err)
	}
	sum := sha256.Sum256(data)
	return obj, hex.EncodeToString(sum[:])
}

// guests caches the guest disks imported as boot disks, by firmware.
var guests sync.Map

// stageGuest stages a real guest disk (partition table for fw, ext4 root
// with /etc/os-release): VM Import refuses a boot disk without an OS.
func stageGuest(t *testing.T, acc *account, key, fw string) (Object, string) {
	t.Helper()
	b, ok := guests.Load(fw)
	if !ok {
		size := int64(32 << 20)
		if fw == guestdisk.EFI {
			size = 48 << 20
		}
		path := filepath.Join(t.TempDir(), "guest.raw")
		if _, err := guestdisk.Build(context.Background(), path, guestdisk.Options{Size: size, Firmware: fw, DataBytes: 1 << 20, Seed: 9}); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = guests.LoadOrStore(fw, data)
	}
	data := b.([]byte)
	obj, err := acc.t.Stage(context.Background(), StageInput{Key: key, Body: bytes.NewReader(data), SizeHint: int64(len(data)), Format: disk.Raw})
	if err != nil {
		t.Fatalf("stage %s: %v", key, err)
	}
	sum := sha256.Sum256(data)
	return obj, hex.EncodeToString(sum[:])
}

func snapshotSums(t *testing.T, acc *account, ids []string) []string {
	t.Helper()
	var out []string
	for _, id := range ids {
		s, _, err := acc.emu.SnapshotSHA256(id)
		if err != nil {
			t.Fatalf("snapshot %s: %v", id, err)
		}
		out = append(out, s)
	}
	return out
}

func TestImportImageEndToEnd(t *testing.T) {
	acc := readyAccount(t, emulator.Config{})
	ctx := context.Background()
	d0, s0 := stageGuest(t, acc, StagingKey("job-7", "run-1", 0, "raw"), guestdisk.EFI)
	d1, s1 := stageRaw(t, acc, StagingKey("job-7", "run-1", 1, "raw"), 2, 2<<20)
	in := ImportInput{Disks: []Object{d0, d1}, LicenseType: "BYOL", BootMode: "uefi", Platform: "Linux",
		ClientToken: "job-7-run-1", Description: "vm-42", Tags: map[string]string{"rehost:job": "job-7"}}
	imp, err := acc.t.StartImport(ctx, in)
	if err != nil {
		t.Fatalf("start import: %v", err)
	}
	again, err := acc.t.StartImport(ctx, in)
	if err != nil || again.TaskIDs[0] != imp.TaskIDs[0] {
		t.Fatalf("repeated start with the same token: %v, %v vs %v", err, again.TaskIDs, imp.TaskIDs)
	}
	var mu sync.Mutex
	var seen []ImportStatus
	res, err := acc.t.Wait(ctx, imp, func(s ImportStatus) { mu.Lock(); seen = append(seen, s); mu.Unlock() })
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if res.ImageID == "" || len(res.SnapshotIDs) != 2 {
		t.Fatalf("result %+v", res)
	}
	if got := snapshotSums(t, acc, res.SnapshotIDs); got[0] != s0 || got[1] != s1 {
		t.Fatalf("snapshot contents differ from the staged disks")
	}
	if len(seen) < 2 || seen[len(seen)-1].Status != "completed" || seen[len(seen)-1].Progress != 100 {
		t.Fatalf("progress reports: %+v", seen)
	}

	tags := map[string]string{"rehost:job": "job-7", "rehost:run": "run-1", "rehost:server": "vm-42"}
	if err := acc.t.Finalize(ctx, res.ImageID, "vm-42 2026-11-25", tags); err != nil {
		t.Fatalf("finalize: %v", err)
	}
	imgs, err := acc.t.FindImages(ctx, map[string]string{"rehost:job": "job-7", "rehost:run": "run-1"})
	if err != nil || len(imgs) != 1 || imgs[0].ID != res.ImageID || imgs[0].Tags["Name"] != "vm-42 2026-11-25" {
		t.Fatalf("find images: %+v, %v", imgs, err)
	}
	for _, s := range acc.emu.Snapshots() {
		found := false
		for _, tg := range s.Tags {
			found = found || (tg.Key == "rehost:server" && tg.Value == "vm-42")
		}
		if !found {
			t.Errorf("snapshot %s not tagged: %+v", s.ID, s.Tags)
		}
	}
	found, err := acc.t.FindImports(ctx, FindImportsInput{ClientToken: "job-7-run-1"})
	if err != nil || len(found) != 1 || found[0].TaskIDs[0] != imp.TaskIDs[0] || found[0].Tags["rehost:job"] != "job-7" {
		t.Fatalf("find imports: %+v, %v", found, err)
	}
	remains, err := acc.t.CancelImport(ctx, imp)
	if err != nil {
		t.Fatalf("cancelling a completed import must not fail: %v", err)
	}
	if remains.ImageID != res.ImageID || len(remains.SnapshotIDs) != len(res.SnapshotIDs) {
		t.Fatalf("cancelling a completed import returned %+v, want what it made: %+v", remains, res)
	}

	if err := acc.t.DeleteImage(ctx, res.ImageID, res.SnapshotIDs); err != nil {
		t.Fatalf("delete image: %v", err)
	}
	if err := acc.t.DeleteImage(ctx, res.ImageID, res.SnapshotIDs); err != nil {
		t.Fatalf("delete image twice: %v", err)
	}
	if n := len(acc.emu.Snapshots()); n != 0 {
		t.Fatalf("%d snapshots left after DeleteImage", n)
	}
	if imgs, _ := acc.t.FindImages(ctx, tags); len(imgs) != 0 {
		t.Fatalf("image still listed: %+v", imgs)
	}
}

func TestImportSnapshotModeAndRetention(t *testing.T) {
	acc := readyAccount(t, emulator.Config{})
	ctx := context.Background()
	var images []string
	for run := 1; run <= 3; run++ {
		d0, s0 := stageRaw(t, acc, StagingKey("job-9", fmt.Sprint(run), 0, "raw"), uint64(run), 1<<20)
		d1, s1 := stageRaw(t, acc, StagingKey("job-9", fmt.Sprint(run), 1, "raw"), uint64(run+10), 1<<20)
		token := fmt.Sprintf("job-9-run-%d", run)
		imp, err := acc.t.StartImport(ctx, ImportInput{Mode: ModeImportSnapshot, Disks: []Object{d0, d1}, Platform: "Windows",
			BootMode: "legacy-bios", ClientToken: token, Tags: map[string]string{"rehost:job": "job-9"}})
		if err != nil {
			t.Fatalf("run %d: start: %v", run, err)
		}
		if len(imp.TaskIDs) != 2 {
			t.Fatalf("run %d: %d snapshot tasks", run, len(imp.TaskIDs))
		}
		// Re-attach as after a crash: FindImports rebuilds the Import.
		found, err := acc.t.FindImports(ctx, FindImportsInput{ClientToken: token})
		if err != nil || len(found) != 1 || strings.Join(found[0].TaskIDs, ",") != strings.Join(imp.TaskIDs, ",") ||
			found[0].Name != imp.Name || found[0].Platform != "Windows" || found[0].BootMode != "legacy-bios" {
			t.Fatalf("run %d: find imports: %+v vs %+v, %v", run, found, imp, err)
		}
		res, err := acc.t.Wait(ctx, found[0], nil)
		if err != nil {
			t.Fatalf("run %d: wait: %v", run, err)
		}
		if got := snapshotSums(t, acc, res.SnapshotIDs); got[0] != s0 || got[1] != s1 {
			t.Fatalf("run %d: snapshot contents differ", run)
		}
		// Waiting again registers nothing new.
		res2, err := acc.t.Wait(ctx, imp, nil)
		if err != nil || res2.ImageID != res.ImageID {
			t.Fatalf("run %d: second wait: %+v, %v", run, res2, err)
		}
		if err := acc.t.Finalize(ctx, res.ImageID, fmt.Sprintf("server run %d", run), map[string]string{"rehost:job": "job-9"}); err != nil {
			t.Fatal(err)
		}
		images = append(images, res.ImageID)
		time.Sleep(5 * time.Millisecond) // distinct creation dates
	}
	for _, im := range acc.emu.Images() {
		if im.RootDeviceName != "/dev/sda1" || len(im.Devices) != 2 || im.Devices[1].DeviceName != "/dev/sdb" || !im.EnaSupport || im.BootMode != "legacy-bios" {
			t.Fatalf("registered image: %+v", im)
		}
	}
	// A cancel after completion hands back the snapshots and the image
	// registered from them, for the caller to delete.
	last, err := acc.t.FindImports(ctx, FindImportsInput{ClientToken: "job-9-run-3"})
	if err != nil || len(last) != 1 {
		t.Fatalf("find imports: %+v, %v", last, err)
	}
	remains, err := acc.t.CancelImport(ctx, last[0])
	if err != nil || remains.ImageID != images[2] || len(remains.SnapshotIDs) != 2 {
		t.Fatalf("cancel after completion: %+v, %v", remains, err)
	}

	// Deleting an image whose deregistration went through before a crash:
	// the recorded snapshots still go.
	imgs, err := acc.t.FindImages(ctx, map[string]string{"rehost:job": "job-9"})
	if err != nil || len(imgs) != 3 {
		t.Fatalf("find images: %+v, %v", imgs, err)
	}
	first := imgs[0]
	if err := acc.t.DeleteImage(ctx, first.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(acc.emu.Snapshots()); n != 6 {
		t.Fatalf("%d snapshots after deregistering alone, want all 6", n)
	}
	if err := acc.t.DeleteImage(ctx, first.ID, first.SnapshotIDs); err != nil {
		t.Fatalf("finish the deletion: %v", err)
	}
	if n := len(acc.emu.Snapshots()); n != 4 {
		t.Fatalf("%d snapshots left, want the other images' 4", n)
	}
	snaps, err := acc.t.FindSnapshots(ctx, map[string]string{"rehost:job": ""})
	if err != nil || len(snaps) != 4 {
		t.Fatalf("snapshots tagged rehost:job: %d, %v", len(snaps), err)
	}
}

func TestImportFailureCarriesStatusMessage(t *testing.T) {
	acc := readyAccount(t, emulator.Config{})
	ctx := context.Background()
	const msg = "ClientError: Unsupported kernel version 5.14.0-70.el9.x86_64"
	acc.emu.InjectImportFault(func(string, int) error { return errors.New(msg) })
	d0, _ := stageRaw(t, acc, "rehost/j/r/disk-0.raw", 1, 1<<20)
	imp, err := acc.t.StartImport(ctx, ImportInput{Disks: []Object{d0}, ClientToken: "fail-1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = acc.t.Wait(ctx, imp, nil)
	var ie *ImportError
	if !errors.As(err, &ie) || ie.StatusMessage != msg || ie.TaskID != imp.TaskIDs[0] || ie.Status != "deleted" {
		t.Fatalf("want ImportError with the message verbatim, got %#v", err)
	}
	acc.emu.InjectImportFault(nil)

	// A disk that is not what its format says fails the way VM Import does.
	bad, err := acc.t.Stage(ctx, StageInput{Key: "rehost/j/r/disk-1.vmdk", Body: strings.NewReader(strings.Repeat("not a vmdk ", 1000)), Format: disk.VMDK})
	if err != nil {
		t.Fatal(err)
	}
	imp, err = acc.t.StartImport(ctx, ImportInput{Disks: []Object{bad}, ClientToken: "fail-2", Mode: ModeImportSnapshot})
	if err != nil {
		t.Fatal(err)
	}
	_, err = acc.t.Wait(ctx, imp, nil)
	if !errors.As(err, &ie) || !strings.Contains(ie.StatusMessage, "Unsupported VMDK File Format") {
		t.Fatalf("bad vmdk: %v", err)
	}
}

func TestCancelImport(t *testing.T) {
	acc := readyAccount(t, emulator.Config{SimulatedImportWait: time.Minute})
	ctx := context.Background()
	d0, _ := stageGuest(t, acc, "rehost/j/r/disk-0.raw", guestdisk.BIOS)
	d1, _ := stageRaw(t, acc, "rehost/j/r/disk-1.raw", 2, 1<<20)
	imp, err := acc.t.StartImport(ctx, ImportInput{Disks: []Object{d0, d1}, ClientToken: "cancel-1", Mode: ModeImportSnapshot})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := acc.t.CancelImport(ctx, imp); err != nil || res.ImageID != "" || len(res.SnapshotIDs) != 0 {
		t.Fatalf("cancel: %+v, %v", res, err)
	}
	_, err = acc.t.Wait(ctx, imp, nil)
	var ie *ImportError
	if !errors.As(err, &ie) || ie.StatusMessage != "User cancelled" {
		t.Fatalf("wait after cancel: %v", err)
	}
	if _, err := acc.t.CancelImport(ctx, imp); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	for _, tk := range acc.emu.ImportTasks() {
		if tk.Status == "active" {
			t.Fatalf("task %s still active", tk.ID)
		}
	}
	// Waiting gives up with the context, leaving the import alone.
	imp2, err := acc.t.StartImport(ctx, ImportInput{Disks: []Object{d0}, ClientToken: "cancel-2"})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := acc.t.Wait(wctx, imp2, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait with a deadline: %v", err)
	}
	st, err := acc.t.Status(ctx, imp2)
	if err != nil || st.Status != "active" {
		t.Fatalf("import after an abandoned wait: %+v, %v", st, err)
	}
}

func TestStartImportValidatesAndReportsMissingRole(t *testing.T) {
	acc := newAccount(t, emulator.Config{}, Config{IAMPropagation: 100 * time.Millisecond, Bucket: "staging"})
	ctx := context.Background()
	if _, err := acc.srv.S3Client().CreateBucket(ctx, createBucket("staging")); err != nil {
		t.Fatal(err)
	}
	obj := Object{Bucket: "staging", Key: "k", Format: disk.Raw}
	for _, in := range []ImportInput{
		{Disks: []Object{obj}},
		{Disks: []Object{{Bucket: "staging", Key: "k", Format: "qcow2"}}, ClientToken: "x"},
		{Disks: []Object{obj}, ClientToken: "x", BootMode: "efi"},
		{ClientToken: "x"},
	} {
		if _, err := acc.t.StartImport(ctx, in); err == nil {
			t.Errorf("StartImport(%+v) accepted invalid input", in)
		}
	}
	start := time.Now()
	_, err := acc.t.StartImport(ctx, ImportInput{Disks: []Object{obj}, ClientToken: "no-role"})
	if err == nil || !strings.Contains(err.Error(), "The service role vmimport provided does not exist") {
		t.Fatalf("missing role: %v", err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatalf("gave up before the IAM propagation allowance")
	}
	if got := DiskToken(strings.Repeat("r", 70), 3); len(got) > 64 || got == DiskToken(strings.Repeat("r", 70), 4) {
		t.Fatalf("disk token %q", got)
	}
}
