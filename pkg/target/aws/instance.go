package aws

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// What launching an application asks of EC2 beyond CloudFormation: that
// the networks, security groups, instance types and AMIs a launch
// configuration names exist (so a bad one is refused before a stack is
// made), and how each launched instance is doing. They go over EC2's
// Query protocol (wire.go, ec2query.go), as every EC2 call does.

func (t *Target) ec2Query() (QueryAPI, error) {
	if t.ec2q == nil {
		return nil, errors.New("no EC2 query client configured")
	}
	return t.ec2q, nil
}

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
	q, err := t.ec2Query()
	if err != nil {
		return nil, err
	}
	out := map[string]Subnet{}
	for _, id := range ids {
		var res struct {
			Subnets []struct {
				SubnetId         string `xml:"subnetId"`
				VpcId            string `xml:"vpcId"`
				CidrBlock        string `xml:"cidrBlock"`
				AvailabilityZone string `xml:"availabilityZone"`
			} `xml:"subnetSet>item"`
		}
		err := t.call(ctx, "DescribeSubnets", func(ctx context.Context) error {
			return q.Query(ctx, "DescribeSubnets", url.Values{"SubnetId.1": {id}}, &res)
		})
		if apiCode(err) == "InvalidSubnetID.NotFound" || apiCode(err) == "InvalidSubnetID.Malformed" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe subnet %s: %w", id, err)
		}
		for _, s := range res.Subnets {
			out[s.SubnetId] = Subnet{ID: s.SubnetId, VpcID: s.VpcId, CidrBlock: s.CidrBlock, AvailabilityZone: s.AvailabilityZone}
		}
	}
	return out, nil
}

// SecurityGroups describes the security groups by id; unknown ids are
// missing from the answer.
func (t *Target) SecurityGroups(ctx context.Context, ids []string) (map[string]SecurityGroup, error) {
	q, err := t.ec2Query()
	if err != nil {
		return nil, err
	}
	out := map[string]SecurityGroup{}
	for _, id := range ids {
		var res struct {
			SecurityGroups []struct {
				GroupId   string `xml:"groupId"`
				GroupName string `xml:"groupName"`
				VpcId     string `xml:"vpcId"`
			} `xml:"securityGroupInfo>item"`
		}
		err := t.call(ctx, "DescribeSecurityGroups", func(ctx context.Context) error {
			return q.Query(ctx, "DescribeSecurityGroups", url.Values{"GroupId.1": {id}}, &res)
		})
		if apiCode(err) == "InvalidGroup.NotFound" || apiCode(err) == "InvalidGroupId.Malformed" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("describe security group %s: %w", id, err)
		}
		for _, g := range res.SecurityGroups {
			out[g.GroupId] = SecurityGroup{ID: g.GroupId, Name: g.GroupName, VpcID: g.VpcId}
		}
	}
	return out, nil
}

// UnknownInstanceTypes returns the names among types that the region does
// not offer.
func (t *Target) UnknownInstanceTypes(ctx context.Context, types []string) ([]string, error) {
	q, err := t.ec2Query()
	if err != nil {
		return nil, err
	}
	var unknown []string
	for _, name := range types {
		err := t.call(ctx, "DescribeInstanceTypes", func(ctx context.Context) error {
			return q.Query(ctx, "DescribeInstanceTypes", url.Values{"InstanceType.1": {name}}, nil)
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
	q, err := t.ec2Query()
	if err != nil {
		return nil, err
	}
	params := url.Values{"IncludeAllInstances": {"true"}}
	for i, id := range ids {
		params.Set("InstanceId."+strconv.Itoa(i+1), id)
	}
	var res struct {
		InstanceStatuses []struct {
			InstanceId     string `xml:"instanceId"`
			State          string `xml:"instanceState>name"`
			SystemStatus   string `xml:"systemStatus>status"`
			InstanceStatus string `xml:"instanceStatus>status"`
		} `xml:"instanceStatusSet>item"`
	}
	err = t.call(ctx, "DescribeInstanceStatus", func(ctx context.Context) error {
		return q.Query(ctx, "DescribeInstanceStatus", params, &res)
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
		out[s.InstanceId] = InstanceStatus{ID: s.InstanceId, State: s.State, System: s.SystemStatus, Instance: s.InstanceStatus}
	}
	return out, nil
}

// ConsoleOutput returns the instance's serial console output so far ("" when
// there is none yet).
func (t *Target) ConsoleOutput(ctx context.Context, id string) (string, error) {
	q, err := t.ec2Query()
	if err != nil {
		return "", err
	}
	var res struct {
		Output string `xml:"output"`
	}
	err = t.call(ctx, "GetConsoleOutput", func(ctx context.Context) error {
		return q.Query(ctx, "GetConsoleOutput", url.Values{"InstanceId": {id}, "Latest": {"true"}}, &res)
	})
	if err != nil {
		return "", fmt.Errorf("console output of %s: %w", id, err)
	}
	b, err := base64.StdEncoding.DecodeString(res.Output)
	if err != nil {
		return "", fmt.Errorf("console output of %s: %w", id, err)
	}
	return string(b), nil
}
