#!/usr/bin/env bash
# Runs every co-infuse test on this machine, installing what the tests need:
# Debian's curl (a real SOCKS client), btcd/btcctl v0.24.2 and lnd/lncli
# v0.21.1-beta (built once per machine and cached; see internal/regtest).
# Then each Go fuzz target runs briefly. Traffic stays on loopback.
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

apt_install curl ca-certificates

say "go vet"
go vet ./...

say "building real daemons if this machine has none cached (btcd, lnd: about 5 minutes the first time)"
go run ./internal/regtest/cmd/ensure-daemons

say "go test (unit, integration against real libp2p hosts, curl, btcd and lnd on loopback)"
go test -count=1 -timeout 60m ./...

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
