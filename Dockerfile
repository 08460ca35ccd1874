# Patronus images: the operator (the default target) and the site agent.
#
#   docker build -t patronus-operator:latest .
#   docker build --target agent -t patronus-agent:latest .
#
# BASE is Debian bookworm (pinned below; Python 3.11 from Debian is added when the base lacks it).
# scripts/build-images.sh (`make images`) builds both here with buildah, from a base made with debootstrap.
# Layers go from the least to the most often changed: the base and its Debian packages, the Python
# dependencies (from pyproject.toml's pins alone), then the Patronus wheel, so a source change rebuilds
# only the wheel's layers.
ARG BASE=docker.io/library/debian:bookworm-20250520-slim@sha256:90522eeb7e5923ee2b871c639059537b30521272f10ca86fdbbbb2b75a8c40cd

FROM ${BASE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8 \
    PATH=/opt/patronus/bin:/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN command -v python3 >/dev/null \
    || { apt-get update && apt-get install -y --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*; }
ENTRYPOINT ["/opt/venv/bin/python", "-m", "patronus"]

# Build tools stay in this stage: pip and the wheel builder never reach a final image. Where TLS to PyPI
# goes through a proxy with its own CA, pass its bundle as the optional secret `ca-bundle`
# (docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt); pip then trusts it.
FROM python AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/build \
    && python3 -m venv --without-pip /opt/venv
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/build/bin/pip install -q pip==25.3

# The pinned runtime dependencies, as a requirements file that changes only when a pin does.
FROM python AS requirements
COPY pyproject.toml /src/
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' \
    > /requirements.txt

FROM build AS dependencies
COPY --from=requirements /requirements.txt /requirements.txt
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/build/bin/pip --python /opt/venv/bin/python install -q -r /requirements.txt \
    && echo /opt/patronus > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/patronus.pth"

# The wheel, installed on its own path (found through patronus.pth) so its layer holds only Patronus.
FROM build AS wheel
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN --mount=type=secret,id=ca-bundle \
    if [ -f /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/build/bin/pip wheel -q --no-deps -w /wheels /src \
    && /opt/build/bin/pip --python /opt/venv/bin/python install -q --no-deps --target /opt/patronus /wheels/*.whl

# wireguard-go built from its Go module (scripts/build-wireguard-go.sh), with the TUN offloads Debian's
# 2022 package lacks (about 4x its throughput here). Pass the folder holding the binary with
# `--build-context wireguard-go=DIR` (make images does); without it this stage is empty and the agent
# runs Debian's wireguard-go.
FROM scratch AS wireguard-go

# The site agent: root in its pod with NET_ADMIN; WireGuard in user space (wireguard-go), wg, nft, ip, tc.
FROM python AS agent
RUN apt-get update \
    && apt-get install -y --no-install-recommends wireguard-go wireguard-tools nftables iproute2 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
COPY --from=wireguard-go / /opt/wireguard-go/
# /usr/local/bin comes before Debian's /usr/bin on PATH: the module build wins when it is there.
RUN if [ -x /opt/wireguard-go/wireguard-go ]; then ln -s /opt/wireguard-go/wireguard-go /usr/local/bin/; fi
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=wheel /opt/patronus /opt/patronus
CMD ["agent", "run"]

# The operator: a non-root user and nothing to write, so it runs with a read-only root filesystem and
# no capabilities (the Deployment's securityContext drops them).
FROM python AS operator
COPY --from=dependencies /opt/venv /opt/venv
COPY --from=wheel /opt/patronus /opt/patronus
USER 65532:65532
EXPOSE 8080 8081
CMD ["operator", "run"]
