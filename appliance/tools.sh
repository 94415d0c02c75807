#!/usr/bin/env bash
# Installs the Debian tools the appliance build drives (make appliance runs
# it): partitioning, file systems, mtools for SYSLINUX's installer, dpkg-deb
# and apt-get for the pinned packages. The boot loaders and the kernel come
# from the pinned packages of appliance/pins.txt, not from these. Re-running
# it is cheap.
set -euo pipefail
PATH="$PATH:/usr/sbin:/sbin"
need=()
command -v sfdisk >/dev/null 2>&1 || need+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need+=(dosfstools)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v mcopy >/dev/null 2>&1 || need+=(mtools)
command -v qemu-img >/dev/null 2>&1 || need+=(qemu-utils)
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
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
