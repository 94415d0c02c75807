package boot

import (
	"fmt"
	"strings"
)

// Config is GRUB's configuration (grub.cfg on the EFI system partition),
// the same for BIOS (GRUB's core image in the BIOS boot partition) and
// UEFI (Debian's signed GRUB, started by the signed shim): it loads
// grubenv, counts down the boots of a system on trial (saving the count
// before it boots it) and boots the trial, else the default system, with
// the other as the fallback when the chosen one cannot be loaded. Each
// entry passes rehost.slot= so the init knows which system runs.
// kernelArgs are the rest of the kernel command line.
func Config(kernelArgs string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# The rehost appliance's boot loader configuration (docs/appliance.md):
# two system partitions, A and B, and a boot counter for an upgrade on
# trial, kept in grubenv beside this file. Written by the build; the init
# changes grubenv only.
if [ "${grub_platform}" = pc ]; then
  if serial --unit=0 --speed=115200; then
    terminal_input --append serial
    terminal_output --append serial
  fi
fi
set timeout_style=countdown
set timeout=3
load_env
if [ "${%[1]s}" != b ]; then set %[1]s=a; fi
set rehost_boot="${%[1]s}"
if [ -n "${%[2]s}" ]; then
`, varDefault, varTrial)
	for n := MaxTries; n >= 1; n-- {
		kw := "elif"
		if n == MaxTries {
			kw = "if"
		}
		fmt.Fprintf(&b, "  %s [ \"${%s}\" = %d ]; then set %s=%d; set rehost_boot=\"${%s}\"\n", kw, varTries, n, varTries, n-1, varTrial)
	}
	fmt.Fprintf(&b, `  fi
  save_env %[1]s
fi
regexp --set=1:rehost_disk '^\(?([^,)]+)' "${root}"
if [ "${rehost_boot}" = b ]; then set default=1; set fallback=0; else set default=0; set fallback=1; fi
`, varTries)
	for _, s := range []Slot{SlotA, SlotB} {
		fmt.Fprintf(&b, `menuentry "rehost connector, system %[1]s ${%[2]s%[3]s}" --id rehost-%[3]s {
  set root=(${rehost_disk},gpt%[4]d)
  linux /vmlinuz rehost.slot=%[3]s %[5]s
  initrd /initrd.img
}
`, s, varVersion, string(s), s.PartNumber(), kernelArgs)
	}
	return b.String()
}
