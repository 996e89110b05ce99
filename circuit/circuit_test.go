package circuit

import (
	"bytes"
	"io"
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
	if got := s.RemoteAddr().String(); got != srv.addr() {
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
