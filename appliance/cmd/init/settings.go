//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/rehost/rehost/appliance/status"
)

// settings are the appliance's own, kept on the data partition: they
// survive reboots and upgrades.
type settings struct {
	// Network: DHCP unless Static is set; with DHCP, Fallback (when set)
	// is used if no lease comes.
	Static   *staticNet `json:"static,omitempty"`
	Fallback *staticNet `json:"fallback,omitempty"`
	// NTP servers; empty means those DHCP gives, else pool.ntp.org.
	NTP []string `json:"ntp,omitempty"`
}

// staticNet is a static IPv4 configuration.
type staticNet struct {
	Address string   `json:"address"` // CIDR: 192.0.2.10/24
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
}

// parseStatic reads "ADDRESS/PREFIX[,GATEWAY[,DNS...]]", the form of the
// rehost.net= kernel argument and of the console's questions.
func parseStatic(s string) (*staticNet, error) {
	parts := strings.Split(strings.TrimSpace(s), ",")
	n := &staticNet{Address: strings.TrimSpace(parts[0])}
	if len(parts) > 1 {
		n.Gateway = strings.TrimSpace(parts[1])
	}
	for _, d := range parts[min(len(parts), 2):] {
		if d = strings.TrimSpace(d); d != "" {
			n.DNS = append(n.DNS, d)
		}
	}
	return n, n.validate()
}

func (n *staticNet) validate() error {
	p, err := netip.ParsePrefix(n.Address)
	if err != nil || !p.Addr().Is4() || p.Bits() < 1 || p.Bits() > 32 {
		return fmt.Errorf("address %q: want an IPv4 address with its prefix length, like 192.0.2.10/24", n.Address)
	}
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		if err != nil || !g.Is4() {
			return fmt.Errorf("gateway %q: want an IPv4 address", n.Gateway)
		}
		if !p.Masked().Contains(g) {
			return fmt.Errorf("gateway %s is outside %s", g, p.Masked())
		}
	}
	for _, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("DNS server %q: want an IP address", d)
		}
	}
	return nil
}

func (n *staticNet) String() string {
	s := n.Address
	if n.Gateway != "" {
		s += " via " + n.Gateway
	}
	if len(n.DNS) > 0 {
		s += ", DNS " + strings.Join(n.DNS, " ")
	}
	return s
}

// loadSettings reads the settings file; the kernel arguments override it:
// rehost.net= sets the network ("dhcp" or a static configuration),
// rehost.fallback= the static configuration used when DHCP does not answer.
func (a *appliance) loadSettings() {
	var s settings
	if b, err := os.ReadFile(settingsFile); err == nil {
		if err := json.Unmarshal(b, &s); err != nil {
			a.logf("settings %s: %v (ignored; the menu writes a new one)", settingsFile, err)
			s = settings{}
		}
	}
	if v, ok := kernelArg("rehost.net"); ok {
		if v == "dhcp" {
			s.Static = nil
		} else if n, err := parseStatic(v); err != nil {
			a.logf("kernel argument rehost.net=%s: %v", v, err)
		} else {
			s.Static = n
		}
	}
	if v, ok := kernelArg("rehost.fallback"); ok {
		if n, err := parseStatic(v); err != nil {
			a.logf("kernel argument rehost.fallback=%s: %v", v, err)
		} else {
			s.Fallback = n
		}
	}
	a.mu.Lock()
	a.settings = s
	a.mu.Unlock()
}

// saveSettings writes the settings atomically.
func (a *appliance) saveSettings(s settings) error {
	a.mu.Lock()
	a.settings = s
	a.mu.Unlock()
	return status.WriteJSON(settingsFile, s)
}
