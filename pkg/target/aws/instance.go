package aws

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// What launching an application asks of EC2 beyond CloudFormation: that
// the networks, security groups, instance types and AMIs a launch
// configuration names exist (so a bad one is refused before a stack is
// made), and how each launched instance is doing.

// Subnet is a subnet and its VPC.
type Subnet struct {
	ID, VpcID, CidrBlock, AvailabilityZone string
}

// SecurityGroup is a security group and its VPC.
type SecurityGroup struct {
	ID, Name, VpcID string
}

// Subnets describes the subnets by id; an id EC2 does not know is missing
// from the answer, not an error.
func (t *Target) Subnets(ctx context.Context, ids []string) (map[string]Subnet, error) {
	out := map[string]Subnet{}
	for _, id := range ids {
		var res *ec2.DescribeSubnetsOutput
		err := t.call(ctx, "DescribeSubnets", func(ctx context.Context) (err error) {
			res, err = t.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{id}})
			return err
		})
		if apiCode(err) == "InvalidSubnetID.NotFound" || apiCode(err) == "InvalidSubnetID.Malformed" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe subnet %s: %w", id, err)
		}
		for _, s := range res.Subnets {
			out[sdk.ToString(s.SubnetId)] = Subnet{ID: sdk.ToString(s.SubnetId), VpcID: sdk.ToString(s.VpcId),
				CidrBlock: sdk.ToString(s.CidrBlock), AvailabilityZone: sdk.ToString(s.AvailabilityZone)}
		}
	}
	return out, nil
}

// SecurityGroups describes the security groups by id; unknown ids are
// missing from the answer.
func (t *Target) SecurityGroups(ctx context.Context, ids []string) (map[string]SecurityGroup, error) {
	out := map[string]SecurityGroup{}
	for _, id := range ids {
		var res *ec2.DescribeSecurityGroupsOutput
		err := t.call(ctx, "DescribeSecurityGroups", func(ctx context.Context) (err error) {
			res, err = t.ec2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{id}})
			return err
		})
		if apiCode(err) == "InvalidGroup.NotFound" || apiCode(err) == "InvalidGroupId.Malformed" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe security group %s: %w", id, err)
		}
		for _, g := range res.SecurityGroups {
			out[sdk.ToString(g.GroupId)] = SecurityGroup{ID: sdk.ToString(g.GroupId), Name: sdk.ToString(g.GroupName), VpcID: sdk.ToString(g.VpcId)}
		}
	}
	return out, nil
}

// UnknownInstanceTypes returns the names among types that the region does
// not offer.
func (t *Target) UnknownInstanceTypes(ctx context.Context, types []string) ([]string, error) {
	var unknown []string
	for _, name := range types {
		err := t.call(ctx, "DescribeInstanceTypes", func(ctx context.Context) error {
			_, err := t.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{ec2types.InstanceType(name)}})
			return err
		})
		if apiCode(err) == "InvalidInstanceType" {
			unknown = append(unknown, name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe instance type %s: %w", name, err)
		}
	}
	return unknown, nil
}

// Images describes the AMIs by id; unknown or deregistered ones are missing
// from the answer.
func (t *Target) Images(ctx context.Context, ids []string) (map[string]Image, error) {
	out := map[string]Image{}
	for _, id := range ids {
		im, err := t.image(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("describe AMI %s: %w", id, err)
		}
		if im != nil {
			out[id] = *im
		}
	}
	return out, nil
}

// InstanceStatus is an instance's state and its status checks.
type InstanceStatus struct {
	ID string
	// State is pending, running, shutting-down, terminated, stopping or
	// stopped.
	State string
	// System and Instance are the checks: ok, impaired, initializing,
	// insufficient-data or not-applicable.
	System, Instance string
}

// InstanceStatuses reports the state and checks of each instance; an
// unknown id is missing from the answer.
func (t *Target) InstanceStatuses(ctx context.Context, ids []string) (map[string]InstanceStatus, error) {
	out := map[string]InstanceStatus{}
	if len(ids) == 0 {
		return out, nil
	}
	var res *ec2.DescribeInstanceStatusOutput
	err := t.call(ctx, "DescribeInstanceStatus", func(ctx context.Context) (err error) {
		res, err = t.ec2.DescribeInstanceStatus(ctx, &ec2.DescribeInstanceStatusInput{InstanceIds: slices.Clone(ids), IncludeAllInstances: sdk.Bool(true)})
		return err
	})
	if apiCode(err) == "InvalidInstanceID.NotFound" && len(ids) > 1 {
		for _, id := range ids {
			one, err := t.InstanceStatuses(ctx, []string{id})
			if err != nil {
				return nil, err
			}
			for k, v := range one {
				out[k] = v
			}
		}
		return out, nil
	}
	if apiCode(err) == "InvalidInstanceID.NotFound" {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe instance status: %w", err)
	}
	for _, s := range res.InstanceStatuses {
		st := InstanceStatus{ID: sdk.ToString(s.InstanceId)}
		if s.InstanceState != nil {
			st.State = string(s.InstanceState.Name)
		}
		if s.SystemStatus != nil {
			st.System = string(s.SystemStatus.Status)
		}
		if s.InstanceStatus != nil {
			st.Instance = string(s.InstanceStatus.Status)
		}
		out[st.ID] = st
	}
	return out, nil
}

// ConsoleOutput returns the instance's serial console output so far ("" when
// there is none yet).
func (t *Target) ConsoleOutput(ctx context.Context, id string) (string, error) {
	var res *ec2.GetConsoleOutputOutput
	err := t.call(ctx, "GetConsoleOutput", func(ctx context.Context) (err error) {
		res, err = t.ec2.GetConsoleOutput(ctx, &ec2.GetConsoleOutputInput{InstanceId: sdk.String(id), Latest: sdk.Bool(true)})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("console output of %s: %w", id, err)
	}
	b, err := base64.StdEncoding.DecodeString(sdk.ToString(res.Output))
	if err != nil {
		return "", fmt.Errorf("console output of %s: %w", id, err)
	}
	return string(b), nil
}
