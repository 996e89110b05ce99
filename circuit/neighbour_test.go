package circuit

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// neighbour is a test peer that speaks cells on its own link stream with
// its own onion keys, so that it can read as slowly and send as much as a
// test wants: the misbehaving neighbour of PROTOCOL.md §1.2.
type neighbour struct {
	s   network.Stream
	r   *bufio.Reader // used by one reader at a time
	wmu sync.Mutex    // guards w
	w   *bufio.Writer
}

// dialNeighbour opens a link stream from h to the relay to.
func dialNeighbour(t testing.TB, h, to host.Host) *neighbour {
	t.Helper()
	ctx := testCtx(t)
	if err := h.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := h.NewStream(ctx, to.ID(), LinkProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return &neighbour{s: s, r: bufio.NewReaderSize(s, cell.Size), w: bufio.NewWriterSize(s, linkBufSize)}
}

// send writes c and flushes.
func (n *neighbour) send(c *cell.Cell) error {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if _, err := n.w.Write(c[:]); err != nil {
		return err
	}
	return n.w.Flush()
}

func (n *neighbour) recv(c *cell.Cell) error {
	_, err := io.ReadFull(n.r, c[:])
	return err
}

// recvFor reads cells until one for circuit id, dropping the others.
func (n *neighbour) recvFor(id cell.CircID, c *cell.Cell) error {
	for {
		if err := n.recv(c); err != nil || c.CircID() == id {
			return err
		}
	}
}

// rawCirc is a circuit a neighbour built by hand.
type rawCirc struct {
	n    *neighbour
	id   cell.CircID
	mu   sync.Mutex // guards the forward layers and buf
	hops []*onionKeys
	buf  []byte // sendN's cells, reused so that a flood does not load the GC
}

// build makes circuit id through path (first hop: the relay n is linked
// to), reading each answer and dropping cells of other circuits; the
// caller must not read n concurrently.
func (n *neighbour) build(t testing.TB, id cell.CircID, path []HopInfo) *rawCirc {
	t.Helper()
	rc := &rawCirc{n: n, id: id}
	var c cell.Cell
	for i, hi := range path {
		hs, msg1, err := startHandshake(hi.OnionKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			c.Reset()
			c.SetCircID(id)
			c.SetCommand(cell.CmdCreate)
			if err := (&cell.Create{Depth: 1, Handshake: msg1}).MarshalBody(c.Body()); err != nil {
				t.Fatal(err)
			}
			if err := n.send(&c); err != nil {
				t.Fatal(err)
			}
		} else {
			ext := cell.Extend{Peer: []byte(hi.Peer), OnionKey: hi.OnionKey, Handshake: msg1}
			for _, a := range hi.Addrs {
				ext.Addrs = append(ext.Addrs, a.Bytes())
			}
			b, err := ext.AppendBinary(nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := rc.send(i, cell.RelayExtend, 0, b); err != nil {
				t.Fatal(err)
			}
		}
		if err := n.recvFor(id, &c); err != nil {
			t.Fatal(err)
		}
		var msg2 []byte
		if i == 0 {
			var cd cell.Created
			if c.Command() != cell.CmdCreated || cd.UnmarshalBody(c.Body()) != nil {
				t.Fatalf("hop 1 answered %v (reason %v)", c.Command(), parseDestroy(&c))
			}
			msg2 = cd.Handshake
		} else {
			k, m, err := rc.open(&c)
			var x cell.Extended
			if err != nil || k != i || m.Cmd != cell.RelayExtended || x.UnmarshalBinary(m.Data) != nil {
				t.Fatalf("hop %d answered %v %v from %d: %v", i+1, c.Command(), m.Cmd, k, err)
			}
			msg2 = x.Handshake
		}
		keys, _, err := hs.finish(msg2)
		if err != nil {
			t.Fatal(err)
		}
		fwd, _ := newLayer(keys.fwd)
		bwd, _ := newLayer(keys.bwd)
		rc.hops = append(rc.hops, &onionKeys{cookie: keys.cookie, fwd: fwd, bwd: bwd})
	}
	return rc
}

// send seals a relay message for hop depth and writes it.
func (rc *rawCirc) send(depth int, cmd cell.RelayCmd, stream uint16, data []byte) error {
	return rc.sendN(1, depth, cmd, stream, data)
}

// sendN writes n copies of a relay message for hop depth, each sealed in
// turn, in one write (a flood as a neighbour would send it: full link
// buffers, not one syscall per cell).
func (rc *rawCirc) sendN(n, depth int, cmd cell.RelayCmd, stream uint16, data []byte) error {
	var c cell.Cell
	off, L := onionOff(depth), cell.OnionLen(depth)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	buf := rc.buf[:0]
	for range n {
		c.Reset()
		if err := cell.EncodeRelay(c.Body()[off+hdrLen:off+L-cell.TagLen], cmd, stream, data); err != nil {
			return err
		}
		c.SetCircID(rc.id)
		c.SetCommand(cell.CmdRelay)
		if err := sealForward(rc.hops[:depth], depth, c.Body()); err != nil {
			return err
		}
		buf = append(buf, c[:]...)
	}
	rc.buf = buf
	rc.n.wmu.Lock()
	defer rc.n.wmu.Unlock()
	if _, err := rc.n.w.Write(buf); err != nil {
		return err
	}
	return rc.n.w.Flush()
}

// open peels a backward RELAY cell and returns the speaking hop's depth and
// message.
func (rc *rawCirc) open(c *cell.Cell) (int, cell.Relay, error) {
	if c.CircID() != rc.id || c.Command() != cell.CmdRelay {
		return 0, cell.Relay{}, fmt.Errorf("got %v on %d", c.Command(), c.CircID())
	}
	k, region, err := openBackward(rc.hops, c.Body())
	if err != nil {
		return 0, cell.Relay{}, err
	}
	m, err := cell.DecodeRelay(region)
	return k, m, err
}

// sendBegin sends BEGIN for stream id to target through the last hop.
func (rc *rawCirc) sendBegin(t testing.TB, id uint16, target cell.Target) {
	t.Helper()
	b, err := (&cell.Begin{Service: cell.ServiceExit, Target: target}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.send(len(rc.hops), cell.RelayBegin, id, b); err != nil {
		t.Fatal(err)
	}
}

// begin opens stream id to target through the last hop and waits for
// CONNECTED, skipping DATA for other streams and cells of other circuits;
// the caller must not read n concurrently.
func (rc *rawCirc) begin(t testing.TB, id uint16, target cell.Target) {
	t.Helper()
	rc.sendBegin(t, id, target)
	var c cell.Cell
	for {
		if err := rc.n.recvFor(rc.id, &c); err != nil {
			t.Fatal(err)
		}
		_, m, err := rc.open(&c)
		switch {
		case err == nil && m.Cmd == cell.RelayConnected && m.StreamID == id:
			return
		case err == nil && m.Cmd == cell.RelayData && m.StreamID != id:
		default:
			t.Fatalf("BEGIN answered %v on stream %d: %v", m.Cmd, m.StreamID, err)
		}
	}
}

// relayHop returns the hop e relays for the circuit that neighbour n's
// link calls id, or nil.
func relayHop(e *Engine, n *neighbour, id cell.CircID) *hop {
	e.mu.Lock()
	l := e.in[n.s.Conn().LocalPeer()]
	e.mu.Unlock()
	if l == nil {
		return nil
	}
	h, _ := l.lookup(id).(*hop)
	return h
}
