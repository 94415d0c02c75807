//go:build linux

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/beevik/ntp"
	"golang.org/x/sys/unix"
)

// ntpLoop keeps the clock right (AWS refuses SigV4 requests more than five
// minutes off): it asks the configured servers, else those DHCP named,
// else pool.ntp.org, every 15 minutes (every minute until one answers),
// and steps the clock when it is off by more than 128 ms.
func (a *appliance) ntpLoop(ctx context.Context) {
	select {
	case <-a.net.ready:
	case <-ctx.Done():
		return
	}
	for {
		ok := a.syncTime()
		wait := 15 * time.Minute
		if !ok {
			wait = time.Minute
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

func (a *appliance) ntpServers() []string {
	a.mu.Lock()
	servers := a.settings.NTP
	a.mu.Unlock()
	if len(servers) == 0 {
		servers = a.net.dhcpNTP()
	}
	if len(servers) == 0 {
		servers = []string{"pool.ntp.org"}
	}
	return servers
}

func (a *appliance) syncTime() bool {
	servers := a.ntpServers()
	var last error
	for _, s := range servers {
		r, err := ntp.QueryWithOptions(s, ntp.QueryOptions{Timeout: 5 * time.Second})
		if err == nil {
			err = r.Validate()
		}
		if err != nil {
			last = err
			continue
		}
		note := fmt.Sprintf("%s, offset %+.3fs", s, r.ClockOffset.Seconds())
		if r.ClockOffset > 128*time.Millisecond || r.ClockOffset < -128*time.Millisecond {
			tv := unix.NsecToTimeval(time.Now().Add(r.ClockOffset).UnixNano())
			if err := unix.Settimeofday(&tv); err != nil {
				last = fmt.Errorf("set the clock: %w", err)
				continue
			}
			note += " (clock stepped)"
		}
		a.setNTP("synchronised with " + note + " at " + time.Now().UTC().Format("15:04:05Z"))
		a.logf("ntp: %s", note)
		return true
	}
	a.setNTP(fmt.Sprintf("no answer from %v: %v", servers, last))
	return false
}

func (a *appliance) setNTP(s string) {
	a.mu.Lock()
	a.ntp = s
	a.mu.Unlock()
	a.showStatus(nil)
}
