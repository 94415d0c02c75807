package emulator

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

const bootTime = 400 * time.Millisecond

func withBootTime(c *Config) { c.InstanceBootTime = bootTime }

// snapshotAMI makes an AMI of raw as a user of ImportSnapshot and
// RegisterImage would: nothing checks that the disk holds an OS.
func (e *env) snapshotAMI(name string, raw []byte) string {
	e.t.Helper()
	ctx := context.Background()
	if len(e.em.Roles()) == 0 {
		e.role("vmimport", trustPolicy, rolePolicy(e.bucket))
	}
	key := name + ".raw"
	e.put(key, raw)
	out, err := e.ec2.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{DiskContainer: &ec2types.SnapshotDiskContainer{
		Format: aws.String("RAW"), UserBucket: &ec2types.UserBucket{S3Bucket: aws.String(e.bucket), S3Key: aws.String(key)}}})
	if err != nil {
		e.t.Fatal(err)
	}
	task := e.waitSnapshotTask(aws.ToString(out.ImportTaskId))
	if s := aws.ToString(task.SnapshotTaskDetail.Status); s != "completed" {
		e.t.Fatalf("import snapshot of %s: %s", name, s)
	}
	reg, err := e.ec2.RegisterImage(ctx, &ec2.RegisterImageInput{Name: aws.String(name), RootDeviceName: aws.String("/dev/sda1"),
		BlockDeviceMappings: []ec2types.BlockDeviceMapping{{DeviceName: aws.String("/dev/sda1"),
			Ebs: &ec2types.EbsBlockDevice{SnapshotId: task.SnapshotTaskDetail.SnapshotId}}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return aws.ToString(reg.ImageId)
}

func (e *env) run(in *ec2.RunInstancesInput) (ec2types.Instance, error) {
	if in.MinCount == nil {
		in.MinCount, in.MaxCount = aws.Int32(1), aws.Int32(1)
	}
	out, err := e.ec2.RunInstances(context.Background(), in)
	if err != nil {
		return ec2types.Instance{}, err
	}
	return out.Instances[0], nil
}

func (e *env) console(id string) string {
	e.t.Helper()
	out, err := e.ec2.GetConsoleOutput(context.Background(), &ec2.GetConsoleOutputInput{InstanceId: aws.String(id), Latest: aws.Bool(true)})
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := base64.StdEncoding.DecodeString(aws.ToString(out.Output))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *env) status(id string) ec2types.InstanceStatus {
	e.t.Helper()
	out, err := e.ec2.DescribeInstanceStatus(context.Background(), &ec2.DescribeInstanceStatusInput{InstanceIds: []string{id}, IncludeAllInstances: aws.Bool(true)})
	if err != nil || len(out.InstanceStatuses) != 1 {
		e.t.Fatalf("instance status of %s: %v %+v", id, err, out)
	}
	return out.InstanceStatuses[0]
}

func (e *env) instance(id string) ec2types.Instance {
	e.t.Helper()
	out, err := e.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) != 1 {
		e.t.Fatalf("describe %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

// An instance boots what its AMI's boot volume holds: the console shows
// the guest's distribution and a login prompt, or the firmware finding no
// bootable device, and the status checks follow.
func TestInstanceBootsItsGuest(t *testing.T) {
	e := newEnv(t, withBootTime)
	linux := e.snapshotAMI("linux", guestDisk(t, guestdisk.BIOS))
	blank := e.snapshotAMI("blank", rawDisk(diskSize, 5))
	ctx := context.Background()

	in, err := e.run(&ec2.RunInstancesInput{ImageId: aws.String(linux), InstanceType: ec2types.InstanceTypeT3Micro,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: "instance", Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String("web")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(in.InstanceId)
	if in.State.Name != ec2types.InstanceStateNamePending || aws.ToString(in.SubnetId) == "" || !strings.HasPrefix(aws.ToString(in.PrivateIpAddress), "172.31.") {
		t.Fatalf("launched %+v", in)
	}
	if out := e.console(id); out != "" {
		t.Errorf("console output before boot: %q", out)
	}
	if s := e.status(id); s.InstanceStatus.Status != ec2types.SummaryStatusNotApplicable {
		t.Errorf("status while pending: %s", s.InstanceStatus.Status)
	}
	bad, err := e.run(&ec2.RunInstancesInput{ImageId: aws.String(blank), InstanceType: ec2types.InstanceTypeT3Micro})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(bootTime + 50*time.Millisecond)
	if st := e.instance(id).State.Name; st != ec2types.InstanceStateNameRunning {
		t.Fatalf("state after boot: %s", st)
	}
	out := e.console(id)
	if !strings.Contains(out, "Debian GNU/Linux 12 (bookworm)") || !strings.Contains(out, "Cloud-init v.") || !strings.HasSuffix(strings.TrimSpace(out), "login:") {
		t.Errorf("console of a Linux guest:\n%s", out)
	}
	if s := e.status(id); s.InstanceStatus.Status != ec2types.SummaryStatusOk || s.SystemStatus.Status != ec2types.SummaryStatusOk {
		t.Errorf("status checks: %+v %+v", s.InstanceStatus, s.SystemStatus)
	}
	badID := aws.ToString(bad.InstanceId)
	if out := e.console(badID); !strings.Contains(out, "No bootable device.") || strings.Contains(out, "login") {
		t.Errorf("console of a disk without an OS:\n%s", out)
	}
	if s := e.status(badID); s.InstanceStatus.Status != ec2types.SummaryStatusImpaired {
		t.Errorf("instance check of a guest that did not boot: %s", s.InstanceStatus.Status)
	}
	running, err := e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:Name"), Values: []string{"web"}}, {Name: aws.String("instance-state-name"), Values: []string{"running"}}}})
	if err != nil || len(running.Reservations) != 1 || aws.ToString(running.Reservations[0].Instances[0].InstanceId) != id {
		t.Errorf("filtered by tag and state: %v %+v", err, running)
	}
	term, err := e.ec2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id, badID}})
	if err != nil || term.TerminatingInstances[0].CurrentState.Name != ec2types.InstanceStateNameShuttingDown ||
		term.TerminatingInstances[0].PreviousState.Name != ec2types.InstanceStateNameRunning {
		t.Fatalf("terminate: %v %+v", err, term)
	}
	time.Sleep(bootTime/4 + 50*time.Millisecond)
	if st := e.instance(id).State.Name; st != ec2types.InstanceStateNameTerminated {
		t.Errorf("state after terminate: %s", st)
	}
	_, err = e.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-00000000000000000"}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
}

// RunInstances refuses what EC2 refuses, naming it, and launches nothing.
func TestRunInstancesRefusals(t *testing.T) {
	e := newEnv(t, withBootTime)
	ctx := context.Background()
	ami := e.snapshotAMI("linux", guestDisk(t, guestdisk.BIOS))
	vpc, err := e.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := aws.ToString(vpc.Vpc.VpcId)
	sub, err := e.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpcID), CidrBlock: aws.String("10.1.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	subID := aws.ToString(sub.Subnet.SubnetId)
	sg, err := e.ec2.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("app"), Description: aws.String("app tier"), VpcId: aws.String(vpcID)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpcID), CidrBlock: aws.String("10.2.0.0/24")})
	wantCode(t, err, "InvalidSubnet.Range")
	_, err = e.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: aws.String(vpcID), CidrBlock: aws.String("10.1.1.128/25")})
	wantCode(t, err, "InvalidSubnet.Conflict")

	defaults, err := e.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}}})
	if err != nil || len(defaults.Subnets) != 1 {
		t.Fatalf("default subnet: %v %+v", err, defaults)
	}
	for _, c := range []struct {
		name, code, mentions string
		in                   ec2.RunInstancesInput
	}{
		{"security group of another VPC", "InvalidParameter", "belong to different networks",
			ec2.RunInstancesInput{SubnetId: defaults.Subnets[0].SubnetId, SecurityGroupIds: []string{aws.ToString(sg.GroupId)}}},
		{"unknown instance type", "InvalidParameterValue", "m9.huge", ec2.RunInstancesInput{InstanceType: "m9.huge"}},
		{"address outside the subnet", "InvalidParameterValue", "does not fall within",
			ec2.RunInstancesInput{SubnetId: aws.String(subID), PrivateIpAddress: aws.String("10.1.2.5")}},
		{"reserved address", "InvalidParameterValue", "reserved", ec2.RunInstancesInput{SubnetId: aws.String(subID), PrivateIpAddress: aws.String("10.1.1.2")}},
		{"unknown subnet", "InvalidSubnetID.NotFound", "subnet-0000", ec2.RunInstancesInput{SubnetId: aws.String("subnet-00000000000000000")}},
		{"unknown image", "InvalidAMIID.NotFound", "ami-0000", ec2.RunInstancesInput{ImageId: aws.String("ami-00000000000000000")}},
		{"user data too large", "InvalidParameterValue", "16384", ec2.RunInstancesInput{UserData: aws.String(base64.StdEncoding.EncodeToString(make([]byte, 16<<10+1)))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.in
			if in.ImageId == nil {
				in.ImageId = aws.String(ami)
			}
			if in.InstanceType == "" {
				in.InstanceType = ec2types.InstanceTypeT3Micro
			}
			_, err := e.run(&in)
			wantCode(t, err, c.code)
			if !strings.Contains(err.Error(), c.mentions) {
				t.Errorf("error %v does not mention %q", err, c.mentions)
			}
		})
	}
	if n := len(e.em.Instances()); n != 0 {
		t.Fatalf("%d instances launched by refused calls", n)
	}
	first, err := e.run(&ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro, SubnetId: aws.String(subID),
		PrivateIpAddress: aws.String("10.1.1.10"), SecurityGroupIds: []string{aws.ToString(sg.GroupId)}})
	if err != nil || aws.ToString(first.PrivateIpAddress) != "10.1.1.10" || aws.ToString(first.VpcId) != vpcID || aws.ToString(first.PublicIpAddress) != "" {
		t.Fatalf("launch into the new subnet: %v %+v", err, first)
	}
	_, err = e.run(&ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro, SubnetId: aws.String(subID), PrivateIpAddress: aws.String("10.1.1.10")})
	wantCode(t, err, "InvalidIPAddress.InUse")
	_, err = e.ec2.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: aws.String(vpcID)})
	wantCode(t, err, "DependencyViolation")
	_, err = e.ec2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: sg.GroupId})
	wantCode(t, err, "DependencyViolation")

	types, err := e.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"r5.large"}})
	if err != nil || len(types.InstanceTypes) != 1 || aws.ToInt64(types.InstanceTypes[0].MemoryInfo.SizeInMiB) != 16384 {
		t.Errorf("describe r5.large: %v %+v", err, types)
	}
	_, err = e.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{"m9.huge"}})
	wantCode(t, err, "InvalidInstanceType")
}

// An AMI still pending cannot be run.
func TestRunInstancesOfAPendingImage(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ImageDelay = time.Hour })
	ami := e.snapshotAMI("later", rawDisk(diskSize, 6))
	_, err := e.run(&ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro})
	wantCode(t, err, "InvalidAMIID.Unavailable")
	if !strings.Contains(err.Error(), "pending") {
		t.Errorf("error %v does not say the image is pending", err)
	}
}
