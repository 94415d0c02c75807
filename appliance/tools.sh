#!/usr/bin/env bash
# Installs the Debian tools the appliance build drives (make appliance runs
# it): partitioning, file systems, mtools, dpkg-deb and apt-get for the
# pinned packages, and the shared libraries the pinned grub-common's
# grub-mkimage and grub-script-check link (the build runs them from the
# unpacked package). The boot loaders and the kernel come from the pinned
# packages of appliance/pins.txt, not from these. Re-running it is cheap.
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v sfdisk >/dev/null 2>&1 || need+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need+=(dosfstools)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
for lib in libdevmapper.so.1.02.1:libdevmapper1.02.1 liblzma.so.5:liblzma5 libselinux.so.1:libselinux1 libudev.so.1:libudev1 libpcre2-8.so.0:libpcre2-8-0; do
	ldconfig -p 2>/dev/null | grep -F "${lib%%:*}" >/dev/null || need+=("${lib##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "appliance: apt-get install ${need[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# apt-get download needs package lists that know the pinned versions.
if ! apt-cache show "$(awk '!/^#/ && NF==3 {print $1"="$2; exit}' "$(dirname "$0")/pins.txt")" >/dev/null 2>&1; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -qq
fi
