package rendezvous

import (
	"context"
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// BEGIN targets of cell.ServiceRendezvous (PROTOCOL.md §7.3). Everything
// that identifies a service, cookie or descriptor travels in the stream,
// never in the target.
const (
	TargetRendezvous = "rv:1"    // join a rendezvous (client or service)
	TargetIntroHold  = "intro:3" // a service holds an introduction point
	// TargetIntroHoldV1 is the first hold, whose forwarded introductions
	// carry no proof-of-work nonce (so the service cannot check it); still
	// served for services that use it.
	TargetIntroHoldV1 = "intro:1"
	TargetIntroduce   = "intro:2" // a client introduces itself
	TargetDescPut     = "hsdir:1" // a service stores a descriptor
	TargetDescGet     = "hsdir:2" // a client fetches a descriptor
)

// Status bytes the server answers with (PROTOCOL.md §7.3).
const (
	statusOK          byte = 0
	statusRefused     byte = 1 // malformed, bad signature, wrong period, unknown cookie
	statusRateLimited byte = 2
	statusReplay      byte = 3
	statusNotFound    byte = 4
	statusNeedPoW     byte = 5 // an introduction without enough proof of work
	// statusNotResponsible: a descriptor for a blinded key this HSDir is
	// not responsible for by its own view (hsring.go).
	statusNotResponsible byte = 6
)

// Roles in a rendezvous join.
const (
	rvClient  byte = 1
	rvService byte = 2
)

const (
	introHoldContext = "co-infuse intro hold v1"
	introIDContext   = "co-infuse intro id v1"
)

// ServerConfig configures the node side: rendezvous point, introduction
// point and descriptor directory (HSDir), one role in discovery
// (RoleRendezvous). Zero fields take the defaults named.
type ServerConfig struct {
	// Provide announces that this node stores the descriptor with the
	// given index (discovery: a DHT provider record of a key derived from
	// it). Nil stores without announcing.
	Provide func(ctx context.Context, index [32]byte) error
	// Self and HSDirView tie stored descriptors to the HSDir ring
	// (hsring.go): HSDirView returns the rendezvous-role nodes of this
	// node's discovery view, and a descriptor is stored only while Self is
	// among the hsdirAcceptRank lowest-ranked of them (with Self) for one
	// of its replicas; others are answered statusNotResponsible. Nil
	// HSDirView stores any valid descriptor.
	Self      peer.ID
	HSDirView func() []peer.ID
	// PeriodLen is the descriptor time period in seconds. Default
	// DefaultPeriodLen.
	PeriodLen uint32
	// IntroRate and IntroBurst bound introductions per introduction point
	// (per held stream), per second and in a burst. Default 5 and 20.
	IntroRate  float64
	IntroBurst int
	// RendezvousWait is how long a client's cookie waits for the service.
	// Default 60 s.
	RendezvousWait time.Duration
	// MaxWaiting, MaxIntros and MaxDescriptors cap what peers can make
	// this node hold. Defaults 4096, 4096 and 16384.
	MaxWaiting, MaxIntros, MaxDescriptors int
	// MaxSpliceBuffer caps, in bytes, the memory all rendezvous splices
	// together hold in their queues (rvconn.go): each end buffers up to
	// maxRVBuffer while they hold less, and at most minRVBuffer once they
	// hold this much, until they drain. This memory is not charged to the
	// circuit engine's budget (Limits.MemoryBudget). Default 64 MiB.
	MaxSpliceBuffer int64
	// Observe, if set, is told what this node learns: the kind of each
	// stream (a Target* constant) with the previous hop, and every chunk of
	// bytes it splices at a rendezvous. For tests and audits; must not block.
	Observe func(kind string, prev peer.ID, spliced []byte)
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultPeriodLen is the descriptor time period: one day, as Tor's.
const DefaultPeriodLen = 24 * 60 * 60

func (c *ServerConfig) defaults() {
	if c.PeriodLen == 0 {
		c.PeriodLen = DefaultPeriodLen
	}
	if c.IntroRate == 0 {
		c.IntroRate = 5
	}
	if c.IntroBurst == 0 {
		c.IntroBurst = 20
	}
	if c.RendezvousWait == 0 {
		c.RendezvousWait = 60 * time.Second
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 4096
	}
	if c.MaxIntros == 0 {
		c.MaxIntros = 4096
	}
	if c.MaxDescriptors == 0 {
		c.MaxDescriptors = 16384
	}
	if c.MaxSpliceBuffer <= 0 {
		c.MaxSpliceBuffer = 64 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server is the rendezvous role at the last hop: it splices client and
// service streams that present the same one-time cookie, forwards
// introductions to the service holding an introduction point, and stores
// descriptors. It sees only the previous hop of each circuit.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	targets map[cell.Target]string

	ctx    context.Context // canceled by Close; given to Serve
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve goroutines

	mu        sync.Mutex                  // guards waitingRV and every map below it
	waitingRV map[[cookieLen]byte]*rvConn // client cookies not yet joined
	// waitingPer counts the waiting cookies of each circuit (by the
	// circuit's session cookie at this hop); no zero entries.
	waitingPer map[[cell.CookieLen]byte]int
	// descPer counts the new indexes each circuit stored (by its session
	// cookie at this hop); it is cleared when it reaches MaxDescriptors
	// entries, which takes as many stored descriptors.
	descPer map[[cell.CookieLen]byte]int
	// holdsPer counts the live intro holds of each circuit; no zero
	// entries.
	holdsPer map[[cell.CookieLen]byte]int
	intros   map[[introIDLen]byte]*introHold // held introduction points
	descs    map[[32]byte]storedDesc         // descriptors by index

	// rvChunks recycles the chunks of every rvConn's read queue (a
	// sync.Pool: safe for concurrent use, not under mu).
	rvChunks sync.Pool // of *rvChunk
	// spliced is the chunk memory every rvConn's queue holds
	// (rvQueue.held), against MaxSpliceBuffer.
	spliced atomic.Int64

	// view and viewAt cache HSDirView for hsdirViewTTL, so that a flood
	// of descriptor puts does not copy the discovery view for each one.
	view   []peer.ID
	viewAt time.Time
	// mine caches IsResponsible's verdicts by index for view (a new map
	// with each view, at most maxMineCache), so that replaying one
	// descriptor does not rank the view again for each put.
	mine map[[32]byte]bool

	cookies  *replayCache // every cookie ever registered (reuse refused)
	intrSeen *replayCache // introductions forwarded (replay refused)
}

type rvWaiter struct {
	join chan net.Conn // the service's conn, once
	done chan struct{} // closed when the splice ends
}

type introHold struct {
	effort uint8 // proof of work asked of introductions
	// withNonce: forward each introduction's nonce too (TargetIntroHold;
	// not TargetIntroHoldV1), so the service checks the proof of work
	// itself.
	withNonce bool
	conn      net.Conn
	wmu       sync.Mutex // serializes forwarded introductions
	bucket    *tokenBucket
}

type storedDesc struct {
	raw      []byte
	revision uint64
	expires  time.Time
}

// NewServer returns a Server; register it with the last hop's Mux through
// Accept and Serve (circuit.Mux.HandleServe).
func NewServer(cfg ServerConfig) *Server {
	cfg.defaults()
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger.With("subsys", "rendezvous"),
		targets:    map[cell.Target]string{},
		waitingRV:  map[[cookieLen]byte]*rvConn{},
		waitingPer: map[[cell.CookieLen]byte]int{},
		descPer:    map[[cell.CookieLen]byte]int{},
		holdsPer:   map[[cell.CookieLen]byte]int{},
		intros:     map[[introIDLen]byte]*introHold{},
		descs:      map[[32]byte]storedDesc{},
		cookies:    newReplayCache(1<<16, 24*time.Hour),
		intrSeen:   newReplayCache(1<<16, 2*time.Duration(cfg.PeriodLen)*time.Second),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, t := range []string{TargetRendezvous, TargetIntroHold, TargetIntroHoldV1, TargetIntroduce, TargetDescPut, TargetDescGet} {
		pt, err := cell.ParseTarget(t)
		if err != nil {
			panic("rendezvous: bad constant target") // unreachable
		}
		s.targets[pt] = t
	}
	return s
}

// Begin is the rendezvous service's circuit.BeginFunc (register it with
// circuit.Mux.Handle for cell.ServiceRendezvous). A rendezvous stream gets
// an rvConn, which the engines of the two circuits splice through; the
// other streams get one end of a pipe served by Serve on a goroutine the
// Server owns.
func (s *Server) Begin(_ context.Context, req circuit.BeginRequest) (net.Conn, error) {
	if err := s.Accept(req); err != nil {
		return nil, err
	}
	if s.targets[req.Target] == TargetRendezvous {
		if s.cfg.Observe != nil {
			s.cfg.Observe(TargetRendezvous, req.Peer, nil)
		}
		return s.newRVConn(req), nil
	}
	ours, theirs := net.Pipe()
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("rendezvous: %w", circuit.ErrClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		stop := context.AfterFunc(s.ctx, func() { ours.Close() })
		defer stop()
		s.Serve(s.ctx, req, ours)
	}()
	return theirs, nil
}

// Close stops the Serve goroutines and waits for them. Safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Accept refuses, before CONNECTED, any target that is not one of ours.
func (s *Server) Accept(req circuit.BeginRequest) error {
	if _, ok := s.targets[req.Target]; !ok {
		return fmt.Errorf("rendezvous: %w", circuit.ErrServiceNotOffered)
	}
	return nil
}

// handshakeTimeout bounds each fixed-size request read from a stream.
const handshakeTimeout = 20 * time.Second

// Serve serves one intro or HSDir stream (a circuit.ServeFunc; Begin runs
// it). It closes conn. Rendezvous streams are served by Begin's rvConn.
func (s *Server) Serve(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
	defer conn.Close()
	kind := s.targets[req.Target]
	if s.cfg.Observe != nil {
		s.cfg.Observe(kind, req.Peer, nil)
	}
	conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	switch kind {
	case TargetIntroHold, TargetIntroHoldV1:
		s.serveIntroHold(ctx, req, conn, kind == TargetIntroHold)
	case TargetIntroduce:
		s.serveIntroduce(conn)
	case TargetDescPut:
		s.serveDescPut(ctx, req.Cookie, conn)
	case TargetDescGet:
		s.serveDescGet(conn)
	}
}

// introID is the intro ID an auth key may hold.
func introID(auth ed25519.PublicKey) (id [introIDLen]byte) {
	h := sha3.Sum256(append([]byte(introIDContext), auth...))
	copy(id[:], h[:])
	return id
}

// introHoldMessage is what the service signs to hold an intro point on one
// circuit: the context, the hop's session cookie of that circuit, the
// intro ID and the proof-of-work effort, so a hold cannot be replayed on
// another circuit nor its effort changed.
func introHoldMessage(cookie [cell.CookieLen]byte, id [introIDLen]byte, effort uint8) []byte {
	m := make([]byte, 0, len(introHoldContext)+len(cookie)+len(id)+1)
	m = append(m, introHoldContext...)
	m = append(m, cookie[:]...)
	m = append(m, id[:]...)
	return append(m, effort)
}

// maxHoldsPerCircuit caps the intro points one circuit holds (a service
// holds one per circuit), so that filling MaxIntros takes that many paid
// circuits rather than a few circuits of 64 streams.
const maxHoldsPerCircuit = 2

func (s *Server) serveIntroHold(ctx context.Context, req circuit.BeginRequest, conn net.Conn, withNonce bool) {
	var b [introIDLen + ed25519.PublicKeySize + 1 + ed25519.SignatureSize]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return
	}
	var id [introIDLen]byte
	copy(id[:], b[:introIDLen])
	auth := ed25519.PublicKey(b[introIDLen : introIDLen+32])
	effort := b[introIDLen+32]
	sig := b[introIDLen+33:]
	if effort > MaxPoWEffort || introID(auth) != id || !ed25519.Verify(auth, introHoldMessage(req.Cookie, id, effort), sig) {
		conn.Write([]byte{statusRefused})
		return
	}
	h := &introHold{effort: effort, withNonce: withNonce, conn: conn, bucket: newTokenBucket(s.cfg.IntroRate, s.cfg.IntroBurst, s.cfg.Now())}
	circ := req.Cookie
	s.mu.Lock()
	old := s.intros[id]
	if (old == nil && len(s.intros) >= s.cfg.MaxIntros) || s.holdsPer[circ] >= maxHoldsPerCircuit {
		s.mu.Unlock()
		conn.Write([]byte{statusRateLimited})
		return
	}
	s.intros[id] = h // the holder of the auth key moves it to a new circuit
	s.holdsPer[circ]++
	s.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
	defer func() {
		s.mu.Lock()
		if s.intros[id] == h {
			delete(s.intros, id)
		}
		if s.holdsPer[circ]--; s.holdsPer[circ] <= 0 {
			delete(s.holdsPer, circ)
		}
		s.mu.Unlock()
	}()
	if _, err := conn.Write([]byte{statusOK}); err != nil {
		return
	}
	conn.SetReadDeadline(time.Time{})
	// The service sends nothing more; a read returns when either side
	// closes the stream (or the Mux stops and closes it).
	var one [1]byte
	for {
		if _, err := conn.Read(one[:]); err != nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

func (s *Server) serveIntroduce(conn net.Conn) {
	var h [introIDLen + 2]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint16(h[introIDLen:]))
	if n == 0 || n > maxIntroLen {
		conn.Write([]byte{statusRefused})
		return
	}
	msg := make([]byte, n+powNonceLen)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return
	}
	var nonce [powNonceLen]byte
	copy(nonce[:], msg[n:])
	msg = msg[:n]
	var id [introIDLen]byte
	copy(id[:], h[:introIDLen])
	s.mu.Lock()
	hold := s.intros[id]
	s.mu.Unlock()
	now := s.cfg.Now()
	if hold == nil {
		conn.Write([]byte{statusNotFound})
		return
	}
	if !powOK(id, msg, nonce, hold.effort) {
		conn.Write([]byte{statusNeedPoW})
		return
	}
	if !hold.bucket.allow(now) {
		conn.Write([]byte{statusRateLimited})
		return
	}
	k, ok := replayKey(msg)
	if !ok {
		conn.Write([]byte{statusRefused})
		return
	}
	if s.intrSeen.seen(k, now) {
		conn.Write([]byte{statusReplay})
		return
	}
	fwd := make([]byte, 2, 2+n+powNonceLen)
	binary.BigEndian.PutUint16(fwd, uint16(n))
	fwd = append(fwd, msg...)
	if hold.withNonce {
		fwd = append(fwd, nonce[:]...)
	}
	hold.wmu.Lock()
	hold.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_, err := hold.conn.Write(fwd)
	hold.wmu.Unlock()
	if err != nil {
		conn.Write([]byte{statusNotFound})
		return
	}
	conn.Write([]byte{statusOK})
}

// maxDescsPerCircuit caps the new indexes one circuit may store (a
// service stores two, this period's and the next, per upload circuit), so
// that filling MaxDescriptors takes that many paid circuits rather than a
// few megabytes of traffic over one.
const maxDescsPerCircuit = 8

func (s *Server) serveDescPut(ctx context.Context, circ [cell.CookieLen]byte, conn net.Conn) {
	var h [2]byte
	if _, err := io.ReadFull(conn, h[:]); err != nil {
		return
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > MaxDescriptorLen {
		conn.Write([]byte{statusRefused})
		return
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(conn, raw); err != nil {
		return
	}
	now := s.cfg.Now()
	o, err := ParseOuter(raw)
	if err == nil {
		err = o.CheckPeriod(now, s.cfg.PeriodLen)
	}
	if err != nil {
		s.log.Debug("descriptor refused", "err", err)
		conn.Write([]byte{statusRefused})
		return
	}
	if s.cfg.HSDirView != nil && !s.responsible(o, now) {
		s.log.Debug("descriptor refused: not among its HSDirs in this view")
		conn.Write([]byte{statusNotResponsible})
		return
	}
	idx := o.Index()
	s.mu.Lock()
	old, had := s.descs[idx]
	if had && old.revision >= o.Revision {
		s.mu.Unlock()
		conn.Write([]byte{statusReplay})
		return
	}
	if !had && s.descPer[circ] >= maxDescsPerCircuit {
		s.mu.Unlock()
		conn.Write([]byte{statusRateLimited})
		return
	}
	if !had && len(s.descs) >= s.cfg.MaxDescriptors {
		for k, d := range s.descs {
			if !now.Before(d.expires) {
				delete(s.descs, k)
			}
		}
		if len(s.descs) >= s.cfg.MaxDescriptors {
			s.mu.Unlock()
			conn.Write([]byte{statusRateLimited})
			return
		}
	}
	// The expiry is the signer's claim: keep a descriptor no longer than
	// the end of the period after its own (a service's own descriptors end
	// half a period earlier), so that stale ones are not served for ever
	// and eviction of expired entries can free a full store.
	expires := o.Expires
	if limit := periodStart(o.Period+2, s.cfg.PeriodLen); expires.After(limit) {
		expires = limit
	}
	s.descs[idx] = storedDesc{raw: raw, revision: o.Revision, expires: expires}
	if !had {
		if len(s.descPer) >= s.cfg.MaxDescriptors {
			clear(s.descPer)
		}
		s.descPer[circ]++
	}
	s.mu.Unlock()
	conn.Write([]byte{statusOK})
	if s.cfg.Provide != nil && !had {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.cfg.Provide(pctx, idx)
		cancel()
		if err != nil {
			s.log.Debug("descriptor stored but not announced", "err", err)
		}
	}
}

// hsdirViewTTL is how long the Server uses one HSDirView answer.
const hsdirViewTTL = 5 * time.Second

// maxMineCache bounds the verdicts Server.mine holds.
const maxMineCache = 4096

// responsible reports whether this HSDir is responsible for o by its view
// (IsResponsible), from the cache while the view is fresh.
func (s *Server) responsible(o *Outer, now time.Time) bool {
	idx := o.Index()
	v, mine := s.hsdirView(now)
	s.mu.Lock()
	ok, had := mine[idx]
	s.mu.Unlock()
	if had {
		return ok
	}
	ok = IsResponsible(s.cfg.Self, v, o.Blinded, o.Period, o.PeriodLen, hsdirAcceptRank)
	s.mu.Lock()
	if len(mine) < maxMineCache { // the view's own map: a newer view has its own
		mine[idx] = ok
	}
	s.mu.Unlock()
	return ok
}

// hsdirView returns HSDirView's answer, at most hsdirViewTTL old, and the
// verdicts cached for it (guarded by s.mu).
func (s *Server) hsdirView(now time.Time) ([]peer.ID, map[[32]byte]bool) {
	s.mu.Lock()
	v, at, mine := s.view, s.viewAt, s.mine
	s.mu.Unlock()
	if v != nil && now.Sub(at) < hsdirViewTTL && !now.Before(at) {
		return v, mine
	}
	v = s.cfg.HSDirView()
	if v == nil {
		v = []peer.ID{}
	}
	mine = make(map[[32]byte]bool)
	s.mu.Lock()
	s.view, s.viewAt, s.mine = v, now, mine
	s.mu.Unlock()
	return v, mine
}

func (s *Server) serveDescGet(conn net.Conn) {
	var idx [32]byte
	if _, err := io.ReadFull(conn, idx[:]); err != nil {
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	d, ok := s.descs[idx]
	if ok && !now.Before(d.expires) {
		delete(s.descs, idx)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		conn.Write([]byte{statusNotFound})
		return
	}
	out := make([]byte, 3, 3+len(d.raw))
	out[0] = statusOK
	binary.BigEndian.PutUint16(out[1:], uint16(len(d.raw)))
	conn.Write(append(out, d.raw...))
}
