package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ec2Fault answers with EC2's own error shape.
func ec2Fault(status int, code, msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>rid-2</RequestID></Response>`, code, msg)
	}
}

// EBS direct over its REST-JSON wire protocol against the emulator behind
// the faulting front: a block's bytes and checksum come back intact, its
// body streamed unsigned with EBS's checksum headers; throttling and 5xx
// answers are retried by the policy alone, a refused call is sent once
// with EBS's code and message; block lists page to the end. Then EC2's
// image and snapshot calls over the Query protocol on that replica:
// registered, found by tag, tagged, paged through, deleted.
func TestThinEBSAndEC2(t *testing.T) {
	ctx := context.Background()
	tg, f := newFrontTarget(t, Config{RetryAttempts: 3})

	const n = 102 // more than a page of 100 blocks
	blocks := make([][]byte, n)
	for i := range blocks {
		blocks[i] = bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5a}, BlockSize/3+1)[:BlockSize]
	}
	copy(blocks[0], randomBlocks(11, 1)[0])
	rep, err := tg.StartReplica(ctx, ReplicaInput{VolumeGiB: 1, ClientToken: "rehost-thin-d0", Tags: map[string]string{"rehost:job": "j-thin"}})
	if err != nil {
		t.Fatal(err)
	}
	f.inject("PutSnapshotBlock", jsonFault(http.StatusBadRequest, "RequestThrottledException", "rate exceeded"),
		jsonFault(http.StatusInternalServerError, "InternalServerException", "try again"))
	agg := sha256.New()
	for i, b := range blocks {
		sum := sha256.Sum256(b)
		if err := tg.PutBlock(ctx, rep.SnapshotID, int64(i), b, sum); err != nil {
			t.Fatalf("put block %d: %v", i, err)
		}
		agg.Write(sum[:])
		if i == 0 {
			if c := f.count("PutSnapshotBlock"); c != 3 {
				t.Fatalf("throttled, failed, stored: %d PutSnapshotBlock calls, want 3", c)
			}
			h := f.lastHeader("PutSnapshotBlock")
			if h.Get("X-Amz-Content-Sha256") != "UNSIGNED-PAYLOAD" || h.Get("X-Amz-Checksum") != b64(sum[:]) ||
				h.Get("X-Amz-Checksum-Algorithm") != "SHA256" || h.Get("X-Amz-Data-Length") != strconv.Itoa(BlockSize) {
				t.Fatalf("a block's headers: %v", h)
			}
		}
	}
	calls := f.count("PutSnapshotBlock")
	err = tg.PutBlock(ctx, rep.SnapshotID, n, blocks[1], sha256.Sum256(blocks[2]))
	if apiCode(err) != "ValidationException" || !strings.Contains(err.Error(), "does not match its data") ||
		!strings.Contains(err.Error(), "operation error EBS: PutSnapshotBlock") || transient(err) || f.count("PutSnapshotBlock") != calls+1 {
		t.Fatalf("a block whose checksum is not its data's: %v (code %q), sent %d times", err, apiCode(err), f.count("PutSnapshotBlock")-calls)
	}
	if err := tg.CompleteReplica(ctx, rep.SnapshotID, n, agg.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	if st, err := tg.SnapshotState(ctx, rep.SnapshotID); err != nil || st != "completed" {
		t.Fatalf("the replica after completion: %q, %v", st, err)
	}

	var listed []Block
	if err := tg.ListBlocks(ctx, rep.SnapshotID, 0, func(p []Block) error { listed = append(listed, p...); return nil }); err != nil || len(listed) != n {
		t.Fatalf("blocks listed: %d, %v; want %d", len(listed), err, n)
	}
	var paged []Block
	pages := f.count("ListSnapshotBlocks")
	err = tg.blockPages(ctx, "ListSnapshotBlocks", "list by hundreds", func(ctx context.Context, token string) ([]Block, string, error) {
		return tg.ebs.ListSnapshotBlocks(ctx, rep.SnapshotID, 0, 100, token)
	}, func(p []Block) error { paged = append(paged, p...); return nil })
	if err != nil || !slices.Equal(paged, listed) || f.count("ListSnapshotBlocks")-pages != 2 {
		t.Fatalf("by pages of 100: %d blocks in %d pages, %v", len(paged), f.count("ListSnapshotBlocks")-pages, err)
	}
	var changed []Block
	if err := tg.ChangedBlocks(ctx, "", rep.SnapshotID, func(p []Block) error { changed = append(changed, p...); return nil }); err != nil || len(changed) != n {
		t.Fatalf("changed blocks of a first snapshot: %d, %v", len(changed), err)
	}
	f.inject("GetSnapshotBlock", jsonFault(http.StatusServiceUnavailable, "ServiceUnavailable", "later"))
	buf := make([]byte, BlockSize)
	for _, i := range []int{0, 1, n - 1} {
		sum, err := tg.GetBlock(ctx, rep.SnapshotID, listed[i], buf)
		want := sha256.Sum256(blocks[i])
		if err != nil || listed[i].Index != int64(i) || !bytes.Equal(buf, blocks[i]) || sum != b64(want[:]) {
			t.Fatalf("block %d read back: index %d, checksum %q (want %q), same bytes %v, %v", i, listed[i].Index, sum, b64(want[:]), bytes.Equal(buf, blocks[i]), err)
		}
	}
	if c := f.count("GetSnapshotBlock"); c != 4 {
		t.Fatalf("three blocks, one refused first: %d GetSnapshotBlock calls, want 4", c)
	}
	err = tg.ListBlocks(ctx, "snap-0123456789abcdef0", 0, func([]Block) error { return nil })
	if apiCode(err) != "ResourceNotFoundException" || !strings.Contains(err.Error(), "list the blocks of snapshot snap-0123456789abcdef0") {
		t.Fatalf("blocks of a snapshot that does not exist: %v (code %q)", err, apiCode(err))
	}

	// EC2 on the replica: RegisterImage, DescribeImages, CreateTags,
	// DescribeSnapshots, DeregisterImage, DeleteSnapshot.
	err = tg.Finalize(ctx, "ami-nope", "x", nil)
	if !strings.HasPrefix(apiCode(err), "InvalidAMIID.") || !strings.Contains(err.Error(), "operation error EC2: DescribeImages") ||
		transient(err) || f.count("DescribeImages") != 1 {
		t.Fatalf("a malformed AMI id: %v (code %q), %d calls", err, apiCode(err), f.count("DescribeImages"))
	}
	if err := tg.Finalize(ctx, "ami-0123456789abcdef0", "x", nil); err == nil || !strings.Contains(err.Error(), "it does not exist") {
		t.Fatalf("an AMI that does not exist: %v", err)
	}
	imp, err := tg.StartImport(ctx, ImportInput{Snapshots: []string{rep.SnapshotID}, Mode: ModeRegister, BootMode: "uefi",
		Platform: "Linux", ClientToken: "rehost-thin", Tags: map[string]string{"rehost:run": "r-thin"}})
	if err != nil {
		t.Fatal(err)
	}
	f.inject("RegisterImage", queryFault(http.StatusBadRequest, "RequestLimitExceeded", "Request limit exceeded."))
	res, err := tg.Wait(ctx, imp, nil)
	if err != nil || res.ImageID == "" || !slices.Equal(res.SnapshotIDs, []string{rep.SnapshotID}) || f.count("RegisterImage") != 2 {
		t.Fatalf("registered after a throttle: %+v, %v, %d calls", res, err, f.count("RegisterImage"))
	}
	calls = f.count("DescribeImages")
	f.inject("DescribeImages", ec2Fault(http.StatusServiceUnavailable, "Unavailable", "The service is unavailable."))
	imgs, err := tg.FindImages(ctx, map[string]string{"rehost:run": "r-thin"})
	if err != nil || len(imgs) != 1 || imgs[0].ID != res.ImageID || imgs[0].Name != "rehost-rehost-thin" || imgs[0].RootDevice != "/dev/xvda" ||
		!slices.Equal(imgs[0].Devices, []string{"/dev/xvda"}) || !slices.Equal(imgs[0].SnapshotIDs, []string{rep.SnapshotID}) ||
		imgs[0].State == "" || imgs[0].CreationDate.IsZero() || f.count("DescribeImages") != calls+2 {
		t.Fatalf("the image by its tag, after a 503: %+v, %v, %d calls", imgs, err, f.count("DescribeImages")-calls)
	}
	if err := tg.Finalize(ctx, res.ImageID, "web-01 <2026>", map[string]string{"rehost:job": "j-thin", "empty": ""}); err != nil {
		t.Fatal(err)
	}
	snaps, err := tg.FindSnapshots(ctx, map[string]string{"Name": "web-01 <2026>", "empty": ""})
	if err != nil || len(snaps) != 1 || snaps[0].ID != rep.SnapshotID || snaps[0].State != "completed" || snaps[0].StartTime.IsZero() ||
		snaps[0].Tags["rehost:job"] != "j-thin" || snaps[0].Tags["Name"] != "web-01 <2026>" {
		t.Fatalf("the snapshot by the tags Finalize put: %+v, %v", snaps, err)
	}

	// Pages: a second replica, then DescribeSnapshots a snapshot a page,
	// the second page throttled once.
	two, err := tg.StartReplica(ctx, ReplicaInput{VolumeGiB: 1, ClientToken: "rehost-thin-d1", Tags: map[string]string{"rehost:job": "j-thin"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.CompleteReplica(ctx, two.SnapshotID, 0, nil); err != nil {
		t.Fatal(err)
	}
	calls = f.count("DescribeSnapshots")
	f.inject("DescribeSnapshots", f.em.ServeHTTP, ec2Fault(http.StatusServiceUnavailable, "RequestLimitExceeded", "slow down"))
	var ids []string
	params := url.Values{"Owner.1": {"self"}, "MaxResults": {"1"}, "Filter.1.Name": {"tag:rehost:job"}, "Filter.1.Value.1": {"j-thin"}}
	err = ec2Pages(ctx, tg, "DescribeSnapshots", params, func(p snapshotsPage) {
		if len(p.Snapshots) != 1 {
			t.Errorf("a page of %d snapshots, want 1", len(p.Snapshots))
		}
		for _, s := range p.Snapshots {
			ids = append(ids, s.SnapshotID)
		}
	})
	slices.Sort(ids)
	want := []string{rep.SnapshotID, two.SnapshotID}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) || f.count("DescribeSnapshots")-calls != 3 {
		t.Fatalf("snapshots a page at a time: %v, %v, %d calls (want %v in 2 pages and a retry)", ids, err, f.count("DescribeSnapshots")-calls, want)
	}

	if err := tg.DeleteImage(ctx, res.ImageID, []string{rep.SnapshotID, two.SnapshotID}); err != nil {
		t.Fatal(err)
	}
	if imgs, err := tg.FindImages(ctx, map[string]string{"rehost:run": "r-thin"}); err != nil || len(imgs) != 0 {
		t.Fatalf("images after the delete: %+v, %v", imgs, err)
	}
	if st, err := tg.SnapshotState(ctx, rep.SnapshotID); err != nil || st != "" {
		t.Fatalf("the replica after the delete: %q, %v", st, err)
	}
	if err := tg.DeleteImage(ctx, res.ImageID, []string{rep.SnapshotID}); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
}
