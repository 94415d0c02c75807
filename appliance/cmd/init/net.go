//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/jsimonetti/rtnetlink/rtnl"
)

// network configures the appliance's first network interface: a static
// address when one is set, else DHCP (github.com/insomniacslk/dhcp), with
// the static fallback when no lease comes within dhcpWait.
type network struct {
	a *appliance

	mu      sync.Mutex
	parent  context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	ready   chan struct{} // closed once the first configuration is applied or given up
	once    sync.Once
	iface   string
	addr    string
	gateway string
	dns     []string
	mode    string
	ntp     []string // servers the DHCP lease names
}

const dhcpWait = 30 * time.Second

func (n *network) start(ctx context.Context) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ready == nil {
		n.ready = make(chan struct{})
	}
	n.parent = ctx
	c, cancel := context.WithCancel(ctx)
	n.cancel, n.done = cancel, make(chan struct{})
	go func() {
		defer close(n.done)
		n.run(c)
	}()
}

// stop ends the configuration loop (a DHCP lease is released).
func (n *network) stop() {
	n.mu.Lock()
	cancel, done := n.cancel, n.done
	n.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// restart applies changed settings.
func (n *network) restart() {
	n.stop()
	n.mu.Lock()
	ctx := n.parent
	n.mu.Unlock()
	n.start(ctx)
}

func (n *network) markReady() { n.once.Do(func() { close(n.ready) }) }

func (n *network) set(f func(n *network)) {
	n.mu.Lock()
	f(n)
	n.mu.Unlock()
	n.a.showStatus(nil)
}

// status is the console's line about the network.
func (n *network) status() (iface, addr, mode string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a := n.addr
	if a != "" && n.gateway != "" {
		a += " via " + n.gateway
	}
	if len(n.dns) > 0 {
		a += ", DNS " + strings.Join(n.dns, " ")
	}
	return n.iface, a, n.mode
}

// address is the appliance's IPv4 address without prefix, or "".
func (n *network) address() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, _, _ := strings.Cut(n.addr, "/")
	return a
}

func (n *network) dhcpNTP() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ntp
}

func (n *network) run(ctx context.Context) {
	defer n.markReady()
	rt, err := rtnl.Dial(nil)
	if err != nil {
		n.set(func(n *network) { n.mode = "netlink: " + err.Error() })
		return
	}
	defer rt.Close()
	if lo, err := net.InterfaceByName("lo"); err == nil {
		rt.LinkUp(lo)
	}
	ifc, err := firstInterface(ctx, 30*time.Second)
	if err != nil {
		n.set(func(n *network) { n.mode = err.Error() })
		n.a.logf("network: %v", err)
		return
	}
	if err := rt.LinkUp(ifc); err != nil {
		n.a.logf("network: bring %s up: %v", ifc.Name, err)
	}
	n.set(func(n *network) { n.iface = ifc.Name })
	n.a.mu.Lock()
	s := n.a.settings
	n.a.mu.Unlock()
	if s.Static != nil {
		n.applyStatic(rt, ifc, s.Static, "static")
		<-ctx.Done()
		return
	}
	n.dhcp(ctx, rt, ifc, s.Fallback)
}

// firstInterface waits for the first non-loopback interface (the NIC
// driver may still be probing) and returns it; names sort eth0 first.
func firstInterface(ctx context.Context, wait time.Duration) (*net.Interface, error) {
	deadline := time.Now().Add(wait)
	for {
		ifs, _ := net.Interfaces()
		sort.Slice(ifs, func(i, j int) bool { return ifs[i].Name < ifs[j].Name })
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback == 0 && len(i.HardwareAddr) == 6 {
				return &i, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no network interface appeared within %s (the VM needs a VMXNET3, E1000, Hyper-V or virtio NIC)", wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (n *network) applyStatic(rt *rtnl.Conn, ifc *net.Interface, s *staticNet, mode string) {
	ip, ipn, _ := net.ParseCIDR(s.Address)
	ipn.IP = ip
	var gw net.IP
	if s.Gateway != "" {
		gw = net.ParseIP(s.Gateway)
	}
	var dns []net.IP
	for _, d := range s.DNS {
		dns = append(dns, net.ParseIP(d))
	}
	if err := configure(rt, ifc, ipn, gw, dns); err != nil {
		n.a.logf("network: %s %s on %s: %v", mode, s, ifc.Name, err)
		n.set(func(n *network) { n.mode = mode + " failed: " + err.Error() })
		return
	}
	n.a.logf("network: %s %s on %s", mode, s, ifc.Name)
	n.set(func(n *network) {
		n.addr, n.gateway, n.dns, n.mode, n.ntp = s.Address, s.Gateway, s.DNS, mode, nil
	})
	n.markReady()
}

// dhcp gets a lease and keeps it: renew at T1, start over when that
// fails past T2 or the lease ends, release it when ctx ends.
func (n *network) dhcp(ctx context.Context, rt *rtnl.Conn, ifc *net.Interface, fallback *staticNet) {
	n.set(func(n *network) { n.mode = "waiting for DHCP" })
	started := time.Now()
	onFallback := false
	for ctx.Err() == nil {
		c, err := nclient4.New(ifc.Name, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(2))
		if err != nil {
			n.a.logf("dhcp on %s: %v", ifc.Name, err)
			sleep(ctx, 5*time.Second)
			continue
		}
		n.a.logf("dhcp on %s: asking", ifc.Name)
		lease, err := c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionNTPServers),
			dhcpv4.WithOption(dhcpv4.OptHostName("rehost-connector")))
		if err != nil {
			c.Close()
			if ctx.Err() != nil {
				return
			}
			n.a.logf("dhcp on %s: no lease: %v", ifc.Name, err)
			if time.Since(started) >= dhcpWait && !onFallback {
				if fallback != nil {
					n.applyStatic(rt, ifc, fallback, "static fallback (no DHCP answer)")
					onFallback = true
				} else {
					n.set(func(n *network) { n.mode = "no DHCP answer yet; set a static address with the menu" })
					n.markReady()
				}
			}
			sleep(ctx, 10*time.Second)
			continue
		}
		onFallback = false
		n.keepLease(ctx, rt, ifc, c, lease)
		c.Close()
	}
}

func (n *network) keepLease(ctx context.Context, rt *rtnl.Conn, ifc *net.Interface, c *nclient4.Client, lease *nclient4.Lease) {
	for {
		ack := lease.ACK
		ipn := &net.IPNet{IP: ack.YourIPAddr, Mask: ack.SubnetMask()}
		if ipn.Mask == nil {
			ipn.Mask = ipn.IP.DefaultMask()
		}
		var gw net.IP
		if r := ack.Router(); len(r) > 0 {
			gw = r[0]
		}
		if err := configure(rt, ifc, ipn, gw, ack.DNS()); err != nil {
			n.a.logf("dhcp: apply lease %s on %s: %v", ipn, ifc.Name, err)
		} else {
			n.a.logf("dhcp: %s on %s from %s", ipn, ifc.Name, ack.ServerIdentifier())
			ones, _ := ipn.Mask.Size()
			n.set(func(n *network) {
				n.addr = fmt.Sprintf("%s/%d", ipn.IP, ones)
				n.gateway = ""
				if gw != nil {
					n.gateway = gw.String()
				}
				n.dns = ipStrings(ack.DNS())
				n.ntp = ipStrings(ack.NTPServers())
				n.mode = "DHCP from " + ack.ServerIdentifier().String()
			})
			n.markReady()
		}
		leaseTime := ack.IPAddressLeaseTime(time.Hour)
		t1 := ack.IPAddressRenewalTime(leaseTime / 2)
		end := lease.CreationTime.Add(leaseTime)
		if !sleep(ctx, t1) {
			c.Release(lease)
			flush(rt, ifc)
			return
		}
		for {
			nl, err := c.Renew(ctx, lease)
			if err == nil {
				lease = nl
				break
			}
			var nak *nclient4.ErrNak
			if errors.As(err, &nak) || time.Now().After(end) {
				n.a.logf("dhcp: lease of %s ended (%v); asking anew", ipn.IP, err)
				return
			}
			if !sleep(ctx, 30*time.Second) {
				return
			}
		}
	}
}

// configure gives ifc exactly one address and the default route, and
// writes resolv.conf.
func configure(rt *rtnl.Conn, ifc *net.Interface, ipn *net.IPNet, gw net.IP, dns []net.IP) error {
	flush(rt, ifc)
	if err := rt.AddrAdd(ifc, ipn); err != nil {
		return fmt.Errorf("add address %s: %w", ipn, err)
	}
	if gw != nil {
		if err := rt.RouteReplace(ifc, net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, gw); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	var rc strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&rc, "nameserver %s\n", d)
	}
	return os.WriteFile("/etc/resolv.conf", []byte(rc.String()), 0o644)
}

// flush removes the interface's IPv4 addresses (their routes go with them).
func flush(rt *rtnl.Conn, ifc *net.Interface) {
	addrs, _ := rt.Addrs(ifc, 2 /* AF_INET */)
	for _, a := range addrs {
		rt.AddrDel(ifc, a)
	}
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}

// sleep waits d or until ctx ends, reporting whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
