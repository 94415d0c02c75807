#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine: Go
# modules, qemu-img (Debian qemu-utils), the partitioning and file-system tools
# of internal/guestdisk, the pinned S3 server versitygw, built from the Go
# module proxy into .tools/bin, and the pinned Azurite (npm) that plays Azure
# page blobs in the Azure source's tests. Re-running it is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSITYGW_VERSION=v1.8.0
# Keep in step with azuresim.AzuriteVersion (pkg/azuresim/azurite.go).
AZURITE_VERSION=3.35.0
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
# Azurite runs on node and installs with npm.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "deps: apt-get install ${need_apt[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

go mod download

stamp="$TOOLS/.versitygw-$VERSITYGW_VERSION"
if [ ! -x "$TOOLS/versitygw" ] || [ ! -f "$stamp" ]; then
	echo "deps: go install github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	GOBIN="$TOOLS" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
	touch "$stamp"
fi

# Azurite into .tools/azurite/<version>, installed beside and renamed into
# place so an interrupted install is never taken for a complete one.
azurite_dir="$PWD/.tools/azurite/$AZURITE_VERSION"
if [ ! -x "$azurite_dir/node_modules/.bin/azurite-blob" ]; then
	echo "deps: npm install azurite@$AZURITE_VERSION"
	mkdir -p "$(dirname "$azurite_dir")"
	tmp=$(mktemp -d "$(dirname "$azurite_dir")/.install-XXXXXX")
	npm install --prefix "$tmp" --no-audit --no-fund --omit=dev --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
	mv -T "$tmp" "$azurite_dir" 2>/dev/null || rm -rf "$tmp"
fi
