//go:build windows

package hyperv

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	cim "github.com/microsoft/wmi/pkg/wmiinstance"

	"github.com/rehost/rehost/pkg/source"
)

// A Windows build of rehost running on the Hyper-V host itself drives
// Hyper-V's WMI provider (root\virtualization\v2) through
// github.com/microsoft/wmi instead of WinRM: Msvm_ComputerSystem and its
// settings for the inventory, Msvm_VirtualSystemSnapshotService for
// checkpoints, Msvm_ImageManagementService for the disks' chains, and reads
// the disk files from their local (or UNC) paths. It answers in the same
// shapes as the scripts, so the rest of the source is shared.
//
// A WMI session is not safe for concurrent use, and COM wants each call on
// the thread that initialised it: one goroutine, locked to its OS thread,
// owns the session and runs the calls one after the other.

const (
	virtualizationNamespace = `root\virtualization\v2`
	jobStarted              = 4096
)

type wmiControl struct {
	host  string
	calls chan func(*cim.WmiSession)
	stop  chan struct{}
	once  sync.Once
}

func newWMI(cfg Config) (control, func() files, error) {
	c := &wmiControl{calls: make(chan func(*cim.WmiSession)), stop: make(chan struct{})}
	c.host, _ = os.Hostname()
	ready := make(chan error, 1)
	go c.loop(ready)
	if err := <-ready; err != nil {
		return nil, nil, fmt.Errorf("connect to %s on this host: %w", virtualizationNamespace, err)
	}
	return c, func() files { return localFiles{} }, nil
}

func (c *wmiControl) loop(ready chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var mgr *cim.WmiSessionManager
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil { // the library panics when COM cannot start
				err = fmt.Errorf("initialise WMI: %v", r)
			}
		}()
		mgr = cim.NewWmiSessionManager()
		return nil
	}()
	if err != nil {
		ready <- err
		return
	}
	defer mgr.Close()
	sess, err := mgr.GetLocalSession(virtualizationNamespace)
	if err == nil {
		_, err = sess.Connect()
	}
	if err != nil {
		ready <- fmt.Errorf("%v (is the Hyper-V role installed, and rehost run by a Hyper-V administrator?): %w", err, source.ErrAuth)
		return
	}
	defer sess.Close()
	ready <- nil
	for {
		select {
		case fn := <-c.calls:
			fn(sess)
		case <-c.stop:
			return
		}
	}
}

// do runs fn on the session's goroutine. A call under way is not
// interrupted by ctx (WMI has no cancellation); a call not yet started is.
func (c *wmiControl) do(ctx context.Context, fn func(s *cim.WmiSession) error) error {
	errc := make(chan error, 1)
	select {
	case c.calls <- func(s *cim.WmiSession) { errc <- fn(s) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return errors.New("the wmi session is closed")
	}
	return <-errc
}

func (c *wmiControl) close() error {
	c.once.Do(func() { close(c.stop) })
	return nil
}

// prop reads a property as text ("" when null).
func prop(in *cim.WmiInstance, name string) string {
	v, err := in.GetProperty(name)
	if err != nil || v == nil {
		return ""
	}
	switch x := v.(type) {
	case []interface{}:
		parts := make([]string, 0, len(x))
		for _, p := range x {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, "\n")
	}
	return fmt.Sprint(v)
}

func propInt(in *cim.WmiInstance, name string) int64 {
	n, _ := strconv.ParseInt(prop(in, name), 10, 64)
	return n
}

func query(s *cim.WmiSession, wql string) ([]*cim.WmiInstance, error) {
	out, err := s.QueryInstances(wql)
	if err != nil {
		return nil, fmt.Errorf("wmi query %q: %w", wql, err)
	}
	return out, nil
}

// vms reads the VMs (one when id is set; id is a checked GUID).
func (c *wmiControl) vms(s *cim.WmiSession, id string) ([]hostVM, error) {
	wql := "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine'"
	if id != "" {
		wql += " AND Name = '" + strings.ToUpper(id) + "'"
	}
	systems, err := query(s, wql)
	if err != nil {
		return nil, err
	}
	defer cim.CloseAllInstances(systems)
	var out []hostVM
	for _, cs := range systems {
		h, err := c.vm(s, cs)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

var enabledStates = map[string]string{"2": "Running", "3": "Off", "6": "Saved", "9": "Paused", "32768": "Paused", "32769": "Saved", "10": "Starting", "4": "Stopping"}

func (c *wmiControl) vm(s *cim.WmiSession, cs *cim.WmiInstance) (hostVM, error) {
	id := strings.ToLower(prop(cs, "Name"))
	h := hostVM{ID: id, Name: prop(cs, "ElementName"), Host: c.host, State: enabledStates[prop(cs, "EnabledState")],
		Status: prop(cs, "StatusDescriptions")}
	prefix := "Microsoft:" + strings.ToUpper(id)
	settings, err := query(s, "SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '"+strings.ToUpper(id)+
		"' AND VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'")
	if err != nil {
		return h, err
	}
	defer cim.CloseAllInstances(settings)
	h.Generation = 1
	if len(settings) > 0 {
		h.Version = prop(settings[0], "Version")
		if strings.HasSuffix(prop(settings[0], "VirtualSystemSubType"), ":2") {
			h.Generation = 2
		}
		h.SecureBoot = prop(settings[0], "SecureBootEnabled") == "true"
		h.Location = prop(settings[0], "ConfigurationDataRoot")
	}
	like := func(class string) string {
		return "SELECT * FROM " + class + " WHERE InstanceID LIKE '" + prefix + "%'"
	}
	if ps, err := query(s, like("Msvm_ProcessorSettingData")); err == nil && len(ps) > 0 {
		h.CPUs = int(propInt(ps[0], "VirtualQuantity"))
		cim.CloseAllInstances(ps)
	}
	if ms, err := query(s, like("Msvm_MemorySettingData")); err == nil && len(ms) > 0 {
		h.MemoryMiB = propInt(ms[0], "VirtualQuantity")
		cim.CloseAllInstances(ms)
	}
	if hb, err := query(s, "SELECT * FROM Msvm_HeartbeatComponent WHERE SystemName = '"+strings.ToUpper(id)+"'"); err == nil && len(hb) > 0 {
		h.Tools = strings.HasPrefix(prop(hb[0], "OperationalStatus"), "2")
		cim.CloseAllInstances(hb)
	}
	if kvp, err := query(s, "SELECT * FROM Msvm_KvpExchangeComponent WHERE SystemName = '"+strings.ToUpper(id)+"'"); err == nil && len(kvp) > 0 {
		h.GuestOS = kvpValue(prop(kvp[0], "GuestIntrinsicExchangeItems"), "OSName")
		cim.CloseAllInstances(kvp)
	}
	if h.Disks, err = c.disks(s, like("Msvm_ResourceAllocationSettingData"), like("Msvm_StorageAllocationSettingData")); err != nil {
		return h, err
	}
	h.NICs = c.nics(s, like("Msvm_SyntheticEthernetPortSettingData"), like("Msvm_EthernetPortAllocationSettingData"))
	return h, nil
}

// disks pairs each drive with its controller and the file behind it.
func (c *wmiControl) disks(s *cim.WmiSession, rasdQuery, sasdQuery string) ([]hostDisk, error) {
	rasds, err := query(s, rasdQuery)
	if err != nil {
		return nil, err
	}
	defer cim.CloseAllInstances(rasds)
	controllers := map[string]string{} // instance id → "scsi0" / "ide1"
	var scsi []string
	for _, r := range rasds {
		switch prop(r, "ResourceSubType") {
		case "Microsoft:Hyper-V:Emulated IDE Controller":
			controllers[prop(r, "InstanceID")] = "ide" + prop(r, "Address")
		case "Microsoft:Hyper-V:Synthetic SCSI Controller":
			scsi = append(scsi, prop(r, "InstanceID"))
		}
	}
	sort.Strings(scsi)
	for i, id := range scsi {
		controllers[id] = "scsi" + strconv.Itoa(i)
	}
	drives := map[string]hostDisk{} // drive instance id → disk
	for _, r := range rasds {
		sub := prop(r, "ResourceSubType")
		if sub != "Microsoft:Hyper-V:Synthetic Disk Drive" && sub != "Microsoft:Hyper-V:Physical Disk Drive" {
			continue
		}
		ctrl := controllers[instanceIDOf(prop(r, "Parent"))] + ":" + prop(r, "AddressOnParent")
		d := hostDisk{Controller: ctrl}
		if sub == "Microsoft:Hyper-V:Physical Disk Drive" {
			d.PassThru = "physical disk " + prop(r, "HostResource")
		}
		drives[prop(r, "InstanceID")] = d
	}
	sasds, err := query(s, sasdQuery)
	if err != nil {
		return nil, err
	}
	defer cim.CloseAllInstances(sasds)
	for _, sa := range sasds {
		if prop(sa, "ResourceType") != "31" { // 31: logical disk (a virtual hard disk)
			continue
		}
		key := instanceIDOf(prop(sa, "Parent"))
		d, ok := drives[key]
		if !ok {
			continue
		}
		d.Path = strings.SplitN(prop(sa, "HostResource"), "\n", 2)[0]
		d.sasd = prop(sa, "InstanceID")
		d.Shared = prop(sa, "PersistentReservationsSupported") == "true" || strings.HasSuffix(strings.ToLower(d.Path), ".vhds")
		if d.Chain, err = c.chain(s, d.Path); err != nil {
			return nil, err
		}
		drives[key] = d
	}
	out := make([]hostDisk, 0, len(drives))
	for _, d := range drives {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Controller < out[j].Controller })
	return out, nil
}

// instanceIDOf extracts InstanceID="…" from a WMI object path.
func instanceIDOf(path string) string {
	_, rest, ok := strings.Cut(path, `InstanceID="`)
	if !ok {
		return path
	}
	id, _, _ := strings.Cut(rest, `"`)
	return strings.ReplaceAll(id, `\\`, `\`)
}

func (c *wmiControl) nics(s *cim.WmiSession, portQuery, allocQuery string) []source.NIC {
	var out []source.NIC
	ports, err := query(s, portQuery)
	if err != nil {
		return out
	}
	defer cim.CloseAllInstances(ports)
	allocs, _ := query(s, allocQuery)
	defer cim.CloseAllInstances(allocs)
	switches := map[string]string{} // port instance id → switch name
	for _, a := range allocs {
		sw := strings.SplitN(prop(a, "HostResource"), "\n", 2)[0]
		if sw == "" {
			continue
		}
		if in, err := s.GetInstance(sw); err == nil {
			switches[instanceIDOf(prop(a, "Parent"))] = prop(in, "ElementName")
			in.Close()
		}
	}
	for _, p := range ports {
		t := "synthetic"
		if strings.Contains(prop(p, "ResourceSubType"), "Emulated") {
			t = "legacy"
		}
		out = append(out, source.NIC{Label: prop(p, "ElementName"), MAC: macText(prop(p, "Address")),
			Network: switches[prop(p, "InstanceID")], Type: t})
	}
	return out
}

// chain asks the image management service for each file's settings,
// newest first.
func (c *wmiControl) chain(s *cim.WmiSession, path string) ([]vhdFile, error) {
	svcs, err := query(s, "SELECT * FROM Msvm_ImageManagementService")
	if err != nil || len(svcs) == 0 {
		return nil, fmt.Errorf("no Msvm_ImageManagementService: %v", err)
	}
	defer cim.CloseAllInstances(svcs)
	var out []vhdFile
	for path != "" && len(out) < 64 {
		res, err := call(s, svcs[0], "GetVirtualHardDiskSettingData", []*cim.WmiMethodParam{cim.NewWmiMethodParam("Path", path)}, "SettingData")
		if err != nil {
			return nil, fmt.Errorf("settings of %s: %w", path, err)
		}
		v := embedded(fmt.Sprint(res["SettingData"]))
		f := vhdFile{Path: path, Format: map[string]string{"2": "VHD", "3": "VHDX", "4": "VHDSET"}[v["Format"]],
			Type: map[string]string{"2": "Fixed", "3": "Dynamic", "4": "Differencing"}[v["Type"]], Parent: v["ParentPath"]}
		f.Size, _ = strconv.ParseInt(v["MaxInternalSize"], 10, 64)
		if st, err := os.Stat(path); err == nil {
			f.FileSize = st.Size()
		}
		out = append(out, f)
		path = f.Parent
	}
	return out, nil
}

// call invokes a method and waits for the job it may start; it returns
// the named output parameters.
func call(s *cim.WmiSession, in *cim.WmiInstance, method string, params []*cim.WmiMethodParam, outs ...string) (map[string]any, error) {
	m, err := in.GetWmiMethod(method)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	outParams := cim.WmiMethodParamCollection{cim.NewWmiMethodParam("Job", nil)}
	for _, o := range outs {
		outParams = append(outParams, cim.NewWmiMethodParam(o, nil))
	}
	res, err := m.Execute(params, outParams)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	for k, v := range res.OutMethodParams {
		out[k] = v.Value
	}
	switch res.ReturnValue {
	case 0:
		return out, nil
	case jobStarted:
		jobPath, _ := out["Job"].(string)
		ji, err := s.GetInstance(jobPath)
		if err != nil {
			return nil, fmt.Errorf("%s: find its job: %w", method, err)
		}
		defer ji.Close()
		job, err := cim.NewWmiJob(ji)
		if err != nil {
			return nil, err
		}
		if err := job.WaitForJobCompletion(res.ReturnValue, -1); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		if err := job.GetException(); err != nil {
			return nil, fmt.Errorf("%s: %w", method, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s returned %d", method, res.ReturnValue)
}

// embedded reads the properties of an embedded instance (CIM XML).
func embedded(text string) map[string]string {
	var inst struct {
		Props []struct {
			Name  string `xml:"NAME,attr"`
			Value string `xml:"VALUE"`
		} `xml:"PROPERTY"`
	}
	out := map[string]string{}
	if xml.Unmarshal([]byte(text), &inst) == nil {
		for _, p := range inst.Props {
			out[p.Name] = p.Value
		}
	}
	return out
}

// kvpValue finds name among KVP exchange items (embedded instances).
func kvpValue(items, name string) string {
	for _, it := range strings.Split(items, "\n") {
		p := embedded(it)
		if p["Name"] == name {
			return p["Data"]
		}
	}
	return ""
}

func (c *wmiControl) inventory(ctx context.Context, vmID string) ([]hostVM, error) {
	var out []hostVM
	err := c.do(ctx, func(s *cim.WmiSession) error {
		var err error
		out, err = c.vms(s, vmID)
		return err
	})
	if err == nil && vmID != "" && len(out) == 0 {
		err = fmt.Errorf("Hyper-V has no virtual machine with id %s: %w", vmID, source.ErrNotFound)
	}
	return out, err
}

// snapshots lists the VM's checkpoints (their settings) with the VM.
func snapshots(s *cim.WmiSession, vmID string) (*cim.WmiInstance, []*cim.WmiInstance, error) {
	systems, err := query(s, "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine' AND Name = '"+strings.ToUpper(vmID)+"'")
	if err != nil {
		return nil, nil, err
	}
	if len(systems) == 0 {
		return nil, nil, fmt.Errorf("Hyper-V has no virtual machine with id %s: %w", vmID, source.ErrNotFound)
	}
	snaps, err := query(s, "SELECT * FROM Msvm_VirtualSystemSettingData WHERE VirtualSystemIdentifier = '"+strings.ToUpper(vmID)+
		"' AND VirtualSystemType LIKE 'Microsoft:Hyper-V:Snapshot:%'")
	if err != nil {
		cim.CloseAllInstances(systems)
		return nil, nil, err
	}
	return systems[0], snaps, nil
}

func snapshotOf(vs *cim.WmiInstance, vmState string) psSnapshot {
	id, _ := strings.CutPrefix(prop(vs, "InstanceID"), "Microsoft:")
	p := psSnapshot{ID: text(id), Name: text(prop(vs, "ElementName")), VMState: text(vmState),
		Production: flag(strings.Contains(prop(vs, "Notes"), productionNote))}
	if prop(vs, "VirtualSystemType") == "Microsoft:Hyper-V:Snapshot:Recovery" {
		p.SnapshotType = "Recovery"
	}
	return p
}

// productionNote marks a checkpoint made application-consistent, so that
// finding it again says so.
const productionNote = "rehost: production checkpoint"

func (c *wmiControl) checkpoints(ctx context.Context, vmID, prefix string) ([]psSnapshot, error) {
	var out []psSnapshot
	err := c.do(ctx, func(s *cim.WmiSession) error {
		vm, snaps, err := snapshots(s, vmID)
		if err != nil {
			return err
		}
		defer vm.Close()
		defer cim.CloseAllInstances(snaps)
		for _, vs := range snaps {
			if strings.HasPrefix(prop(vs, "ElementName"), prefix) {
				out = append(out, snapshotOf(vs, enabledStates[prop(vm, "EnabledState")]))
			}
		}
		rps, _ := referencePoints(s, vmID)
		defer cim.CloseAllInstances(rps)
		for _, rp := range rps {
			if n := prop(rp, "ElementName"); n != "" && strings.HasPrefix(n, prefix) {
				out = append(out, psSnapshot{ID: text(prop(rp, "InstanceID")), Name: text(n), Base: true})
			}
		}
		return nil
	})
	return out, err
}

// referencePoints lists the VM's reference points (none before Windows
// Server 2016, where the class does not exist).
func referencePoints(s *cim.WmiSession, vmID string) ([]*cim.WmiInstance, error) {
	return query(s, "SELECT * FROM Msvm_VirtualSystemReferencePoint WHERE VirtualSystemIdentifier = '"+strings.ToUpper(vmID)+"'")
}

// snapshotDisks reads the disks a checkpoint's settings list, by its id.
func (c *wmiControl) snapshotDisks(s *cim.WmiSession, vmID, id string) (*cim.WmiInstance, []hostDisk, error) {
	vm, snaps, err := snapshots(s, vmID)
	if err != nil {
		return nil, nil, err
	}
	defer vm.Close()
	var found *cim.WmiInstance
	for _, vs := range snaps {
		sid, _ := strings.CutPrefix(prop(vs, "InstanceID"), "Microsoft:")
		if strings.EqualFold(sid, id) {
			found = vs
		} else {
			vs.Close()
		}
	}
	if found == nil {
		return nil, nil, &ScriptError{Category: "ObjectNotFound", ID: "RehostCheckpointNotFound", Message: fmt.Sprintf("checkpoint %s of vm %s does not exist", id, vmID)}
	}
	prefix := prop(found, "InstanceID")
	disks, err := c.disks(s, "SELECT * FROM Msvm_ResourceAllocationSettingData WHERE InstanceID LIKE '"+prefix+"%'",
		"SELECT * FROM Msvm_StorageAllocationSettingData WHERE InstanceID LIKE '"+prefix+"%'")
	if err != nil {
		found.Close()
		return nil, nil, err
	}
	return found, disks, nil
}

// changes is GetVirtualDiskChanges on the file the checkpoint froze,
// asked again from where it stopped until limit areas or the disk's end.
func (c *wmiControl) changes(ctx context.Context, vmID, id, diskKey, since string, offset int64, limit int) (rctPage, error) {
	var out rctPage
	err := c.do(ctx, func(s *cim.WmiSession) error {
		vs, disks, err := c.snapshotDisks(s, vmID, id)
		if err != nil {
			return err
		}
		defer vs.Close()
		var d *hostDisk
		for i := range disks {
			if disks[i].Controller == diskKey {
				d = &disks[i]
			}
		}
		if d == nil || len(d.Chain) == 0 {
			return &ScriptError{Category: "ObjectNotFound", ID: "RehostDiskNotFound", Message: fmt.Sprintf("checkpoint %s has no disk %s", id, diskKey)}
		}
		size := d.Chain[0].Size
		svcs, err := query(s, "SELECT * FROM Msvm_ImageManagementService")
		if err != nil || len(svcs) == 0 {
			return fmt.Errorf("no Msvm_ImageManagementService: %v", err)
		}
		defer cim.CloseAllInstances(svcs)
		off := offset
		for off < size && len(out.Offsets) < limit {
			res, err := call(s, svcs[0], "GetVirtualDiskChanges", []*cim.WmiMethodParam{
				cim.NewWmiMethodParam("Path", d.Path), cim.NewWmiMethodParam("LimitId", since), cim.NewWmiMethodParam("TargetSnapshotId", ""),
				cim.NewWmiMethodParam("ByteOffset", uint64(off)), cim.NewWmiMethodParam("ByteLength", uint64(size-off)),
			}, "ProcessedByteLength", "ChangedByteOffsets", "ChangedByteLengths")
			if err != nil {
				return &ScriptError{Category: "InvalidData", ID: "RehostRctRefused", Message: fmt.Sprintf("Hyper-V cannot list the changes of %s since %s: %v", d.Path, since, err)}
			}
			for _, v := range numbers(res["ChangedByteOffsets"]) {
				out.Offsets = append(out.Offsets, number(v))
			}
			for _, v := range numbers(res["ChangedByteLengths"]) {
				out.Lengths = append(out.Lengths, number(v))
			}
			done, _ := strconv.ParseInt(fmt.Sprint(res["ProcessedByteLength"]), 10, 64)
			if done <= 0 {
				break
			}
			off += done
		}
		out.Size, out.Next = number(size), number(min(off, size))
		return nil
	})
	return out, err
}

// numbers reads an array output parameter of integers.
func numbers(v any) []int64 {
	var out []int64
	if a, ok := v.([]interface{}); ok {
		for _, x := range a {
			n, _ := strconv.ParseInt(fmt.Sprint(x), 10, 64)
			out = append(out, n)
		}
	}
	return out
}

// strs reads an array property of strings.
func strs(in *cim.WmiInstance, name string) []string {
	v, err := in.GetProperty(name)
	if err != nil {
		return nil
	}
	var out []string
	if a, ok := v.([]interface{}); ok {
		for _, x := range a {
			out = append(out, fmt.Sprint(x))
		}
	}
	return out
}

// keep converts recovery checkpoint id into a reference point, or finds
// the reference point named name that it became; each disk's RCT id is
// found by its virtual disk's instance id.
func (c *wmiControl) keep(ctx context.Context, vmID, id, name string) (refPoint, error) {
	var out refPoint
	err := c.do(ctx, func(s *cim.WmiSession) error {
		sizes := map[string]int64{}
		var rp *cim.WmiInstance
		vs, disks, err := c.snapshotDisks(s, vmID, id)
		switch {
		case err == nil:
			defer vs.Close()
			if prop(vs, "VirtualSystemType") != "Microsoft:Hyper-V:Snapshot:Recovery" {
				return &ScriptError{Category: "InvalidOperation", ID: "RehostNotRecovery", Message: fmt.Sprintf("checkpoint %s is not a recovery checkpoint; only those become reference points", prop(vs, "ElementName"))}
			}
			for _, d := range disks {
				if len(d.Chain) > 0 {
					sizes[d.Controller] = d.Chain[0].Size
				}
			}
			svcs, err := query(s, "SELECT * FROM Msvm_VirtualSystemSnapshotService")
			if err != nil || len(svcs) == 0 {
				return fmt.Errorf("no Msvm_VirtualSystemSnapshotService: %v", err)
			}
			defer cim.CloseAllInstances(svcs)
			res, err := call(s, svcs[0], "ConvertToReferencePoint", []*cim.WmiMethodParam{
				cim.NewWmiMethodParam("AffectedSnapshot", vs.InstancePath()), cim.NewWmiMethodParam("ReferencePointSettings", ""),
			}, "ResultingReferencePoint")
			if err != nil {
				return fmt.Errorf("convert checkpoint %s to a reference point: %w", id, err)
			}
			p, _ := res["ResultingReferencePoint"].(string)
			if rp, err = s.GetInstance(p); err != nil {
				return fmt.Errorf("find the new reference point: %w", err)
			}
		case errors.Is(err, source.ErrNotFound):
			rps, _ := referencePoints(s, vmID)
			for _, x := range rps {
				if rp == nil && prop(x, "ElementName") == name {
					rp = x
				} else {
					x.Close()
				}
			}
			if rp == nil {
				return err
			}
		default:
			return err
		}
		defer rp.Close()
		systems, err := query(s, "SELECT * FROM Msvm_ComputerSystem WHERE Caption = 'Virtual Machine' AND Name = '"+strings.ToUpper(vmID)+"'")
		if err != nil || len(systems) == 0 {
			return fmt.Errorf("read vm %s: %v: %w", vmID, err, source.ErrNotFound)
		}
		defer cim.CloseAllInstances(systems)
		hv, err := c.vm(s, systems[0])
		if err != nil {
			return err
		}
		ids, rcts := strs(rp, "VirtualDiskIdentifiers"), strs(rp, "ResilientChangeTrackingIdentifiers")
		out.ID, out.Name = text(prop(rp, "InstanceID")), text(prop(rp, "ElementName"))
		for _, d := range hv.Disks {
			e := struct {
				Disk text   `json:"Disk"`
				Rct  text   `json:"Rct"`
				Size number `json:"Size"`
			}{Disk: text(d.Controller), Size: number(sizes[d.Controller])}
			if e.Size == 0 && len(d.Chain) > 0 {
				e.Size = number(d.Chain[0].Size)
			}
			for i, x := range ids {
				if strings.EqualFold(x, d.sasd) && i < len(rcts) {
					e.Rct = text(rcts[i])
				}
			}
			out.Disks = append(out.Disks, e)
		}
		return nil
	})
	return out, err
}

// forget destroys reference point id, or those named name.
func (c *wmiControl) forget(ctx context.Context, vmID, id, name string) error {
	return c.do(ctx, func(s *cim.WmiSession) error {
		rps, err := referencePoints(s, vmID)
		if err != nil {
			return nil // no such class (before 2016) or no such VM: nothing to forget
		}
		defer cim.CloseAllInstances(rps)
		svcs, err := query(s, "SELECT * FROM Msvm_VirtualSystemReferencePointService")
		if err != nil || len(svcs) == 0 {
			return fmt.Errorf("no Msvm_VirtualSystemReferencePointService: %v", err)
		}
		defer cim.CloseAllInstances(svcs)
		for _, rp := range rps {
			if (id != "" && strings.EqualFold(prop(rp, "InstanceID"), id)) || (id == "" && prop(rp, "ElementName") == name) {
				if _, err := call(s, svcs[0], "DestroyReferencePoint", []*cim.WmiMethodParam{cim.NewWmiMethodParam("AffectedReferencePoint", rp.InstancePath())}); err != nil {
					return fmt.Errorf("remove reference point %s: %w", prop(rp, "InstanceID"), err)
				}
			}
		}
		return nil
	})
}

func (c *wmiControl) checkpoint(ctx context.Context, vmID, name string) (psSnapshot, error) {
	return c.snapshot(ctx, vmID, name, fullSnapshot)
}

// rctCheckpoint is a recovery snapshot, which ConvertToReferencePoint
// accepts.
func (c *wmiControl) rctCheckpoint(ctx context.Context, vmID, name string) (psSnapshot, error) {
	return c.snapshot(ctx, vmID, name, recoverySnapshot)
}

// Snapshot types of Msvm_VirtualSystemSnapshotService.CreateSnapshot.
const (
	fullSnapshot     = 2
	recoverySnapshot = 32768
)

func (c *wmiControl) snapshot(ctx context.Context, vmID, name string, typ int) (psSnapshot, error) {
	var out psSnapshot
	err := c.do(ctx, func(s *cim.WmiSession) error {
		vm, snaps, err := snapshots(s, vmID)
		if err != nil {
			return err
		}
		defer vm.Close()
		defer cim.CloseAllInstances(snaps)
		state := enabledStates[prop(vm, "EnabledState")]
		for _, vs := range snaps {
			if prop(vs, "ElementName") == name {
				out = snapshotOf(vs, state)
				return nil
			}
		}
		hv, err := c.vm(s, vm)
		if err != nil {
			return err
		}
		if err := refuse(hv); err != nil {
			return err
		}
		if typ == recoverySnapshot && !versionAtLeast(hv.Version, 6, 2) {
			return &ScriptError{Category: "InvalidOperation", ID: "RehostNoRct", Message: fmt.Sprintf("VM %s has configuration version %s; recovery checkpoints need 6.2 or later", hv.Name, hv.Version)}
		}
		svcs, err := query(s, "SELECT * FROM Msvm_VirtualSystemSnapshotService")
		if err != nil || len(svcs) == 0 {
			return fmt.Errorf("no Msvm_VirtualSystemSnapshotService: %v", err)
		}
		defer cim.CloseAllInstances(svcs)
		take := func(consistency int) (string, error) {
			cls, err := s.GetClass("Msvm_VirtualSystemSnapshotSettingData")
			if err != nil {
				return "", err
			}
			defer cls.Close()
			settings, err := cls.MakeInstance()
			if err != nil {
				return "", err
			}
			defer settings.Close()
			if err := settings.SetProperty("ConsistencyLevel", consistency); err != nil {
				return "", err
			}
			emb, err := settings.EmbeddedInstance()
			if err != nil {
				return "", err
			}
			res, err := call(s, svcs[0], "CreateSnapshot", []*cim.WmiMethodParam{
				cim.NewWmiMethodParam("AffectedSystem", vm.InstancePath()),
				cim.NewWmiMethodParam("SnapshotSettings", emb),
				cim.NewWmiMethodParam("SnapshotType", typ),
			}, "ResultingSnapshot")
			if err != nil {
				return "", err
			}
			p, _ := res["ResultingSnapshot"].(string)
			return p, nil
		}
		production := state == "Running"
		var path string
		if production {
			// 1: application consistent (VSS, fsfreeze in the guest).
			if path, err = take(1); err != nil {
				out.Fallback = text(err.Error())
				production = false
			}
		}
		if !production {
			if path, err = take(2); err != nil { // 2: crash consistent
				return err
			}
		}
		// Name it (and mark a production one) in its settings.
		snap, err := s.GetInstance(path)
		if err != nil {
			return fmt.Errorf("find the new checkpoint: %w", err)
		}
		defer snap.Close()
		if err := snap.SetProperty("ElementName", name); err != nil {
			return err
		}
		if production {
			snap.SetProperty("Notes", []string{productionNote})
		}
		emb, err := snap.EmbeddedInstance()
		if err != nil {
			return err
		}
		mgmt, err := query(s, "SELECT * FROM Msvm_VirtualSystemManagementService")
		if err != nil || len(mgmt) == 0 {
			return fmt.Errorf("no Msvm_VirtualSystemManagementService: %v", err)
		}
		defer cim.CloseAllInstances(mgmt)
		if _, err := call(s, mgmt[0], "ModifySystemSettings", []*cim.WmiMethodParam{cim.NewWmiMethodParam("SystemSettings", emb)}); err != nil {
			return fmt.Errorf("name the checkpoint %q: %w", name, err)
		}
		out = snapshotOf(snap, state)
		out.Name, out.Production = text(name), flag(production)
		return nil
	})
	return out, err
}

func (c *wmiControl) remove(ctx context.Context, vmID, id, name string) error {
	return c.do(ctx, func(s *cim.WmiSession) error {
		vm, snaps, err := snapshots(s, vmID)
		if errors.Is(err, source.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer vm.Close()
		defer cim.CloseAllInstances(snaps)
		svcs, err := query(s, "SELECT * FROM Msvm_VirtualSystemSnapshotService")
		if err != nil || len(svcs) == 0 {
			return fmt.Errorf("no Msvm_VirtualSystemSnapshotService: %v", err)
		}
		defer cim.CloseAllInstances(svcs)
		for _, vs := range snaps {
			sid, _ := strings.CutPrefix(prop(vs, "InstanceID"), "Microsoft:")
			if (id != "" && strings.EqualFold(sid, id)) || (id == "" && prop(vs, "ElementName") == name) {
				if _, err := call(s, svcs[0], "DestroySnapshot", []*cim.WmiMethodParam{cim.NewWmiMethodParam("AffectedSnapshot", vs.InstancePath())}); err != nil {
					return fmt.Errorf("remove checkpoint %s: %w", sid, err)
				}
			}
		}
		return nil
	})
}

func (c *wmiControl) export(ctx context.Context, vmID, id string) (hostExport, error) {
	out := hostExport{Host: c.host}
	err := c.do(ctx, func(s *cim.WmiSession) error {
		vm, snaps, err := snapshots(s, vmID)
		if err != nil {
			return err
		}
		defer vm.Close()
		defer cim.CloseAllInstances(snaps)
		out.Status = prop(vm, "StatusDescriptions")
		for _, vs := range snaps {
			sid, _ := strings.CutPrefix(prop(vs, "InstanceID"), "Microsoft:")
			if !strings.EqualFold(sid, id) {
				continue
			}
			// The checkpoint's own settings list the files it froze.
			prefix := prop(vs, "InstanceID")
			out.Disks, err = c.disks(s, "SELECT * FROM Msvm_ResourceAllocationSettingData WHERE InstanceID LIKE '"+prefix+"%'",
				"SELECT * FROM Msvm_StorageAllocationSettingData WHERE InstanceID LIKE '"+prefix+"%'")
			return err
		}
		return fmt.Errorf("checkpoint %s of vm %s does not exist: %w", id, vmID, source.ErrNotFound)
	})
	return out, err
}

// localFiles opens the host's files where they are.
type localFiles struct{}

func (localFiles) open(_ context.Context, _, path string) (file, error) {
	f, err := os.Open(strings.TrimPrefix(path, `\\?\`))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &osFile{File: f, size: st.Size()}, nil
}

func (localFiles) close() error { return nil }

type osFile struct {
	*os.File
	size int64
}

func (f *osFile) Size() int64 { return f.size }
