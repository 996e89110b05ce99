package rendezvous

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"

	"github.com/flynn/noise"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// recordConn is a net.Conn whose Writes are recorded, one slice each.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

// transportPair runs a Noise NK handshake and returns the initiator's and
// the responder's transport cipher states, in the order (i send, i recv,
// r send, r recv).
func transportPair(t testing.TB) (is, ir, rs, rr *noise.CipherState) {
	t.Helper()
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	i, _ := noise.NewHandshakeState(noise.Config{CipherSuite: hsSuite, Pattern: noise.HandshakeNK, Initiator: true, PeerStatic: static.Public})
	r, _ := noise.NewHandshakeState(noise.Config{CipherSuite: hsSuite, Pattern: noise.HandshakeNK, StaticKeypair: static})
	m1, _, _, _ := i.WriteMessage(nil, nil)
	if _, _, _, err := r.ReadMessage(nil, m1); err != nil {
		t.Fatal(err)
	}
	m2, r1, r2, _ := r.WriteMessage(nil, nil)
	_, i1, i2, err := i.ReadMessage(nil, m2)
	if err != nil {
		t.Fatal(err)
	}
	return i1, i2, r2, r1
}

// TestSecureConnBatchesFrames: one Write of many frames reaches the stream
// as one write per maxWriteBatch (so the stream fills whole cells, not a
// part-filled one per frame), and the other end reads back every byte.
func TestSecureConnBatchesFrames(t *testing.T) {
	t.Parallel()
	is, _, _, rr := transportPair(t)
	rec := &recordConn{}
	w := newSecureConn(rec, is, nil, 0)
	p := make([]byte, 3*maxFramePlain+123) // 4 frames, under one batch
	rand.Read(p)
	if n, err := w.Write(p); n != len(p) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	big := make([]byte, 3*maxWriteBatch)
	rand.Read(big)
	if n, err := w.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if len(rec.writes) != 1+3 && len(rec.writes) != 1+4 {
		t.Fatalf("%d writes to the stream, want 1 for 4 frames and 3-4 for 3 batches", len(rec.writes))
	}
	if len(rec.writes[0]) != len(p)+4*(2+16) {
		t.Fatalf("first write %d bytes, want all 4 frames", len(rec.writes[0]))
	}
	a, b := net.Pipe()
	defer a.Close()
	r := newSecureConn(b, nil, rr, 0)
	go func() {
		for _, wr := range rec.writes {
			a.Write(wr)
		}
	}()
	got := make([]byte, len(p)+len(big))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], big) {
		t.Fatal("read back other bytes")
	}
}

// TestSecureConnBatchFillsCells: for a circuit of every depth, each full
// batch a Write or ReadFrom hands the stream is a whole number of that
// circuit's cells (so no cell of a bulk transfer goes part-filled), within
// maxWriteBatch, in frames of at most maxFramePlain; the reader gets back
// every byte.
func TestSecureConnBatchFillsCells(t *testing.T) {
	t.Parallel()
	for depth := 1; depth <= cell.MaxHops; depth++ {
		cd := cell.MaxData(depth)
		is, _, _, rr := transportPair(t)
		rec := &recordConn{}
		w := newSecureConn(rec, is, nil, cd)
		if w.batchPlain/w.batchFrames+1 > maxFramePlain {
			t.Fatalf("depth %d: frames of %d bytes, over maxFramePlain", depth, w.batchPlain/w.batchFrames+1)
		}
		p := make([]byte, 3*w.batchPlain+77)
		rand.Read(p)
		if n, err := w.Write(p); n != len(p) || err != nil {
			t.Fatalf("depth %d: Write %d, %v", depth, n, err)
		}
		// The same bytes again through ReadFrom, as io.Copy into the
		// conn does: its first read takes quietRead bytes (a quiet
		// source's message goes out at once; readFrom), then full
		// batches.
		if n, err := w.ReadFrom(bytes.NewReader(p)); n != int64(len(p)) || err != nil {
			t.Fatalf("depth %d: ReadFrom %d, %v", depth, n, err)
		}
		if len(rec.writes) != 8 {
			t.Fatalf("depth %d: %d writes, want 3 full batches and the rest, then quietRead, 2 full batches and the rest", depth, len(rec.writes))
		}
		if q := len(rec.writes[4]); q != quietRead+frameOverhead {
			t.Errorf("depth %d: ReadFrom's first batch is %d bytes, want one frame of quietRead (%d)", depth, q, quietRead+frameOverhead)
		}
		for i, wr := range rec.writes {
			if i == 3 || i == 4 || i == 7 {
				continue
			}
			if len(wr)%cd != 0 || len(wr) > maxWriteBatch || len(wr) < maxWriteBatch-cd {
				t.Errorf("depth %d: batch %d is %d bytes: %.2f cells of %d", depth, i, len(wr), float64(len(wr))/float64(cd), cd)
			}
		}
		a, b := net.Pipe()
		r := newSecureConn(b, nil, rr, cd)
		go func() {
			for _, wr := range rec.writes {
				a.Write(wr)
			}
		}()
		got := make([]byte, 2*len(p))
		if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got[:len(p)], p) || !bytes.Equal(got[len(p):], p) {
			t.Fatalf("depth %d: read back other bytes (%v)", depth, err)
		}
		a.Close()
		b.Close()
	}
}
