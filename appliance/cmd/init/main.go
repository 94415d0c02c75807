//go:build linux

// Command init is PID 1 of the rehost connector appliance. It prepares the
// machine (file systems, kernel modules, the data partition, network, time)
// and supervises `rehost serve` as a child, so a crash of the connector
// restarts it instead of panicking the kernel; it keeps everything the
// product binary need not know about — block devices, DHCP, the console
// menu, power events — out of that binary, which also runs on ordinary
// Linux hosts.
//
// The consoles (VGA tty1 and serial ttyS0) show the version, the address,
// the setup page's URL and the certificate's fingerprint, and a menu to set
// a static address, NTP servers, reset the admin password, write a support
// bundle, upgrade (into the system partition not running, checked against
// the release key, on trial until its connector answers), reboot or shut
// down.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Paths on the data partition, mounted at /data.
const (
	dataMount    = "/data"
	stateDir     = "/data/state"
	settingsFile = "/data/appliance/settings.json"
	logDir       = "/data/log"
	rehostBin    = "/bin/rehost"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "poweroff", "halt":
		os.Exit(signalInit(unix.SIGUSR2))
	case "reboot":
		os.Exit(signalInit(unix.SIGINT))
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "rehost init: this is the appliance's PID 1; it does nothing elsewhere")
		os.Exit(2)
	}
	a := newAppliance()
	a.run()
}

// signalInit asks PID 1 to power off or reboot (the kernel runs
// /sbin/poweroff for a host-initiated shutdown).
func signalInit(sig unix.Signal) int {
	if err := unix.Kill(1, sig); err != nil {
		fmt.Fprintln(os.Stderr, "rehost init:", err)
		return 1
	}
	return 0
}

func (a *appliance) run() {
	mountEarly()
	// After /proc: GRUB says which system runs on the kernel command line.
	a.ab = loadAB()
	a.openConsoles()
	a.logf("rehost connector %s starting", a.version)
	// Ctrl-Alt-Del sends SIGINT to PID 1 instead of resetting at once.
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF)
	unix.Sethostname([]byte("rehost-connector"))
	os.WriteFile("/proc/sys/kernel/printk", []byte("3 4 1 3\n"), 0)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGUSR2, unix.SIGINT, unix.SIGTERM, unix.SIGPWR)
	loadModules(a.logf)
	go watchPowerButton(a.power, a.logf)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.mountData(ctx); err != nil {
		a.setProblem(fmt.Sprintf("data partition: %v — the connector cannot keep its state and does not start; see the support page of docs/appliance.md", err))
	} else {
		a.openLog()
		a.loadSettings()
		a.startAB(ctx)
		a.net.start(ctx)
		go a.ntpLoop(ctx)
		go a.superviseServe(ctx)
	}
	for _, c := range a.consoles {
		go a.menu(ctx, c)
	}
	var reboot bool
	select {
	case s := <-sigs:
		reboot = s == unix.SIGINT || s == unix.SIGTERM
	case reboot = <-a.power:
	}
	a.shutdown(cancel, reboot)
}

// shutdown stops the connector, syncs and unmounts the data partition,
// then powers off or reboots.
func (a *appliance) shutdown(cancel context.CancelFunc, reboot bool) {
	what := "shutting down"
	if reboot {
		what = "rebooting"
	}
	a.say("\nrehost connector: %s…\n", what)
	a.logf("%s", what)
	cancel()
	a.stopServe(30 * time.Second)
	a.keepPreTrialState()
	a.net.stop()
	a.closeLog()
	unix.Sync()
	for i := 0; i < 5; i++ {
		if err := unix.Unmount(dataMount, 0); err == nil || err == unix.EINVAL {
			break
		}
		time.Sleep(time.Second)
	}
	unix.Mount("", dataMount, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	a.say("rehost connector: %s now.\n", strings.TrimSuffix(what, "…"))
	unix.Reboot(cmd)
	select {}
}

// mountEarly mounts the kernel's file systems; errors are ignored since a
// missing one shows later as a clearer failure.
func mountEarly() {
	for _, m := range []struct{ src, dst, fs, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	} {
		os.MkdirAll(m.dst, 0o755)
		unix.Mount(m.src, m.dst, m.fs, unix.MS_NOSUID, m.data)
	}
	os.MkdirAll("/dev/pts", 0o755)
	unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "ptmxmode=0666")
	os.Symlink("/proc/self/fd", "/dev/fd")
}

// loadModules loads the initramfs's modules in the build's order. A driver
// whose hardware is absent may fail to load (Hyper-V's off Hyper-V); that
// is logged and harmless.
func loadModules(logf func(string, ...any)) {
	b, err := os.ReadFile("/etc/rehost/modules")
	if err != nil {
		logf("kernel modules: %v", err)
		return
	}
	for _, p := range strings.Fields(string(b)) {
		f, err := os.Open(p)
		if err != nil {
			logf("kernel module %s: %v", p, err)
			continue
		}
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			logf("kernel module %s: %v", filepath.Base(p), err)
		}
	}
}

// kernelArg returns the value of name=value on the kernel command line.
func kernelArg(name string) (string, bool) {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v, true
		}
	}
	return "", false
}
