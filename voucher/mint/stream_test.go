package mint

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestStreams drives the handler over real libp2p streams on loopback: a
// well-formed request is answered; an oversized frame, a truncated frame and
// a frame of an unknown type get no answer or an error code; Stop twice is
// fine and a stopped mint no longer answers.
func TestStreams(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, cli := loopbackHost(t), loopbackHost(t)
	f.cfg.Host = srv
	m := f.open(t)
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		t.Fatal(err)
	}
	exchange := func(raw []byte) ([]byte, error) {
		s, err := cli.NewStream(ctx, srv.ID(), protocol.ID(voucher.ProtocolID))
		if err != nil {
			return nil, err
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := s.Write(raw); err != nil {
			return nil, err
		}
		s.CloseWrite()
		return voucher.ReadMessage(s)
	}
	frame := func(msg []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(msg))), msg...)
	}

	resp, err := exchange(frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 9})))
	if err != nil {
		t.Fatal(err)
	}
	if q, err := voucher.ParseQuote(resp); err != nil || q.Amount != 9 {
		t.Fatalf("quote %+v, %v", q, err)
	}
	resp, err = exchange(frame([]byte{42}))
	if err != nil {
		t.Fatal(err)
	}
	if e, err := voucher.ParseErrorResponse(resp); err != nil || e.Code != voucher.CodeMalformed {
		t.Fatalf("unknown type: %+v, %v", e, err)
	}
	for name, raw := range map[string][]byte{
		"oversized frame": binary.BigEndian.AppendUint32(nil, voucher.MaxMessageSize+1),
		"truncated frame": {0, 0, 0, 9, 1, 0},
	} {
		if _, err := exchange(raw); err == nil {
			t.Fatalf("%s answered", name)
		}
	}

	m.Stop()
	m.Stop()
	if _, err := exchange(frame(mustMarshal(t, &voucher.QuoteRequest{Amount: 1}))); err == nil {
		t.Fatal("stopped mint answered")
	}
}

// TestStopResetsSlowStreams: a peer that opens a stream and sends nothing
// does not hold Stop until the stream deadline.
func TestStopResetsSlowStreams(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	srv, cli := loopbackHost(t), loopbackHost(t)
	f.cfg.Host = srv
	f.cfg.StreamTimeout = time.Hour
	m := f.open(t)
	reading := make(chan struct{}, 1)
	m.beforeRead = func() { reading <- struct{}{} }
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cli.Connect(ctx, peer.AddrInfo{ID: srv.ID(), Addrs: srv.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := cli.NewStream(ctx, srv.ID(), protocol.ID(voucher.ProtocolID))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Reset()
	if _, err := s.Write([]byte{0, 0}); err != nil { // half a length prefix
		t.Fatal(err)
	}
	select { // the handler is blocked reading
	case <-reading:
	case <-ctx.Done():
		t.Fatal("handler never ran")
	}
	done := make(chan error, 1)
	go func() { done <- m.Stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Stop blocked on a silent stream")
	}
}
