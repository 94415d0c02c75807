#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Go
# modules, qemu-img (Debian qemu-utils), the partitioning and file-system tools
# of internal/lab/guestdisk and of the emulator's tests (sfdisk, mkfs.ext4,
# mkfs.vfat, mkntfs, mkfs.xfs, mkfs.btrfs), Samba (the Hyper-V tests' SMB
# server), PostgreSQL (the fleet's shared store), Chromium for the web
# console's browser test, the pinned S3 server
# versitygw, built from the Go module proxy into .tools/bin, and the pinned
# Azurite (npm, into .tools/azurite) that plays Azure page blobs in the Azure
# source's tests. It says what it does as it goes; re-running it is cheap
# (nothing is fetched twice).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSITYGW_VERSION=v1.8.0
# Keep in step with azuresim.AzuriteVersion (internal/lab/azuresim/azurite.go).
AZURITE_VERSION=3.35.0
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

need_apt=()
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
# The staging benchmark (scripts/bench-staging) takes each uploader's CPU
# and peak RSS from GNU time.
[ -x /usr/bin/time ] || need_apt+=(time)
# Guest disks of the tests and the demo: a partition table and real file
# systems (internal/lab/guestdisk).
PATH="$PATH:/usr/sbin:/sbin"
command -v sfdisk >/dev/null 2>&1 || need_apt+=(fdisk)
command -v mkfs.vfat >/dev/null 2>&1 || need_apt+=(dosfstools)
command -v mkfs.ext4 >/dev/null 2>&1 && command -v debugfs >/dev/null 2>&1 || need_apt+=(e2fsprogs)
command -v mkntfs >/dev/null 2>&1 || need_apt+=(ntfs-3g)
# The emulator's tests recognise xfs and btrfs by their real superblocks.
command -v mkfs.xfs >/dev/null 2>&1 || need_apt+=(xfsprogs)
command -v mkfs.btrfs >/dev/null 2>&1 || need_apt+=(btrfs-progs)
# The Hyper-V source's tests read VM disks over SMB from Samba's smbd,
# started unprivileged on a loopback port (internal/lab/smbpeer).
[ -x /usr/sbin/smbd ] || need_apt+=(samba)
# The web console's browser test (connector/web) drives it headless. Large:
# about 100 s and 390 MB of disk the first time (measured), nothing after.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# The appliance's tests (appliance/imagetest): qemu boots the image (BIOS
# and OVMF for UEFI), mtools and debugfs read its partitions, xmllint its
# OVF; Secure Boot boots use ovmf's Microsoft-keyed variables
# (OVMF_VARS_4M.ms.fd). The image build installs its own tools
# (appliance/tools.sh).
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_apt+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need_apt+=(ovmf)
command -v mtype >/dev/null 2>&1 || need_apt+=(mtools)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
command -v cpio >/dev/null 2>&1 || need_apt+=(cpio)
# Signatures of the appliance's images are OpenSSH's (pkg/sshsig): its tests
# check them both ways with the stock ssh-keygen.
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
# The fleet's store: the PostgreSQL tests start their own cluster, as an
# unprivileged user, with initdb and postgres from Debian's package
# (internal/lab/pgpeer); its own cluster on port 5432 is not used.
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || need_apt+=(postgresql)
# Azurite runs on node and installs with npm.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "deps: installing Debian packages ${need_apt[*]} (apt-get; a minute or two) …"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# One of the largest modules stands for all: absent, this is a first run.
if [ -z "$(go list -m -f '{{.Dir}}' github.com/vmware/govmomi 2>/dev/null)" ]; then
	echo "deps: downloading the Go modules (first time only: a few minutes on a slow link) …"
fi
go mod download

stamp="$TOOLS/.versitygw-$VERSITYGW_VERSION"
if [ ! -x "$TOOLS/versitygw" ] || [ ! -f "$stamp" ]; then
	echo "deps: building the S3 server versitygw $VERSITYGW_VERSION into .tools/bin (first time only: 5 to 10 minutes, most of a first make demo) …"
	GOBIN="$TOOLS" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	touch "$stamp"
	echo "deps: versitygw built"
fi

# Azurite into .tools/azurite/<version>, installed beside and renamed into
# place so an interrupted install is never taken for a complete one.
azurite_dir="$PWD/.tools/azurite/$AZURITE_VERSION"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
	echo "deps: npm install azurite@$AZURITE_VERSION into .tools/azurite (first time only: about a minute, 190 MB) …"
	mkdir -p "$(dirname "$azurite_dir")"
	tmp=$(mktemp -d "$(dirname "$azurite_dir")/.install-XXXXXX")
	npm install --prefix "$tmp" --no-audit --no-fund --omit=dev --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
	mv -T "$tmp" "$azurite_dir" 2>/dev/null || rm -rf "$tmp"
fi
