#!/usr/bin/env bash
# Makes the base images deploy/Dockerfile and deploy/compose.yaml name, on a machine that cannot pull them (no
# registry but Debian's, PyPI, crates.io and npm): `debian:bookworm-slim` from debootstrap; a
# `rust:<version>-slim-bookworm` look-alike built on it with rustup-init (deploy/rust.Containerfile);
# a `redis:7-bookworm` one from Debian's redis-server (deploy/redis.Containerfile).
# Where the images can be pulled, this script is not needed: `docker build` pulls them.
# Idempotent: an image already in the local store is kept (the set-up cache); FORCE=1 rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/deploy/podman-containers.conf}"
: "${RUST_VERSION:=$(rustc --version | awk '{print $2}')}"
cache=target/deploy
mkdir -p "$cache"

# The mirror apt is configured with (deb822 sources first, then the one-line form).
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1=="deb" && $2 ~ /debian$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
: "${mirror:=http://deb.debian.org/debian}"

have() { [ "${FORCE:-0}" != 1 ] && podman image exists "$1"; }

if have docker.io/library/debian:bookworm-slim; then
  echo "debian:bookworm-slim: in the local store"
else
  rootfs="$cache/rootfs"
  rm -rf "$rootfs"
  echo "debian:bookworm-slim: debootstrap from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 30 "$cache/debootstrap.log"; exit 1; }
  # As the official slim image: no apt lists, docs, man pages or locales; the machine's CA
  # certificates so that the builder can reach crates.io and PyPI.
  # The machine's own local CAs too (a TLS-inspecting egress proxy's, say), also where
  # update-ca-certificates finds them again when an image installs Debian's ca-certificates.
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  rm -rf "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/var/cache/debconf/*-old
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
  tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
fi

rust_image="docker.io/library/rust:${RUST_VERSION}-slim-bookworm"
if have "$rust_image"; then
  echo "rust:${RUST_VERSION}-slim-bookworm: in the local store"
else
  echo "rust:${RUST_VERSION}-slim-bookworm: rustup-init --profile minimal on debian:bookworm-slim"
  buildah bud --isolation chroot --pull=never --layers -q --build-arg "RUST_VERSION=$RUST_VERSION" \
    -f deploy/rust.Containerfile -t "$rust_image" deploy >/dev/null
fi
if have docker.io/library/redis:7-bookworm; then
  echo "redis:7-bookworm: in the local store"
else
  echo "redis:7-bookworm: Debian's redis-server on debian:bookworm-slim"
  buildah bud --isolation chroot --pull=never --layers -q -f deploy/redis.Containerfile \
    -t docker.io/library/redis:7-bookworm deploy >/dev/null
fi
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E 'debian:bookworm-slim|rust:|redis:'
