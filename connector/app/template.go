package app

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The CloudFormation template of an application, as plain maps written
// out by encoding/json and by the small YAML writer of yaml.go: the product
// links neither goformation nor a YAML library (half a megabyte). The tests
// read every template back through goformation's typed resources, which is
// what proves its resources and properties are ones CloudFormation knows.
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

// obj is a JSON object of the template; its keys come out sorted in both
// formats.
type obj = map[string]any

func ref(name string) obj                   { return obj{"Ref": name} }
func getAtt(res, attr string) obj           { return obj{"Fn::GetAtt": []any{res, attr}} }
func join(parts ...any) obj                 { return obj{"Fn::Join": []any{"", parts}} }
func ifTest(test, cutover any) obj          { return obj{"Fn::If": []any{condIsTest, test, cutover}} }
func equals(a, b any) obj                   { return obj{"Fn::Equals": []any{a, b}} }
func base64Fn(s string) obj                 { return obj{"Fn::Base64": s} }
func noValue() obj                          { return ref("AWS::NoValue") }
func outputName(server, what string) string { return server + what }

const condIsTest = "IsTest"

// parameter and output are the entries of Parameters and Outputs; an empty
// Description or AllowedValues is left out, a Default never is.
func parameter(typ, def, description string, allowed ...string) obj {
	p := obj{"Type": typ, "Default": def}
	if description != "" {
		p["Description"] = description
	}
	if len(allowed) > 0 {
		p["AllowedValues"] = strs(allowed)
	}
	return p
}

func output(value obj, description string) obj {
	return obj{"Value": value, "Description": description}
}

// resource is a resource of type typ; DependsOn is left out when empty.
func resource(typ string, props obj, dependsOn []string) obj {
	r := obj{"Type": typ, "Properties": props}
	if len(dependsOn) > 0 {
		r["DependsOn"] = strs(dependsOn)
	}
	return r
}

func strs(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Template renders the application's template in format (JSON or YAML).
func Template(in TemplateInput, format string) ([]byte, error) {
	params := obj{
		ParamLaunchKind: parameter("String", string(store.LaunchCutover),
			"cutover launches into the configured networks; test into the test VPC and subnet", string(store.LaunchCutover), string(store.LaunchTest)),
		ParamNameSuffix:  parameter("String", "", "appended to every server's Name tag (a test launch's suffix)"),
		ParamBootTimeout: parameter("Number", strconv.Itoa(DefaultBootTimeout), "seconds each server group has to boot and be signalled ready"),
	}
	resources, outputs := obj{}, obj{}
	t := obj{
		"AWSTemplateFormatVersion": "2010-09-09",
		"Description":              templateDescription(in),
		"Parameters":               params,
		"Conditions":               obj{condIsTest: equals(ref(ParamLaunchKind), string(store.LaunchTest))},
		"Resources":                resources,
		"Outputs":                  outputs,
	}
	for _, g := range in.Groups {
		var members []string
		for _, s := range g.Servers {
			members = append(members, s.LogicalID)
			params[s.LogicalID+"ImageId"] = parameter("AWS::EC2::Image::Id", s.Image.ID, fmt.Sprintf("AMI of %s (its latest replication)", s.Name))
			params[s.LogicalID+"InstanceType"] = parameter("String", s.Launch.InstanceType, "instance type of "+s.Name)
			inst, err := instance(in, g, s)
			if err != nil {
				return nil, err
			}
			resources[s.LogicalID] = inst
			outputs[outputName(s.LogicalID, "InstanceId")] = output(ref(s.LogicalID), "instance of "+s.Name)
			outputs[outputName(s.LogicalID, "PrivateIp")] = output(getAtt(s.LogicalID, "PrivateIp"), "private address of "+s.Name)
			if p := s.Launch.AssociatePublicIP; p != nil && *p {
				outputs[outputName(s.LogicalID, "PublicIp")] = output(getAtt(s.LogicalID, "PublicIp"), "public address of "+s.Name)
			}
		}
		resources[g.Handle()] = resource("AWS::CloudFormation::WaitConditionHandle", obj{}, nil)
		resources[g.Ready()] = resource("AWS::CloudFormation::WaitCondition",
			obj{"Handle": ref(g.Handle()), "Timeout": ref(ParamBootTimeout), "Count": len(g.Servers)}, members)
	}
	switch strings.ToUpper(cmp.Or(format, FormatJSON)) {
	case FormatJSON:
		js, err := json.MarshalIndent(t, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("template of app %q: %w", in.AppName, err)
		}
		return append(js, '\n'), nil
	case FormatYAML:
		return yamlDocument(t), nil
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

// instance is one server's AWS::EC2::Instance. The properties are those of
// goformation's ec2.Instance, which the tests read the template back into.
func instance(in TemplateInput, g TemplateGroup, s TemplateServer) (obj, error) {
	l := s.Launch
	props := obj{
		"ImageId":      ref(s.LogicalID + "ImageId"),
		"InstanceType": ref(s.LogicalID + "InstanceType"),
	}
	var dependsOn []string
	for _, w := range g.Waits {
		dependsOn = append(dependsOn, w+"Ready")
	}
	if l.KeyName != "" {
		props["KeyName"] = l.KeyName
	}
	if l.InstanceProfile != "" {
		props["IamInstanceProfile"] = l.InstanceProfile
	}
	if s.UserData != "" {
		props["UserData"] = base64Fn(s.UserData)
	}
	nic := obj{"DeviceIndex": "0"}
	if l.AssociatePublicIP != nil {
		nic["AssociatePublicIpAddress"] = *l.AssociatePublicIP
	}
	test := in.Test
	if test == nil {
		test = &store.TestLaunchConfig{}
	}
	// A test launch goes into the test subnet where one is set, with the
	// test security groups (the test VPC's default ones when none is set).
	switch {
	case test.Subnet != "" && l.Subnet != "":
		nic["SubnetId"] = ifTest(test.Subnet, l.Subnet)
	case test.Subnet != "":
		nic["SubnetId"] = ifTest(test.Subnet, noValue())
	case l.Subnet != "":
		nic["SubnetId"] = l.Subnet
	}
	testGroups := test.SecurityGroups
	if len(testGroups) == 0 && test.Subnet == "" {
		testGroups = l.SecurityGroups
	}
	var groupSet []any
	for i := range max(len(testGroups), len(l.SecurityGroups)) {
		var tg, cg any = noValue(), noValue()
		if i < len(testGroups) {
			tg = testGroups[i]
		}
		if i < len(l.SecurityGroups) {
			cg = l.SecurityGroups[i]
		}
		if i < len(testGroups) && i < len(l.SecurityGroups) && testGroups[i] == l.SecurityGroups[i] {
			groupSet = append(groupSet, cg)
		} else {
			groupSet = append(groupSet, ifTest(tg, cg))
		}
	}
	if len(groupSet) > 0 {
		nic["GroupSet"] = groupSet
	}
	if l.PrivateIP != "" {
		// A test launch takes an address of its own subnet.
		nic["PrivateIpAddress"] = ifTest(noValue(), l.PrivateIP)
	}
	if len(nic) > 1 {
		props["NetworkInterfaces"] = []any{nic}
	}
	if l.VolumeType != "" {
		devices := s.Image.Devices
		if len(devices) == 0 {
			devices = []string{cmp.Or(s.Image.RootDevice, "/dev/sda1")}
		}
		var mappings []any
		for _, d := range devices {
			mappings = append(mappings, obj{"DeviceName": d, "Ebs": obj{"VolumeType": l.VolumeType}})
		}
		props["BlockDeviceMappings"] = mappings
	}
	var userTags []store.Tag
	for _, tg := range l.Tags {
		if tg.Key == "Name" || strings.HasPrefix(tg.Key, "rehost:") || strings.HasPrefix(strings.ToLower(tg.Key), "aws:") {
			return nil, invalid("server %s: tag %q is reserved (Name, rehost:… and aws:… are set by rehost)", s.Name, tg.Key)
		}
		userTags = append(userTags, tg)
	}
	slices.SortStableFunc(userTags, func(a, b store.Tag) int { return cmp.Compare(a.Key, b.Key) })
	tagList := []any{
		obj{"Key": "Name", "Value": join(s.Name, ref(ParamNameSuffix))},
		cfnTag(TagApp, in.AppID),
		cfnTag(TagServer, s.ServerID),
	}
	for _, tg := range userTags {
		tagList = append(tagList, cfnTag(tg.Key, tg.Value))
	}
	props["Tags"] = tagList
	return resource("AWS::EC2::Instance", props, dependsOn), nil
}

// cfnTag is a resource tag; like goformation's tags.Tag, it leaves out an
// empty key or value.
func cfnTag(key, value string) obj {
	t := obj{}
	if key != "" {
		t["Key"] = key
	}
	if value != "" {
		t["Value"] = value
	}
	return t
}
