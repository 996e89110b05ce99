#!/usr/bin/env bash
# Benchmarks co-infuse circuits on loopback against baselines measured in
# the same run, and prints the ratios:
#   bulk:        3-hop circuit vs a raw libp2p stream relayed by three io.Copy
#                hops vs a direct TCP connection
#   first byte:  ready circuit, fresh circuit (build included), direct TCP
#   build:       3-hop circuit build over open links
#   sharing:     100 circuits through one relay (aggregate, slowest/mean);
#                an interactive echo beside a bulk circuit vs alone
#   crypto:      one hop's layer on one cell
#   vouchers:    blind signing, verification, redemption with durable spent set
# Usage: bash scripts/bench.sh [count]   (default 3 runs of each; medians shown)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "running circuit benchmarks ($count runs each; 2 shared cores make single figures noisy)..."
go test -run '^$' -bench '^Benchmark(Layer|Circuit3Hop|RawRelay3|Direct|Build3Hop|FirstByte|FirstByteFresh|FirstByteDirect|ManyCircuits|Interactive)$' \
	-benchtime 2s -count "$count" ./circuit/ | tee "$out" | grep -E '^Benchmark' || true
echo "running devnet benchmarks (fresh SOCKS credentials: pre-built circuit, build on the critical path, direct)..."
go test -run '^$' -bench '^BenchmarkE2EFreshCredentials$' -benchtime 100x -count "$count" ./devnet/ | tee -a "$out" | grep -E '^Benchmark' || true
echo "running voucher benchmarks..."
go test -run '^$' -bench . -benchtime 1s -count 1 -cpu 1 ./voucher/ | tee -a "$out" | grep -E '^Benchmark' || true
awk '
/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name)
	for (i = 2; i <= NF; i++) {
		if ($(i+1) == "ns/op") { ns[name] = ns[name] " " $i }
		if ($(i+1) == "MB/s")  { mbs[name] = mbs[name] " " $i }
		if ($(i+1) == "slowest/mean") { spread[name] = spread[name] " " $i }
		if ($(i+1) == "failed-circuits") { failed[name] = failed[name] " " $i }
		if ($(i+1) == "relay-B/idle-circ") { ridle[name] = ridle[name] " " $i }
		if ($(i+1) == "relay-peak-B/active-circ") { ractive[name] = ractive[name] " " $i }
		if ($(i+1) == "heap-B/active-circ") { hactive[name] = hactive[name] " " $i }
	}
}
function median(s,   a, n, i, j, t) {
	n = split(s, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n ? a[int((n + 1) / 2)] : 0
}
END {
	c = median(mbs["BenchmarkCircuit3Hop"]); r = median(mbs["BenchmarkRawRelay3"]); d = median(mbs["BenchmarkDirect"])
	printf "\n== summary (medians)\n"
	printf "bulk      3-hop circuit %8.1f MB/s | raw relayed chain %8.1f MB/s | direct TCP %8.1f MB/s\n", c, r, d
	if (r > 0) printf "          circuit / raw relayed chain = %.2f (target >= 0.60)\n", c / r
	if (d > 0) printf "          circuit / direct            = %.2f\n", c / d
	printf "build     3-hop circuit %8.2f ms (target <= 10 ms)\n", median(ns["BenchmarkBuild3Hop"]) / 1e6
	printf "1st byte  ready circuit %8.2f ms (target <= 5 ms) | fresh circuit %8.2f ms | direct TCP %8.2f ms\n", \
		median(ns["BenchmarkFirstByte/stream"]) / 1e6, median(ns["BenchmarkFirstByteFresh"]) / 1e6, median(ns["BenchmarkFirstByteDirect"]) / 1e6
	printf "layer     one hop, one cell: %.1f MB/s\n", median(mbs["BenchmarkLayer"])
	printf "sharing   100 circuits through one relay: %.1f MB/s in all, slowest / mean = %.2f (target >= 0.50)\n", \
		median(mbs["BenchmarkManyCircuits"]), median(spread["BenchmarkManyCircuits"])
	printf "          circuits that failed, per run:%s (target: none)\n", failed["BenchmarkManyCircuits"]
	printf "          relay budget per circuit: idle %.1f KiB, peak while active %.1f KiB | whole-process heap per active circuit %.1f MiB\n", \
		median(ridle["BenchmarkManyCircuits"]) / 1024, median(ractive["BenchmarkManyCircuits"]) / 1024, median(hactive["BenchmarkManyCircuits"]) / 1048576
	ia = median(ns["BenchmarkInteractive/alone"]); ib = median(ns["BenchmarkInteractive/beside-bulk"]); ip = median(ns["BenchmarkInteractive/beside-paced-bulk"])
	io = median(ns["BenchmarkInteractive/bulk-on-other-links"])
	printf "          interactive echo alone %.2f ms | beside a bulk circuit %.2f ms | beside one paced to 40 MB/s %.2f ms\n", ia / 1e6, ib / 1e6, ip / 1e6
	if (ia > 0) printf "          ratios %.1f and %.1f (target <= 2; unpaced, the 2 CPUs running the whole network are the bottleneck)\n", ib / ia, ip / ia
	if (ia > 0 && io > 0) printf "          control: bulk on three other relays (shares only the CPUs) %.2f ms = %.1fx alone; beside bulk / control = %.1f\n", io / 1e6, io / ia, ib / io
	fd = median(ns["BenchmarkE2EFreshCredentials/direct"]); fp = median(ns["BenchmarkE2EFreshCredentials/prebuilt"]); fb = median(ns["BenchmarkE2EFreshCredentials/build"])
	printf "fresh credentials through the devnet, first byte: pre-built circuit %.2f ms | build on the critical path %.2f ms | direct %.2f ms\n", fp / 1e6, fb / 1e6, fd / 1e6
	if (fd > 0) printf "          pre-built - direct = %.2f ms (target <= 1 ms); build / pre-built = %.1fx\n", (fp - fd) / 1e6, (fp > 0 ? fb / fp : 0)
}' "$out"
