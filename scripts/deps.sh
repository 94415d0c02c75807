#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Go
# modules, qemu-img (Debian qemu-utils), the partitioning and file-system tools
# of internal/guestdisk, and the pinned S3 server versitygw,
# built from the Go module proxy into .tools/bin. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSITYGW_VERSION=v1.8.0
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

need_apt=()
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
# Guest disks of the tests and the demo: a partition table and real file
# systems (internal/guestdisk).
PATH="$PATH:/usr/sbin:/sbin"
command -v sfdisk >/dev/null 2>&1 || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need_apt+=(dosfstools)
command -v mkfs.ext4 >/dev/null 2>&1 && command -v debugfs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
# The appliance's tests (appliance/imagetest): qemu boots the image (BIOS
# and OVMF for UEFI), mtools and debugfs read its partitions, xmllint its
# OVF. The image build installs its own tools (appliance/tools.sh).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_apt+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_apt+=(ovmf)
command -v mtype >/dev/null 2>&1 || need_apt+=(mtools)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
if [ ${#need_apt[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "deps: apt-get install ${need_apt[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

go mod download

stamp="$TOOLS/.versitygw-$VERSITYGW_VERSION"
if [ ! -x "$TOOLS/versitygw" ] || [ ! -f "$stamp" ]; then
	echo "deps: go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	GOBIN="$TOOLS" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	touch "$stamp"
fi
