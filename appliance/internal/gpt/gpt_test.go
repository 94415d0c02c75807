package gpt

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// sfdisk runs sfdisk (in /usr/sbin, off an ordinary user's PATH) with
// stdin as its input.
func sfdisk(t *testing.T, stdin string, args ...string) []byte {
	t.Helper()
	p, err := exec.LookPath("sfdisk")
	if err != nil {
		p = "/usr/sbin/sfdisk"
	}
	cmd := exec.Command(p, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk %v: %v\n%s", args, err, out)
	}
	return out
}

// A table sfdisk made on a 64 MiB disk, grown to 100 MiB, is one sfdisk
// accepts, with the data partition reaching the new end.
func TestGrowLastPartition(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(64 << 20)
	f.Close()
	sfdisk(t, "label: gpt\nunit: sectors\n\nstart=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"sys\"\nstart=22528, size=100000, name=\"data\"\n",
		"--no-reread", "--no-tell-kernel", "-q", img)
	f, err = os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 100 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := Grow(f, size, "sys"); err == nil || !strings.Contains(err.Error(), "not the last") {
		t.Fatalf("growing the first partition: %v", err)
	}
	changed, err := Grow(f, size, "data")
	if err != nil || !changed {
		t.Fatalf("grow: %v, changed %v", err, changed)
	}
	if changed, err := Grow(f, size, "data"); err != nil || changed {
		t.Fatalf("second grow: %v, changed %v", err, changed)
	}
	sfdisk(t, "", "--verify", img)
	var dump struct {
		PartitionTable struct {
			LastLBA    uint64 `json:"lastlba"`
			Partitions []struct {
				Start, Size uint64
				Name        string
			}
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(sfdisk(t, "", "-J", img), &dump); err != nil {
		t.Fatal(err)
	}
	pt := dump.PartitionTable
	if pt.LastLBA != size/512-34 {
		t.Errorf("last usable LBA %d, want %d", pt.LastLBA, size/512-34)
	}
	if len(pt.Partitions) != 2 || pt.Partitions[1].Name != "data" || pt.Partitions[1].Start != 22528 {
		t.Fatalf("partitions %+v", pt.Partitions)
	}
	if end := pt.Partitions[1].Start + pt.Partitions[1].Size; end != size/512-2048 {
		t.Errorf("data partition ends at sector %d, want %d (the last whole MiB)", end, size/512-2048)
	}
	ps, err := Read(f)
	if err != nil || len(ps) != 2 || ps[0].Name != "sys" || ps[1].Size() != int64(pt.Partitions[1].Size)*512 {
		t.Errorf("Read: %+v, %v", ps, err)
	}
}
