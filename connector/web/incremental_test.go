package web_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/internal/lab/guestdisk"
	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/store"
)

const blockSize = 512 << 10 // an EBS snapshot block

// waitNextRun waits for the job's newest run other than after to end, and
// returns it as the API gives it.
func waitNextRun(t *testing.T, h *harness, jobID, after string) api.ReplicationRun {
	t.Helper()
	local := &api.Local{D: h.D}
	var last api.ReplicationRun
	for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, err := local.GetReplicationRuns(context.Background(), &api.GetReplicationRunsInput{ReplicationJobID: jobID, MaxResults: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.ReplicationRunList) == 0 || out.ReplicationRunList[0].ReplicationRunID == after {
			continue
		}
		last = out.ReplicationRunList[0]
		if !store.RunState(last.State).Live() {
			run, err := local.GetReplicationRun(context.Background(), &api.GetReplicationRunInput{ReplicationRunID: last.ReplicationRunID})
			if err != nil {
				t.Fatal(err)
			}
			if run.ReplicationRun.State != string(store.RunCompleted) {
				t.Fatalf("run %s: %s: %s", last.ReplicationRunID, run.ReplicationRun.State, run.ReplicationRun.StatusMessage)
			}
			return run.ReplicationRun
		}
	}
	t.Fatalf("job %s: no run after %q ended within 3 minutes (last %+v)", jobID, after, last)
	return last
}

// writeBlocks asks the simulated vCenter, as a user of the lab would
// (POST /_vcenter/write), to write 4 KiB of random bytes at each offset of
// the VM's disk.
func writeBlocks(t *testing.T, h *harness, vm string, disk int, offsets ...int64) {
	t.Helper()
	sim := h.Peers.Sim
	want := strings.ReplaceAll(sim.Thumbprint(), ":", "")
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if sum := sha256.Sum256(raw[0]); fmt.Sprintf("%X", sum[:]) != want {
				return fmt.Errorf("the certificate is not the simulated vCenter's")
			}
			return nil
		}}}}
	res, err := diskwrite.Post(context.Background(), hc, sim.WriteURL(), sim.User(), sim.Password(), diskwrite.Request{VM: vm, Disk: disk, BlockSize: 4096, Offsets: offsets})
	if err != nil || len(res.Offsets) != len(offsets) {
		t.Fatalf("write into %s disk %d: %+v, %v", vm, disk, res, err)
	}
}

// field is the text of the element with id in a page, unescaped.
func field(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no element %q in the page:\n%s", id, body)
	}
	return html.UnescapeString(strings.TrimSpace(m[1]))
}

func bytesText(n int64) string {
	return humanize.IBytes(uint64(n)) + " (" + strconv.FormatInt(n, 10) + " bytes)"
}

var barRE = regexp.MustCompile(`<g class="bar[^"]*" data-run="([^"]+)"><title>([^<]*)</title><rect x="\d+" y="\d+" width="\d+" height="(\d+)">`)

// An incremental job through the console without JavaScript: created
// from the form every 15 minutes (a sub-hour frequency refused for a full
// job next to its field), seeded, then blocks written into its disk
// through the lab's write request and a second run started from the job
// page. The run's page shows exactly the bytes and 512 KiB blocks written,
// and its verification; the job's page plots the bytes sent per run, one
// bar a run in order and to scale. A byte flipped in a replica block is
// then found by "Verify now" (a full verification) and mended. A full job
// has no Verify now, and the verification is refused for it.
func TestIncrementalPages(t *testing.T) {
	vms := []vspheresim.VMSpec{
		{Name: "inc-01", GuestID: "ubuntu64Guest", Firmware: "efi", PowerOn: true, ToolsRunning: true, Disks: []vspheresim.DiskSpec{
			{CapacityBytes: 48 << 20, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, DataBytes: 2 << 20, Seed: 5})},
			{CapacityBytes: 32 << 20, Seed: func(w io.WriterAt) error { return vspheresim.PseudoRandom(w, 6, 4<<20, 1<<20) }},
		}},
		{Name: "full-01", GuestID: "ubuntu64Guest", Firmware: "efi", PowerOn: true, ToolsRunning: true, Disks: []vspheresim.DiskSpec{
			{CapacityBytes: 48 << 20, Seed: vspheresim.GuestDisk(guestdisk.Options{Size: 48 << 20, Firmware: guestdisk.EFI, Seed: 7})},
		}},
	}
	h := start(t, apitest.Options{VMs: vms})
	ctx := context.Background()
	local := &api.Local{D: h.D}
	b := h.browser()
	b.setup()
	if a := b.submit("/servers", "/servers/import", nil); a.location() != "/servers" {
		t.Fatalf("import: %d %q", a.status, a.location())
	}
	srv, err := local.GetServers(ctx, &api.GetServersInput{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, s := range srv.ServerList {
		ids[s.VmServer.VmName] = s.ServerID
	}

	// The form offers the modes and the sub-hour frequencies; 15 minutes
	// is refused for a full job, next to its field.
	if a := b.get("/jobs/new"); !strings.Contains(a.body, `name="mode" value="incremental"`) || !strings.Contains(a.body, `<option value="15">15 minutes</option>`) ||
		!strings.Contains(a.body, `<option value="20">20 minutes</option>`) || !strings.Contains(a.body, `<option value="30">30 minutes</option>`) {
		t.Errorf("the new job form lacks the mode or the minutes:\n%s", a.body)
	}
	a := b.submit("/jobs/new", "/jobs", url.Values{"server": {ids["inc-01"]}, "mode": {"full"}, "every_minutes": {"15"}, "keep": {"2"}, "license": {"AWS"}})
	if a.status != http.StatusUnprocessableEntity || !regexp.MustCompile(`id="f-every_minutes-error"[^>]*>.*need incremental mode`).MatchString(a.body) {
		t.Errorf("a full job every 15 minutes: %d\n%s", a.status, a.body)
	}
	a = b.submit("/jobs/new", "/jobs", url.Values{"server": {ids["inc-01"]}, "mode": {"incremental"}, "every_minutes": {"15"}, "keep": {"2"}, "license": {"AWS"}})
	if a.status != http.StatusSeeOther || !strings.HasPrefix(a.location(), "/jobs/") {
		t.Fatalf("create the incremental job: %d %s\n%s", a.status, a.location(), a.body)
	}
	page := a.location()
	jobID := strings.TrimPrefix(page, "/jobs/")
	if j, err := local.GetReplicationJobs(ctx, &api.GetReplicationJobsInput{ReplicationJobID: jobID}); err != nil ||
		j.ReplicationJobList[0].Rehost.Mode != "incremental" || j.ReplicationJobList[0].Rehost.FrequencyMinutes != 15 || j.ReplicationJobList[0].Frequency != 0 {
		t.Fatalf("the job as created: %+v %v", j, err)
	}
	if a := b.get("/jobs"); !strings.Contains(a.body, "15 min") {
		t.Errorf("the jobs table does not say every 15 min:\n%s", a.body)
	}

	seed := waitNextRun(t, h, jobID, "")
	a = b.get(page)
	if !strings.Contains(a.body, "every 15 min") || !strings.Contains(a.body, `action="`+page+`/verify"`) || field(t, a.body, "job-mode") != "incremental" {
		t.Errorf("the incremental job's page:\n%s", a.body)
	}

	// Three 512 KiB blocks of the data disk change (two writes share one).
	writeBlocks(t, h, "inc-01", 1, 0, 1<<20, 1<<20+4096, 9<<20)
	if a := b.submit(page, page+"/start", nil); a.status != http.StatusSeeOther {
		t.Fatalf("start a run: %d\n%s", a.status, a.body)
	}
	delta := waitNextRun(t, h, jobID, seed.ReplicationRunID)
	rep := delta.Rehost.Replication
	if rep == nil || rep.Mode != "incremental" || rep.BlocksChanged != 3 || rep.BytesSent != 3*blockSize || rep.Verification == nil {
		t.Fatalf("the delta as the API gives it: %+v", rep)
	}
	a = b.get("/runs/" + delta.ReplicationRunID)
	if got := field(t, a.body, "bytes-sent"); got != bytesText(3*blockSize) || got != bytesText(rep.BytesSent) {
		t.Errorf("run page: bytes sent %q, want %q", got, bytesText(3*blockSize))
	}
	if got := field(t, a.body, "bytes-read"); got != bytesText(rep.BytesRead) {
		t.Errorf("run page: bytes read %q, the API says %d", got, rep.BytesRead)
	}
	if strings.Contains(a.body, "not uploaded") {
		t.Errorf("run page: an incremental run's disks say they were not uploaded:\n%s", a.body)
	}
	if got := field(t, a.body, "blocks-changed"); got != "3 of 512 KiB" {
		t.Errorf("run page: blocks changed %q", got)
	}
	v := rep.Verification
	if v.Full || v.Mismatches != 0 || v.Blocks < 3 || v.Sampled == 0 {
		t.Errorf("the delta's verification: %+v", v)
	}
	if field(t, a.body, "blocks-compared") != strconv.FormatInt(v.Blocks, 10) || field(t, a.body, "mismatches") != "0" ||
		!strings.Contains(field(t, a.body, "verify-kind"), fmt.Sprintf("a random sample of %d unchanged", v.Sampled)) ||
		!strings.Contains(a.body, html.EscapeString(rep.Verified)) {
		t.Errorf("run page: the verification (%s) is not shown:\n%s", rep.Verified, a.body)
	}
	parent := seed.Rehost.Replication.Disks[1].SnapshotID
	if !strings.Contains(a.body, "<code>"+rep.Disks[1].SnapshotID+"</code>") || !strings.Contains(a.body, "<code>"+parent+"</code>") {
		t.Errorf("run page: the data disk's replica %s on top of %s is not shown", rep.Disks[1].SnapshotID, parent)
	}

	// The job page: a bar a run, oldest first, to scale, with the runs'
	// exact bytes.
	a = b.get(page)
	bars := barRE.FindAllStringSubmatch(a.body, -1)
	if len(bars) != 2 || bars[0][1] != seed.ReplicationRunID || bars[1][1] != delta.ReplicationRunID {
		t.Fatalf("the chart's bars %q, want the seed %s then the delta %s:\n%s", bars, seed.ReplicationRunID, delta.ReplicationRunID, a.body)
	}
	seedSent := seed.Rehost.Replication.BytesSent
	if !strings.Contains(bars[0][2], bytesText(seedSent)+" sent") || !strings.Contains(bars[1][2], bytesText(3*blockSize)+" sent") {
		t.Errorf("the bars' titles %q and %q", bars[0][2], bars[1][2])
	}
	h0, _ := strconv.Atoi(bars[0][3])
	h1, _ := strconv.Atoi(bars[1][3])
	if want := max(1, int(int64(h0)*3*blockSize/seedSent)); seedSent <= 3*blockSize || h0 == 0 || h1 != want {
		t.Errorf("bar heights %d (seed, %d bytes) and %d (delta), want %d", h0, seedSent, h1, want)
	}
	if !strings.Contains(a.body, `<div class="sub nowrap">1.5 MiB sent</div>`) {
		t.Errorf("the runs table does not show the delta's 1.5 MiB sent")
	}
	if !strings.Contains(a.body, `<div class="sub">`+html.EscapeString(rep.Verified)+`</div>`) {
		t.Errorf("the runs table does not show the delta's verification %q", rep.Verified)
	}

	// A flipped byte in a replica block; Verify now reads every block back.
	if err := h.Peers.AWS.TamperBlock(rep.Disks[1].SnapshotID, 2); err != nil {
		t.Fatal(err)
	}
	a = b.submit(page, page+"/verify", nil)
	if a.status != http.StatusSeeOther || a.location() != page {
		t.Fatalf("verify now: %d %s\n%s", a.status, a.location(), a.body)
	}
	if a := b.get(page); !strings.Contains(a.body, "reads back every block of the replicas of job "+jobID) {
		t.Errorf("verify now said nothing:\n%s", a.body)
	}
	check := waitNextRun(t, h, jobID, delta.ReplicationRunID)
	cv := check.Rehost.Replication.Verification
	if cv == nil || !cv.Full || cv.Mismatches != 1 || cv.Repaired != 1 {
		t.Fatalf("the verification after the tampering: %+v", cv)
	}
	a = b.get("/runs/" + check.ReplicationRunID)
	if field(t, a.body, "verify-kind") != "every block (full verification)" || field(t, a.body, "mismatches") != "1" ||
		!strings.HasPrefix(field(t, a.body, "repaired"), "1 ") || field(t, a.body, "blocks-compared") != strconv.FormatInt(cv.Blocks, 10) ||
		!strings.Contains(a.body, "(all), 1 mismatches, 1 repaired") {
		t.Errorf("the full verification's run page:\n%s", a.body)
	}
	if a := b.get(page); len(barRE.FindAllString(a.body, -1)) != 3 || !strings.Contains(a.body, "every block last verified") {
		t.Errorf("the job page after the verification:\n%s", a.body)
	}

	// The edit form keeps the mode and the minutes, and moves to 30.
	a = b.get(page + "/edit")
	if !strings.Contains(a.body, `value="incremental" checked`) || !strings.Contains(a.body, `<option value="15" selected>`) {
		t.Errorf("the edit form does not hold incremental every 15 min:\n%s", a.body)
	}
	if a := b.submit(page+"/edit", page, url.Values{"mode": {"incremental"}, "every_minutes": {"30"}, "keep": {"2"}, "license": {"AWS"}}); a.location() != page {
		t.Fatalf("edit to 30 minutes: %d\n%s", a.status, a.body)
	}
	if a := b.get(page); !strings.Contains(a.body, "every 30 min") {
		t.Errorf("after the edit:\n%s", a.body)
	}

	// A full job: no Verify now, and the verification refused.
	a = b.submit("/jobs/new", "/jobs", url.Values{"server": {ids["full-01"]}, "mode": {"full"}, "frequency": {"12"}, "keep": {"1"}, "license": {"AWS"},
		"seed": {time.Now().Add(48 * time.Hour).UTC().Format("2006-01-02T15:04")}})
	if a.status != http.StatusSeeOther {
		t.Fatalf("create the full job: %d\n%s", a.status, a.body)
	}
	full := a.location()
	if a := b.get(full); strings.Contains(a.body, "/verify") || field(t, a.body, "job-mode") != "full" {
		t.Errorf("the full job's page offers a verification:\n%s", a.body)
	}
	if a := b.submit(full, full+"/verify", nil); a.location() != full {
		t.Fatalf("verify a full job: %d %s", a.status, a.location())
	}
	if a := b.get(full); !strings.Contains(a.body, "Could not verify the replicas") || !strings.Contains(a.body, "full mode") {
		t.Errorf("verifying a full job was not refused:\n%s", a.body)
	}
}
