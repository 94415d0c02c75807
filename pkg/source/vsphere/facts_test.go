package vsphere

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/rehost/rehost/internal/lab/vspheresim"
	"github.com/rehost/rehost/pkg/source"
)

// factVMs are VMs showing each fact preflight reads from vCenter.
func factVMs() []vspheresim.VMSpec {
	return []vspheresim.VMSpec{
		{Name: "facts-01", GuestID: "ubuntu64Guest", PowerOn: true, ToolsRunning: true, HardwareVersion: "vmx-13",
			GuestDetailedData: "architecture='X86' bitness='64' distroName='Ubuntu' distroVersion='22.04' prettyName='Ubuntu 22.04.3 LTS'",
			Snapshots:         2,
			Disks: []vspheresim.DiskSpec{{CapacityBytes: mib}, {CapacityBytes: mib, Mode: "independent_persistent"},
				{CapacityBytes: mib, Mode: "independent_nonpersistent"}, {CapacityBytes: mib, MultiWriter: true},
				{CapacityBytes: mib, PhysicalRDM: "naa.600508b1001c0d1b"}}},
		{Name: "facts-02", GuestID: "rhel8_64Guest", Encrypted: true, Disks: []vspheresim.DiskSpec{{CapacityBytes: mib}}},
	}
}

func checkFacts(t *testing.T, vm source.VM, detailed bool) {
	t.Helper()
	switch vm.Name {
	case "facts-01":
		wantVersion := "22.04"
		if !detailed {
			wantVersion = ""
		}
		if vm.HardwareVersion != "vmx-13" || vm.GuestID != "ubuntu64Guest" || vm.GuestVersion != wantVersion || vm.Snapshots != 2 {
			t.Fatalf("%s: hardware %q guest %q version %q (want %q) snapshots %d", vm.Name, vm.HardwareVersion, vm.GuestID, vm.GuestVersion, wantVersion, vm.Snapshots)
		}
		want := []source.Disk{{}, {Mode: source.DiskIndependent}, {Mode: source.DiskIndependentNonpersistent}, {Shared: true},
			{RawDevice: "physical RDM /vmfs/devices/disks/naa.600508b1001c0d1b"}}
		if len(vm.Disks) != len(want) {
			t.Fatalf("%s: %d disks, want %d", vm.Name, len(vm.Disks), len(want))
		}
		for i, d := range vm.Disks {
			w := want[i]
			if d.Mode != w.Mode || d.Shared != w.Shared || d.RawDevice != w.RawDevice || d.Encrypted {
				t.Fatalf("%s disk %d: %+v, want mode %q shared %v raw %q", vm.Name, i, d, w.Mode, w.Shared, w.RawDevice)
			}
		}
	case "facts-02":
		if vm.Snapshots != 0 || vm.GuestID != "rhel8_64Guest" || len(vm.Disks) != 1 || !vm.Disks[0].Encrypted || vm.Disks[0].Mode != "" {
			t.Fatalf("%s: %+v", vm.Name, vm)
		}
	default:
		t.Fatalf("unexpected vm %s", vm.Name)
	}
}

// The inventory and VM report what preflight reads: hardware version, the
// guest's own id and version, the snapshot chain's depth, and which disks
// cannot be snapshotted or exported.
func TestPreflightFacts(t *testing.T) {
	sim := startSim(t, factVMs())
	s := connect(t, sim)
	ctx := context.Background()
	list, err := s.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("%d vms, want 2", len(list))
	}
	for _, vm := range list {
		checkFacts(t, vm, true)
		one, err := s.VM(ctx, vm.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkFacts(t, one, true)
	}
}

// refuseDetailed answers a retrieval naming guest.guestDetailedData the
// way a vCenter older than 8.0.2 does: an InvalidProperty fault.
type refuseDetailed struct {
	rt      http.RoundTripper
	refused int
}

func (r *refuseDetailed) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	if bytes.Contains(body, []byte(detailedProp)) {
		r.refused++
		fault := `<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring></faultstring><detail><InvalidPropertyFault xmlns="urn:vim25" xsi:type="InvalidProperty"><name>guest.guestDetailedData</name></InvalidPropertyFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>`
		return &http.Response{StatusCode: http.StatusInternalServerError, Status: "500 Internal Server Error", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{"Content-Type": {"text/xml"}}, Body: io.NopCloser(strings.NewReader(fault)), Request: req}, nil
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	return r.rt.RoundTrip(req)
}

// A vCenter that does not know the detailed guest data is asked once, and
// then never again; everything else is reported as before.
func TestPreflightFactsOlderVCenter(t *testing.T) {
	sim := startSim(t, factVMs())
	s := connect(t, sim)
	rt := &refuseDetailed{rt: s.c.HTTP.Transport}
	s.c.HTTP.Transport = rt
	ctx := context.Background()
	for range 2 {
		list, err := s.Inventory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, vm := range list {
			checkFacts(t, vm, false)
			one, err := s.VM(ctx, vm.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkFacts(t, one, false)
		}
	}
	if rt.refused != 1 {
		t.Fatalf("the detailed guest data was asked for %d times after vCenter refused it, want once", rt.refused)
	}
}
