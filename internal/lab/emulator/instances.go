package emulator

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/instancetype"
)

// EC2 instances, as far as launching a migrated server and telling whether
// it boots needs them. An instance's guest is what its AMI's boot volume
// holds: at launch the emulator reads the root snapshot's content as VM
// Import reads a boot disk (partition table, file system, OS) and decides
// what the console will show — a Linux kernel, cloud-init and a login
// prompt, Windows' EC2Launch ending in "Windows is Ready to use", or, for a
// disk without an operating system, the firmware's "No bootable device".
// The instance then moves through its states on the emulator's clock:
// pending, running after a quarter of Config.InstanceBootTime, console
// output from half of it, status checks settled at the whole of it
// (reachability failed for a guest that did not boot).

// Instance is an EC2 instance.
type Instance struct {
	ID               string           `json:"id"`
	ReservationID    string           `json:"reservationId"`
	ImageID          string           `json:"imageId"`
	InstanceType     string           `json:"instanceType"`
	SubnetID         string           `json:"subnetId"`
	VpcID            string           `json:"vpcId"`
	AvailabilityZone string           `json:"availabilityZone"`
	PrivateIP        string           `json:"privateIp"`
	PublicIP         string           `json:"publicIp,omitempty"`
	SecurityGroups   []string         `json:"securityGroups"`
	KeyName          string           `json:"keyName,omitempty"`
	InstanceProfile  string           `json:"instanceProfile,omitempty"`
	UserData         string           `json:"userData,omitempty"` // base64, as given
	Volumes          []InstanceVolume `json:"volumes"`
	Tags             []Tag            `json:"tags,omitempty"`
	ClientToken      string           `json:"clientToken,omitempty"`
	// State is pending, running, shutting-down or terminated; it advances
	// on the clock (instanceStateLocked).
	State        string    `json:"state"`
	LaunchTime   time.Time `json:"launchTime"`
	TerminatedAt time.Time `json:"terminatedAt,omitzero"`
	Boot         GuestBoot `json:"boot"`
}

// InstanceVolume is an EBS volume made from one of the AMI's snapshots.
type InstanceVolume struct {
	DeviceName string `json:"deviceName"`
	SnapshotID string `json:"snapshotId"`
	VolumeType string `json:"volumeType"`
	SizeGiB    int64  `json:"sizeGiB"`
}

// GuestBoot is what the guest on the boot volume does when started.
type GuestBoot struct {
	Boots        bool   `json:"boots"`
	Platform     string `json:"platform,omitempty"`
	Distribution string `json:"distribution,omitempty"`
	FileSystem   string `json:"fileSystem,omitempty"`
	BootMode     string `json:"bootMode,omitempty"`
	// Failure says why it does not boot (the importer's words).
	Failure string `json:"failure,omitempty"`
	// SSMAgent: the root file system holds the SSM agent, so Run Command
	// reaches the instance; RootOffset and RootSize locate that file
	// system on the root volume, for the commands.
	SSMAgent   bool  `json:"ssmAgent,omitempty"`
	RootOffset int64 `json:"rootOffset,omitempty"`
	RootSize   int64 `json:"rootSize,omitempty"`
}

var instanceRE = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)

// volumeTypes EC2 accepts.
var volumeTypes = []string{"standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"}

// maxUserData is the raw size EC2 accepts.
const maxUserData = 16 << 10

func instanceNotFound(id string) *apiError {
	return badRequest("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
}

func (e *Emulator) instanceActions() map[string]queryAction {
	return map[string]queryAction{
		"RunInstances":           e.runInstances,
		"DescribeInstances":      e.describeInstances,
		"DescribeInstanceStatus": e.describeInstanceStatus,
		"GetConsoleOutput":       e.getConsoleOutput,
		"TerminateInstances":     e.terminateInstances,
	}
}

// instanceSpec is what RunInstances and a stack's AWS::EC2::Instance ask
// for.
type instanceSpec struct {
	ImageID, InstanceType, SubnetID, PrivateIP string
	SecurityGroups                             []string
	KeyName, InstanceProfile, UserData         string
	AssociatePublicIP                          *bool
	VolumeTypes                                map[string]string // device → type
	VolumeSizes                                map[string]int64
	Tags                                       []Tag
	ClientToken                                string
	Count                                      int
}

func (e *Emulator) bootTime() time.Duration {
	return cmp.Or(e.cfg.InstanceBootTime, 3*time.Second)
}

// launch validates spec as RunInstances does and starts the instances.
// It reads the boot volume's content outside the lock.
func (e *Emulator) launch(spec instanceSpec) ([]*Instance, error) {
	if spec.ImageID == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter ImageId")
	}
	if !amiRE.MatchString(spec.ImageID) {
		return nil, malformed("InvalidAMIID.Malformed", spec.ImageID, "ami")
	}
	if spec.InstanceType == "" {
		spec.InstanceType = "m1.small"
	}
	if _, ok := instancetype.Lookup(spec.InstanceType); !ok {
		return nil, badRequest("InvalidParameterValue", "Invalid value '%s' for InstanceType.", spec.InstanceType)
	}
	if raw, err := base64.StdEncoding.DecodeString(spec.UserData); err != nil {
		return nil, badRequest("InvalidParameterValue", "Invalid BASE64 encoding of user data.")
	} else if len(raw) > maxUserData {
		return nil, badRequest("InvalidParameterValue", "User data is limited to %d bytes", maxUserData)
	}
	if spec.Count <= 0 {
		spec.Count = 1
	}
	e.mu.Lock()
	if spec.ClientToken != "" {
		var prior []*Instance
		for _, in := range e.st.Instances {
			if in.ClientToken == spec.ClientToken {
				prior = append(prior, in)
			}
		}
		if len(prior) > 0 {
			e.mu.Unlock()
			return prior, nil
		}
	}
	im, err := e.imageForChangeLocked(spec.ImageID)
	if err == nil && e.imageStateLocked(im) != "available" {
		err = badRequest("InvalidAMIID.Unavailable", "AMI %s is %s, and cannot be run", im.ID, im.State)
	}
	var root BlockDevice
	if err == nil {
		i := slices.IndexFunc(im.Devices, func(d BlockDevice) bool { return d.DeviceName == im.RootDeviceName })
		if i < 0 {
			err = badRequest("InvalidAMIID.Unavailable", "AMI %s has no root volume %s", im.ID, im.RootDeviceName)
		} else {
			root = im.Devices[i]
		}
	}
	var vols []InstanceVolume
	if err == nil {
		vols, err = volumesFor(im, spec)
	}
	var sub *Subnet
	if err == nil {
		sub, err = e.placementLocked(&spec)
	}
	bootMode := ""
	if im != nil {
		bootMode = im.BootMode
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	boot := e.guestBoot(root.SnapshotID, bootMode)

	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now().UTC()
	res := newID("r")
	var out []*Instance
	for n := 0; n < spec.Count; n++ {
		ip, err := e.allocateIPLocked(sub, spec.PrivateIP)
		if err != nil {
			for _, in := range out {
				delete(e.st.Instances, in.ID)
			}
			return nil, err
		}
		in := &Instance{ID: newID("i"), ReservationID: res, ImageID: spec.ImageID, InstanceType: spec.InstanceType,
			SubnetID: sub.ID, VpcID: sub.VpcID, AvailabilityZone: sub.AvailabilityZone, PrivateIP: ip,
			SecurityGroups: spec.SecurityGroups, KeyName: spec.KeyName, InstanceProfile: spec.InstanceProfile,
			UserData: spec.UserData, Volumes: vols, Tags: setTags(nil, spec.Tags), ClientToken: spec.ClientToken,
			State: "pending", LaunchTime: now, Boot: boot}
		if spec.AssociatePublicIP != nil && *spec.AssociatePublicIP || spec.AssociatePublicIP == nil && sub.MapPublicIP {
			in.PublicIP = e.allocatePublicIPLocked()
		}
		e.st.Instances[in.ID] = in
		out = append(out, in)
		spec.PrivateIP = "" // only the first of several takes a given address
	}
	e.saveLocked()
	return out, nil
}

// volumesFor maps the AMI's devices to volumes, with the spec's overrides.
func volumesFor(im *Image, spec instanceSpec) ([]InstanceVolume, error) {
	var vols []InstanceVolume
	for _, d := range im.Devices {
		v := InstanceVolume{DeviceName: d.DeviceName, SnapshotID: d.SnapshotID, VolumeType: cmp.Or(d.VolumeType, "gp2"), SizeGiB: d.VolumeSize}
		if t, ok := spec.VolumeTypes[d.DeviceName]; ok && t != "" {
			if !slices.Contains(volumeTypes, t) {
				return nil, badRequest("InvalidParameterValue", "Value (%s) for parameter volumeType is invalid. Valid types: %s", t, strings.Join(volumeTypes, ", "))
			}
			v.VolumeType = t
		}
		if s, ok := spec.VolumeSizes[d.DeviceName]; ok && s > 0 {
			if s < d.VolumeSize {
				return nil, badRequest("InvalidBlockDeviceMapping", "Volume of size %d is smaller than snapshot '%s', expect size >= %d", s, d.SnapshotID, d.VolumeSize)
			}
			v.SizeGiB = s
		}
		vols = append(vols, v)
	}
	for dev := range spec.VolumeTypes {
		if !slices.ContainsFunc(im.Devices, func(d BlockDevice) bool { return d.DeviceName == dev }) {
			return nil, badRequest("InvalidBlockDeviceMapping", "AMI %s has no device %s to change", im.ID, dev)
		}
	}
	return vols, nil
}

// placementLocked resolves the subnet (the default one when none is given)
// and the security groups (the VPC's default when none), checking they
// share the VPC.
func (e *Emulator) placementLocked(spec *instanceSpec) (*Subnet, error) {
	var sub *Subnet
	if spec.SubnetID == "" {
		for _, s := range sortedByID(e.st.Subnets, func(s *Subnet) string { return s.ID }) {
			if s.DefaultForAz {
				sub = s
				break
			}
		}
		if sub == nil {
			return nil, badRequest("VPCIdNotSpecified", "No default VPC for this user")
		}
	} else if sub = e.st.Subnets[spec.SubnetID]; sub == nil {
		return nil, subnetNotFound(spec.SubnetID)
	}
	if len(spec.SecurityGroups) == 0 {
		for _, g := range sortedByID(e.st.SecurityGroups, func(g *SecurityGroup) string { return g.ID }) {
			if g.VpcID == sub.VpcID && g.Name == "default" {
				spec.SecurityGroups = []string{g.ID}
			}
		}
	}
	for _, id := range spec.SecurityGroups {
		g := e.st.SecurityGroups[id]
		if g == nil {
			return nil, sgNotFound(id)
		}
		if g.VpcID != sub.VpcID {
			return nil, badRequest("InvalidParameter", "Security group %s and subnet %s belong to different networks.", id, sub.ID)
		}
	}
	return sub, nil
}

// usedIPsLocked lists the private addresses held in a subnet.
func (e *Emulator) usedIPsLocked(subnetID string) []string {
	var out []string
	for _, in := range e.st.Instances {
		if in.SubnetID == subnetID && e.instanceStateLocked(in) != "terminated" {
			out = append(out, in.PrivateIP)
		}
	}
	return out
}

// allocateIPLocked takes want (if given) or the lowest free address of the
// subnet; AWS reserves the first four and the last.
func (e *Emulator) allocateIPLocked(sub *Subnet, want string) (string, error) {
	p := netip.MustParsePrefix(sub.CidrBlock)
	used := e.usedIPsLocked(sub.ID)
	first := p.Addr().Next().Next().Next().Next()
	last := lastAddr(p)
	if want != "" {
		a, err := netip.ParseAddr(want)
		if err != nil || !a.Is4() {
			return "", badRequest("InvalidParameterValue", "Invalid IPv4 address: %s", want)
		}
		if !p.Contains(a) {
			return "", badRequest("InvalidParameterValue", "Address %s does not fall within the subnet's address range", want)
		}
		if a.Less(first) || a == last {
			return "", badRequest("InvalidParameterValue", "Address %s is reserved by AWS in subnet %s", want, sub.ID)
		}
		if slices.Contains(used, want) {
			return "", badRequest("InvalidIPAddress.InUse", "Address %s is in use.", want)
		}
		return want, nil
	}
	for a := first; a.Less(last); a = a.Next() {
		if !slices.Contains(used, a.String()) {
			return a.String(), nil
		}
	}
	return "", badRequest("InsufficientFreeAddressesInSubnet", "There are not enough free addresses in subnet '%s' to satisfy the requested number of instances.", sub.ID)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// allocatePublicIPLocked hands out addresses of TEST-NET-3 (203.0.113.0/24,
// never routed), then of 198.51.100.0/24.
func (e *Emulator) allocatePublicIPLocked() string {
	used := map[string]bool{}
	for _, in := range e.st.Instances {
		if in.PublicIP != "" && e.instanceStateLocked(in) != "terminated" {
			used[in.PublicIP] = true
		}
	}
	for _, net := range []string{"203.0.113.", "198.51.100."} {
		for i := 1; i < 255; i++ {
			if a := net + strconv.Itoa(i); !used[a] {
				return a
			}
		}
	}
	return ""
}

// guestBoot reads the boot volume's content as the importer would and says
// whether the guest boots.
func (e *Emulator) guestBoot(snapshotID, bootMode string) GuestBoot {
	r, size, err := e.SnapshotContent(snapshotID)
	if err != nil {
		return GuestBoot{Failure: fmt.Sprintf("the boot volume cannot be read: %v", err)}
	}
	defer r.Close()
	if bootMode == "uefi-preferred" {
		bootMode = ""
	}
	g, err := inspectBootDisk(r, []int64{size}, bootMode)
	if err != nil {
		return GuestBoot{BootMode: g.BootMode, Failure: err.Error()}
	}
	b := GuestBoot{Boots: true, Platform: g.Platform, Distribution: g.Distribution, FileSystem: g.FileSystem, BootMode: g.BootMode,
		RootOffset: g.RootOffset, RootSize: g.RootSize}
	if g.Platform == "Linux" {
		root := io.NewSectionReader(r, g.RootOffset, g.RootSize)
		for _, p := range ssmAgentPaths {
			if _, err := disk.ReadExtFile(root, p); err == nil {
				b.SSMAgent = true
			}
		}
	}
	return b
}

// ssmAgentPaths are where distributions install the SSM agent.
var ssmAgentPaths = []string{"/usr/bin/amazon-ssm-agent", "/usr/sbin/amazon-ssm-agent", "/snap/amazon-ssm-agent/current/amazon-ssm-agent"}

// instanceStateLocked advances an instance on the clock.
func (e *Emulator) instanceStateLocked(in *Instance) string {
	now := e.clock.Now()
	switch in.State {
	case "pending":
		if !now.Before(in.LaunchTime.Add(e.bootTime() / 4)) {
			in.State = "running"
		}
	case "shutting-down":
		if !now.Before(in.TerminatedAt.Add(e.bootTime() / 4)) {
			in.State = "terminated"
		}
	}
	return in.State
}

// elapsed is how long the instance has been up.
func (e *Emulator) elapsed(in *Instance) time.Duration { return e.clock.Now().Sub(in.LaunchTime) }

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48}

type stateXML struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

func stateOf(name string) stateXML { return stateXML{stateCodes[name], name} }

type groupXML struct {
	GroupID   string `xml:"groupId"`
	GroupName string `xml:"groupName"`
}

type instanceXML struct {
	InstanceID     string   `xml:"instanceId"`
	ImageID        string   `xml:"imageId"`
	State          stateXML `xml:"instanceState"`
	PrivateDNSName string   `xml:"privateDnsName"`
	DNSName        string   `xml:"dnsName"`
	KeyName        string   `xml:"keyName,omitempty"`
	LaunchIndex    int      `xml:"amiLaunchIndex"`
	InstanceType   string   `xml:"instanceType"`
	LaunchTime     string   `xml:"launchTime"`
	Placement      struct {
		AvailabilityZone string `xml:"availabilityZone"`
		Tenancy          string `xml:"tenancy"`
	} `xml:"placement"`
	Platform         string     `xml:"platform,omitempty"`
	SubnetID         string     `xml:"subnetId"`
	VpcID            string     `xml:"vpcId"`
	PrivateIP        string     `xml:"privateIpAddress"`
	PublicIP         string     `xml:"ipAddress,omitempty"`
	Groups           []groupXML `xml:"groupSet>item"`
	Architecture     string     `xml:"architecture"`
	RootDeviceType   string     `xml:"rootDeviceType"`
	RootDeviceName   string     `xml:"rootDeviceName"`
	BlockDevices     []blockXML `xml:"blockDeviceMapping>item"`
	Virtualization   string     `xml:"virtualizationType"`
	ClientToken      string     `xml:"clientToken,omitempty"`
	Tags             []xmlTag   `xml:"tagSet>item"`
	Hypervisor       string     `xml:"hypervisor"`
	InstanceProfile  *profile   `xml:"iamInstanceProfile,omitempty"`
	BootMode         string     `xml:"bootMode,omitempty"`
	StateTransition  string     `xml:"reason,omitempty"`
	StateReasonBlock *struct {
		Code    string `xml:"code"`
		Message string `xml:"message"`
	} `xml:"stateReason,omitempty"`
}

type blockXML struct {
	DeviceName string `xml:"deviceName"`
	EBS        struct {
		VolumeID            string `xml:"volumeId"`
		Status              string `xml:"status"`
		DeleteOnTermination bool   `xml:"deleteOnTermination"`
	} `xml:"ebs"`
}

type profile struct {
	Arn string `xml:"arn"`
}

func hostName(ip string) string { return "ip-" + strings.ReplaceAll(ip, ".", "-") }

func (e *Emulator) instanceXMLLocked(in *Instance, index int) instanceXML {
	st := e.instanceStateLocked(in)
	x := instanceXML{InstanceID: in.ID, ImageID: in.ImageID, State: stateOf(st), KeyName: in.KeyName, LaunchIndex: index,
		InstanceType: in.InstanceType, LaunchTime: in.LaunchTime.Format(ec2Time), SubnetID: in.SubnetID, VpcID: in.VpcID,
		Architecture: "x86_64", RootDeviceType: "ebs", Virtualization: "hvm", ClientToken: in.ClientToken,
		Tags: xmlTags(in.Tags), Hypervisor: "xen", BootMode: in.Boot.BootMode}
	x.Placement.AvailabilityZone, x.Placement.Tenancy = in.AvailabilityZone, "default"
	if st != "terminated" {
		x.PrivateIP, x.PublicIP = in.PrivateIP, in.PublicIP
		x.PrivateDNSName = hostName(in.PrivateIP) + "." + e.cfg.Region + ".compute.internal"
		for _, id := range in.SecurityGroups {
			name := ""
			if g := e.st.SecurityGroups[id]; g != nil {
				name = g.Name
			}
			x.Groups = append(x.Groups, groupXML{id, name})
		}
	} else {
		x.StateReasonBlock = &struct {
			Code    string `xml:"code"`
			Message string `xml:"message"`
		}{"Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"}
	}
	if in.Boot.Platform == "Windows" {
		x.Platform = "windows"
	}
	if len(in.Volumes) > 0 {
		x.RootDeviceName = in.Volumes[0].DeviceName
		if im := e.st.Images[in.ImageID]; im != nil {
			x.RootDeviceName = im.RootDeviceName
		}
	}
	for i, v := range in.Volumes {
		b := blockXML{DeviceName: v.DeviceName}
		b.EBS.VolumeID = "vol-" + strings.TrimPrefix(in.ID, "i-")[:15] + fmt.Sprintf("%02x", i)
		b.EBS.Status, b.EBS.DeleteOnTermination = "attached", true
		x.BlockDevices = append(x.BlockDevices, b)
	}
	if in.InstanceProfile != "" {
		x.InstanceProfile = &profile{"arn:aws:iam::" + e.cfg.AccountID + ":instance-profile/" + in.InstanceProfile}
	}
	return x
}

type reservationXML struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []instanceXML `xml:"instancesSet>item"`
}

func (e *Emulator) runInstances(p params) (any, error) {
	spec := instanceSpec{ImageID: p.get("ImageId"), InstanceType: p.get("InstanceType"), SubnetID: p.get("SubnetId"),
		PrivateIP: p.get("PrivateIpAddress"), SecurityGroups: p.list("SecurityGroupId"), KeyName: p.get("KeyName"),
		InstanceProfile: p.get("IamInstanceProfile.Name"), UserData: p.get("UserData"), ClientToken: p.get("ClientToken"),
		VolumeTypes: map[string]string{}, VolumeSizes: map[string]int64{}}
	if n, err := strconv.Atoi(cmp.Or(p.get("MaxCount"), "1")); err == nil {
		spec.Count = n
	}
	if lo, err := strconv.Atoi(cmp.Or(p.get("MinCount"), "1")); err != nil || lo < 1 || lo > spec.Count || spec.Count > 20 {
		return nil, badRequest("InvalidParameterValue", "MinCount (%s) and MaxCount (%s) must be from 1 to 20, MinCount no more than MaxCount", p.get("MinCount"), p.get("MaxCount"))
	}
	for _, ni := range p.items("NetworkInterface") {
		if ni.get("DeviceIndex") != "0" {
			return nil, badRequest("InvalidParameterValue", "the emulator launches with one network interface, device index 0")
		}
		spec.SubnetID = cmp.Or(ni.get("SubnetId"), spec.SubnetID)
		spec.PrivateIP = cmp.Or(ni.get("PrivateIpAddress"), spec.PrivateIP)
		if g := ni.list("SecurityGroupId"); len(g) > 0 {
			spec.SecurityGroups = g
		}
		if ni.has("AssociatePublicIpAddress") {
			v := ni.boolean("AssociatePublicIpAddress")
			spec.AssociatePublicIP = &v
		}
	}
	for _, b := range p.items("BlockDeviceMapping") {
		dev := b.get("DeviceName")
		spec.VolumeTypes[dev] = b.get("Ebs.VolumeType")
		if s, err := strconv.ParseInt(b.get("Ebs.VolumeSize"), 10, 64); err == nil {
			spec.VolumeSizes[dev] = s
		}
	}
	tags, err := e.resourceTags(p, "instance", "volume")
	if err != nil {
		return nil, err
	}
	spec.Tags = tags["instance"]
	ins, err := e.launch(spec)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r := reservationXML{ReservationID: ins[0].ReservationID, OwnerID: e.cfg.AccountID}
	for i, in := range ins {
		r.Instances = append(r.Instances, e.instanceXMLLocked(in, i))
	}
	return r, nil
}

// instancesLocked resolves InstanceId.N (every instance when none), in id
// order.
func (e *Emulator) instancesLocked(ids []string) ([]*Instance, error) {
	if len(ids) == 0 {
		return sortedByID(e.st.Instances, func(in *Instance) string { return in.ID }), nil
	}
	var out []*Instance
	for _, id := range ids {
		if !instanceRE.MatchString(id) {
			return nil, malformed("InvalidInstanceID.Malformed", id, "i")
		}
		in := e.st.Instances[id]
		if in == nil {
			return nil, instanceNotFound(id)
		}
		out = append(out, in)
	}
	return out, nil
}

func (e *Emulator) describeInstances(p params) (any, error) {
	fs := p.filters("Filter")
	e.mu.Lock()
	defer e.mu.Unlock()
	ins, err := e.instancesLocked(p.list("InstanceId"))
	if err != nil {
		return nil, err
	}
	var res []reservationXML
	byRes := map[string]int{}
	for _, in := range ins {
		ok, err := matchFilters(fs, in.Tags, map[string][]string{"instance-id": {in.ID}, "instance-state-name": {e.instanceStateLocked(in)},
			"subnet-id": {in.SubnetID}, "vpc-id": {in.VpcID}, "image-id": {in.ImageID}, "private-ip-address": {in.PrivateIP},
			"instance-type": {in.InstanceType}})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		i, seen := byRes[in.ReservationID]
		if !seen {
			i = len(res)
			byRes[in.ReservationID] = i
			res = append(res, reservationXML{ReservationID: in.ReservationID, OwnerID: e.cfg.AccountID})
		}
		res[i].Instances = append(res[i].Instances, e.instanceXMLLocked(in, len(res[i].Instances)))
	}
	start, end, next, err := page(p, len(res))
	if err != nil {
		return nil, err
	}
	return struct {
		Reservations []reservationXML `xml:"reservationSet>item"`
		NextToken    string           `xml:"nextToken,omitempty"`
	}{res[start:end], next}, nil
}

type statusXML struct {
	Status  string `xml:"status"`
	Details []struct {
		Name   string `xml:"name"`
		Status string `xml:"status"`
	} `xml:"details>item"`
}

func check(status, reachability string) statusXML {
	s := statusXML{Status: status}
	s.Details = append(s.Details, struct {
		Name   string `xml:"name"`
		Status string `xml:"status"`
	}{"reachability", reachability})
	return s
}

// statusChecksLocked are the system and instance checks of a running
// instance: initializing until the guest settled, then ok, or impaired for
// a guest that did not boot.
func (e *Emulator) statusChecksLocked(in *Instance) (system, instance statusXML) {
	up := e.elapsed(in)
	system, instance = check("initializing", "initializing"), check("initializing", "initializing")
	if up >= e.bootTime()/2 {
		system = check("ok", "passed")
	}
	if up >= e.bootTime() {
		instance = check("ok", "passed")
		if !in.Boot.Boots {
			instance = check("impaired", "failed")
		}
	}
	return system, instance
}

func (e *Emulator) describeInstanceStatus(p params) (any, error) {
	all := p.boolean("IncludeAllInstances")
	fs := p.filters("Filter")
	e.mu.Lock()
	defer e.mu.Unlock()
	ins, err := e.instancesLocked(p.list("InstanceId"))
	if err != nil {
		return nil, err
	}
	type item struct {
		InstanceID       string    `xml:"instanceId"`
		AvailabilityZone string    `xml:"availabilityZone"`
		State            stateXML  `xml:"instanceState"`
		System           statusXML `xml:"systemStatus"`
		Instance         statusXML `xml:"instanceStatus"`
	}
	var out []item
	for _, in := range ins {
		st := e.instanceStateLocked(in)
		if st != "running" && !all {
			continue
		}
		sys, inst := check("not-applicable", "not-applicable"), check("not-applicable", "not-applicable")
		if st == "running" {
			sys, inst = e.statusChecksLocked(in)
		}
		ok, err := matchFilters(fs, nil, map[string][]string{"instance-state-name": {st}, "instance-status.status": {inst.Status},
			"system-status.status": {sys.Status}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, item{in.ID, in.AvailabilityZone, stateOf(st), sys, inst})
		}
	}
	return struct {
		Statuses []item `xml:"instanceStatusSet>item"`
	}{out}, nil
}

func (e *Emulator) getConsoleOutput(p params) (any, error) {
	id := p.get("InstanceId")
	e.mu.Lock()
	defer e.mu.Unlock()
	ins, err := e.instancesLocked([]string{id})
	if err != nil {
		return nil, err
	}
	in := ins[0]
	out := consoleOutput(in, e.elapsed(in), e.bootTime())
	r := struct {
		InstanceID string `xml:"instanceId"`
		Timestamp  string `xml:"timestamp"`
		Output     string `xml:"output,omitempty"`
	}{InstanceID: in.ID, Timestamp: e.clock.Now().UTC().Format(ec2Time)}
	if out != "" {
		r.Output = base64.StdEncoding.EncodeToString([]byte(out))
	}
	return r, nil
}

func (e *Emulator) terminateInstances(p params) (any, error) {
	ids := p.list("InstanceId")
	if len(ids) == 0 {
		return nil, badRequest("MissingParameter", "The request must contain the parameter InstanceId")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ins, err := e.instancesLocked(ids)
	if err != nil {
		return nil, err
	}
	type item struct {
		InstanceID string   `xml:"instanceId"`
		Current    stateXML `xml:"currentState"`
		Previous   stateXML `xml:"previousState"`
	}
	var out []item
	for _, in := range ins {
		prev := e.terminateLocked(in)
		out = append(out, item{in.ID, stateOf(e.instanceStateLocked(in)), stateOf(prev)})
	}
	e.saveLocked()
	return struct {
		Instances []item `xml:"instancesSet>item"`
	}{out}, nil
}

// terminateLocked starts shutting the instance down and returns the state
// it was in.
func (e *Emulator) terminateLocked(in *Instance) string {
	prev := e.instanceStateLocked(in)
	if prev == "pending" || prev == "running" {
		in.State, in.TerminatedAt = "shutting-down", e.clock.Now().UTC()
	}
	return prev
}

// Instances returns copies of every instance (terminated ones too), by id.
func (e *Emulator) Instances() []Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Instance
	for _, in := range sortedByID(e.st.Instances, func(in *Instance) string { return in.ID }) {
		e.instanceStateLocked(in)
		c := *in
		c.SecurityGroups = slices.Clone(in.SecurityGroups)
		c.Volumes = slices.Clone(in.Volumes)
		c.Tags = slices.Clone(in.Tags)
		out = append(out, c)
	}
	return out
}
