//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// lastShown dedupes the status screen printed on changes.
var (
	shownMu   sync.Mutex
	lastShown string
)

// statusText is the console's screen: what a user needs to reach the
// setup page and trust it.
func (a *appliance) statusText() string {
	iface, addr, mode := a.net.status()
	a.mu.Lock()
	problem, served, ntpState := a.problem, a.served, a.ntp
	a.mu.Unlock()
	url := "(no address yet)"
	if ip := a.net.address(); ip != "" {
		url = "https://" + ip + "/"
	}
	fp := fingerprint()
	if fp == "" {
		fp = "(not made yet: the connector makes it on its first start)"
	} else {
		fp = "SHA-256 " + fp
	}
	var b strings.Builder
	line := strings.Repeat("=", 78)
	fmt.Fprintf(&b, "\n%s\n rehost connector %s\n\n", line, a.version)
	fmt.Fprintf(&b, "   Setup page:   %s\n", url)
	fmt.Fprintf(&b, "   Certificate:  %s\n", fp)
	fmt.Fprintf(&b, "   Network:      %s %s [%s]\n", iface, addr, mode)
	if ntpState != "" {
		fmt.Fprintf(&b, "   Time:         %s\n", ntpState)
	}
	fmt.Fprintf(&b, "   Connector:    %s\n", served)
	b.WriteString(a.ab.statusLines())
	if problem != "" {
		fmt.Fprintf(&b, "\n   PROBLEM: %s\n", problem)
	}
	fmt.Fprintf(&b, "%s\n", line)
	return b.String()
}

const menuText = ` 1) Status            2) Static address     3) DHCP
 4) NTP servers       5) Reset admin password
 6) Support bundle    7) Upgrade            8) Reboot     9) Shut down
10) Back up state    11) Restore state
Choice: `

// showStatus prints the status and menu on c, or on every console when c
// is nil and the status changed since it was last printed.
func (a *appliance) showStatus(c *console) {
	s := a.statusText()
	if c != nil {
		c.printf("%s%s", s, menuText)
		return
	}
	shownMu.Lock()
	same := s == lastShown
	lastShown = s
	shownMu.Unlock()
	if !same {
		a.say("%s%s", s, menuText)
	}
}

// menu reads choices from one console until ctx ends.
func (a *appliance) menu(ctx context.Context, c *console) {
	in := bufio.NewReader(c.f)
	ask := func(q string) (string, bool) {
		c.printf("%s", q)
		l, err := in.ReadString('\n')
		if err != nil && l == "" {
			return "", false
		}
		return strings.TrimSpace(l), true
	}
	a.showStatus(c)
	for ctx.Err() == nil {
		choice, ok := ask("")
		if !ok {
			if !sleep(ctx, time.Second) { // a console that gives nothing (no keyboard)
				return
			}
			continue
		}
		switch choice {
		case "":
			c.printf("Choice: ")
			continue
		case "1":
		case "2":
			a.menuStatic(c, ask)
		case "3":
			a.menuDHCP(c, ask)
		case "4":
			a.menuNTP(c, ask)
		case "5":
			a.menuResetPassword(c, ask)
		case "6":
			a.menuSupportBundle(c)
		case "7":
			a.menuUpgrade(ctx, c, ask)
		case "10":
			a.menuBackup(c, ask)
		case "11":
			a.menuRestore(ctx, c, ask)
		case "8", "9":
			verb := map[string]string{"8": "Reboot", "9": "Shut down"}[choice]
			if v, _ := ask(verb + " now? [y/N] "); strings.EqualFold(v, "y") {
				select {
				case a.power <- choice == "8":
				default:
				}
				return
			}
		default:
			c.printf("No choice %q.\n", choice)
		}
		a.showStatus(c)
	}
}

func (a *appliance) menuStatic(c *console, ask func(string) (string, bool)) {
	addr, _ := ask("IPv4 address with prefix length (e.g. 192.0.2.10/24): ")
	gw, _ := ask("Default gateway (empty for none): ")
	dns, _ := ask("DNS servers, separated by spaces: ")
	n := &staticNet{Address: addr, Gateway: gw, DNS: strings.Fields(strings.ReplaceAll(dns, ",", " "))}
	if err := n.validate(); err != nil {
		c.printf("Not changed: %v\n", err)
		return
	}
	a.mu.Lock()
	s := a.settings
	a.mu.Unlock()
	s.Static = n
	if err := a.saveSettings(s); err != nil {
		c.printf("Could not save the setting: %v\n", err)
		return
	}
	c.printf("Static address %s saved; applying it.\n", n)
	a.net.restart()
}

func (a *appliance) menuDHCP(c *console, ask func(string) (string, bool)) {
	fb, _ := ask("Static fallback if DHCP does not answer in 30 s\n(ADDRESS/PREFIX,GATEWAY,DNS... or empty for none): ")
	a.mu.Lock()
	s := a.settings
	a.mu.Unlock()
	s.Static, s.Fallback = nil, nil
	if fb != "" {
		n, err := parseStatic(fb)
		if err != nil {
			c.printf("Not changed: %v\n", err)
			return
		}
		s.Fallback = n
	}
	if err := a.saveSettings(s); err != nil {
		c.printf("Could not save the setting: %v\n", err)
		return
	}
	c.printf("DHCP saved; asking for a lease.\n")
	a.net.restart()
}

func (a *appliance) menuNTP(c *console, ask func(string) (string, bool)) {
	v, _ := ask("NTP servers, separated by spaces (empty: those DHCP names, else pool.ntp.org): ")
	a.mu.Lock()
	s := a.settings
	a.mu.Unlock()
	s.NTP = strings.Fields(strings.ReplaceAll(v, ",", " "))
	if err := a.saveSettings(s); err != nil {
		c.printf("Could not save the setting: %v\n", err)
		return
	}
	c.printf("Saved; asking %v.\n", a.ntpServers())
	a.syncTime()
}

// menuResetPassword is the physical-access reset: it removes the admin
// password so the setup page asks for a new one.
func (a *appliance) menuResetPassword(c *console, ask func(string) (string, bool)) {
	if v, _ := ask("The setup page will ask for a new admin password. Type RESET to confirm: "); v != "RESET" {
		c.printf("Not changed.\n")
		return
	}
	out, err := exec.Command(rehostBin, "admin", "reset-password", "--state-dir", stateDir).CombinedOutput()
	c.printf("%s", out)
	if err != nil {
		c.printf("Reset failed: %v\n", err)
		return
	}
	a.logf("admin password reset from the console")
}

func (a *appliance) menuSupportBundle(c *console) {
	name := "/data/support/rehost-support-" + time.Now().UTC().Format("20060102T150405Z") + ".zip"
	a.logMu.Lock()
	if a.log != nil {
		a.log.Sync()
	}
	a.logMu.Unlock()
	cmd := exec.Command(rehostBin, "support", "bundle", "--state-dir", stateDir, "--out", name,
		"--file", logDir+"/appliance.log", "--file", logDir+"/rehost.log", "--file", settingsFile, "--file", statusFile)
	out, err := cmd.CombinedOutput()
	c.printf("%s", out)
	if err != nil {
		c.printf("Support bundle failed: %v\n", err)
		return
	}
	c.printf("Written to %s on the data partition; secrets are redacted.\n", name)
}
