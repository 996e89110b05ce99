package circuit

import "errors"

// Stream and circuit failures as seen by the client. Errors returned by
// (*Circuit).Dial and (*Circuit).Resolve wrap exactly one of these, so front
// ends (proxy/) can map them to SOCKS reply codes with errors.Is. Destination
// handlers on the far side (exit/, mempool/) return errors wrapping the same
// sentinels so that the hop can send the matching END reason (PROTOCOL.md §5.1).
var (
	// ErrExitPolicy: the exit's policy refuses this target (END 4).
	ErrExitPolicy = errors.New("circuit: exit policy refuses target")
	// ErrResolveFailed: the exit could not resolve the host name (END 2).
	ErrResolveFailed = errors.New("circuit: exit could not resolve host")
	// ErrConnRefused: the target refused the TCP connection (END 3).
	ErrConnRefused = errors.New("circuit: target refused connection")
	// ErrUnreachable: no route to the target host or network (END 6).
	ErrUnreachable = errors.New("circuit: target unreachable")
	// ErrTimeout: the target or a hop did not answer in time (END 5).
	ErrTimeout = errors.New("circuit: timed out")
	// ErrServiceNotOffered: the last hop does not offer the requested service (END 9).
	ErrServiceNotOffered = errors.New("circuit: service not offered by last hop")
	// ErrPayment: a hop requires (more) payment (END 10, DESTROY 8).
	ErrPayment = errors.New("circuit: payment required")
	// ErrResourceLimit: a hop refused for lack of resources (END 11, DESTROY 4).
	ErrResourceLimit = errors.New("circuit: hop resource limit")
	// ErrProtocol: a peer broke the protocol (END 8, DESTROY 1).
	ErrProtocol = errors.New("circuit: protocol violation")
	// ErrTorSocks: a Tor gateway's tor refused the stream (END 12); the
	// error is a *TorSocksError carrying tor's SOCKS reply code.
	ErrTorSocks = errors.New("circuit: tor gateway refused the stream")
	// ErrClosed: the circuit or stream was torn down (DESTROY any reason,
	// END 7); the wrapped message carries the reason.
	ErrClosed = errors.New("circuit: closed")
)
