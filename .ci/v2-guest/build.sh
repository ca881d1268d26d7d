#!/usr/bin/env bash
# Build (once) the cgroup v2 guest: Debian 12, systemd as PID 1, the unified hierarchy,
# docker.io with its default systemd cgroup driver, and a venv holding densityd's
# dependencies (densityd itself is installed from the share at each run). DESIGN §4.2.
#
# Usage (root): .ci/v2-guest/build.sh    -> prints the image directory on its last line
#
# The image is cached under $DENSITYD_CI_CACHE/v2-guest/<hash>/ (default
# /var/cache/densityd-ci), where <hash> is a sha256 over what goes into it: packages.txt,
# this script, the files in image/ and the checkout's install inputs (pyproject.toml). While
# those are unchanged the image is reused; a rebuild from nothing takes about 6 minutes here.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE_ROOT="${DENSITYD_CI_CACHE:-/var/cache/densityd-ci}/v2-guest"

log() { printf '== v2-guest build: %s\n' "$*" >&2; }

input_hash() {
    # Names and contents, in a fixed order, so a renamed or moved input changes the hash too.
    (
        cd "$REPO"
        for f in .ci/v2-guest/packages.txt .ci/v2-guest/build.sh pyproject.toml \
            $(cd "$REPO" && find .ci/v2-guest/image -type f | LC_ALL=C sort); do
            printf '%s\n' "$f"
            sha256sum <"$f"
        done
    ) | sha256sum | cut -c1-16
}

HASH=$(input_hash)
IMAGE="$CACHE_ROOT/$HASH"
if [ -f "$IMAGE/complete" ]; then
    log "cached image $IMAGE (inputs unchanged)"
    touch "$IMAGE/complete"
    echo "$IMAGE"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "build.sh must run as root (debootstrap, chroot)" >&2
    exit 1
fi
for tool in debootstrap mkfs.ext4 python3; do
    command -v "$tool" >/dev/null || { echo "build.sh needs $tool" >&2; exit 1; }
done

mkdir -p "$CACHE_ROOT"
# One build at a time: a second CI run waits here, then finds the image the first one built.
exec 9>"$CACHE_ROOT/.lock"
flock 9
if [ -f "$IMAGE/complete" ]; then
    log "image $IMAGE was built while this run waited"
    echo "$IMAGE"
    exit 0
fi
WORK=$(mktemp -d "$CACHE_ROOT/.build-$HASH.XXXXXX")
ROOT="$WORK/rootfs"
MOUNTS=()
cleanup() {
    local status=$?
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
started=$(date +%s)
stage() { log "$1 ($(($(date +%s) - started)) s)"; }

stage "debootstrap into $ROOT"
# The mirror is debootstrap's default; apt inside uses the one debootstrap wrote.
debootstrap --variant=minbase --include=systemd-sysv,udev,kmod bookworm "$ROOT" \
    >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

stage "mounting /proc, /sys, /dev, /dev/pts in the chroot"
mount -t proc proc "$ROOT/proc" && MOUNTS+=("$ROOT/proc")
mount -t sysfs sysfs "$ROOT/sys" && MOUNTS+=("$ROOT/sys")
mount --bind /dev "$ROOT/dev" && MOUNTS+=("$ROOT/dev")
mount --bind /dev/pts "$ROOT/dev/pts" && MOUNTS+=("$ROOT/dev/pts")
# Nothing may start inside the chroot (there is no systemd here).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
# The registries are reached through a TLS-intercepting proxy whose CA only the host trusts.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/host-ca.crt"

in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive PIP_CERT=/etc/host-ca.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 chroot "$ROOT" "$@"
}

stage "apt-get install the packages in packages.txt"
mapfile -t PACKAGES < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/packages.txt")
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" \
    >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; exit 1; }
in_root apt-get clean

stage "a venv with densityd's dependencies and test extras (from pyproject.toml)"
python3 - "$REPO/pyproject.toml" >"$ROOT/tmp/requirements.txt" <<'PY'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
    print(requirement)
PY
# setuptools >= 68 is densityd's build backend: the guest installs the checkout offline
# with --no-build-isolation.
printf 'setuptools>=68\nwheel\n' >>"$ROOT/tmp/requirements.txt"
in_root python3 -m venv /opt/densityd-venv
in_root /opt/densityd-venv/bin/pip install -q --upgrade pip
in_root /opt/densityd-venv/bin/pip install -q -r /tmp/requirements.txt \
    >"$WORK/pip.log" 2>&1 || { tail -n 30 "$WORK/pip.log" >&2; exit 1; }
rm -rf "$ROOT/root/.cache/pip"

stage "configuring the guest"
echo densityd-v2-guest >"$ROOT/etc/hostname"
printf '127.0.0.1 localhost densityd-v2-guest\n' >"$ROOT/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$ROOT/etc/fstab"
printf '9p\n9pnet\n9pnet_virtio\n' >"$ROOT/etc/modules-load.d/densityd-ci.conf"
install -m 0755 "$HERE/image/densityd-ci-guest" "$ROOT/usr/local/sbin/densityd-ci-guest"
install -m 0644 "$HERE/image/densityd-ci.service" "$ROOT/etc/systemd/system/densityd-ci.service"
in_root systemctl enable densityd-ci.service >/dev/null 2>&1
# Only promtool is wanted from the prometheus package; timers would only cost TCG cycles.
in_root systemctl disable prometheus.service >/dev/null 2>&1 || true
in_root systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    fstrim.timer man-db.timer >/dev/null 2>&1 || true
# Root logs in on the serial console without a password (there is no network).
in_root passwd -d root >/dev/null
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/host-ca.crt" "$ROOT/tmp/requirements.txt"

stage "kernel, initrd and the ext4 disk image"
for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount "${MOUNTS[i]}"; done
MOUNTS=()
OUT="$WORK/image"
mkdir -p "$OUT"
cp "$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n 1)" "$OUT/vmlinuz"
cp "$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -n 1)" "$OUT/initrd.img"
mkfs.ext4 -q -F -L densityd-v2 -d "$ROOT" "$OUT/disk.img" 10G
cp "$HERE/packages.txt" "$OUT/packages.txt"
echo "$HASH" >"$OUT/complete"

rm -rf "$IMAGE"
mv "$OUT" "$IMAGE"
# Images no input has named for a week belong to old checkouts.
for old in $(find "$CACHE_ROOT" -mindepth 2 -maxdepth 2 -name complete -mtime +7); do
    rm -rf "$(dirname "$old")"
done
stage "built $IMAGE"
echo "$IMAGE"
