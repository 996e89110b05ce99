package pool

import "time"

const (
	// buildAttempts is how many paths one build tries before it gives up.
	buildAttempts = 3

	// predictWindow is how long a port a stream used stays predicted (Tor's
	// PredictedPortsRelevanceTime).
	predictWindow = time.Hour
	// maxPredictedPorts bounds the ports remembered from streams (ports
	// come from clients); the least recently used is forgotten beyond it.
	maxPredictedPorts = 32

	// cleanLifetime is how long a clean circuit waits to be claimed before
	// it is closed and, if still wanted, replaced (Tor closes unused
	// circuits after about an hour too).
	cleanLifetime = time.Hour

	// refillDelay is how long after a claim the clean set is refilled
	// (refillSoonLocked).
	refillDelay = 200 * time.Millisecond

	// handoutGrace is how long after Get handed a circuit out the sweep
	// leaves it alone even with no stream: the caller is about to open one.
	handoutGrace = 10 * time.Second

	// Pre-building pauses after a failed pre-build, from minBackoff,
	// doubling to maxBackoff, so a broken network is not hammered.
	minBackoff = time.Second
	maxBackoff = 5 * time.Minute

	// The sweep runs every quarter of the shorter of MaxDirtiness and
	// IdleClose, within these bounds.
	minSweep = time.Second
	maxSweep = 30 * time.Second
)
