package rendezvous

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// maxCachedDescs bounds the client's descriptor cache.
const maxCachedDescs = 256

// Dial connects to port of the onion service onionHost ("<id>.onion",
// optionally with subdomains): descriptor from an HSDir, a circuit to a
// rendezvous point of our choice, an introduction through one of the
// service's intro points, then the service's answer at the rendezvous.
// The conn is end-to-end encrypted; closing it ends the rendezvous
// circuit. Errors wrap ErrBadAddress, ErrDescriptorNotFound,
// ErrIntroFailed, ErrRendezvousFailed or ErrIntroTimeout.
func (m *Manager) Dial(ctx context.Context, onionHost string, port uint16) (net.Conn, error) {
	pub, err := onionaddr.Parse(onionHost)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	if port == 0 {
		return nil, fmt.Errorf("%w: port 0", ErrBadAddress)
	}
	desc, err := m.descriptor(ctx, pub)
	if err != nil {
		return nil, err
	}
	intros := slices.Clone(desc.Intros)
	mrand.Shuffle(len(intros), func(i, j int) { intros[i], intros[j] = intros[j], intros[i] })
	var excl []peer.ID
	for _, ip := range intros {
		if id, err := peer.IDFromBytes(ip.Peer); err == nil {
			excl = append(excl, id)
		}
	}

	// The first intro circuit builds while the rendezvous is set up.
	type built struct {
		c   *circuit.Circuit
		err error
	}
	first := make(chan built, 1)
	ictx, icancel := context.WithCancel(ctx)
	defer icancel()
	go func() {
		h, err := hopOf(intros[0].Peer, intros[0].OnionKey, intros[0].Addrs)
		if err != nil {
			first <- built{nil, err}
			return
		}
		c, err := m.build(ictx, h, nil)
		first <- built{c, err}
	}()
	defer func() {
		icancel()
		if b := <-first; b.c != nil {
			b.c.Close()
		}
	}()

	var cookie [cookieLen]byte
	rand.Read(cookie[:])
	// A rendezvous point whose circuit fails is replaced, twice at most.
	var (
		rv  circuit.HopInfo
		rc  *circuit.Circuit
		rvX = slices.Clone(excl)
	)
	for attempt := 0; rc == nil; attempt++ {
		rvHops, err := m.cfg.Pick(ctx, 1, rvX)
		if err != nil || len(rvHops) == 0 {
			return nil, fmt.Errorf("%w: no rendezvous point: %v", ErrRendezvousFailed, err)
		}
		rv = rvHops[0]
		if rc, err = m.build(ctx, rv, nil); err != nil {
			if attempt == 2 || ctx.Err() != nil {
				return nil, fmt.Errorf("%w: circuit: %w", ErrRendezvousFailed, err)
			}
			rvX = append(rvX, rv.Peer)
		}
	}
	ok := false
	defer func() {
		if !ok {
			rc.Close()
		}
	}()
	st, err := rc.Dial(ctx, cell.ServiceRendezvous, targetRendezvous)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRendezvousFailed, err)
	}
	if _, err := st.Write(append([]byte{rvClient}, cookie[:]...)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRendezvousFailed, err)
	}
	if stt, err := readStatus(st, handshakeTimeout); err != nil || stt != statusOK {
		return nil, fmt.Errorf("%w: cookie refused (status %d): %v", ErrRendezvousFailed, stt, err)
	}
	rvPeer, rvAddrs := nodeFields(rv)
	payload := &introPayload{Cookie: cookie, Port: port, RVPeer: rvPeer, RVOnion: rv.OnionKey, RVAddrs: rvAddrs}

	var introErrs []error
	accepted := false
	var answer func([]byte) (*secureConn, error)
	for i, ip := range intros {
		var c *circuit.Circuit
		if i == 0 {
			b := <-first
			first <- built{} // the deferred drain finds nothing to close
			c, err = b.c, b.err
		} else {
			var h circuit.HopInfo
			if h, err = hopOf(ip.Peer, ip.OnionKey, ip.Addrs); err == nil {
				c, err = m.build(ctx, h, nil)
			}
		}
		if err != nil {
			introErrs = append(introErrs, err)
			continue
		}
		msg, hs, err := newIntroduction(desc.EncKey, pub, ip.ID, payload)
		var nonce [powNonceLen]byte
		if err == nil {
			nonce, err = solvePoW(ctx, ip.ID, msg, desc.PoWEffort)
		}
		if err == nil {
			err = introduce(ctx, c, ip.ID, msg, nonce)
		}
		c.Close()
		if err != nil {
			introErrs = append(introErrs, err)
			continue
		}
		answer = func(msg2 []byte) (*secureConn, error) {
			_, cs1, cs2, err := hs.ReadMessage(nil, msg2)
			if err != nil {
				return nil, err
			}
			return newSecureConn(st, cs1, cs2, cell.MaxData(len(rc.Path()))), nil
		}
		accepted = true
		break
	}
	if !accepted {
		m.forgetDescriptor(pub)
		return nil, fmt.Errorf("%w: %w", ErrIntroFailed, errors.Join(introErrs...))
	}
	st.SetReadDeadline(time.Now().Add(m.cfg.IntroTimeout))
	msg2, err := readFrame16(st, maxIntroLen)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		// An intro point took the introduction but the service never
		// came to the rendezvous: the cached descriptor may be stale (the
		// service republished with new keys after an intro point moved),
		// so the next attempt fetches it again.
		m.forgetDescriptor(pub)
		if ne, isNet := err.(net.Error); isNet && ne.Timeout() || ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrIntroTimeout, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrRendezvousFailed, err)
	}
	sc, err := answer(msg2)
	if err != nil {
		return nil, fmt.Errorf("%w: handshake: %w", ErrRendezvousFailed, err)
	}
	ok = true
	return &onionConn{secureConn: sc, c: rc, m: m}, nil
}

// introduce sends one introduction over c and reads the intro point's status.
func introduce(ctx context.Context, c *circuit.Circuit, id [introIDLen]byte, msg []byte, nonce [powNonceLen]byte) error {
	st, err := c.Dial(ctx, cell.ServiceRendezvous, targetIntroduce)
	if err != nil {
		return err
	}
	defer st.Close()
	out := append(id[:0:0], id[:]...)
	if _, err := st.Write(append(appendFrame16(out, msg), nonce[:]...)); err != nil {
		return err
	}
	stt, err := readStatus(st, handshakeTimeout)
	if err != nil {
		return err
	}
	switch stt {
	case statusOK:
		return nil
	case statusRateLimited:
		return ErrRateLimited
	case statusReplay:
		return ErrReplay
	case statusNeedPoW:
		return errors.New("introduction refused: not enough proof of work")
	default:
		return fmt.Errorf("introduction refused (status %d)", stt)
	}
}

// onionConn is a client's connection to an onion service; Close ends its
// rendezvous circuit after the END has had time to arrive.
type onionConn struct {
	*secureConn
	c    *circuit.Circuit
	m    *Manager
	once sync.Once
}

func (o *onionConn) Close() error {
	o.once.Do(func() {
		o.secureConn.Close()
		o.m.wg.Add(1)
		go func() {
			defer o.m.wg.Done()
			lingerClose(o.m.ctx, o.c)
		}()
	})
	return nil
}

// descriptor returns the verified descriptor of the service pub for the
// current period, from the cache or the newest the HSDirs hold.
func (m *Manager) descriptor(ctx context.Context, pub ed25519.PublicKey) (*Descriptor, error) {
	now := m.cfg.Now()
	period := PeriodOf(now, m.cfg.PeriodLen)
	blinded, err := BlindPublic(pub, period, uint64(m.cfg.PeriodLen))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	idx := Index(blinded, period, m.cfg.PeriodLen)
	m.mu.Lock()
	d := m.descs[idx]
	m.mu.Unlock()
	if d != nil && now.Before(d.Expires) {
		return d, nil
	}
	d, err = m.lookupDescriptor(ctx, idx, pub, blinded, period, now)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if len(m.descs) >= maxCachedDescs {
		for k := range m.descs { // any one
			delete(m.descs, k)
			break
		}
	}
	m.descs[idx] = d
	m.mu.Unlock()
	return d, nil
}

// errNoDescriptor: an HSDir answered that it holds no descriptor for the
// index (statusNotFound).
var errNoDescriptor = errors.New("hsdir has no descriptor")

// lookupDescriptor fetches the descriptor of index idx: first from the
// responsible HSDirs of the ring in this node's view (hsring.go), the
// lowest-ranked hsdirFetchRound at once, then the next round; only if
// none had it (or there is no HSDirView), from the HSDirs that announce
// the index in the DHT (Find).
func (m *Manager) lookupDescriptor(ctx context.Context, idx [32]byte, pub, blinded ed25519.PublicKey,
	period uint64, now time.Time) (*Descriptor, error) {
	var (
		errs []error
		// notFound, unavailable: some round (ring or fallback) said so.
		notFound, unavailable bool
		// ringUnavailable: the ring had HSDirs to ask and none of its
		// rounds said "not found". Then the fallback's announcers, whom
		// anyone can add, cannot make the lookup "not found" (a Tor
		// gateway would be asked); only the ring's own answer can.
		ringUnavailable bool
	)
	note := func(err error) {
		errs = append(errs, err)
		notFound = notFound || errors.Is(err, ErrDescriptorNotFound)
		unavailable = unavailable || errors.Is(err, ErrDescriptorUnavailable)
	}
	if m.cfg.HSDirView != nil {
		view, err := m.cfg.HSDirView(ctx)
		if err != nil {
			note(err)
		}
		hops := make(map[peer.ID]circuit.HopInfo, len(view))
		ids := make([]peer.ID, 0, len(view))
		for _, h := range view {
			hops[h.Peer] = h
			ids = append(ids, h.Peer)
		}
		order := FetchOrder(ids, blinded, period, m.cfg.PeriodLen, hsdirFetchSpread)
		ringAsked := len(order) > 0
		for len(order) > 0 && ctx.Err() == nil {
			round := firstN(order, hsdirFetchRound)
			order = order[len(round):]
			dirs := make([]circuit.HopInfo, len(round))
			for i, p := range round {
				dirs[i] = hops[p]
			}
			d, err := m.newestDescriptor(ctx, dirs, idx, pub, period, now)
			if err == nil {
				return d, nil
			}
			note(err)
		}
		ringUnavailable = ringAsked && !notFound
		if len(view) == 0 {
			note(errors.New("no HSDir in view"))
		}
	}
	if m.cfg.Find != nil && ctx.Err() == nil {
		dirs, err := m.cfg.Find(ctx, idx, descFetches)
		if err == nil && len(dirs) > 0 {
			if len(dirs) > descFetches {
				dirs = dirs[:descFetches]
			}
			d, err := m.newestDescriptor(ctx, dirs, idx, pub, period, now)
			if err == nil {
				return d, nil
			}
			note(err)
		} else {
			note(fmt.Errorf("no HSDir announces it: %v", err))
		}
	}
	// Not found when a round's HSDirs mostly answered that they have no
	// valid descriptor, or nothing could be asked at all (no HSDir in
	// view and none announces the index); unavailable when every round
	// asked mostly failed: that says nothing about the service, so the
	// client must not take it to a Tor gateway.
	if ringUnavailable {
		// The announcers' "not found" is text here, not a sentinel that
		// errors.Is would find.
		return nil, fmt.Errorf("%w: %v", ErrDescriptorUnavailable, errors.Join(errs...))
	}
	sentinel := ErrDescriptorNotFound
	if unavailable && !notFound {
		sentinel = ErrDescriptorUnavailable
	}
	return nil, fmt.Errorf("%w: %w", sentinel, errors.Join(errs...))
}

// descFetches is how many of the HSDirs that announce an index a client
// asks on the fallback (no HSDir of the ring had the descriptor), all at
// once, so that HSDirs which announce the index but withhold the
// descriptor or serve an old one must outnumber the honest ones among
// those found.
const descFetches = 6

// newestDescriptor asks every dir in parallel, each within
// DescFetchTimeout, and returns the valid descriptor with the highest
// revision. With none, the error is ErrDescriptorNotFound if more than
// half the dirs answered that they have none or served one that does not
// verify, else ErrDescriptorUnavailable. A dir that answers with an older
// or invalid descriptor cannot
// win against one that answers with the newest, and one that never
// answers delays the lookup by at most DescFetchTimeout.
func (m *Manager) newestDescriptor(ctx context.Context, dirs []circuit.HopInfo, idx [32]byte,
	pub ed25519.PublicKey, period uint64, now time.Time) (*Descriptor, error) {
	type result struct {
		dir peer.ID
		d   *Descriptor
		err error
	}
	fctx, cancel := context.WithTimeout(ctx, m.cfg.DescFetchTimeout)
	defer cancel()
	res := make(chan result, len(dirs)) // buffered: a late fetch never blocks
	for _, dir := range dirs {
		go func() {
			raw, err := m.fetch(fctx, dir, idx)
			var d *Descriptor
			if err == nil {
				d, err = DecodeDescriptor(raw, pub, period, m.cfg.PeriodLen, now)
			}
			res <- result{dir.Peer, d, err}
		}()
	}
	var (
		best *Descriptor
		errs []error
	)
collect:
	for range dirs {
		select {
		case r := <-res:
			if errors.Is(r.err, ErrBadDescriptor) {
				// The onion address is the service's key: a descriptor
				// that does not verify against it (another key's
				// signature, a body that does not decrypt) is a forgery
				// or corruption by that HSDir, ignored as if absent.
				m.log.Info("HSDir served a descriptor that does not verify against the onion address; ignored as forged",
					"hsdir", r.dir, "err", r.err)
			}
			if r.err != nil {
				errs = append(errs, r.err)
			} else if best == nil || r.d.Revision > best.Revision {
				best = r.d
			}
		case <-fctx.Done(): // even a fetch that ignores its ctx does not hold us
			errs = append(errs, fmt.Errorf("hsdir fetch: %w", fctx.Err()))
			break collect
		}
	}
	if best == nil {
		// Not found only if most HSDirs asked answered: "none", or a
		// descriptor that does not verify against the address (a forgery
		// is as good as absent: the address is the service's key). A
		// lookup that mostly could not ask them (no circuit, no answer in
		// time) says nothing about the service, which may live on
		// co-infuse, so it must not send the client to a Tor gateway.
		absent := 0
		for _, err := range errs {
			if errors.Is(err, errNoDescriptor) || errors.Is(err, ErrBadDescriptor) {
				absent++
			}
		}
		sentinel := ErrDescriptorUnavailable
		if 2*absent > len(dirs) {
			sentinel = ErrDescriptorNotFound
		}
		return nil, fmt.Errorf("%w: %w", sentinel, errors.Join(errs...))
	}
	return best, nil
}

// forgetDescriptor drops a cached descriptor whose intro points failed.
func (m *Manager) forgetDescriptor(pub ed25519.PublicKey) {
	now := m.cfg.Now()
	period := PeriodOf(now, m.cfg.PeriodLen)
	blinded, err := BlindPublic(pub, period, uint64(m.cfg.PeriodLen))
	if err != nil {
		return
	}
	m.mu.Lock()
	delete(m.descs, Index(blinded, period, m.cfg.PeriodLen))
	m.mu.Unlock()
}

func (m *Manager) fetchDescriptor(ctx context.Context, dir circuit.HopInfo, idx [32]byte) ([]byte, error) {
	c, err := m.build(ctx, dir, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() }) // ctx bounds the reads too
	defer stop()
	st, err := c.Dial(ctx, cell.ServiceRendezvous, targetDescGet)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if _, err := st.Write(idx[:]); err != nil {
		return nil, err
	}
	stt, err := readStatus(st, handshakeTimeout)
	if err != nil {
		return nil, err
	}
	if stt == statusNotFound {
		return nil, errNoDescriptor
	}
	if stt != statusOK {
		return nil, fmt.Errorf("hsdir refused the fetch (status %d)", stt)
	}
	st.SetReadDeadline(time.Now().Add(handshakeTimeout))
	return readFrame16(st, MaxDescriptorLen)
}
