package mempool

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

func testServer(t *testing.T, submit func(context.Context, Submit) Verdict) *Server {
	t.Helper()
	s, err := NewServer(ServerConfig{
		Submit:      submit,
		Lookup:      func(context.Context, [32]byte) TxState { return StateUnknown },
		ReadTimeout: time.Second, BackendTimeout: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve runs s on one end of a pipe and returns the other.
func serve(t *testing.T, s *Server) net.Conn {
	t.Helper()
	ours, theirs := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(context.Background(), theirs, Origin{Peer: "p"})
	}()
	t.Cleanup(func() { ours.Close(); <-done })
	return ours
}

// A malformed or unexpected frame ends the stream without an answer, an
// oversized one before its body is read.
func TestServerRefusesBadFrames(t *testing.T) {
	t.Parallel()
	s := testServer(t, func(context.Context, Submit) Verdict { return Verdict{Status: Accepted} })
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"unknown kind", []byte{0x7f, 0, 0, 0}},
		{"answer kind", []byte{0x81, 0, 0, 6, 0, 0, 0, 0, 0, 0}},
		{"oversized", []byte{0x01, 0xff, 0xff, 0xff}},
		{"bad submit flags", []byte{0x01, 0, 0, 2, 0x80, 0xaa}},
		{"short query", []byte{0x02, 0, 0, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, s)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			go c.Write(tc.frame)
			if _, _, err := ReadFrame(c); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("got %v, want the stream closed", err)
			}
		})
	}
}

// A backend that does not answer in time is "unavailable", and the stream
// takes further requests up to its cap.
func TestServerBackendTimeout(t *testing.T) {
	t.Parallel()
	s := testServer(t, func(ctx context.Context, _ Submit) Verdict {
		<-ctx.Done()
		return Verdict{Status: Unavailable}
	})
	c := serve(t, s)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	body, _ := (&Submit{Tx: []byte{1}}).Marshal()
	for range MaxRequestsPerStream {
		if err := WriteFrame(c, KindSubmit, body); err != nil {
			t.Fatal(err)
		}
		k, b, err := ReadFrame(c)
		if err != nil || k != KindVerdict {
			t.Fatalf("%v %v", k, err)
		}
		if v, err := ParseVerdict(b); err != nil || v.Status != Unavailable {
			t.Fatalf("verdict %+v %v", v, err)
		}
	}
	_ = WriteFrame(c, KindSubmit, body)
	if _, _, err := ReadFrame(c); err == nil {
		t.Fatal("a fifth request on one stream was answered")
	}
	if st := s.Stats(); st.Unavailable != MaxRequestsPerStream {
		t.Fatalf("stats %+v", st)
	}
}

// Delivery nodes that lie (a malformed verdict) or never answer leave the
// transaction in the outbox: Broadcast returns the txid after VerdictWait
// and nothing is lost.
func TestLyingAndSilentNodesLoseNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		answer func(c net.Conn)
	}{
		{"garbage", func(c net.Conn) { c.Write([]byte{0x81, 0, 0, 6, 9, 9, 9, 9, 9, 9}) }},
		{"wrong kind", func(c net.Conn) { c.Write([]byte{0x82, 0, 0, 1, 1}) }},
		{"silent", func(c net.Conn) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dial := func(ctx context.Context, a Avoid) (Delivery, error) {
				ours, theirs := net.Pipe()
				go func() {
					defer theirs.Close()
					if _, _, err := ReadFrame(theirs); err != nil {
						return
					}
					tc.answer(theirs)
					<-ctx.Done()
				}()
				return Delivery{Conn: ours, Node: "liar"}, nil
			}
			c, err := NewClient(ClientConfig{Dial: dial, OutboxPath: filepath.Join(t.TempDir(), "o.db"),
				VerdictWait: 200 * time.Millisecond, AttemptTimeout: 300 * time.Millisecond, RetryMin: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			h, want := testTx(t, 20, true)
			got, err := c.Broadcast(context.Background(), h, nil)
			if err != nil || got != want {
				t.Fatalf("Broadcast = %q, %v; want the txid and no error", got, err)
			}
			es, err := c.Queued()
			if err != nil || len(es) != 1 || es[0].TxID != want || es[0].Accepted() || !bytes.Equal(es[0].Raw, mustRaw(t, h)) {
				t.Fatalf("outbox %+v %v", es, err)
			}
		})
	}
}

func mustRaw(t *testing.T, h string) []byte {
	t.Helper()
	c, err := CheckTx(h)
	if err != nil {
		t.Fatal(err)
	}
	return c.Raw
}
