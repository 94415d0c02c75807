package emulator

import (
	"cmp"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/instancetype"
)

// The networks instances launch into, as far as launching needs them: VPCs,
// their subnets (a CIDR inside the VPC's, addresses handed out and taken
// back) and security groups (which belong to one VPC). Every account starts
// with a default VPC, one default subnet and its default security group, as
// AWS makes them.

// Vpc is a virtual network.
type Vpc struct {
	ID        string `json:"id"`
	CidrBlock string `json:"cidrBlock"`
	IsDefault bool   `json:"isDefault,omitempty"`
	Tags      []Tag  `json:"tags,omitempty"`
}

// Subnet is an address range of a VPC in one availability zone.
type Subnet struct {
	ID               string `json:"id"`
	VpcID            string `json:"vpcId"`
	CidrBlock        string `json:"cidrBlock"`
	AvailabilityZone string `json:"availabilityZone"`
	DefaultForAz     bool   `json:"defaultForAz,omitempty"`
	MapPublicIP      bool   `json:"mapPublicIpOnLaunch,omitempty"`
	Tags             []Tag  `json:"tags,omitempty"`
}

// SecurityGroup is a firewall of one VPC; the emulator keeps no rules.
type SecurityGroup struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	VpcID       string `json:"vpcId"`
	Tags        []Tag  `json:"tags,omitempty"`
}

var (
	vpcRE    = regexp.MustCompile(`^vpc-([0-9a-f]{8}|[0-9a-f]{17})$`)
	subnetRE = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	sgRE     = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

func vpcNotFound(id string) *apiError {
	return badRequest("InvalidVpcID.NotFound", "The vpc ID '%s' does not exist", id)
}

func subnetNotFound(id string) *apiError {
	return badRequest("InvalidSubnetID.NotFound", "The subnet ID '%s' does not exist", id)
}

func sgNotFound(id string) *apiError {
	return badRequest("InvalidGroup.NotFound", "The security group '%s' does not exist", id)
}

// ensureDefaultVPCLocked makes the default VPC, subnet and security group
// of a new account.
func (e *Emulator) ensureDefaultVPCLocked() {
	for _, v := range e.st.Vpcs {
		if v.IsDefault {
			return
		}
	}
	v := &Vpc{ID: newID("vpc"), CidrBlock: "172.31.0.0/16", IsDefault: true}
	e.st.Vpcs[v.ID] = v
	s := &Subnet{ID: newID("subnet"), VpcID: v.ID, CidrBlock: "172.31.0.0/20", AvailabilityZone: e.cfg.Region + "a",
		DefaultForAz: true, MapPublicIP: true}
	e.st.Subnets[s.ID] = s
	e.defaultSGLocked(v.ID)
}

func (e *Emulator) defaultSGLocked(vpcID string) {
	g := &SecurityGroup{ID: newID("sg"), Name: "default", Description: "default VPC security group", VpcID: vpcID}
	e.st.SecurityGroups[g.ID] = g
}

func (e *Emulator) vpcActions() map[string]queryAction {
	return map[string]queryAction{
		"CreateVpc":              e.createVpc,
		"DescribeVpcs":           e.describeVpcs,
		"DeleteVpc":              e.deleteVpc,
		"CreateSubnet":           e.createSubnet,
		"DescribeSubnets":        e.describeSubnets,
		"DeleteSubnet":           e.deleteSubnet,
		"CreateSecurityGroup":    e.createSecurityGroup,
		"DescribeSecurityGroups": e.describeSecurityGroups,
		"DeleteSecurityGroup":    e.deleteSecurityGroup,
		"DescribeInstanceTypes":  e.describeInstanceTypes,
	}
}

type vpcXML struct {
	VpcID           string   `xml:"vpcId"`
	State           string   `xml:"state"`
	CidrBlock       string   `xml:"cidrBlock"`
	IsDefault       bool     `xml:"isDefault"`
	InstanceTenancy string   `xml:"instanceTenancy"`
	OwnerID         string   `xml:"ownerId"`
	Tags            []xmlTag `xml:"tagSet>item"`
}

func (e *Emulator) vpcXML(v *Vpc) vpcXML {
	return vpcXML{v.ID, "available", v.CidrBlock, v.IsDefault, "default", e.cfg.AccountID, xmlTags(v.Tags)}
}

type subnetXML struct {
	SubnetID         string   `xml:"subnetId"`
	State            string   `xml:"state"`
	VpcID            string   `xml:"vpcId"`
	CidrBlock        string   `xml:"cidrBlock"`
	AvailableIPs     int      `xml:"availableIpAddressCount"`
	AvailabilityZone string   `xml:"availabilityZone"`
	DefaultForAz     bool     `xml:"defaultForAz"`
	MapPublicIP      bool     `xml:"mapPublicIpOnLaunch"`
	OwnerID          string   `xml:"ownerId"`
	SubnetArn        string   `xml:"subnetArn"`
	Tags             []xmlTag `xml:"tagSet>item"`
}

func (e *Emulator) subnetXMLLocked(s *Subnet) subnetXML {
	p := netip.MustParsePrefix(s.CidrBlock)
	free := 1<<(32-p.Bits()) - 5 - len(e.usedIPsLocked(s.ID))
	return subnetXML{s.ID, "available", s.VpcID, s.CidrBlock, free, s.AvailabilityZone, s.DefaultForAz, s.MapPublicIP,
		e.cfg.AccountID, "arn:aws:ec2:" + e.cfg.Region + ":" + e.cfg.AccountID + ":subnet/" + s.ID, xmlTags(s.Tags)}
}

type sgXML struct {
	OwnerID     string   `xml:"ownerId"`
	GroupID     string   `xml:"groupId"`
	GroupName   string   `xml:"groupName"`
	Description string   `xml:"groupDescription"`
	VpcID       string   `xml:"vpcId"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

func (e *Emulator) sgXML(g *SecurityGroup) sgXML {
	return sgXML{e.cfg.AccountID, g.ID, g.Name, g.Description, g.VpcID, xmlTags(g.Tags)}
}

// parseCIDR reads an IPv4 CIDR block with a prefix of /16 to /28, as VPCs
// and subnets take.
func parseCIDR(s string) (netip.Prefix, *apiError) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Masked() != p {
		return netip.Prefix{}, badRequest("InvalidParameterValue", "Value (%s) for parameter cidrBlock is invalid. This is not a valid CIDR block.", s)
	}
	if p.Bits() < 16 || p.Bits() > 28 {
		return netip.Prefix{}, badRequest("InvalidVpc.Range", "The CIDR '%s' is invalid.", s)
	}
	return p, nil
}

func overlaps(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	return err1 == nil && err2 == nil && pa.Overlaps(pb)
}

func (e *Emulator) createVpc(p params) (any, error) {
	if _, err := parseCIDR(p.get("CidrBlock")); err != nil {
		return nil, err
	}
	tags, err := e.resourceTags(p, "vpc")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	v := &Vpc{ID: newID("vpc"), CidrBlock: p.get("CidrBlock"), Tags: tags["vpc"]}
	e.st.Vpcs[v.ID] = v
	e.defaultSGLocked(v.ID)
	e.saveLocked()
	return struct {
		Vpc vpcXML `xml:"vpc"`
	}{e.vpcXML(v)}, nil
}

func (e *Emulator) describeVpcs(p params) (any, error) {
	ids, fs := p.list("VpcId"), p.filters("Filter")
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []vpcXML
	for _, v := range sortedByID(e.st.Vpcs, func(v *Vpc) string { return v.ID }) {
		if len(ids) > 0 && !slices.Contains(ids, v.ID) {
			continue
		}
		ok, err := matchFilters(fs, v.Tags, map[string][]string{"vpc-id": {v.ID}, "cidr": {v.CidrBlock}, "is-default": {strconv.FormatBool(v.IsDefault)}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e.vpcXML(v))
		}
	}
	for _, id := range ids {
		if e.st.Vpcs[id] == nil {
			return nil, vpcNotFound(id)
		}
	}
	return struct {
		Vpcs []vpcXML `xml:"vpcSet>item"`
	}{out}, nil
}

func (e *Emulator) deleteVpc(p params) (any, error) {
	id := p.get("VpcId")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st.Vpcs[id] == nil {
		return nil, vpcNotFound(id)
	}
	for _, s := range e.st.Subnets {
		if s.VpcID == id {
			return nil, badRequest("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
		}
	}
	for gid, g := range e.st.SecurityGroups {
		if g.VpcID == id {
			if g.Name != "default" {
				return nil, badRequest("DependencyViolation", "The vpc '%s' has dependencies and cannot be deleted.", id)
			}
			delete(e.st.SecurityGroups, gid)
		}
	}
	delete(e.st.Vpcs, id)
	e.saveLocked()
	return returnXML{true}, nil
}

func (e *Emulator) createSubnet(p params) (any, error) {
	vpcID, cidr := p.get("VpcId"), p.get("CidrBlock")
	sp, aerr := parseCIDR(cidr)
	if aerr != nil {
		return nil, aerr
	}
	tags, err := e.resourceTags(p, "subnet")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	v := e.st.Vpcs[vpcID]
	if v == nil {
		return nil, vpcNotFound(vpcID)
	}
	if vp := netip.MustParsePrefix(v.CidrBlock); !vp.Contains(sp.Addr()) || sp.Bits() < vp.Bits() {
		return nil, badRequest("InvalidSubnet.Range", "The CIDR '%s' is invalid.", cidr)
	}
	for _, o := range e.st.Subnets {
		if o.VpcID == vpcID && overlaps(o.CidrBlock, cidr) {
			return nil, badRequest("InvalidSubnet.Conflict", "The CIDR '%s' conflicts with another subnet", cidr)
		}
	}
	az := cmp.Or(p.get("AvailabilityZone"), e.cfg.Region+"a")
	if !strings.HasPrefix(az, e.cfg.Region) {
		return nil, badRequest("InvalidParameterValue", "Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %sa, %sb.", az, e.cfg.Region, e.cfg.Region)
	}
	s := &Subnet{ID: newID("subnet"), VpcID: vpcID, CidrBlock: cidr, AvailabilityZone: az, Tags: tags["subnet"]}
	e.st.Subnets[s.ID] = s
	e.saveLocked()
	return struct {
		Subnet subnetXML `xml:"subnet"`
	}{e.subnetXMLLocked(s)}, nil
}

func (e *Emulator) describeSubnets(p params) (any, error) {
	ids, fs := p.list("SubnetId"), p.filters("Filter")
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if e.st.Subnets[id] == nil {
			return nil, subnetNotFound(id)
		}
	}
	var out []subnetXML
	for _, s := range sortedByID(e.st.Subnets, func(s *Subnet) string { return s.ID }) {
		if len(ids) > 0 && !slices.Contains(ids, s.ID) {
			continue
		}
		ok, err := matchFilters(fs, s.Tags, map[string][]string{"subnet-id": {s.ID}, "vpc-id": {s.VpcID},
			"availability-zone": {s.AvailabilityZone}, "default-for-az": {strconv.FormatBool(s.DefaultForAz)}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e.subnetXMLLocked(s))
		}
	}
	return struct {
		Subnets []subnetXML `xml:"subnetSet>item"`
	}{out}, nil
}

func (e *Emulator) deleteSubnet(p params) (any, error) {
	id := p.get("SubnetId")
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st.Subnets[id] == nil {
		return nil, subnetNotFound(id)
	}
	if len(e.usedIPsLocked(id)) > 0 {
		return nil, badRequest("DependencyViolation", "The subnet '%s' has dependencies and cannot be deleted.", id)
	}
	delete(e.st.Subnets, id)
	e.saveLocked()
	return returnXML{true}, nil
}

func (e *Emulator) createSecurityGroup(p params) (any, error) {
	name, desc, vpcID := p.get("GroupName"), p.get("GroupDescription"), p.get("VpcId")
	if name == "" || desc == "" {
		return nil, badRequest("MissingParameter", "The request must contain the parameter groupName and groupDescription")
	}
	tags, err := e.resourceTags(p, "security-group")
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if vpcID == "" {
		vpcID = e.defaultVPCLocked().ID
	}
	if e.st.Vpcs[vpcID] == nil {
		return nil, vpcNotFound(vpcID)
	}
	for _, g := range e.st.SecurityGroups {
		if g.VpcID == vpcID && g.Name == name {
			return nil, badRequest("InvalidGroup.Duplicate", "The security group '%s' already exists for VPC '%s'", name, vpcID)
		}
	}
	g := &SecurityGroup{ID: newID("sg"), Name: name, Description: desc, VpcID: vpcID, Tags: tags["security-group"]}
	e.st.SecurityGroups[g.ID] = g
	e.saveLocked()
	return struct {
		Return  bool   `xml:"return"`
		GroupID string `xml:"groupId"`
	}{true, g.ID}, nil
}

func (e *Emulator) defaultVPCLocked() *Vpc {
	for _, v := range e.st.Vpcs {
		if v.IsDefault {
			return v
		}
	}
	return nil
}

func (e *Emulator) describeSecurityGroups(p params) (any, error) {
	ids, names, fs := p.list("GroupId"), p.list("GroupName"), p.filters("Filter")
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if e.st.SecurityGroups[id] == nil {
			return nil, sgNotFound(id)
		}
	}
	var out []sgXML
	for _, g := range sortedByID(e.st.SecurityGroups, func(g *SecurityGroup) string { return g.ID }) {
		if len(ids) > 0 && !slices.Contains(ids, g.ID) || len(names) > 0 && !slices.Contains(names, g.Name) {
			continue
		}
		ok, err := matchFilters(fs, g.Tags, map[string][]string{"group-id": {g.ID}, "group-name": {g.Name}, "vpc-id": {g.VpcID}})
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, e.sgXML(g))
		}
	}
	return struct {
		Groups []sgXML `xml:"securityGroupInfo>item"`
	}{out}, nil
}

func (e *Emulator) deleteSecurityGroup(p params) (any, error) {
	id := p.get("GroupId")
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.st.SecurityGroups[id]
	if g == nil {
		return nil, sgNotFound(id)
	}
	if g.Name == "default" {
		return nil, badRequest("CannotDelete", "the specified group: \"%s\" name: \"default\" cannot be deleted by a user", id)
	}
	for _, in := range e.st.Instances {
		if in.State != "terminated" && slices.Contains(in.SecurityGroups, id) {
			return nil, badRequest("DependencyViolation", "resource %s has a dependent object", id)
		}
	}
	delete(e.st.SecurityGroups, id)
	e.saveLocked()
	return returnXML{true}, nil
}

type instanceTypeXML struct {
	InstanceType string `xml:"instanceType"`
	VCPUs        int    `xml:"vCpuInfo>defaultVCpus"`
	MemoryMiB    int64  `xml:"memoryInfo>sizeInMiB"`
}

func (e *Emulator) describeInstanceTypes(p params) (any, error) {
	names := p.list("InstanceType")
	var out []instanceTypeXML
	var unknown []string
	if len(names) == 0 {
		for _, t := range instancetype.All() {
			names = append(names, t.Name)
		}
	}
	for _, n := range names {
		t, ok := instancetype.Lookup(n)
		if !ok {
			unknown = append(unknown, n)
			continue
		}
		out = append(out, instanceTypeXML{t.Name, t.VCPUs, t.MemoryMiB})
	}
	if len(unknown) > 0 {
		return nil, badRequest("InvalidInstanceType", "The following supplied instance types do not exist: [%s]", strings.Join(unknown, ", "))
	}
	return struct {
		Types []instanceTypeXML `xml:"instanceTypeSet>item"`
	}{out}, nil
}

// sortedByID lists a map's values in id order.
func sortedByID[T any](m map[string]T, id func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return cmp.Compare(id(a), id(b)) })
	return out
}
