#!/bin/sh
# Runs inside the cgroup v2 guest at boot (from the 9p share, so it is the checkout's own):
# install the checkout into the image's venv (dependencies are already there, no network),
# build the busybox image, run the Docker integration tests against the guest's engine.
# densityd-ci-guest (baked into the image) writes this script's exit status to the share.
set -eu
SHARE=/mnt/share
stamp() { echo "== guest $(cut -d' ' -f1 /proc/uptime)s: $*"; }

stamp "kernel $(uname -r); /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup); PID 1 is $(cat /proc/1/comm)"
for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info --format 'Docker {{.ServerVersion}}, cgroup driver {{.CgroupDriver}}, cgroup v{{.CgroupVersion}}, storage {{.Driver}}'

stamp "installing the checkout into /opt/densityd-venv (--no-deps, offline)"
rm -rf /root/src
cp -a "$SHARE/src" /root/src
cd /root/src
/opt/densityd-venv/bin/pip install -q --no-deps --no-build-isolation --no-index -e .

stamp "running the tests"
export DENSITYD_REQUIRE_BACKENDS=1 PATH="/opt/densityd-venv/bin:$PATH"
# The image the host built (run.sh put it here when it had one); test_image.py loads it.
[ -f "$SHARE/densityd-image.tar" ] && export DENSITYD_TEST_IMAGE_ARCHIVE="$SHARE/densityd-image.tar"
status=0
# shellcheck disable=SC2046 # the host's test selection, word-split on purpose
python -m pytest -p no:cacheprovider -v --junitxml="$SHARE/junit.xml" \
    $(cat "$SHARE/pytest-args") || status=$?
stamp "tests exited with $status"
exit "$status"
