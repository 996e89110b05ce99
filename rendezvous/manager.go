package rendezvous

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/flynn/noise"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// Port maps a virtual port of an onion service to a local target.
type Port struct {
	// Virtual is the port clients connect to (the .onion's port).
	Virtual uint16
	// Target is host:port this node dials for it; loopback only unless
	// Config.AllowNonLoopbackTargets.
	Target string
}

// ServiceInfo describes one published service.
type ServiceInfo struct {
	Address   string // "<56 chars>.onion"
	ServiceID string // the address without ".onion"
	Ports     []Port
	// Intros is how many introduction points are held now, and
	// IntroPeers the nodes they are on (up or being re-established).
	Intros     int
	IntroPeers []peer.ID
	// Published is set once a descriptor was stored on an HSDir.
	Published bool
	// FailedIntroductions counts introductions the service read but
	// answered with no rendezvous (undecryptable, replayed, for a port
	// not published, naming a rendezvous point this node's discovery does
	// not know, or whose circuit or handshake failed).
	FailedIntroductions uint64
	// PoWRefused counts introductions an intro point forwarded without
	// the proof of work this service asks (Config.PoWEffort), dropped by
	// the service before anything else: an intro point that lets them
	// through skips its check or colludes in a flood.
	PoWRefused uint64
}

// Config wires a Manager to the node: circuits, node choice and discovery
// come in as funcs (node/rendezvous.go). Build, Pick, Find and
// RendezvousPoint are required.
type Config struct {
	// Build builds a circuit whose last hop is last: entry guard, then the
	// via hops in order, then a fresh middle, then last. via is nil except
	// for the service's circuits, which pass one layer-2 vanguard.
	Build func(ctx context.Context, last circuit.HopInfo, via []circuit.HopInfo) (*circuit.Circuit, error)
	// Pick returns up to n distinct nodes of the rendezvous role (which
	// are also intro points and HSDirs), none in exclude, chosen at random
	// by the node's path weights.
	Pick func(ctx context.Context, n int, exclude []peer.ID) ([]circuit.HopInfo, error)
	// Relays lists relays the vanguard set may draw from. Nil disables
	// vanguards (the service's circuits are then 3 hops).
	Relays func(ctx context.Context) ([]circuit.HopInfo, error)
	// HSDirView returns the rendezvous-role nodes of this node's discovery
	// view (this node too when it has the role): the nodes the HSDir ring
	// (hsring.go) ranks. A service stores its descriptors on the
	// responsible ones and a client fetches from them. Nil falls back to
	// random HSDirs (Pick) for storing and Find for fetching.
	HSDirView func(ctx context.Context) ([]circuit.HopInfo, error)
	// Find returns nodes that announced they store the descriptor index
	// (DHT provider records). With HSDirView it is asked only when no
	// HSDir of the ring had the descriptor; nil skips that fallback.
	Find func(ctx context.Context, index [32]byte, max int) ([]circuit.HopInfo, error)
	// RendezvousPoint returns the hop of p from this node's own view (a
	// fresh, verified advert with the rendezvous role), or false. A
	// service builds to the rendezvous point a client names only through
	// it, with its addresses and onion key, never the client's. It must
	// not ask p itself (that would be a direct, unanonymised connection
	// from the service's node to a node the client chose).
	RendezvousPoint func(p peer.ID) (circuit.HopInfo, bool)
	// DialTarget dials a Port.Target for an inbound stream. Default: a
	// net.Dialer limited to loopback targets.
	DialTarget func(ctx context.Context, target string) (net.Conn, error)
	// AllowNonLoopbackTargets lets the default DialTarget dial any address.
	AllowNonLoopbackTargets bool
	// PeriodLen is the descriptor period in seconds; default
	// DefaultPeriodLen. Every node of a network must agree.
	PeriodLen uint32
	// IntroPoints per service (default 3) and HSDirs per replica of the
	// HSDir ring a service stores on (default DefaultHSDirSpread; without
	// HSDirView, the number of random HSDirs).
	IntroPoints, HSDirs int
	// DescFetchTimeout bounds each of the parallel descriptor fetches of
	// a client (circuit to the HSDir and its answer), so a silent HSDir
	// delays a lookup by at most this much; default 15 s.
	DescFetchTimeout time.Duration
	// Republish is how often descriptors are uploaded again; default 1 h.
	Republish time.Duration
	// BuildTimeout bounds each circuit this Manager builds (a dead node in
	// a descriptor or an introduction must not hold a connection for
	// long); default 10 s.
	BuildTimeout time.Duration
	// IntroTimeout is how long a client waits at the rendezvous point for
	// the service after its introduction was accepted; default 30 s.
	IntroTimeout time.Duration
	// MaxPendingRendezvous caps the rendezvous circuits one service builds
	// at once (what an introduction flood can cost it); default 32.
	MaxPendingRendezvous int
	// PoWEffort is the proof of work (leading zero bits of a hash, at most
	// MaxPoWEffort) this node's services ask of each introduction, checked
	// by the intro points before their rate limit and again by the service
	// before its own; 0 asks none. Default 0.
	PoWEffort uint8
	// Vanguards tunes the service's layer-2 vanguard set.
	Vanguards VanguardConfig
	Now       func() time.Time
	Logger    *slog.Logger
}

func (c *Config) defaults() error {
	if c.Build == nil || c.Pick == nil || (c.Find == nil && c.HSDirView == nil) || c.RendezvousPoint == nil {
		return errors.New("rendezvous: Config needs Build, Pick, HSDirView or Find, and RendezvousPoint")
	}
	if c.PeriodLen == 0 {
		c.PeriodLen = DefaultPeriodLen
	}
	if c.PoWEffort > MaxPoWEffort {
		return errPoWTooHard
	}
	if c.IntroPoints == 0 {
		c.IntroPoints = 3
	}
	if c.HSDirs == 0 {
		c.HSDirs = DefaultHSDirSpread
	}
	if c.Republish == 0 {
		c.Republish = time.Hour
	}
	if c.BuildTimeout == 0 {
		c.BuildTimeout = 10 * time.Second
	}
	if c.DescFetchTimeout == 0 {
		c.DescFetchTimeout = 15 * time.Second
	}
	if c.IntroTimeout == 0 {
		c.IntroTimeout = 30 * time.Second
	}
	if c.MaxPendingRendezvous == 0 {
		c.MaxPendingRendezvous = 32
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DialTarget == nil {
		c.DialTarget = loopbackDialer(c.AllowNonLoopbackTargets)
	}
	if c.Relays == nil {
		c.Vanguards.Off = true
	}
	return nil
}

// loopbackDialer dials targets; unless any, only loopback addresses and
// "localhost".
func loopbackDialer(any bool) func(ctx context.Context, target string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, target string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			return nil, fmt.Errorf("rendezvous: target: %w", err)
		}
		if !any {
			if host == "localhost" {
				host = "127.0.0.1"
			}
			a, err := netip.ParseAddr(host)
			if err != nil || !a.IsLoopback() {
				return nil, errors.New("rendezvous: target is not a loopback address")
			}
		}
		return d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	}
}

// serviceReplayCap is how many introductions a service remembers (per
// publication; a new Publish has a new static key, so older ones no
// longer decrypt).
const serviceReplayCap = 1 << 14

// ErrDuplicate: Publish of a key already published here.
var ErrDuplicate = errors.New("rendezvous: onion service already published")

// Manager publishes onion services of this node and dials other ones. It
// is the API the control port (ADD_ONION/DEL_ONION) and the client's
// .onion branch use.
type Manager struct {
	cfg Config
	log *slog.Logger
	vg  *vanguardSet

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex // guards services, descs, closed
	services map[string]*service
	descs    map[[32]byte]*Descriptor // client's descriptor cache by index
	closed   bool

	// fetch asks one HSDir for the descriptor of an index: fetchDescriptor
	// except in tests.
	fetch func(ctx context.Context, dir circuit.HopInfo, idx [32]byte) ([]byte, error)
}

// New returns a Manager; Close stops every service it published.
func New(cfg Config) (*Manager, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var seed [32]byte
	rand.Read(seed[:])
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Logger.With("subsys", "rendezvous"),
		vg:       newVanguardSet(cfg.Vanguards, mrand.New(mrand.NewChaCha8(seed))),
		ctx:      ctx,
		cancel:   cancel,
		services: map[string]*service{},
		descs:    map[[32]byte]*Descriptor{},
	}
	m.fetch = m.fetchDescriptor
	return m, nil
}

// Close unpublishes every service and waits for their goroutines.
func (m *Manager) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}

// via returns the vanguard hops for one service circuit.
func (m *Manager) via(ctx context.Context) []circuit.HopInfo {
	if m.cfg.Vanguards.Off {
		return nil
	}
	cands, err := m.cfg.Relays(ctx)
	if err != nil {
		return nil
	}
	return m.vg.pick(m.cfg.Now(), cands)
}

// Publish starts serving key's onion service on ports: it holds
// introduction points and stores descriptors for the current and the next
// period on HSDirs, and returns once one descriptor is stored or ctx ends
// (the service stays and keeps trying). Inbound streams for a virtual port
// are dialled to its Target.
func (m *Manager) Publish(ctx context.Context, key Key, ports []Port) (ServiceInfo, error) {
	if len(ports) == 0 {
		return ServiceInfo{}, errors.New("rendezvous: no ports")
	}
	for _, p := range ports {
		if p.Virtual == 0 {
			return ServiceInfo{}, errors.New("rendezvous: virtual port 0")
		}
		if _, _, err := net.SplitHostPort(p.Target); err != nil {
			return ServiceInfo{}, fmt.Errorf("rendezvous: port target: %w", err)
		}
	}
	static, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		return ServiceInfo{}, err
	}
	addr := key.Address()
	sctx, cancel := context.WithCancel(m.ctx)
	s := &service{
		m: m, key: key, signer: signerOf(key), addr: addr, ports: slices.Clone(ports),
		static: static, ctx: sctx, cancel: cancel,
		replay:    newReplayCache(serviceReplayCap, 2*time.Duration(m.cfg.PeriodLen)*time.Second),
		sem:       make(chan struct{}, m.cfg.MaxPendingRendezvous),
		changed:   make(chan struct{}, 1),
		published: make(chan struct{}),
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel()
		return ServiceInfo{}, ErrClosed
	}
	if _, ok := m.services[addr]; ok {
		m.mu.Unlock()
		cancel()
		return ServiceInfo{}, ErrDuplicate
	}
	m.services[addr] = s
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s.run()
	}()
	select {
	case <-s.published:
	case <-ctx.Done():
	case <-sctx.Done():
	}
	return s.info(), nil
}

// Unpublish stops the service at address ("<id>.onion" or "<id>"); its
// introduction points close, so clients can no longer reach it.
func (m *Manager) Unpublish(address string) error {
	if len(address) == onionaddr.IDLen {
		address += onionaddr.Suffix
	}
	m.mu.Lock()
	s, ok := m.services[address]
	delete(m.services, address)
	m.mu.Unlock()
	if !ok {
		return ErrUnknownService
	}
	s.cancel()
	s.wg.Wait()
	return nil
}

// Services lists the published services, sorted by address.
func (m *Manager) Services() []ServiceInfo {
	m.mu.Lock()
	var out []ServiceInfo
	for _, s := range m.services {
		out = append(out, s.info())
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b ServiceInfo) int {
		if a.Address < b.Address {
			return -1
		}
		if a.Address > b.Address {
			return 1
		}
		return 0
	})
	return out
}

// build is cfg.Build within BuildTimeout. A vanguard at which the build
// failed (hop 2, after the guard) is dropped from the set.
func (m *Manager) build(ctx context.Context, last circuit.HopInfo, via []circuit.HopInfo) (*circuit.Circuit, error) {
	bctx, cancel := context.WithTimeout(ctx, m.cfg.BuildTimeout)
	defer cancel()
	c, err := m.cfg.Build(bctx, last, via)
	var be *circuit.BuildError
	if err != nil && len(via) > 0 && errors.As(err, &be) && be.Hop == 1 {
		m.vg.drop(via[0])
	}
	return c, err
}

// buildService builds a service circuit through a vanguard, once more
// with another vanguard if the first build fails.
func (m *Manager) buildService(ctx context.Context, last circuit.HopInfo) (*circuit.Circuit, error) {
	c, err := m.build(ctx, last, m.via(ctx))
	if err != nil && ctx.Err() == nil {
		c, err = m.build(ctx, last, m.via(ctx))
	}
	return c, err
}

// hopOf turns descriptor/introduction node fields into a HopInfo.
func hopOf(peerB []byte, onion [32]byte, addrs [][]byte) (circuit.HopInfo, error) {
	id, err := peer.IDFromBytes(peerB)
	if err != nil {
		return circuit.HopInfo{}, err
	}
	h := circuit.HopInfo{Peer: id, OnionKey: onion}
	for _, a := range addrs {
		if m, err := ma.NewMultiaddrBytes(a); err == nil {
			h.Addrs = append(h.Addrs, m)
		}
	}
	return h, nil
}

// nodeFields is the inverse of hopOf.
func nodeFields(h circuit.HopInfo) (peerB []byte, addrs [][]byte) {
	for _, a := range h.Addrs {
		if len(addrs) < maxIntroAddrs && len(a.Bytes()) <= maxAddrLen {
			addrs = append(addrs, a.Bytes())
		}
	}
	return []byte(h.Peer), addrs
}

func mustTarget(s string) cell.Target {
	t, err := cell.ParseTarget(s)
	if err != nil {
		panic("rendezvous: bad constant target") // unreachable
	}
	return t
}

var (
	targetRendezvous = mustTarget(TargetRendezvous)
	targetIntroHold  = mustTarget(TargetIntroHold)
	targetIntroduce  = mustTarget(TargetIntroduce)
	targetDescPut    = mustTarget(TargetDescPut)
	targetDescGet    = mustTarget(TargetDescGet)
)

// readStatus reads one status byte from st within d.
func readStatus(st net.Conn, d time.Duration) (byte, error) {
	st.SetReadDeadline(time.Now().Add(d))
	defer st.SetReadDeadline(time.Time{})
	var b [1]byte
	if _, err := io.ReadFull(st, b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

// writeFrame16 writes len(2) | b.
func appendFrame16(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// readFrame16 reads len(2) | b with b at most max bytes.
func readFrame16(r io.Reader, max int) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n == 0 || n > max {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// newAuthKey returns a fresh intro-point auth key and its intro ID.
func newAuthKey() (ed25519.PrivateKey, [introIDLen]byte) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	return priv, introID(priv.Public().(ed25519.PublicKey))
}
