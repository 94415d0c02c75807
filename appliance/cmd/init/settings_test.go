//go:build linux

package main

import (
	"strings"
	"testing"
)

func TestParseStatic(t *testing.T) {
	n, err := parseStatic("192.0.2.10/24, 192.0.2.1 ,192.0.2.53,2001:db8::53")
	if err != nil || n.Address != "192.0.2.10/24" || n.Gateway != "192.0.2.1" || len(n.DNS) != 2 || n.DNS[1] != "2001:db8::53" {
		t.Fatalf("%+v, %v", n, err)
	}
	if n, err := parseStatic("10.1.2.3/8"); err != nil || n.Gateway != "" || n.DNS != nil {
		t.Fatalf("address alone: %+v, %v", n, err)
	}
	for in, want := range map[string]string{
		"192.0.2.10":                 "prefix length",
		"2001:db8::1/64":             "IPv4",
		"192.0.2.10/24,198.51.100.1": "outside 192.0.2.0/24",
		"192.0.2.10/24,gw":           "gateway",
		"192.0.2.10/24,,dns":         "DNS server",
	} {
		if _, err := parseStatic(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error about %s", in, err, want)
		}
	}
}
