// Package pool is the client's circuit pool: it decides which circuit
// carries each stream a client opens, and builds, keeps and retires
// circuits to follow Tor's circuit-choice rules.
//
//   - Isolation: every stream carries a Key (the SOCKS username/password
//     pair). Streams with different keys never share a circuit. The zero
//     Key (no credentials) is a key like any other.
//   - Per port: a stream to port P goes only on a circuit whose exit's
//     advertised policy accepts P (Path.Accepts).
//   - Dirtiness (Tor's MaxCircuitDirtiness): a circuit takes new streams
//     for at most Config.MaxDirtiness after its first use; later streams of
//     its key get a new circuit. A dirty circuit keeps the streams it has
//     and is closed once it has none.
//   - Pre-built circuits (Tor's preemptive circuits): the pool keeps up to
//     Config.Preemptive clean circuits, built ahead for the ports streams
//     used in the last hour (plus Config.PredictedPorts), so that a stream
//     with a fresh key claims a ready circuit instead of waiting for a
//     build. A claim starts a refill in the background.
//   - Build with retry and blame: up to three attempts, each on a path from
//     Config.Select; a hop that fails a build (*circuit.BuildError) is
//     reported to Config.Report and excluded from the next attempt. A
//     pooled circuit that a hop tears down blames the hop at fault
//     (circuit.CloseError.Depth; blame.go) when the pool finds it dead.
//
// Cost of pre-built circuits: each one holds one circuit-hop at each of its
// relays (counted against their MaxCircuits and MaxCircuitsPerPeer), costs
// one DROP cell every circuit.Limits.KeepAlive to stay alive (the engine
// sends it on every quiet client circuit), and, on a paid network, whatever
// Config.Prepare spends on it (node prepays every hop) even if no stream
// ever uses it. A clean circuit nobody claims is closed after an hour or
// once no predicted port is accepted by its exit.
//
// What it leaves to others: choosing relays and knowing their exit policies
// (Config.Select, i.e. discovery), building and running circuits
// (Config.Build, i.e. circuit.Engine), paying hops (Config.Prepare), and
// opening streams: callers Dial on the circuit Get returns, then tell the
// pool with StreamOpened.
//
// Concurrency: one mutex guards the pool's tables; circuits are built on
// goroutines the pool owns, and Close cancels and waits for them.
package pool
