package awsregion

import (
	"strings"
	"testing"
)

func TestPartition(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1": "aws", "cn-north-1": "aws-cn", "us-gov-west-1": "aws-us-gov",
		"us-iso-east-1": "aws-iso", "us-isob-east-1": "aws-iso-b", "eusc-de-east-1": "aws-eusc",
	} {
		if got := Partition(region); got != want {
			t.Errorf("Partition(%q) = %q, want %q", region, got, want)
		}
		if err := Check(region); err != nil {
			t.Errorf("Check(%q): %v", region, err)
		}
	}
}

// The partitions' domains, as the SDK's endpoint rules name them.
func TestDNSSuffix(t *testing.T) {
	for region, want := range map[string]string{
		"eu-west-1": "amazonaws.com", "cn-north-1": "amazonaws.com.cn", "us-gov-west-1": "amazonaws.com",
		"us-iso-east-1": "c2s.ic.gov", "us-isob-east-1": "sc2s.sgov.gov", "eusc-de-east-1": "amazonaws.eu",
	} {
		if got := DNSSuffix(region); got != want {
			t.Errorf("DNSSuffix(%q) = %q, want %q", region, got, want)
		}
	}
}

func TestCheck(t *testing.T) {
	for region, want := range map[string]string{
		"":             "no region given",
		"xx-nowhere-9": "no such region: xx-nowhere-9",
		"EU-WEST-1":    "not a region name",
		"eu west 1":    "not a region name",
	} {
		err := Check(region)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want %q", region, err, want)
		}
	}
}
