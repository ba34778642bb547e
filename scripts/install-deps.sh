#!/usr/bin/env bash
# Install everything CRIB needs on a Debian 12 host, from Debian's packages and crates.io only.
# Idempotent: a second run only checks.
set -euo pipefail

APT_PKGS=(
	clang-19 llvm-19 lld-19 dwarves libelf-dev zlib1g-dev pkg-config
	bc flex bison libssl-dev libcap-dev cpio kmod rsync xz-utils
	python3 python3-ply python3-git codespell make gcc git
	qemu-system-x86 qemu-guest-agent iproute2 busybox-static
	libclang-19-dev
)
VMTEST_VERSION=0.18.0

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "install-deps: apt-get install ${missing[*]}"
	SUDO=""
	[[ $(id -u) -eq 0 ]] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v vmtest >/dev/null || ! vmtest --version 2>/dev/null | grep -q "$VMTEST_VERSION"; then
	echo "install-deps: cargo install vmtest $VMTEST_VERSION"
	cargo install vmtest --version "$VMTEST_VERSION" --locked --quiet
fi
if ! command -v cargo-nextest >/dev/null; then
	echo "install-deps: cargo install cargo-nextest"
	cargo install cargo-nextest --locked --quiet
fi
echo "install-deps: ok"
