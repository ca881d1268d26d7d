#!/usr/bin/env bash
# Run the Docker integration tests in the cgroup v2 guest, against the CURRENT checkout.
#
# Usage (root): .ci/v2-guest/run.sh
#
# Builds the image if its inputs changed (build.sh; cached otherwise), copies the checkout's
# files (tracked and untracked, not ignored) into a 9p share, boots the guest under QEMU
# (TCG) on a copy of the cached disk, waits for it to run the tests and power off, prints
# the guest's test log and exits with the tests' status. Results are kept in
# $DENSITYD_V2_RESULTS (default /var/tmp/densityd-ci/v2-guest-last): guest.log, junit.xml,
# serial.log.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TIMEOUT=${DENSITYD_V2_TIMEOUT:-2400}
RESULTS=${DENSITYD_V2_RESULTS:-/var/tmp/densityd-ci/v2-guest-last}
# The tests run in the guest. Not the others: they need libvirt, Prometheus's server, zram,
# the host's v1 memory hierarchy or the densityd image built on the host.
TESTS=${DENSITYD_V2_TESTS:-"tests/integration/test_docker_metrics.py tests/integration/test_container_network.py tests/integration/test_docker_cgroup_v2.py tests/integration/test_podman.py tests/integration/test_cgroup_signals.py tests/integration/test_docker_discovery.py tests/integration/test_dashboards_prometheus.py::test_pressure_queries_return_data_on_cgroup_v2"}
# The densityd image cannot be built in the guest (no network): the host's tests save the one
# they built to $DENSITYD_TEST_IMAGE_ARCHIVE (.ci/run sets it) and the guest loads it, so the
# README's `docker run` is tested on cgroup v2, with --cgroupns=host and without.
IMAGE_ARCHIVE=${DENSITYD_TEST_IMAGE_ARCHIVE:-}

log() { printf '\n== v2-guest: %s\n' "$*"; }
started=$(date +%s)
elapsed() { echo "$(($(date +%s) - started)) s"; }

IMAGE=$("$HERE/build.sh" | tail -n 1)
log "image $IMAGE ready after $(elapsed)"

STATE=$(mktemp -d /var/tmp/densityd-v2.XXXXXX)
QEMU_PID=""
cleanup() {
    local status=$?
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        log "QEMU (PID $QEMU_PID) still running: killing it"
        kill -TERM "$QEMU_PID" 2>/dev/null || true
        sleep 2
        kill -KILL "$QEMU_PID" 2>/dev/null || true
    fi
    rm -rf "$STATE"
    exit "$status"
}
trap cleanup EXIT

SHARE="$STATE/share"
mkdir -p "$SHARE/src"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z -co --exclude-standard \
        | (cd "$REPO" && tar --null -T - -c) | tar -C "$SHARE/src" -x
else
    tar -C "$REPO" --exclude=.venv --exclude=.git -c . | tar -C "$SHARE/src" -x
fi
cp "$HERE/guest.sh" "$SHARE/guest.sh"
if [ -n "$IMAGE_ARCHIVE" ] && [ -f "$IMAGE_ARCHIVE" ]; then
    cp "$IMAGE_ARCHIVE" "$SHARE/densityd-image.tar"
    TESTS="$TESTS tests/integration/test_image.py"
    log "the densityd image from $IMAGE_ARCHIVE goes in: test_image.py runs in the guest"
else
    log "no densityd image archive (DENSITYD_TEST_IMAGE_ARCHIVE): test_image.py is not run in the guest"
fi
echo "$TESTS ${DENSITYD_V2_PYTEST_ARGS:-}" >"$SHARE/pytest-args"
# A copy of the disk, so that the cached image stays as built (the file is sparse).
cp --sparse=always "$IMAGE/disk.img" "$STATE/disk.img"
log "checkout and disk copied after $(elapsed); booting the guest (timeout ${TIMEOUT} s)"

qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp 2 -m 3G -display none \
    -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.show_status=false" \
    -drive "file=$STATE/disk.img,format=raw,if=virtio,cache=unsafe" \
    -virtfs "local,path=$SHARE,mount_tag=share,security_model=none" \
    -nic none -serial "file:$STATE/serial.log" \
    -daemonize -pidfile "$STATE/qemu.pid"
QEMU_PID=$(cat "$STATE/qemu.pid")

deadline=$(($(date +%s) + TIMEOUT))
last=""
while kill -0 "$QEMU_PID" 2>/dev/null && [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 10
    now=$(grep -E '^(== guest|tests/)' "$SHARE/guest.log" 2>/dev/null | tail -n 1 || true)
    if [ -n "$now" ] && [ "$now" != "$last" ]; then
        printf '   [%s] %s\n' "$(elapsed)" "$now"
        last=$now
    fi
done
if kill -0 "$QEMU_PID" 2>/dev/null; then
    log "the guest did not finish within ${TIMEOUT} s ($(elapsed) in all)"
else
    log "guest powered off after $(elapsed)"
fi

mkdir -p "$RESULTS"
rm -f "$RESULTS"/*
cp "$STATE/serial.log" "$RESULTS/" 2>/dev/null || true
cp "$SHARE/guest.log" "$SHARE/junit.xml" "$RESULTS/" 2>/dev/null || true

if [ ! -f "$SHARE/status" ]; then
    log "no test status from the guest; the end of its serial console:"
    tail -n 60 "$STATE/serial.log" 2>/dev/null || true
    [ -f "$SHARE/guest.log" ] && { log "guest.log:"; cat "$SHARE/guest.log"; }
    exit 1
fi
log "the guest's test log"
cat "$SHARE/guest.log"
status=$(cat "$SHARE/status")
log "guest tests exited with $status (results in $RESULTS); total $(elapsed)"
exit "$status"
