package disk

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// ErrUnsupported (which wraps ErrFormat) is wrapped by the error Open returns for
// an image in a format it recognises but does not read, so the image is not
// mistaken for raw content.
var ErrUnsupported = fmt.Errorf("unsupported format: %w", ErrFormat)

// foreign names the format of an image rehost does not convert, from its
// first bytes, with what to do about it; ok is false for none of them.
func foreign(h []byte) (name, remedy string, ok bool) {
	const convert = "convert it to VMDK, VHD or raw first (e.g. qemu-img convert -O vmdk -o subformat=streamOptimized IN OUT.vmdk)"
	switch {
	case bytes.HasPrefix(h, []byte("QFI\xfb")):
		return "qcow2 (QEMU)", convert, true
	case bytes.HasPrefix(h, []byte("QED\x00")):
		return "QED (QEMU)", convert, true
	case bytes.HasPrefix(h, []byte("COWD")):
		return "VMDK vmfsSparse (COWD, an ESX snapshot delta)", "export the consolidated disk instead", true
	case len(h) >= 68 && binary.LittleEndian.Uint32(h[64:]) == 0xbeda107f:
		return "VDI (VirtualBox)", convert, true
	case bytes.HasPrefix(h, []byte("WithoutFreeSpace")) || bytes.HasPrefix(h, []byte("WithouFreSpacExt")):
		return "Parallels HDD", convert, true
	}
	return "", "", false
}

func unsupportedError(h []byte) error {
	name, remedy, ok := foreign(h)
	if !ok {
		return nil
	}
	return fmt.Errorf("open disk image: this is a %s image, which rehost does not read; %s: %w", name, remedy, ErrUnsupported)
}
