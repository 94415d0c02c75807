package aws

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
)

// FuzzStagingKey: whatever the job and run ids, a staged key lies under the
// lifecycle rule's prefix and under its own run's prefix, and no other run's
// prefix holds it.
func FuzzStagingKey(f *testing.F) {
	f.Add("sms-job-0123456789abcdef0", "sms-run-0123456789abcdef0", 0, "vmdk")
	f.Add("j/x", "..", 3, ".vhdx")
	f.Add("", ".", -1, "")
	f.Add("../../etc", "a/../b", 7, "raw/../x")
	f.Add("job\x00", "run\n", 1, "vhd")
	f.Fuzz(func(t *testing.T, job, run string, i int, format string) {
		key := StagingKey(job, run, i, disk.Format(format))
		prefix := RunPrefix(job, run)
		if !strings.HasPrefix(prefix, StagingPrefix) || !strings.HasPrefix(key, prefix) {
			t.Fatalf("key %q (run prefix %q) is not under %q", key, prefix, StagingPrefix)
		}
		segs := strings.Split(strings.TrimPrefix(key, StagingPrefix), "/")
		if len(segs) != 3 {
			t.Fatalf("key %q has %d segments under the staging prefix, want job/run/disk", key, len(segs))
		}
		for _, s := range segs {
			if s == "" || s == "." || s == ".." {
				t.Fatalf("key %q has segment %q", key, s)
			}
		}
		if other := RunPrefix(job, run+"x"); strings.HasPrefix(key, other) {
			t.Fatalf("key %q of run %q is under run %q's prefix %q", key, run, run+"x", other)
		}
	})
}

// lifecycleCovers reports whether an enabled rule of a lifecycle
// configuration document (as PutBucketLifecycleConfiguration sends it)
// expires key and aborts its unfinished uploads.
func lifecycleCovers(t *testing.T, doc, key string) bool {
	t.Helper()
	var lc struct {
		Rules []struct {
			Status string `xml:"Status"`
			Prefix string `xml:"Prefix"`
			Filter struct {
				Prefix string `xml:"Prefix"`
			} `xml:"Filter"`
			Expiration struct {
				Days int `xml:"Days"`
			} `xml:"Expiration"`
			Abort struct {
				Days int `xml:"DaysAfterInitiation"`
			} `xml:"AbortIncompleteMultipartUpload"`
		} `xml:"Rule"`
	}
	if err := xml.Unmarshal([]byte(doc), &lc); err != nil {
		t.Fatalf("lifecycle document: %v\n%s", err, doc)
	}
	for _, r := range lc.Rules {
		p := r.Filter.Prefix
		if p == "" {
			p = r.Prefix
		}
		if r.Status == "Enabled" && strings.HasPrefix(key, p) && r.Expiration.Days > 0 && r.Abort.Days > 0 {
			return true
		}
	}
	return false
}
