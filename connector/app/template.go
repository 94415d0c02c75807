package app

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	cfnres "github.com/awslabs/goformation/v7/cloudformation/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/ec2"
	"github.com/awslabs/goformation/v7/cloudformation/tags"
	"github.com/awslabs/goformation/v7/intrinsics"
	"gopkg.in/yaml.v3"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The CloudFormation template of an application, built with goformation's
// typed resources (ec2.Instance, cloudformation.WaitCondition and
// WaitConditionHandle) and its intrinsic encoding, without its registry of
// every resource type (which the product does not link).
//
// Each server is an AWS::EC2::Instance from its latest AMI; each server
// group has a wait condition its servers' readiness is signalled to (by
// rehost's boot check, once it sees the server booted), and a group's
// instances depend on the wait conditions of the groups it waits for, so a
// group starts only once those signalled. Parameters hold what varies
// between launches: the kind (cutover or test, which picks the test subnet
// and security groups), a suffix on every Name tag, how long a group has to
// boot, and each server's AMI and instance type. Outputs give every
// instance's id and private address. The text is deterministic: sorted
// keys, no timestamps.

// Formats of a template, as SMS names them.
const (
	FormatJSON = "JSON"
	FormatYAML = "YAML"
)

// DefaultBootTimeout is how long, in seconds, a server group has to boot
// and be signalled ready.
const DefaultBootTimeout = 1800

// Template parameters that do not belong to one server.
const (
	ParamLaunchKind  = "LaunchKind"
	ParamNameSuffix  = "NameSuffix"
	ParamBootTimeout = "BootTimeout"
)

// The tags rehost puts on what it launches.
const (
	TagApp    = "rehost:app"
	TagServer = "rehost:server"
	TagLaunch = "rehost:launch"
	TagKind   = "rehost:launch-kind"
)

// TemplateServer is one server as the template launches it.
type TemplateServer struct {
	ServerID  string
	Name      string // the VM's name: the Name tag
	LogicalID string
	Launch    store.ServerLaunch
	Image     awstarget.Image
	// UserData is the script the instance runs at first boot (user data
	// and configure script together); "" for none.
	UserData string
}

// TemplateGroup is one server group in launch order.
type TemplateGroup struct {
	GroupID   string
	Name      string
	LogicalID string // prefix of its wait condition's resources
	// Waits are the logical ids of the groups it waits for.
	Waits   []string
	Servers []TemplateServer
}

// TemplateInput is everything the template is made of.
type TemplateInput struct {
	AppID, AppName string
	Groups         []TemplateGroup
	Test           *store.TestLaunchConfig
}

// Handle and Ready are the logical ids of a group's wait condition handle
// and wait condition.
func (g TemplateGroup) Handle() string { return g.LogicalID + "Handle" }
func (g TemplateGroup) Ready() string  { return g.LogicalID + "Ready" }

// intrinsic encodes a function call as goformation does: base64 of its JSON,
// so it fits a string property and nests without escaping; arguments that
// are intrinsics stay encoded strings.
func intrinsic(fn string, arg any) string {
	b, err := json.Marshal(map[string]any{fn: arg})
	if err != nil {
		panic(err) // strings, lists and maps of them always marshal
	}
	return base64.StdEncoding.EncodeToString(b)
}

func ref(name string) string         { return intrinsic("Ref", name) }
func getAtt(res, attr string) string { return intrinsic("Fn::GetAtt", []string{res, attr}) }
func join(parts ...string) string    { return intrinsic("Fn::Join", []any{"", parts}) }
func ifTest(test, cutover string) string {
	return intrinsic("Fn::If", []any{condIsTest, test, cutover})
}
func equals(a, b string) string             { return intrinsic("Fn::Equals", []any{a, b}) }
func base64Fn(s string) string              { return intrinsic("Fn::Base64", s) }
func ptr[T any](v T) *T                     { return &v }
func noValue() string                       { return ref("AWS::NoValue") }
func outputName(server, what string) string { return server + what }

const condIsTest = "IsTest"

type parameter struct {
	Type          string   `json:"Type"`
	Default       string   `json:"Default"`
	Description   string   `json:"Description,omitempty"`
	AllowedValues []string `json:"AllowedValues,omitempty"`
}

type output struct {
	Value       string `json:"Value"`
	Description string `json:"Description,omitempty"`
}

// cfnTemplate is the template's top level; Resources hold goformation's
// typed resources, which marshal themselves with Type and Properties.
type cfnTemplate struct {
	AWSTemplateFormatVersion string               `json:"AWSTemplateFormatVersion"`
	Description              string               `json:"Description"`
	Parameters               map[string]parameter `json:"Parameters"`
	Conditions               map[string]string    `json:"Conditions"`
	Resources                map[string]any       `json:"Resources"`
	Outputs                  map[string]output    `json:"Outputs"`
}

// Template renders the application's template in format (JSON or YAML).
func Template(in TemplateInput, format string) ([]byte, error) {
	t := cfnTemplate{
		AWSTemplateFormatVersion: "2010-09-09",
		Description:              templateDescription(in),
		Parameters: map[string]parameter{
			ParamLaunchKind: {Type: "String", Default: string(store.LaunchCutover), AllowedValues: []string{string(store.LaunchCutover), string(store.LaunchTest)},
				Description: "cutover launches into the configured networks; test into the test VPC and subnet"},
			ParamNameSuffix:  {Type: "String", Default: "", Description: "appended to every server's Name tag (a test launch's suffix)"},
			ParamBootTimeout: {Type: "Number", Default: strconv.Itoa(DefaultBootTimeout), Description: "seconds each server group has to boot and be signalled ready"},
		},
		Conditions: map[string]string{condIsTest: equals(ref(ParamLaunchKind), string(store.LaunchTest))},
		Resources:  map[string]any{},
		Outputs:    map[string]output{},
	}
	for _, g := range in.Groups {
		var members []string
		for _, s := range g.Servers {
			members = append(members, s.LogicalID)
			t.Parameters[s.LogicalID+"ImageId"] = parameter{Type: "AWS::EC2::Image::Id", Default: s.Image.ID,
				Description: fmt.Sprintf("AMI of %s (its latest replication)", s.Name)}
			t.Parameters[s.LogicalID+"InstanceType"] = parameter{Type: "String", Default: s.Launch.InstanceType,
				Description: "instance type of " + s.Name}
			inst, err := instance(in, g, s)
			if err != nil {
				return nil, err
			}
			t.Resources[s.LogicalID] = inst
			t.Outputs[outputName(s.LogicalID, "InstanceId")] = output{Value: ref(s.LogicalID), Description: "instance of " + s.Name}
			t.Outputs[outputName(s.LogicalID, "PrivateIp")] = output{Value: getAtt(s.LogicalID, "PrivateIp"), Description: "private address of " + s.Name}
			if p := s.Launch.AssociatePublicIP; p != nil && *p {
				t.Outputs[outputName(s.LogicalID, "PublicIp")] = output{Value: getAtt(s.LogicalID, "PublicIp"), Description: "public address of " + s.Name}
			}
		}
		t.Resources[g.Handle()] = &cfnres.WaitConditionHandle{}
		t.Resources[g.Ready()] = &cfnres.WaitCondition{Handle: ptr(ref(g.Handle())), Timeout: ptr(ref(ParamBootTimeout)),
			Count: ptr(len(g.Servers)), AWSCloudFormationDependsOn: members}
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("template of app %q: %w", in.AppName, err)
	}
	// Turns the encoded intrinsics back into CloudFormation's objects and
	// indents the result, keys sorted.
	js, err := intrinsics.ProcessJSON(raw, nil)
	if err != nil {
		return nil, fmt.Errorf("template of app %q: %w", in.AppName, err)
	}
	switch strings.ToUpper(cmp.Or(format, FormatJSON)) {
	case FormatJSON:
		return append(js, '\n'), nil
	case FormatYAML:
		var v any
		if err := yaml.Unmarshal(js, &v); err != nil {
			return nil, fmt.Errorf("template of app %q: %w", in.AppName, err)
		}
		return yaml.Marshal(v)
	}
	return nil, invalid("template format %q: want JSON or YAML", format)
}

func templateDescription(in TemplateInput) string {
	n := 0
	for _, g := range in.Groups {
		n += len(g.Servers)
	}
	return fmt.Sprintf("rehost: application %s (%s), %d servers in %d groups launched in order", in.AppName, in.AppID, n, len(in.Groups))
}

// instance is one server's AWS::EC2::Instance.
func instance(in TemplateInput, g TemplateGroup, s TemplateServer) (*ec2.Instance, error) {
	l := s.Launch
	inst := &ec2.Instance{
		ImageId:      ptr(ref(s.LogicalID + "ImageId")),
		InstanceType: ptr(ref(s.LogicalID + "InstanceType")),
	}
	for _, w := range g.Waits {
		inst.AWSCloudFormationDependsOn = append(inst.AWSCloudFormationDependsOn, w+"Ready")
	}
	if l.KeyName != "" {
		inst.KeyName = ptr(l.KeyName)
	}
	if l.InstanceProfile != "" {
		inst.IamInstanceProfile = ptr(l.InstanceProfile)
	}
	if s.UserData != "" {
		inst.UserData = ptr(base64Fn(s.UserData))
	}
	nic := ec2.Instance_NetworkInterface{DeviceIndex: "0", AssociatePublicIpAddress: l.AssociatePublicIP}
	test := in.Test
	if test == nil {
		test = &store.TestLaunchConfig{}
	}
	// A test launch goes into the test subnet where one is set, with the
	// test security groups (the test VPC's default ones when none is set).
	switch {
	case test.Subnet != "" && l.Subnet != "":
		nic.SubnetId = ptr(ifTest(test.Subnet, l.Subnet))
	case test.Subnet != "":
		nic.SubnetId = ptr(ifTest(test.Subnet, noValue()))
	case l.Subnet != "":
		nic.SubnetId = ptr(l.Subnet)
	}
	testGroups := test.SecurityGroups
	if len(testGroups) == 0 && test.Subnet == "" {
		testGroups = l.SecurityGroups
	}
	for i := range max(len(testGroups), len(l.SecurityGroups)) {
		tg, cg := noValue(), noValue()
		if i < len(testGroups) {
			tg = testGroups[i]
		}
		if i < len(l.SecurityGroups) {
			cg = l.SecurityGroups[i]
		}
		if tg == cg {
			nic.GroupSet = append(nic.GroupSet, cg)
		} else {
			nic.GroupSet = append(nic.GroupSet, ifTest(tg, cg))
		}
	}
	if l.PrivateIP != "" {
		// A test launch takes an address of its own subnet.
		nic.PrivateIpAddress = ptr(ifTest(noValue(), l.PrivateIP))
	}
	if nic.SubnetId != nil || nic.GroupSet != nil || nic.PrivateIpAddress != nil || nic.AssociatePublicIpAddress != nil {
		inst.NetworkInterfaces = []ec2.Instance_NetworkInterface{nic}
	}
	if l.VolumeType != "" {
		devices := s.Image.Devices
		if len(devices) == 0 {
			devices = []string{cmp.Or(s.Image.RootDevice, "/dev/sda1")}
		}
		for _, d := range devices {
			inst.BlockDeviceMappings = append(inst.BlockDeviceMappings, ec2.Instance_BlockDeviceMapping{DeviceName: d,
				Ebs: &ec2.Instance_Ebs{VolumeType: ptr(l.VolumeType)}})
		}
	}
	inst.Tags = []tags.Tag{
		{Key: "Name", Value: join(s.Name, ref(ParamNameSuffix))},
		{Key: TagApp, Value: in.AppID},
		{Key: TagServer, Value: s.ServerID},
	}
	for _, tg := range l.Tags {
		if tg.Key == "Name" || strings.HasPrefix(tg.Key, "rehost:") || strings.HasPrefix(strings.ToLower(tg.Key), "aws:") {
			return nil, invalid("server %s: tag %q is reserved (Name, rehost:… and aws:… are set by rehost)", s.Name, tg.Key)
		}
		inst.Tags = append(inst.Tags, tags.Tag{Key: tg.Key, Value: tg.Value})
	}
	slices.SortStableFunc(inst.Tags[3:], func(a, b tags.Tag) int { return cmp.Compare(a.Key, b.Key) })
	return inst, nil
}
