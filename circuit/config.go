package circuit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// LinkProtocol is the libp2p protocol ID of link streams (PROTOCOL.md §1).
const LinkProtocol = "/co-infuse/link/2"

// Flow-control constants (PROTOCOL.md §5.2), counted in DATA cells.
const (
	streamWindow    = 512
	streamIncrement = 64
	circWindow      = 2048
	circIncrement   = 32
	// circQueueSlack is the room MaxCircuitQueue keeps above a full
	// circuit window for SENDMEs, ENDs and other control cells.
	circQueueSlack = 1024
)

// Limits caps what peers can make an Engine hold. Zero fields take the
// default named in their comment.
type Limits struct {
	// MaxLinks is the most link streams (both directions) the engine keeps
	// open at once. Default 1024.
	MaxLinks int
	// MaxCircuits is the most circuits this engine relays at once (as a
	// hop, not as a client). Default 16384.
	MaxCircuits int
	// MaxCircuitsPerPeer is the most relayed circuits one neighbour may
	// have created through us. Default 1024.
	MaxCircuitsPerPeer int
	// MaxPendingCreates is the most CREATEs being admitted and
	// handshaken at once (each holds a goroutine); more are refused with
	// DESTROY reason resource limit. Default 256.
	MaxPendingCreates int
	// MaxStreamsPerCircuit is the most open streams on one circuit, at the
	// client (Dial fails) and at the last hop (BEGIN gets END resource
	// limit). Default 64. Each stream may buffer up to 512 cells, and
	// the circuit's streams together up to 4096 more while their readers
	// keep up (§5.2).
	// At the last hop a stream holds its slot from BEGIN until its Begin
	// hook has returned and its destination is closed, even if END came
	// first, so BEGIN+END pairs never run more dials than this at once.
	MaxStreamsPerCircuit int
	// MaxPendingBegins is the most Begin and Resolve hook calls (dials and
	// lookups in flight) running at once on this node, across every
	// circuit; more BEGINs and RESOLVEs get END resource limit. Default
	// 1024.
	MaxPendingBegins int
	// MemoryBudget is the node-wide budget, in bytes, for what this node
	// holds for others: 8 KiB per relayed circuit, 32 KiB per last-hop
	// stream, every DATA cell a last-hop stream has buffered (4 KiB
	// each, up to 512 per stream and more while the budget is below half,
	// §5.2), and every cell a relayed circuit has queued toward a link
	// (4 KiB each, at most MaxCircuitQueue per circuit and link). New
	// circuits and streams may use 3/4 of it; past that CREATE gets
	// DESTROY resource limit and BEGIN gets END resource limit. The last
	// quarter is for data of open streams and circuits: a DATA cell that
	// does not fit ends its stream with END resource limit, and a relayed
	// circuit whose queued cell does not fit is destroyed with reason
	// resource limit (an empty queue always takes one cell, a circuit's
	// last TEARDOWN and DESTROY are always queued, and the control cells
	// a hop originates, SENDME, END, CONNECTED, not DATA, may go an
	// eighth past the budget, no further). The
	// client's own streams and circuits are not charged. Default 512 MiB.
	MemoryBudget int64
	// EndLinger is how long the last hop keeps writing, to a destination
	// that reads slowly, the data its stream had buffered when the client's
	// END (reason done) arrived; then the destination is closed and what
	// is left is dropped. END with any other reason closes the
	// destination at once. Default 5s.
	EndLinger time.Duration
	// MaxLinkQueue is the most link-level cells (DESTROY answers to
	// refused CREATEs, which belong to no circuit) waiting for one link's
	// writer; the link's reader waits when it is full, so a neighbour that
	// floods CREATEs without reading stalls only itself. Default 256.
	MaxLinkQueue int
	// MaxCircuitQueue is the most cells one circuit may have waiting for
	// one link (PROTOCOL.md §1.2); a circuit that would exceed it is
	// destroyed with reason resource limit and the link stays. Every
	// cell counts, DROP included. It must exceed what flow control lets
	// an honest circuit have in flight in one direction: the circuit
	// window (at most 4096 DATA cells, §5.2) plus SENDMEs, ENDs and other control
	// cells. Default 5120 (20 MiB, held only while queued): the largest
	// congestion window (4096 cells, §5.2) plus 1024. A sender keeps its
	// own circuits' windows at most 1024 below its MaxCircuitQueue (but
	// lets them reach the starting window, 2048, whatever it says).
	MaxCircuitQueue int
	// MaxQueuedCells bounds the cells of relayed circuits queued toward
	// all links together. Once it is reached, a relayed circuit that
	// already holds more than an equal share of it (MaxQueuedCells ÷
	// relayed circuits with queued cells) is destroyed with reason
	// resource limit when it queues one more, so the total stays below
	// about twice this. This node's own circuits neither count nor are
	// cut: their windows bound them (MaxCircuitQueue each), except those
	// marked Circuit.ForOthers, which count as relayed ones. Default
	// 65536 (256 MiB).
	MaxQueuedCells int
	// CreateTimeout bounds the Admit hook and the handshake at a hop, and
	// how long Build waits for each CREATED or EXTENDED. Default 10s.
	CreateTimeout time.Duration
	// ExtendTimeout bounds connecting to the next hop for an EXTEND and
	// waiting for its CREATED. Default 15s.
	ExtendTimeout time.Duration
	// BeginTimeout bounds the Begin and Resolve hooks at the last hop.
	// Default 20s.
	BeginTimeout time.Duration
	// IdleTimeout destroys a relayed circuit that carried no cell for this
	// long, and closes a link with no circuits after this long. Default 10m.
	IdleTimeout time.Duration
	// KeepAlive is how long a built client circuit, with or without open
	// streams, may send nothing before it sends a DROP to its last hop, so
	// that relays do not destroy it as idle (a pre-built circuit waits for
	// its first stream this way). Keep it well below relays' IdleTimeout
	// (10m by default). Default 2m.
	KeepAlive time.Duration
	// FixedWindows turns off window growth (PROTOCOL.md §5.2): circuits
	// this node sends on keep a window of 2048 DATA cells, and streams it
	// receives on keep 512, as before congestion control. It is a
	// fallback and a baseline for benchmarks; a node accepts grown
	// windows from its peers either way. Default false.
	FixedWindows bool
	// WriteTimeout bounds each write to a link (at most 64 KiB); a
	// neighbour that stops reading for longer loses the link with every
	// circuit on it. Default 30s.
	WriteTimeout time.Duration

	// CreatesPerPeerPerSecond is the rate, in CREATEs per second, at which
	// one neighbour's CREATEs are admitted (PROTOCOL.md §4.4): a token
	// bucket per neighbour holding CreateBurstPerPeer tokens, refilled at
	// this rate. A CREATE that finds the bucket empty is refused with
	// DESTROY reason resource limit before any public-key work. A guard
	// relays every EXTEND of its clients, so this is per neighbour, not
	// per client. Default 50.
	CreatesPerPeerPerSecond float64
	// CreateBurstPerPeer is the size of each neighbour's CREATE bucket,
	// in CREATEs. Default 200.
	CreateBurstPerPeer int
	// CreatesPerSecond is the rate, in CREATEs per second, at which this
	// relay admits CREATEs from all neighbours together (a global token
	// bucket of CreateBurst tokens), checked after the neighbour's own
	// bucket, before any public-key work. It bounds the X25519 and
	// voucher checks unpaid floods can cause. Default 1000.
	CreatesPerSecond float64
	// CreateBurst is the size of the global CREATE bucket, in CREATEs.
	// Default 4000.
	CreateBurst int
	// MintOnlyMaxCells is the most RELAY cells (both directions, 4 KiB
	// each) a mint-only circuit (PROTOCOL.md §4.5) may carry; one more
	// destroys it with reason payment. A purchase is one quote, mint,
	// check-state or swap exchange of at most 32,986 bytes each way
	// (VOUCHERS.md §3.1), about 20 cells. Default 64 (256 KiB).
	MintOnlyMaxCells int
	// MintOnlyLifetime is how long a mint-only circuit may live from its
	// CREATE; then it is destroyed with reason payment. A purchase
	// circuit serves one exchange (node/buy.go). Default 2m.
	MintOnlyLifetime time.Duration
}

func (l *Limits) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	defd := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&l.MaxLinks, 1024)
	def(&l.MaxCircuits, 16384)
	def(&l.MaxCircuitsPerPeer, 1024)
	def(&l.MaxStreamsPerCircuit, 64)
	def(&l.MaxPendingCreates, 256)
	def(&l.MaxPendingBegins, 1024)
	if l.MemoryBudget <= 0 {
		l.MemoryBudget = 512 << 20
	}
	def(&l.MaxLinkQueue, 256)
	def(&l.MaxCircuitQueue, circMaxWindow+circQueueSlack)
	def(&l.MaxQueuedCells, 65536)
	defd(&l.CreateTimeout, 10*time.Second)
	defd(&l.ExtendTimeout, 15*time.Second)
	defd(&l.BeginTimeout, 20*time.Second)
	defd(&l.EndLinger, 5*time.Second)
	defd(&l.IdleTimeout, 10*time.Minute)
	defd(&l.WriteTimeout, 30*time.Second)
	defd(&l.KeepAlive, 2*time.Minute)
	deff := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	deff(&l.CreatesPerPeerPerSecond, 50)
	def(&l.CreateBurstPerPeer, 200)
	deff(&l.CreatesPerSecond, 1000)
	def(&l.CreateBurst, 4000)
	def(&l.MintOnlyMaxCells, 64)
	defd(&l.MintOnlyLifetime, 2*time.Minute)
}

// BeginRequest is what the last hop of a circuit passes to Config.Begin.
type BeginRequest struct {
	// Service is the BEGIN service (PROTOCOL.md §5).
	Service cell.Service
	// Target is the BEGIN target, parsed and in canonical form (PROTOCOL.md
	// §5 BEGIN); never the zero Target. Never log it.
	Target cell.Target
	// Cookie is this hop's session cookie for the circuit (§4.3), the key
	// of the payment session the stream is charged to.
	Cookie [cell.CookieLen]byte
	// Peer is the previous hop (the only one this hop knows).
	Peer peer.ID
}

// Config configures an Engine. Host is required; every hook may be nil.
// Hooks run on engine goroutines and must return promptly once ctx is done.
type Config struct {
	// Host carries the link streams. The engine registers LinkProtocol on
	// Start and removes it on Close; it never closes Host.
	Host host.Host
	// OnionKey is this node's onion key. Nil makes a client-only engine
	// that refuses CREATE (DESTROY reason resource limit).
	OnionKey *OnionKey
	// Logger receives the engine's logs; nil discards them. The engine adds
	// subsys=circuit.
	Logger *slog.Logger
	// Limits caps resources; zero fields take defaults.
	Limits Limits

	// Admit, if set, is asked before a CREATE from neighbour from at
	// position depth is accepted; an error refuses it (DESTROY with the
	// reason DestroyReasonFor(err)). ctx ends after CreateTimeout.
	Admit func(ctx context.Context, from peer.ID, depth int) error
	// Account, if set, is called for every RELAY cell this hop relays or
	// handles, in either direction, with the session cookie and the cell
	// size in bytes. An error destroys the circuit with reason payment.
	// It runs on the link reader: it must not block.
	Account func(cookie [cell.CookieLen]byte, bytes int) error
	// Prepay, if set, makes this node a paid hop (PROTOCOL.md §4.1, §4.5).
	// It is called for every CREATE whose message 1 decrypted and carried
	// an offer (cell.OfferVouchers or cell.OfferMintOnly), before the hop
	// answers, with the cookie the circuit's session will have, the
	// neighbour it came from and the offer (its Batch is the hook's to
	// keep). It returns the status and the ack that message 2 carries (at
	// most cell.MaxAckLen bytes): AnswerPaid accepts the circuit,
	// AnswerMintOnly accepts it as mint-only, AnswerRefused refuses it (the
	// hop answers CREATED with the refusal, then DESTROY reason payment). A
	// hook that accepted opened a session for cookie: the engine calls
	// SessionClosed for it when the circuit ends, even if it fails before
	// it opens. A CREATE with no offer (cell.OfferNone) never reaches the
	// hook: a paid hop refuses it with DESTROY reason payment before
	// answering. ctx ends after CreateTimeout. Nil: a free hop, which
	// ignores offers and answers with the cookie alone.
	Prepay func(ctx context.Context, cookie [cell.CookieLen]byte, from peer.ID, offer cell.Offer) (cell.AnswerStatus, []byte)
	// TopUp, if set, handles a TOPUP from the client; its result is
	// returned in TOPUP_ACK status 0, an error in status 1 with the result
	// as payload (the hook may return both, to say why; it may be empty).
	// Nil answers every TOPUP with status 1 and an empty payload.
	TopUp func(ctx context.Context, cookie [cell.CookieLen]byte, payload []byte) ([]byte, error)
	// SessionClosed, if set, is called once when a relayed circuit whose
	// handshake completed is torn down, with its session cookie.
	SessionClosed func(cookie [cell.CookieLen]byte)
	// Begin, if set, opens the destination of a BEGIN at the last hop. Its
	// error should wrap one of the errors.go sentinels (mapped to END
	// reasons with EndReasonFor). Nil answers END service-not-offered. The
	// engine owns the returned conn and closes it when the stream ends: at
	// once on END with an error reason, after the circuit dies or the far
	// end closes, and at most EndLinger after END done. A conn returned
	// after the stream ended is closed at once.
	Begin func(ctx context.Context, req BeginRequest) (net.Conn, error)
	// Resolve, if set, answers RESOLVE at the last hop; nil answers END
	// resolve-failed.
	Resolve func(ctx context.Context, host string) (netip.Addr, error)
}

func (c *Config) validate() error {
	if c.Host == nil {
		return fmt.Errorf("circuit config: Host is required")
	}
	return nil
}

// MinCircuitQueue is the smallest Limits.MaxCircuitQueue that holds an
// honest circuit's smallest window (2048 DATA cells, §5.2) and its control
// cells; below it honest bulk circuits are destroyed for a full queue.
const MinCircuitQueue = circWindow + circQueueSlack

// DefaultLimits returns the Limits a zero Limits stands for: every field
// at the default its comment names.
func DefaultLimits() Limits {
	var l Limits
	l.setDefaults()
	return l
}
