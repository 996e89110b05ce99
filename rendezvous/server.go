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
	TargetIntroHold  = "intro:1" // a service holds an introduction point
	TargetIntroduce  = "intro:2" // a client introduces itself
	TargetDescPut    = "hsdir:1" // a service stores a descriptor
	TargetDescGet    = "hsdir:2" // a client fetches a descriptor
)

// Status bytes the server answers with (PROTOCOL.md §7.3).
const (
	statusOK          byte = 0
	statusRefused     byte = 1 // malformed, bad signature, wrong period, unknown cookie
	statusRateLimited byte = 2
	statusReplay      byte = 3
	statusNotFound    byte = 4
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

	mu      sync.Mutex                      // guards waiting, intros, descs
	waiting map[[cookieLen]byte]*rvWaiter   // client cookies not yet joined
	intros  map[[introIDLen]byte]*introHold // held introduction points
	descs   map[[32]byte]storedDesc         // descriptors by index

	cookies  *replayCache // every cookie ever registered (reuse refused)
	intrSeen *replayCache // introductions forwarded (replay refused)
}

type rvWaiter struct {
	join chan net.Conn // the service's conn, once
	done chan struct{} // closed when the splice ends
}

type introHold struct {
	conn   net.Conn
	wmu    sync.Mutex // serializes forwarded introductions
	bucket *tokenBucket
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
		cfg:      cfg,
		log:      cfg.Logger.With("subsys", "rendezvous"),
		targets:  map[cell.Target]string{},
		waiting:  map[[cookieLen]byte]*rvWaiter{},
		intros:   map[[introIDLen]byte]*introHold{},
		descs:    map[[32]byte]storedDesc{},
		cookies:  newReplayCache(1<<16, 24*time.Hour),
		intrSeen: newReplayCache(1<<16, 2*time.Duration(cfg.PeriodLen)*time.Second),
	}
	for _, t := range []string{TargetRendezvous, TargetIntroHold, TargetIntroduce, TargetDescPut, TargetDescGet} {
		pt, err := cell.ParseTarget(t)
		if err != nil {
			panic("rendezvous: bad constant target") // unreachable
		}
		s.targets[pt] = t
	}
	return s
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

// Serve serves one stream (a circuit.ServeFunc). It closes conn.
func (s *Server) Serve(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
	defer conn.Close()
	kind := s.targets[req.Target]
	if s.cfg.Observe != nil {
		s.cfg.Observe(kind, req.Peer, nil)
	}
	conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	switch kind {
	case TargetRendezvous:
		s.serveRendezvous(ctx, req, conn)
	case TargetIntroHold:
		s.serveIntroHold(ctx, req, conn)
	case TargetIntroduce:
		s.serveIntroduce(conn)
	case TargetDescPut:
		s.serveDescPut(ctx, conn)
	case TargetDescGet:
		s.serveDescGet(conn)
	}
}

func (s *Server) serveRendezvous(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
	var b [1 + cookieLen]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return
	}
	var cookie [cookieLen]byte
	copy(cookie[:], b[1:])
	now := s.cfg.Now()
	switch b[0] {
	case rvClient:
		var key [32]byte
		copy(key[:], cookie[:])
		s.mu.Lock()
		_, dup := s.waiting[cookie]
		full := len(s.waiting) >= s.cfg.MaxWaiting
		var w *rvWaiter
		if !dup && !full && !s.cookies.seen(key, now) {
			w = &rvWaiter{join: make(chan net.Conn, 1), done: make(chan struct{})}
			s.waiting[cookie] = w
		}
		s.mu.Unlock()
		if w == nil {
			st := statusReplay
			if full && !dup {
				st = statusRateLimited
			}
			conn.Write([]byte{st})
			return
		}
		defer close(w.done)
		if _, err := conn.Write([]byte{statusOK}); err != nil {
			s.dropWaiter(cookie, w)
			return
		}
		conn.SetReadDeadline(time.Time{})
		t := time.NewTimer(s.cfg.RendezvousWait)
		defer t.Stop()
		select {
		case svc := <-w.join:
			s.splice(req.Peer, conn, svc)
		case <-t.C:
			s.dropWaiter(cookie, w)
		case <-ctx.Done():
			s.dropWaiter(cookie, w)
		}
	case rvService:
		s.mu.Lock()
		w := s.waiting[cookie]
		delete(s.waiting, cookie)
		s.mu.Unlock()
		if w == nil {
			conn.Write([]byte{statusNotFound})
			return
		}
		if _, err := conn.Write([]byte{statusOK}); err != nil {
			close(w.join) // the client's side gives up at once
			return
		}
		conn.SetReadDeadline(time.Time{})
		w.join <- conn
		select { // conn is the splice's now; it closes it
		case <-w.done:
		case <-ctx.Done():
		}
	default:
		conn.Write([]byte{statusRefused})
	}
}

func (s *Server) dropWaiter(cookie [cookieLen]byte, w *rvWaiter) {
	s.mu.Lock()
	if s.waiting[cookie] == w {
		delete(s.waiting, cookie)
	}
	s.mu.Unlock()
	// A service that took the waiter just before it was dropped gets its
	// conn closed here.
	select {
	case c, ok := <-w.join:
		if ok && c != nil {
			c.Close()
		}
	default:
	}
}

// splice copies between the client's and the service's streams until one
// side ends, then closes both. It sees only end-to-end ciphertext.
func (s *Server) splice(_ peer.ID, client, svc net.Conn) {
	if svc == nil {
		return
	}
	defer svc.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32*1024)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if s.cfg.Observe != nil {
					s.cfg.Observe(TargetRendezvous, "", append([]byte(nil), buf[:n]...))
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go cp(svc, client)
	go cp(client, svc)
	<-done
	client.Close()
	svc.Close()
	<-done
}

// introID is the intro ID an auth key may hold.
func introID(auth ed25519.PublicKey) (id [introIDLen]byte) {
	h := sha3.Sum256(append([]byte(introIDContext), auth...))
	copy(id[:], h[:])
	return id
}

// introHoldMessage is what the service signs to hold an intro point on one
// circuit: the context, the hop's session cookie of that circuit and the
// intro ID, so a hold cannot be replayed on another circuit.
func introHoldMessage(cookie [cell.CookieLen]byte, id [introIDLen]byte) []byte {
	m := make([]byte, 0, len(introHoldContext)+len(cookie)+len(id))
	m = append(m, introHoldContext...)
	m = append(m, cookie[:]...)
	return append(m, id[:]...)
}

func (s *Server) serveIntroHold(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
	var b [introIDLen + ed25519.PublicKeySize + ed25519.SignatureSize]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return
	}
	var id [introIDLen]byte
	copy(id[:], b[:introIDLen])
	auth := ed25519.PublicKey(b[introIDLen : introIDLen+32])
	sig := b[introIDLen+32:]
	if introID(auth) != id || !ed25519.Verify(auth, introHoldMessage(req.Cookie, id), sig) {
		conn.Write([]byte{statusRefused})
		return
	}
	h := &introHold{conn: conn, bucket: newTokenBucket(s.cfg.IntroRate, s.cfg.IntroBurst, s.cfg.Now())}
	s.mu.Lock()
	old := s.intros[id]
	if old == nil && len(s.intros) >= s.cfg.MaxIntros {
		s.mu.Unlock()
		conn.Write([]byte{statusRateLimited})
		return
	}
	s.intros[id] = h // the holder of the auth key moves it to a new circuit
	s.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
	defer func() {
		s.mu.Lock()
		if s.intros[id] == h {
			delete(s.intros, id)
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
	msg := make([]byte, n)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return
	}
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
	fwd := make([]byte, 2, 2+n)
	binary.BigEndian.PutUint16(fwd, uint16(n))
	fwd = append(fwd, msg...)
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

func (s *Server) serveDescPut(ctx context.Context, conn net.Conn) {
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
	idx := o.Index()
	s.mu.Lock()
	old, had := s.descs[idx]
	if had && old.revision >= o.Revision {
		s.mu.Unlock()
		conn.Write([]byte{statusReplay})
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
	s.descs[idx] = storedDesc{raw: raw, revision: o.Revision, expires: o.Expires}
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
