// Package awsregion knows AWS's regions and their ARN partitions, so a
// region is checked where the user types it ("no such region: xx-nowhere-9")
// instead of surfacing later as a signing error from STS.
//
// The list is data: the regions AWS had opened by 2026-12 (from the
// partitions file the AWS SDKs ship, endpoints/partitions.json). A region
// opened after a release is refused by Check until the list is updated; the
// error says so.
package awsregion

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var regions = []string{
	// aws
	"af-south-1", "ap-east-1", "ap-east-2", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3",
	"ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4",
	"ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-central-1", "ca-west-1",
	"eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2",
	"eu-west-1", "eu-west-2", "eu-west-3", "il-central-1", "me-central-1", "me-south-1",
	"mx-central-1", "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2",
	// aws-cn
	"cn-north-1", "cn-northwest-1",
	// aws-us-gov
	"us-gov-east-1", "us-gov-west-1",
	// aws-iso, aws-iso-b, aws-iso-e, aws-iso-f
	"us-iso-east-1", "us-iso-west-1", "us-isob-east-1", "eu-isoe-west-1", "us-isof-east-1", "us-isof-south-1",
	// aws-eusc
	"eusc-de-east-1",
}

// shape is what every AWS region name looks like.
var shape = regexp.MustCompile(`^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$`)

// Known reports whether region is one of AWS's regions.
func Known(region string) bool { return slices.Contains(regions, region) }

// Regions lists the known regions, sorted.
func Regions() []string { return slices.Sorted(slices.Values(regions)) }

// Check returns nil for a known region, and otherwise an error that names
// the region and what is wrong with it.
func Check(region string) error {
	switch {
	case region == "":
		return fmt.Errorf("no region given: name the AWS region the AMIs go to, e.g. eu-west-1")
	case !shape.MatchString(region):
		return fmt.Errorf("%q is not a region name: AWS regions look like eu-west-1", region)
	case !Known(region):
		return fmt.Errorf("no such region: %s (this release knows %d regions; see 'rehost register --help')", region, len(regions))
	}
	return nil
}

// Partition is the ARN partition of a region: aws, aws-cn, aws-us-gov, the
// isolated ones, or aws-eusc.
func Partition(region string) string {
	for _, p := range partitions {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}

// partitions maps a region name's prefix to its partition; the first match
// wins, so us-isob- and us-isof- stand before us-iso-.
var partitions = []struct{ prefix, partition string }{
	{"cn-", "aws-cn"},
	{"us-gov-", "aws-us-gov"},
	{"us-isob-", "aws-iso-b"},
	{"us-isof-", "aws-iso-f"},
	{"eu-isoe-", "aws-iso-e"},
	{"us-iso-", "aws-iso"},
	{"eusc-", "aws-eusc"},
}

// DNSSuffix is the domain of a region's partition, under which its
// regional endpoints are named (service.region.suffix).
func DNSSuffix(region string) string {
	switch Partition(region) {
	case "aws-cn":
		return "amazonaws.com.cn"
	case "aws-eusc":
		return "amazonaws.eu"
	case "aws-iso":
		return "c2s.ic.gov"
	case "aws-iso-b":
		return "sc2s.sgov.gov"
	case "aws-iso-e":
		return "cloud.adc-e.uk"
	case "aws-iso-f":
		return "csp.hci.ic.gov"
	}
	return "amazonaws.com"
}

// GlobalRegion is the region of a partition's global services (IAM): the
// one their endpoint lives in and requests to them are signed for.
func GlobalRegion(region string) string {
	switch Partition(region) {
	case "aws-cn":
		return "cn-north-1"
	case "aws-us-gov":
		return "us-gov-west-1"
	case "aws-iso":
		return "us-iso-east-1"
	case "aws-iso-b":
		return "us-isob-east-1"
	case "aws-iso-e":
		return "eu-isoe-west-1"
	case "aws-iso-f":
		return "us-isof-south-1"
	case "aws-eusc":
		return "eusc-de-east-1"
	}
	return "us-east-1"
}
