#!/usr/bin/env bash
# Builds the co-infuse image on a machine that cannot pull from any image
# registry: a Debian bookworm root filesystem (debootstrap --variant=minbase,
# from the mirror apt already uses) plus this machine's Go toolchain becomes
# the builder base image co-infuse-builder:local (kept between runs), the
# module dependencies go into the build context with `go mod vendor`, and
# docker/Dockerfile builds the static binary into a scratch image.
#
#   bash docker/build-image.sh              # builder base if missing, then the image
#   IMAGE=co-infuse:test bash docker/build-image.sh
#   BUILDER_ONLY=1 bash docker/build-image.sh
#
# Environment:
#   IMAGE          tag of the co-infuse image (default co-infuse:local)
#   BUILDER_IMAGE  tag of the builder base (default co-infuse-builder:local)
#   CACHE_DIR      where the root filesystem tarball is kept
#                  (default ~/.cache/co-infuse/docker)
#   GOROOT_HOST    the Go toolchain copied in (default: `go env GOROOT`)
#   DEBIAN_MIRROR  overrides the mirror read from /etc/apt/sources.list*
#   VERSION        the version stamped into the binary (default: git describe)
#   NO_CACHE=1     passes --no-cache to docker build
#
# Every step says what it does and skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-co-infuse:local}
BUILDER_IMAGE=${BUILDER_IMAGE:-co-infuse-builder:local}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/co-infuse/docker}
GOROOT_HOST=${GOROOT_HOST:-$(go env GOROOT)}
GO_VERSION=$("$GOROOT_HOST/bin/go" env GOVERSION)
SUITE=bookworm
# Packages beyond minbase: curl (the tests' SOCKS client, in a client
# container) and CA certificates for it.
PACKAGES=ca-certificates,curl

say() { printf '=== %s (%ds)\n' "$*" "$SECONDS"; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

# mirror prints the first Debian archive URI apt is configured with (deb822
# .sources files or one-line sources.list), skipping the security archive.
mirror() {
	if [ -n "${DEBIAN_MIRROR:-}" ]; then
		echo "$DEBIAN_MIRROR"
		return
	fi
	local f u
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		u=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$f" | grep -v -- '-security' | head -n1)
		[ -n "$u" ] && { echo "$u"; return; }
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		u=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f" | grep -v -- '-security' | head -n1)
		[ -n "$u" ] && { echo "$u"; return; }
	done
	echo "no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR" >&2
	return 1
}

builder_label() { docker image inspect -f '{{index .Config.Labels "org.co-infuse.go"}}' "$1" 2>/dev/null || true; }

build_builder() {
	if [ "$(builder_label "$BUILDER_IMAGE")" = "$GO_VERSION" ]; then
		say "builder base $BUILDER_IMAGE with $GO_VERSION exists: skipped"
		return
	fi
	mkdir -p "$CACHE_DIR"
	local rootfs_tar="$CACHE_DIR/$SUITE-minbase.tar"
	if [ ! -s "$rootfs_tar" ]; then
		command -v debootstrap >/dev/null || {
			say "installing debootstrap"
			$sudo apt-get update -qq
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap
		}
		local m rootfs="$CACHE_DIR/rootfs.tmp"
		m=$(mirror)
		say "debootstrap $SUITE minbase (+$PACKAGES) from the configured mirror into $rootfs"
		$sudo rm -rf "$rootfs"
		$sudo debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$m" |
			grep -E '^I: (Retrieving Release|Validating|Extracting|Installing core|Unpacking the base|Configuring the base|Base system installed)' || true
		[ -x "$rootfs/usr/bin/curl" ] || { echo "debootstrap failed: no curl in $rootfs" >&2; exit 1; }
		# Drop what an image does not need: apt lists, caches, docs.
		$sudo rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
			"$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
		say "packing the root filesystem into $rootfs_tar"
		$sudo tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.tmp" .
		$sudo chown "$(id -u):$(id -g)" "$rootfs_tar.tmp"
		mv "$rootfs_tar.tmp" "$rootfs_tar"
		$sudo rm -rf "$rootfs"
	else
		say "root filesystem $rootfs_tar exists: debootstrap skipped"
	fi
	say "importing $BUILDER_IMAGE: the root filesystem plus $GO_VERSION from $GOROOT_HOST"
	# The root filesystem with the Go toolchain appended under /usr/local/go
	# (without its tests and docs: the build needs neither).
	local entries=()
	local e
	for e in "$GOROOT_HOST"/*; do
		case ${e##*/} in test | doc | api | misc) ;; *) entries+=("${e##*/}") ;; esac
	done
	tar -cf "$CACHE_DIR/go.tar" --numeric-owner --owner=0 --group=0 \
		--transform 's,^,./usr/local/go/,S' -C "$GOROOT_HOST" "${entries[@]}"
	cp "$rootfs_tar" "$CACHE_DIR/builder.tar"
	tar -A -f "$CACHE_DIR/builder.tar" "$CACHE_DIR/go.tar"
	docker import \
		--change 'ENV PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'ENV GOTOOLCHAIN=local GOFLAGS=-mod=vendor GOPROXY=off' \
		--change "LABEL org.co-infuse.go=$GO_VERSION" \
		--change 'CMD ["/bin/bash"]' \
		"$CACHE_DIR/builder.tar" "$BUILDER_IMAGE" >/dev/null
	rm -f "$CACHE_DIR/go.tar" "$CACHE_DIR/builder.tar"
	say "builder base $BUILDER_IMAGE ready"
}

build_builder
[ -n "${BUILDER_ONLY:-}" ] && exit 0

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo unknown)}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
say "build context: tracked sources and vendored modules (offline, from the module cache)"
git ls-files -z --cached --others --exclude-standard | grep -zv '^docker/umbrel/\|^docker/start9/' |
	xargs -0 cp --parents -t "$ctx" 2>/dev/null || true
GOFLAGS=-mod=mod GOPROXY=off go mod vendor -o "$ctx/vendor"
say "docker build $IMAGE (version $VERSION)"
nocache=()
[ -n "${NO_CACHE:-}" ] && nocache=(--no-cache)
docker build "${nocache[@]}" -f docker/Dockerfile \
	--build-arg BUILDER_IMAGE="$BUILDER_IMAGE" \
	--build-arg VERSION="$VERSION" \
	-t "$IMAGE" "$ctx"
say "image $IMAGE ready"
