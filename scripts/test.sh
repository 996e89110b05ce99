#!/usr/bin/env bash
# Runs every co-infuse test on this machine, installing what the tests need:
# Debian's curl (a real SOCKS client), btcd/btcctl v0.24.2 and lnd/lncli
# v0.21.1-beta (built once per machine and cached; see internal/regtest),
# Docker and docker-compose (started if not running), and the co-infuse
# image, built offline (docker/build-image.sh). Then each Go fuzz target
# runs briefly. Traffic stays on loopback and the test's container networks.
#
#   bash scripts/test.sh            # everything
#   FUZZTIME=30s bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n=== %s\n' "$*"; }

apt_install() {
	local missing=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing Debian packages: ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}

apt_install curl ca-certificates tor

say "go vet"
go vet ./...

say "building real daemons if this machine has none cached (btcd, lnd: about 5 minutes the first time)"
go run ./internal/regtest/cmd/ensure-daemons

# Docker: the container tests (docker/dockertest) need an engine and
# compose; without them they skip, so make sure both are here and running.
ensure_docker() {
	command -v docker >/dev/null || apt_install docker.io
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || apt_install docker-compose
	if docker info >/dev/null 2>&1; then
		return 0
	fi
	say "starting the Docker engine"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo systemctl start docker 2>/dev/null || $sudo service docker start 2>/dev/null ||
		{ $sudo nohup dockerd >/tmp/co-infuse-dockerd.log 2>&1 & }
	for _ in $(seq 1 60); do
		docker info >/dev/null 2>&1 && return 0
		sleep 1
	done
	echo "the Docker engine did not start (see /tmp/co-infuse-dockerd.log)" >&2
	exit 1
}
ensure_docker

say "building the co-infuse image offline (docker/build-image.sh: builder base from debootstrap once per machine, then docker build)"
IMAGE=co-infuse:test bash docker/build-image.sh

say "checking the image's binary is reproducible (a host build of the same vendored source and flags gives the same bytes)"
repro=$(mktemp -d)
trap 'rm -rf "$repro"; docker image rm -f co-infuse:test >/dev/null 2>&1 || true' EXIT
cid=$(docker create co-infuse:test)
docker cp "$cid:/co-infuse" "$repro/from-image"
docker rm "$cid" >/dev/null
version=$(docker image inspect -f '{{index .Config.Labels "org.opencontainers.image.version"}}' co-infuse:test)
mkdir "$repro/src"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$repro/src" 2>/dev/null || true
GOFLAGS=-mod=mod GOPROXY=off go mod vendor -o "$repro/src/vendor"
(cd "$repro/src" && CGO_ENABLED=0 GOFLAGS= go build -trimpath -buildvcs=false \
	-ldflags "-s -w -buildid= -X github.com/co-infuse/co-infuse/node.Version=$version" \
	-o "$repro/from-host" ./cmd/co-infuse)
sha256sum "$repro/from-image" "$repro/from-host"
[ "$(sha256sum <"$repro/from-image")" = "$(sha256sum <"$repro/from-host")" ] || {
	echo "the image's binary differs from a host build of the same source" >&2
	exit 1
}

say "go test (unit, integration against real libp2p hosts, curl, btcd and lnd on loopback; containers on their own networks)"
CO_INFUSE_DOCKERTEST_IMAGE=co-infuse:test go test -count=1 -timeout 60m ./...

say "fuzzing each target for ${FUZZTIME:-5s}"
while IFS= read -r line; do
	file=${line%%:*}
	name=$(sed -E 's/^.*func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
	pkg=./$(dirname "$file")
	echo "--- $pkg $name"
	if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="${FUZZTIME:-5s}" "$pkg"; then
		# A real finding is saved under testdata/fuzz/<target>/ and fails
		# again; a fuzzing worker lost to a loaded machine does not.
		if [ -n "$(git status --porcelain -- "$pkg/testdata/fuzz/$name" 2>/dev/null)" ]; then
			echo "fuzz target $name found a failing input: see $pkg/testdata/fuzz/$name" >&2
			exit 1
		fi
		echo "--- $pkg $name failed without a saved input; running it once more"
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="${FUZZTIME:-5s}" "$pkg"
	fi
done < <(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | sort)

say "all tests passed"
