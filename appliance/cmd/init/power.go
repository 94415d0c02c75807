//go:build linux

package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"time"
)

// watchPowerButton reads the kernel's input devices for the power button
// (the ACPI button a hypervisor presses for "shut down guest" when it has
// no agent in the guest, and qemu's system_powerdown) and asks for a
// clean power-off.
func watchPowerButton(power chan<- bool, logf func(string, ...any)) {
	// The input devices appear once evdev and button are loaded.
	time.Sleep(time.Second)
	m, _ := filepath.Glob("/dev/input/event*")
	for _, p := range m {
		name, _ := os.ReadFile("/sys/class/input/" + filepath.Base(p) + "/device/name")
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		go func() {
			defer f.Close()
			// struct input_event on 64-bit: 16 bytes of time, then type
			// u16, code u16, value s32.
			ev := make([]byte, 24)
			for {
				if _, err := f.Read(ev); err != nil {
					return
				}
				typ, code, val := binary.LittleEndian.Uint16(ev[16:]), binary.LittleEndian.Uint16(ev[18:]), int32(binary.LittleEndian.Uint32(ev[20:]))
				const evKey, keyPower = 1, 116
				if typ == evKey && code == keyPower && val == 1 {
					logf("power button pressed (%s)", string(name))
					select {
					case power <- false:
					default:
					}
				}
			}
		}()
	}
}
