package rendezvous

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// TestSecureConnIdleReaderHoldsNoBuffer: the service's copy from the
// end-to-end conn to its target (join's io.Copy(target, a)) over n
// sessions that each carried one frame and now wait for the next. The
// waiting copies hold no frame buffer and no io.Copy buffer: before,
// each held 16 KiB of frame and 32 KiB of copy buffer for the session's
// life, whether or not bytes flowed (found in adversarial review of the
// rendezvous session's memory, THREAT_MODEL.md "Onion services").
func TestSecureConnIdleReaderHoldsNoBuffer(t *testing.T) {
	// Not parallel: the heap is measured.
	const n = 200
	var wg sync.WaitGroup
	var closers []net.Conn
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		wg.Wait()
	}()
	base := heapInUse()
	msg := make([]byte, maxFramePlain)
	rand.Read(msg)
	got := make([]byte, len(msg))
	for range n {
		send, _, _, recv := transportPair(t)
		stream, streamFar := net.Pipe() // the spliced stream
		target, targetFar := net.Pipe() // the service's target
		closers = append(closers, stream, streamFar, target, targetFar)
		sc := &secureConn{c: streamFar, recv: recv}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(target, sc) // as join does
		}()
		ct, err := send.Encrypt(nil, nil, msg)
		if err != nil {
			t.Fatal(err)
		}
		frame := binary.BigEndian.AppendUint16(nil, uint16(len(ct)))
		errc := make(chan error, 1)
		go func() {
			_, err := stream.Write(append(frame, ct...))
			errc <- err
		}()
		if _, err := io.ReadFull(targetFar, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("frame through the copy: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	per := float64(int64(heapInUse())-int64(base)) / n
	t.Logf("heap per waiting copy after one frame: %.0f B", per)
	const budget = 8 << 10
	if per > budget {
		t.Fatalf("a copy waiting for its next frame holds %.0f B of heap, want ≤ %d (no frame or copy buffer)", per, budget)
	}
}
