package circuit

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

func TestDialEcho3Hop(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer s.Close()
	if got := s.RemoteAddr().String(); got != srv.addr().String() {
		t.Errorf("RemoteAddr = %s, want %s", got, srv.addr())
	}
	msg := []byte("hello through three hops")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q", got)
	}
}

func TestDialZeroTarget(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	ctx := testCtx(t)
	c := tn.build(ctx, 1)
	if _, err := c.Dial(ctx, cell.ServiceExit, cell.Target{}); !errors.Is(err, ErrProtocol) || !errors.Is(err, cell.ErrBadTarget) {
		t.Fatalf("Dial(zero) = %v, want ErrProtocol and cell.ErrBadTarget", err)
	}
	if c.Err() != nil || c.NumStreams() != 0 {
		t.Fatalf("refused dial left err %v, %d streams", c.Err(), c.NumStreams())
	}
}

func TestRemoteAddrFor(t *testing.T) {
	t.Parallel()
	fallback := StreamAddr{Circuit: 7, Stream: 1}
	tests := []struct {
		addr netip.Addr
		port uint16
		want string
	}{
		{netip.MustParseAddr("192.0.2.1"), 443, "192.0.2.1:443"},
		{netip.MustParseAddr("2001:db8::1"), 8333, "[2001:db8::1]:8333"},
		{netip.MustParseAddr("::ffff:192.0.2.1"), 80, "192.0.2.1:80"}, // net.TCPAddr prints it as IPv4
		{netip.Addr{}, 443, fallback.String()},
		{netip.MustParseAddr("192.0.2.1"), 0, fallback.String()},
	}
	for _, tc := range tests {
		if got := remoteAddrFor(tc.addr, tc.port, fallback).String(); got != tc.want {
			t.Errorf("remoteAddrFor(%v, %d) = %s, want %s", tc.addr, tc.port, got, tc.want)
		}
	}
}

func TestCircuitAccessors(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 4, nil)
	ctx := testCtx(t)
	a := tn.build(ctx, 1, 2, 3)
	b := tn.build(ctx, 1, 2, 3)
	if a.ID() == b.ID() || a.ID() == 0 {
		t.Fatalf("IDs %x and %x", a.ID(), b.ID())
	}
	want := tn.path(1, 2, 3)
	got := a.Path()
	if len(got) != len(want) {
		t.Fatalf("Path has %d hops", len(got))
	}
	for i := range want {
		if got[i].Peer != want[i].Peer || got[i].OnionKey != want[i].OnionKey {
			t.Fatalf("Path[%d] differs", i)
		}
		if a.Cookie(i) == ([cell.CookieLen]byte{}) || a.Cookie(i) == b.Cookie(i) {
			t.Fatalf("Cookie(%d) not a fresh random value", i)
		}
	}
	if a.Cookie(3) != ([cell.CookieLen]byte{}) || a.Cookie(-1) != ([cell.CookieLen]byte{}) {
		t.Fatal("Cookie out of range is not zero")
	}
	if st := tn.engines[0].Stats(); st.ClientCircuits != 2 || st.Links != 1 {
		t.Fatalf("client stats %+v", st)
	}
	if st := tn.engines[2].Stats(); st.RelayCircuits != 2 {
		t.Fatalf("middle relay stats %+v", st)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	<-a.Done()
	if !errors.Is(a.Err(), ErrClosed) || b.Err() != nil {
		t.Fatalf("Err after Close: %v / %v", a.Err(), b.Err())
	}
	if _, err := a.Dial(ctx, cell.ServiceExit, mustTarget(t, "127.0.0.1:1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial on closed circuit = %v", err)
	}
}
