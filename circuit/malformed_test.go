package circuit

import (
	"bufio"
	"errors"
	"io"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

// dialRaw opens a raw link stream from host 0 to host 1.
func dialRaw(t *testing.T, tn *testNet) *rawLink {
	ctx := testCtx(t)
	h1 := tn.hosts[1]
	if err := tn.hosts[0].Connect(ctx, peer.AddrInfo{ID: h1.ID(), Addrs: h1.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := tn.hosts[0].NewStream(ctx, h1.ID(), LinkProtocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Reset() })
	return &rawLink{s: s, r: bufio.NewReaderSize(s, linkBufSize), w: bufio.NewWriterSize(s, linkBufSize)}
}

// create sends CREATE for id and returns the reply cell.
func (rl *rawLink) create(t *testing.T, id cell.CircID, pub [32]byte) (*clientHandshake, cell.Cell) {
	hs, msg1, err := startHandshake(pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	var c cell.Cell
	c.SetCircID(id)
	c.SetCommand(cell.CmdCreate)
	if err := (&cell.Create{Depth: 1, Handshake: msg1}).MarshalBody(c.Body()); err != nil {
		t.Fatal(err)
	}
	rl.write(t, &c)
	rl.read(t, &c)
	return hs, c
}

func TestMalformedCellClosesOnlyItsCircuit(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	rl := dialRaw(t, tn)
	pub := tn.keys[1].Public()
	for _, tc := range []struct {
		name string
		cell func(id cell.CircID) cell.Cell
	}{
		{"garbage relay", func(id cell.CircID) cell.Cell {
			var c cell.Cell
			c.SetCircID(id)
			c.SetCommand(cell.CmdRelay)
			for i := range c.Body() {
				c.Body()[i] = byte(i)
			}
			return c
		}},
		{"created from client", func(id cell.CircID) cell.Cell {
			var c cell.Cell
			c.SetCircID(id)
			c.SetCommand(cell.CmdCreated)
			return c
		}},
	} {
		id := cell.CircID(len(tc.name))
		hs, reply := rl.create(t, id, pub)
		if reply.Command() != cell.CmdCreated {
			t.Fatalf("%s: CREATE answered with %v", tc.name, reply.Command())
		}
		var cd cell.Created
		if err := cd.UnmarshalBody(reply.Body()); err != nil {
			t.Fatal(err)
		}
		keys, _, err := hs.finish(cd.Handshake)
		if err != nil {
			t.Fatal(err)
		}
		bwd, _ := newLayer(keys.bwd)
		bad := tc.cell(id)
		rl.write(t, &bad)
		// §5.4: the hop's TEARDOWN, then its DESTROY, both with its reason.
		var got cell.Cell
		rl.read(t, &got)
		k, region, err := openBackward([]*onionKeys{{cookie: keys.cookie, bwd: bwd}}, got.Body())
		if got.Command() != cell.CmdRelay || got.CircID() != id || err != nil || k != 1 {
			t.Fatalf("%s: got %v on %d (%v), want TEARDOWN on %d", tc.name, got.Command(), got.CircID(), err, id)
		}
		m, err := cell.DecodeRelay(region)
		var td cell.Teardown
		if err != nil || m.Cmd != cell.RelayTeardown || td.UnmarshalBinary(m.Data) != nil || td.Reason != cell.ReasonProtocol {
			t.Fatalf("%s: got %v %x (%v), want TEARDOWN protocol", tc.name, m.Cmd, m.Data, err)
		}
		rl.read(t, &got)
		if got.Command() != cell.CmdDestroy || got.CircID() != id || parseDestroy(&got) != cell.ReasonProtocol {
			t.Fatalf("%s: got %v reason %v on %d, want DESTROY protocol on %d", tc.name, got.Command(), parseDestroy(&got), got.CircID(), id)
		}
	}
	// Malformed CREATEs are refused per circuit.
	for _, tc := range []struct {
		name string
		id   cell.CircID
		body func([]byte)
	}{
		{"zero circ id", 0, func(b []byte) { (&cell.Create{Depth: 1, Handshake: []byte{1}}).MarshalBody(b) }},
		{"bad depth", 77, func(b []byte) { b[0] = 9; b[2] = 1; b[3] = 1 }},
		{"bad padding", 78, func(b []byte) { (&cell.Create{Depth: 1, Handshake: []byte{1}}).MarshalBody(b); b[4000] = 1 }},
		{"bad handshake", 79, func(b []byte) { (&cell.Create{Depth: 1, Handshake: make([]byte, 48)}).MarshalBody(b) }},
	} {
		var c cell.Cell
		c.SetCircID(tc.id)
		c.SetCommand(cell.CmdCreate)
		tc.body(c.Body())
		rl.write(t, &c)
		rl.read(t, &c)
		if c.Command() != cell.CmdDestroy || c.CircID() != tc.id || parseDestroy(&c) != cell.ReasonProtocol {
			t.Fatalf("%s: got %v reason %v, want DESTROY protocol", tc.name, c.Command(), parseDestroy(&c))
		}
	}
	// The link survived all of it.
	if _, reply := rl.create(t, 1000, pub); reply.Command() != cell.CmdCreated {
		t.Fatalf("link unusable after malformed cells: %v", reply.Command())
	}
	if n := tn.engines[1].Stats().RelayCircuits; n != 1 {
		t.Fatalf("relay holds %d circuits, want 1", n)
	}
}

func TestBadLinkInputClosesLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		send func(rl *rawLink) error
	}{
		{"unknown command", func(rl *rawLink) error {
			var c cell.Cell
			c.SetCircID(5)
			c.SetCommand(cell.Command(9))
			_, err := rl.s.Write(c[:])
			return err
		}},
		{"partial cell", func(rl *rawLink) error {
			if _, err := rl.s.Write(make([]byte, 100)); err != nil {
				return err
			}
			return rl.s.CloseWrite()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 2, nil)
			rl := dialRaw(t, tn)
			if _, reply := rl.create(t, 1, tn.keys[1].Public()); reply.Command() != cell.CmdCreated {
				t.Fatal("CREATE refused")
			}
			if err := tc.send(rl); err != nil {
				t.Fatal(err)
			}
			var c cell.Cell
			_, err := io.ReadFull(rl.r, c[:])
			if err == nil {
				t.Fatalf("link still open; got %v", c.Command())
			}
			ctx := testCtx(t)
			waitFor(ctx, t, "relay to drop the link and its circuit", func() bool {
				st := tn.engines[1].Stats()
				return st.Links == 0 && st.RelayCircuits == 0
			})
			if errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatal("relay sent a partial cell")
			}
		})
	}
}
