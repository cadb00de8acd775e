#!/bin/sh
# make_images.sh: the images docs/IMAGES.md lists, built locally (no registry is needed):
#   debian:bookworm-slim   debootstrap --variant=minbase from the Debian archive, imported
#   execd-busybox:latest   a static busybox and nothing else (the docker backend's tests)
#   execd-python:latest    busybox plus this machine's Debian Python and ipykernel
#                          (tools/make_python_rootfs.sh; the docker backend's python cells)
#   execd:latest           the Dockerfile, on that base
# Talks to the engine at $DOCKER_HOST (default: the system's socket). An image that
# exists already is kept; REBUILD=1 builds them again.
set -eu

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")/.." && pwd)
rebuild=${REBUILD:-0}

docker version >/dev/null 2>&1 || {
  echo "make images: no docker engine answers at ${DOCKER_HOST:-unix:///var/run/docker.sock} (start dockerd, or set DOCKER_HOST)" >&2
  exit 1
}
have() { [ "$rebuild" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }
tmp=$(mktemp -d /tmp/execd-images-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

if ! have debian:bookworm-slim; then
  echo "make images: debootstrap bookworm (minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
    tail -n 20 "$tmp/debootstrap.log" >&2
    exit 1
  }
  # What a slim image drops: package lists, caches, docs and man pages.
  rm -rf "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/"*.bin \
         "$tmp/rootfs/usr/share/doc/"* "$tmp/rootfs/usr/share/man/"*
  tar -C "$tmp/rootfs" -c . | docker import - debian:bookworm-slim >/dev/null
  rm -rf "$tmp/rootfs"
fi

if ! have execd-busybox:latest; then
  bb=/bin/busybox
  { [ -x "$bb" ] && ! ldd "$bb" >/dev/null 2>&1; } || { echo "make images: $bb is not static (busybox-static)" >&2; exit 1; }
  mkdir -p "$tmp/bb/bin" "$tmp/bb/etc" "$tmp/bb/proc" "$tmp/bb/sys" "$tmp/bb/dev" "$tmp/bb/root" "$tmp/bb/tmp"
  chmod 1777 "$tmp/bb/tmp"
  cp "$bb" "$tmp/bb/bin/busybox"
  for applet in $("$bb" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$tmp/bb/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$tmp/bb/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$tmp/bb/etc/group"
  tar -C "$tmp/bb" -c . | docker import - execd-busybox:latest >/dev/null
fi

if ! have execd-python:latest; then
  "$here/tools/make_python_rootfs.sh" "$tmp/py" >/dev/null
  tar -C "$tmp/py" --numeric-owner --owner=0 --group=0 -c . | docker import - execd-python:latest >/dev/null
  rm -rf "$tmp/py"
fi

if ! have execd:latest; then
  echo "make images: docker build -t execd:latest (several minutes)"
  # The classic builder (Debian's docker.io ships no buildx); the host's network for
  # apt and npm in RUN steps, so the engine needs no bridge or NAT of its own.
  DOCKER_BUILDKIT=0 docker build --network host --build-arg BASE=debian:bookworm-slim ${EXTRA_CA_CERT:+--build-arg EXTRA_CA_CERT="$EXTRA_CA_CERT"} \
    -t execd:latest "$here"
fi

docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(debian:bookworm-slim|execd-busybox:latest|execd-python:latest|execd:latest) '
