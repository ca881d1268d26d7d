# densityd in a container: `densityd run` on :9847 as the non-root user densityd (uid 10001).
#
# README.md ("Running in a container") has the build and `docker run` commands: the daemon
# reads the Docker socket, the host's cgroup tree and /proc, and libvirt's read-only socket,
# all mounted read-only.
#
# BASE_IMAGE: any Debian 12 image with python3 (>= 3.11) and its venv module — the official
# Python image by default, or one made without a registry (debootstrap, `docker import`).
# Both stages use it, so the venv's link to the interpreter resolves in the runtime stage.
# EXTRA_CA_CERTS: PEM certificates the build must trust to reach PyPI (a TLS-intercepting
# proxy); they stay in the build stage, out of the runtime image.
#
# Few steps on purpose: with Docker's vfs storage driver every step copies the whole tree.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG EXTRA_CA_CERTS=""
COPY . /src/
# One step: the toolchain, the extra CAs, and the venv with densityd; libvirt-python has no
# wheels and compiles against libvirt-dev (about a minute). python3-dev only when the
# interpreter has no headers: Debian's python3 has none; the official image's /usr/local python
# has its own, which Debian's would not match.
RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    packages="ca-certificates gcc libc6-dev libvirt-dev pkg-config"; \
    if ! python3 -c 'import os, sys, sysconfig; \
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; \
    then packages="$packages python3-dev"; fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
        printf '%s\n' "$EXTRA_CA_CERTS" | awk '/-----BEGIN CERTIFICATE-----/ { n++ } \
            n { print > ("/usr/local/share/ca-certificates/densityd-extra-" n ".crt") }'; \
        update-ca-certificates; \
    fi; \
    python3 -m venv /opt/densityd; \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/densityd/bin/pip install /src; \
    /opt/densityd/bin/densityd --version

FROM ${BASE_IMAGE}
ENV PATH=/opt/densityd/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    DENSITYD_STATE_DIR=/var/lib/densityd
EXPOSE 9847
# `densityd healthcheck` asks /healthz as the daemon serves it: on the port of
# DENSITYD_LISTEN_ADDRESS (a wildcard address on loopback), over TLS trusting cert_file when
# DENSITYD_WEB_CONFIG_FILE has tls_server_config; /healthz needs no basic auth. It reads the
# environment and /etc/densityd/densityd.toml, not `run`'s flags: set those two there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["densityd", "healthcheck"]
ENTRYPOINT ["densityd"]
CMD ["run"]
COPY --from=build /opt/densityd /opt/densityd
# libvirt0 is the client library libvirt-python links; nothing else is needed at run time.
RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    apt-get update; \
    apt-get install -y --no-install-recommends libvirt0; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 densityd; \
    useradd --system --uid 10001 --gid densityd --home-dir /var/lib/densityd \
        --shell /usr/sbin/nologin densityd; \
    install -d -o densityd -g densityd -m 0750 /var/lib/densityd
VOLUME ["/var/lib/densityd"]
USER densityd
