package rendezvous

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// service is one published onion service. Its goroutines are owned by wg
// and stop when ctx ends (Unpublish or Manager.Close).
type service struct {
	m      *Manager
	key    Key
	signer *expandedSigner
	addr   string
	ports  []Port
	static noise.DHKey // Noise static key of this publication (descriptor EncKey)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	replay  *replayCache  // introductions already answered
	sem     chan struct{} // rendezvous circuits being built
	changed chan struct{} // an intro point came up or went down

	mu        sync.Mutex // guards intros
	intros    []*introSlot
	published chan struct{} // closed after the first stored descriptor
	pubOnce   sync.Once
	pubDone   atomic.Bool
	revision  atomic.Uint64
	// introFailed counts introductions that read off a held intro point
	// but ended without a rendezvous (bad, replayed, unknown port or
	// rendezvous point, circuit or handshake failure).
	introFailed atomic.Uint64
	// powRefused counts introductions dropped for too little proof of
	// work (the intro point should have refused them).
	powRefused atomic.Uint64
}

// introSlot is one introduction point the service holds.
type introSlot struct {
	// hop, auth and id are replaced only by the slot's own goroutine,
	// under service.mu.
	hop  circuit.HopInfo
	auth ed25519.PrivateKey
	id   [introIDLen]byte
	up   bool // guarded by service.mu
}

func (s *service) info() ServiceInfo {
	s.mu.Lock()
	n := 0
	var peers []peer.ID
	for _, sl := range s.intros {
		if sl.up {
			n++
		}
		peers = append(peers, sl.hop.Peer)
	}
	s.mu.Unlock()
	return ServiceInfo{
		Address: s.addr, ServiceID: s.addr[:len(s.addr)-len(".onion")],
		Ports: append([]Port(nil), s.ports...), Intros: n, IntroPeers: peers, Published: s.pubDone.Load(),
		FailedIntroductions: s.introFailed.Load(),
		PoWRefused:          s.powRefused.Load(),
	}
}

func (s *service) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run picks introduction points, holds them and publishes descriptors
// until ctx ends.
func (s *service) run() {
	defer s.wg.Wait()
	cfg := &s.m.cfg
	var hops []circuit.HopInfo
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		var err error
		hops, err = cfg.Pick(s.ctx, cfg.IntroPoints, nil)
		if err == nil && len(hops) > 0 {
			break
		}
		s.m.log.Info("no introduction points yet", "err", err)
		if !sleepCtx(s.ctx, wait) {
			return
		}
	}
	s.mu.Lock()
	for _, h := range hops {
		auth, id := newAuthKey()
		s.intros = append(s.intros, &introSlot{hop: h, auth: auth, id: id})
	}
	slots := append([]*introSlot(nil), s.intros...)
	s.mu.Unlock()
	for _, sl := range slots {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.holdLoop(sl)
		}()
	}
	s.publishLoop()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// holdLoop keeps one introduction point up: after three failures in a
// row it moves to another node with a fresh auth key.
func (s *service) holdLoop(sl *introSlot) {
	fails := 0
	for s.ctx.Err() == nil {
		wasUp, err := s.hold(sl)
		s.mu.Lock()
		sl.up = false
		s.mu.Unlock()
		if wasUp {
			s.signal()
			fails = 0
		}
		if s.ctx.Err() != nil {
			return
		}
		fails++
		s.m.log.Debug("introduction point lost", "err", err, "fails", fails)
		if fails >= 3 {
			s.replaceIntro(sl)
			fails = 0
		}
		if !sleepCtx(s.ctx, min(time.Duration(fails)*500*time.Millisecond, 30*time.Second)) {
			return
		}
	}
}

// replaceIntro moves sl to a node no other slot uses.
func (s *service) replaceIntro(sl *introSlot) {
	s.mu.Lock()
	var excl []peer.ID
	for _, o := range s.intros {
		excl = append(excl, o.hop.Peer)
	}
	s.mu.Unlock()
	hops, err := s.m.cfg.Pick(s.ctx, 1, excl)
	if err != nil || len(hops) == 0 {
		return
	}
	auth, id := newAuthKey()
	s.mu.Lock()
	sl.hop, sl.auth, sl.id = hops[0], auth, id
	s.mu.Unlock()
}

// hold builds a circuit to the slot's node, registers the intro ID and
// reads introductions until the stream or circuit ends.
func (s *service) hold(sl *introSlot) (wasUp bool, err error) {
	s.mu.Lock()
	hop, auth, id := sl.hop, sl.auth, sl.id
	s.mu.Unlock()
	bctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	c, err := s.m.buildService(bctx, hop)
	if err != nil {
		return false, fmt.Errorf("intro circuit: %w", err)
	}
	defer c.Close()
	st, err := c.Dial(bctx, cell.ServiceRendezvous, targetIntroHold)
	if err != nil {
		return false, fmt.Errorf("intro hold: %w", err)
	}
	defer st.Close()
	cookie := c.Cookie(len(c.Path()) - 1)
	effort := s.m.cfg.PoWEffort
	msg := make([]byte, 0, introIDLen+32+1+64)
	msg = append(msg, id[:]...)
	msg = append(msg, auth.Public().(ed25519.PublicKey)...)
	msg = append(msg, effort)
	msg = append(msg, ed25519.Sign(auth, introHoldMessage(cookie, id, effort))...)
	if _, err := st.Write(msg); err != nil {
		return false, err
	}
	stt, err := readStatus(st, handshakeTimeout)
	if err != nil || stt != statusOK {
		return false, fmt.Errorf("intro hold refused (status %d): %v", stt, err)
	}
	s.mu.Lock()
	sl.up = true
	s.mu.Unlock()
	s.signal()
	stop := context.AfterFunc(s.ctx, func() { st.Close() })
	defer stop()
	bucket := newTokenBucket(serviceIntroRate, serviceIntroBurst, s.m.cfg.Now())
	for {
		msg, err := readFrame16(st, maxIntroLen)
		var nonce [powNonceLen]byte
		if err == nil {
			_, err = io.ReadFull(st, nonce[:])
		}
		if err != nil {
			return true, err
		}
		s.dispatch(id, msg, nonce, bucket)
	}
}

// The rate and burst of introductions a service answers per held
// introduction point: the intro point's own defaults (ServerConfig
// IntroRate/IntroBurst), enforced here too because a malicious intro
// point skips its own limit and proof of work, and each answer is a
// rendezvous circuit the service builds and pays for.
const (
	serviceIntroRate  = 5
	serviceIntroBurst = 20
)

// dispatch answers one introduction read from a held intro point on a
// goroutine of s, unless its proof of work falls short of this service's
// own effort (Config.PoWEffort: the intro point's check is not trusted, a
// colluding or lazy one would skip it), the point's bucket is empty or too
// many rendezvous are in progress; it reports whether it started one. The
// proof of work is checked first, so that introductions without it cost
// one hash and take no token from real ones.
func (s *service) dispatch(id [introIDLen]byte, msg []byte, nonce [powNonceLen]byte, bucket *tokenBucket) bool {
	if !powOK(id, msg, nonce, s.m.cfg.PoWEffort) {
		s.powRefused.Add(1)
		s.m.log.Debug("introduction dropped: not enough proof of work")
		return false
	}
	if !bucket.allow(s.m.cfg.Now()) {
		s.m.log.Debug("introduction dropped: intro point over its rate")
		return false
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.m.log.Debug("introduction dropped: too many rendezvous in progress")
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var once sync.Once
		release := func() { once.Do(func() { <-s.sem }) }
		defer release()
		if err := s.rendezvous(id, msg, release); err != nil {
			s.introFailed.Add(1)
			s.m.log.Debug("rendezvous failed", "err", err)
		}
	}()
	return true
}

// publishLoop uploads descriptors whenever the set of live introduction
// points changes, and every Republish.
func (s *service) publishLoop() {
	t := time.NewTicker(s.m.cfg.Republish)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.changed:
		case <-t.C:
		}
		// Let the other intro points come up before publishing.
		sleepCtx(s.ctx, 50*time.Millisecond)
		for {
			err := s.publishOnce()
			if err == nil || s.ctx.Err() != nil {
				break
			}
			s.m.log.Info("descriptor not published; retrying", "err", err)
			if !sleepCtx(s.ctx, 2*time.Second) {
				return
			}
		}
	}
}

// publishOnce uploads descriptors for the current and the next period.
func (s *service) publishOnce() error {
	cfg := &s.m.cfg
	s.mu.Lock()
	var ips []IntroPoint
	for _, sl := range s.intros {
		if !sl.up {
			continue
		}
		pb, addrs := nodeFields(sl.hop)
		ips = append(ips, IntroPoint{ID: sl.id, Peer: pb, OnionKey: sl.hop.OnionKey, Addrs: addrs})
	}
	s.mu.Unlock()
	if len(ips) == 0 {
		return errors.New("no introduction point is up")
	}
	now := cfg.Now()
	cur := PeriodOf(now, cfg.PeriodLen)
	rev := max(uint64(now.UnixNano()), s.revision.Load()+1)
	s.revision.Store(rev)
	var (
		raws    [][]byte
		blinded []ed25519.PublicKey
	)
	for _, p := range []uint64{cur, cur + 1} {
		d := &Descriptor{Period: p, PeriodLen: cfg.PeriodLen, Revision: rev, Intros: ips, PoWEffort: cfg.PoWEffort,
			Expires: periodStart(p+1, cfg.PeriodLen).Add(time.Duration(cfg.PeriodLen) * time.Second / 2)}
		copy(d.EncKey[:], s.static.Public)
		signer := s.signer.blind(p, uint64(cfg.PeriodLen))
		raw, err := encodeDescriptor(d, s.key.Public(), signer)
		if err != nil {
			return err
		}
		raws = append(raws, raw)
		blinded = append(blinded, signer.Public())
	}
	ctx, cancel := context.WithTimeout(s.ctx, 60*time.Second)
	defer cancel()
	plan, err := s.uploadPlan(ctx, []uint64{cur, cur + 1}, blinded, raws)
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		ok   atomic.Int32
		errs = make([]error, len(plan))
	)
	for i, u := range plan {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Published means this period's descriptor is stored somewhere.
			stored, err := s.upload(ctx, u.dir, u.raws)
			errs[i] = err
			if stored && u.current {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() == 0 {
		if err := errors.Join(errs...); err != nil {
			return err
		}
		return errors.New("no HSDir stored this period's descriptor")
	}
	s.pubDone.Store(true)
	s.pubOnce.Do(func() { close(s.published) })
	return nil
}

// dirUpload is what one publication stores on one HSDir.
type dirUpload struct {
	dir  circuit.HopInfo
	raws [][]byte
	// current: raws holds the current period's descriptor (the first).
	current bool
}

// uploadPlan maps each HSDir to the descriptors it stores: with HSDirView,
// the responsible HSDirs of the ring for each period's blinded key (the
// next period's are other nodes); without, HSDirs random nodes (Pick)
// that store both.
func (s *service) uploadPlan(ctx context.Context, periods []uint64, blinded []ed25519.PublicKey, raws [][]byte) ([]dirUpload, error) {
	cfg := &s.m.cfg
	if cfg.HSDirView == nil {
		dirs, err := cfg.Pick(ctx, cfg.HSDirs, nil)
		if err != nil || len(dirs) == 0 {
			return nil, fmt.Errorf("no HSDir: %v", err)
		}
		plan := make([]dirUpload, len(dirs))
		for i, d := range dirs {
			plan[i] = dirUpload{dir: d, raws: raws, current: true}
		}
		return plan, nil
	}
	view, err := cfg.HSDirView(ctx)
	if err != nil || len(view) == 0 {
		return nil, fmt.Errorf("no HSDir in view: %v", err)
	}
	hops := make(map[peer.ID]circuit.HopInfo, len(view))
	ids := make([]peer.ID, 0, len(view))
	for _, h := range view {
		hops[h.Peer] = h
		ids = append(ids, h.Peer)
	}
	var plan []dirUpload
	at := map[peer.ID]int{}
	for i, p := range periods {
		for _, id := range ResponsibleHSDirs(ids, blinded[i], p, cfg.PeriodLen, cfg.HSDirs) {
			j, ok := at[id]
			if !ok {
				j = len(plan)
				at[id] = j
				plan = append(plan, dirUpload{dir: hops[id]})
			}
			plan[j].raws = append(plan[j].raws, raws[i])
			plan[j].current = plan[j].current || i == 0
		}
	}
	return plan, nil
}

// upload stores raws on one HSDir over one circuit (a stream each) and
// reports whether the first was stored; a descriptor the HSDir refuses
// (it may not count itself responsible for the other period's) does not
// keep the others from being offered.
func (s *service) upload(ctx context.Context, dir circuit.HopInfo, raws [][]byte) (firstStored bool, err error) {
	c, err := s.m.buildService(ctx, dir)
	if err != nil {
		return false, fmt.Errorf("hsdir circuit: %w", err)
	}
	defer c.Close()
	var errs []error
	for i, raw := range raws {
		st, err := c.Dial(ctx, cell.ServiceRendezvous, targetDescPut)
		if err != nil {
			return firstStored, errors.Join(append(errs, fmt.Errorf("hsdir put: %w", err))...)
		}
		_, err = st.Write(appendFrame16(nil, raw))
		var stt byte
		if err == nil {
			stt, err = readStatus(st, handshakeTimeout)
		}
		st.Close()
		switch {
		case err != nil:
			return firstStored, errors.Join(append(errs, fmt.Errorf("hsdir put: %w", err))...)
		case stt == statusOK || stt == statusReplay:
			firstStored = firstStored || i == 0
		case stt == statusNotResponsible:
			errs = append(errs, errors.New("hsdir refused descriptor: not responsible for it in its view"))
		default:
			errs = append(errs, fmt.Errorf("hsdir refused descriptor (status %d)", stt))
		}
	}
	return firstStored, errors.Join(errs...)
}

// rendezvous answers one introduction: it decrypts it, builds its own
// circuit (through a vanguard) to the client's rendezvous point, finishes
// the handshake there and joins the stream to the port's target.
func (s *service) rendezvous(id [introIDLen]byte, msg []byte, established func()) error {
	cfg := &s.m.cfg
	k, ok := replayKey(msg)
	if !ok {
		return fmt.Errorf("%w: too short", ErrBadIntroduce)
	}
	p, hs, err := openIntroduction(s.static, s.key.Public(), id, msg)
	if err != nil {
		return err
	}
	// Only an introduction that decrypts is remembered: garbage, which an
	// intro point can send at any rate, must neither push real ones out of
	// the cache (to replay them) nor claim a real one's ephemeral key.
	if s.replay.seen(k, cfg.Now()) {
		return ErrReplay
	}
	target := ""
	for _, pt := range s.ports {
		if pt.Virtual == p.Port {
			target = pt.Target
			break
		}
	}
	if target == "" {
		return errors.New("introduction for a port not published")
	}
	rv, err := s.rendezvousPoint(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	// Dial the target while the circuit builds.
	type dialed struct {
		c   net.Conn
		err error
	}
	dch := make(chan dialed, 1)
	go func() {
		c, err := cfg.DialTarget(ctx, target)
		dch <- dialed{c, err}
	}()
	var dst net.Conn
	defer func() {
		if dst == nil {
			if d := <-dch; d.c != nil {
				d.c.Close()
			}
		}
	}()
	c, err := s.m.buildService(ctx, rv)
	if err != nil {
		return fmt.Errorf("rendezvous circuit: %w", err)
	}
	// A remote client starts this circuit and chooses what flows on it:
	// its queue counts against MaxQueuedCells, as a relayed circuit's,
	// so that sessions in numbers cannot make this node queue without
	// bound toward its vanguard.
	c.ForOthers()
	defer lingerClose(s.ctx, c)
	st, err := c.Dial(ctx, cell.ServiceRendezvous, targetRendezvous)
	if err != nil {
		return fmt.Errorf("rendezvous: %w", err)
	}
	defer st.Close()
	msg2, cs1, cs2, err := hs.WriteMessage(nil, nil)
	if err != nil {
		return err
	}
	// role | cookie, then the handshake answer: the rendezvous point
	// splices what follows the cookie, so one write does it.
	out := append([]byte{rvService}, p.Cookie[:]...)
	out = appendFrame16(out, msg2)
	if _, err := st.Write(out); err != nil {
		return err
	}
	if stt, err := readStatus(st, handshakeTimeout); err != nil || stt != statusOK {
		return fmt.Errorf("rendezvous refused (status %d): %v", stt, err)
	}
	d := <-dch
	if d.err != nil {
		return fmt.Errorf("target: %w", d.err)
	}
	dst = d.c
	defer dst.Close()
	established()
	cancel() // the build and dial bounds end here; the session has none
	sc := newSecureConn(st, cs2, cs1, cell.MaxData(len(c.Path())))
	stop := context.AfterFunc(s.ctx, func() { st.Close(); dst.Close() })
	defer stop()
	join(sc, dst)
	return nil
}

// rendezvousPoint is the hop to the rendezvous point an introduction
// names, as this node's discovery knows it: a node with a fresh advert of
// the rendezvous role, with the advert's addresses and onion key. The
// client's own addresses and key are not used (they could steer the
// service's circuit to any address or through a key the client holds),
// and a node discovery does not know is refused (ErrBadRendezvousPoint)
// without building anything.
func (s *service) rendezvousPoint(p *introPayload) (circuit.HopInfo, error) {
	id, err := peer.IDFromBytes(p.RVPeer)
	if err != nil {
		return circuit.HopInfo{}, fmt.Errorf("%w: %v", ErrBadRendezvousPoint, err)
	}
	hop, ok := s.m.cfg.RendezvousPoint(id)
	if !ok || hop.Peer != id {
		return circuit.HopInfo{}, fmt.Errorf("%w: not a known rendezvous-role node", ErrBadRendezvousPoint)
	}
	return hop, nil
}

// closeLinger is how long a circuit whose stream ended is kept, so that
// the END and the data before it reach the far end before DESTROY.
const closeLinger = 5 * time.Second

// lingerClose closes c once the far end tears it down, closeLinger has
// passed, or ctx ends.
func lingerClose(ctx context.Context, c *circuit.Circuit) {
	t := time.NewTimer(closeLinger)
	defer t.Stop()
	select {
	case <-c.Done():
	case <-t.C:
	case <-ctx.Done():
	}
	c.Close()
}

// join copies both ways until one direction ends, then closes both (the
// stream cannot half-close). a is the end-to-end conn: what b (the
// target) sends is read up to a full batch of a at a time while it
// flows (a.readFrom), so a's batched frames fill whole cells, and into
// 2 KiB once b was quiet for idleRelease (join owns b's read deadline);
// the other way a's frames are written to b as they are decrypted
// (a.WriteTo). An idle session holds no batch or frame buffer
// (batchbuf.go, framepool.go).
func join(a *secureConn, b net.Conn) {
	done := make(chan struct{}, 2)
	go func() {
		a.readFrom(b, b)
		done <- struct{}{}
	}()
	go func() { io.Copy(b, a); done <- struct{}{} }()
	<-done
	a.Close()
	b.Close()
	<-done
}
