package circuit

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestStreamDeadlines(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, nil)
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1)
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	if _, err := s.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "ok" {
		t.Fatalf("Read after clearing deadline = %q, %v", got, err)
	}
	_ = s.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := s.Write([]byte("late")); err != nil {
		// A write deadline only bounds waiting for window; with window
		// available the write goes through.
		t.Fatalf("Write with window = %v", err)
	}
	_ = s.Close()
	if _, err := s.Read(got); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	if _, err := s.Write(got); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	waitFor(ctx, t, "streams to close", func() bool {
		return c.NumStreams() == 0 && tn.engines[1].Stats().Streams == 0
	})
}

func TestExtendToUnreachablePeer(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := tn.path(1, 2)
	path[1].Peer = ghost
	path[1].Addrs = nil // nowhere to dial: nothing leaves loopback
	_, err = tn.engines[0].Build(testCtx(t), path)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrClosed) {
		t.Fatalf("build = %v, want ErrUnreachable and ErrClosed", err)
	}
}
