package rendezvous

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// memSession is one end-to-end session as the service runs it: the
// client's secureConn, the service's secureConn joined to its target
// (join), and the target's far end (app), over in-memory pipes in place
// of the spliced stream and the target's TCP connection.
type memSession struct {
	cli, app net.Conn
	conns    []net.Conn
	svc      *countConn // the service's end of the stream
}

// countConn counts the writes to a conn and their bytes (the circuit
// stream cuts each write into cells, so fewer, fuller writes mean fewer
// cells).
type countConn struct {
	net.Conn
	writes, partial atomic.Int64
	cellData        int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	if len(p)%c.cellData != 0 {
		c.partial.Add(1)
	}
	return c.Conn.Write(p)
}

// sessionCellData is the DATA one cell carries on the service's 4-hop
// circuit to the rendezvous point (with the vanguard).
var sessionCellData = cell.MaxData(4)

// openMemSessions starts n sessions; the returned func closes them and
// waits for their join goroutines.
func openMemSessions(t testing.TB, n int) ([]*memSession, func()) {
	t.Helper()
	var wg sync.WaitGroup
	ss := make([]*memSession, n)
	for i := range ss {
		is, ir, rs, rr := transportPair(t)
		c1, c2 := net.Pipe()
		tgt, app := net.Pipe()
		cc := &countConn{Conn: c2, cellData: sessionCellData}
		cli := newSecureConn(c1, is, ir, sessionCellData)
		svc := newSecureConn(cc, rs, rr, sessionCellData)
		wg.Add(1)
		go func() {
			defer wg.Done()
			join(svc, tgt)
		}()
		ss[i] = &memSession{cli: cli, app: app, conns: []net.Conn{c1, c2, tgt, app}, svc: cc}
	}
	return ss, func() {
		for _, s := range ss {
			for _, c := range s.conns {
				c.Close()
			}
		}
		wg.Wait()
	}
}

// exercise sends size bytes each way through s (target to client, then
// client to target) and checks they arrive.
func (s *memSession) exercise(t testing.TB, size int) {
	t.Helper()
	for _, dir := range [][2]net.Conn{{s.app, s.cli}, {s.cli, s.app}} {
		p := make([]byte, size)
		rand.Read(p)
		errc := make(chan error, 1)
		go func() {
			_, err := dir[0].Write(p)
			errc <- err
		}()
		got := make([]byte, size)
		if _, err := io.ReadFull(dir[1], got); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatal("session delivered other bytes")
		}
	}
}

// sessionMemory measures the heap held per session by n sessions: idle
// (just joined, no byte yet) and idle again after each carried 256 KiB
// both ways (what a once-busy session keeps while it waits). A busy
// session gives its read buffer back after idleRelease, so the second
// figure is polled every 100 ms, for up to 10 s, until it is at most
// settle bytes; it is the last figure measured.
func sessionMemory(t testing.TB, n int, settle float64) (idle, afterUse float64) {
	t.Helper()
	base := heapInUse()
	ss, closeAll := openMemSessions(t, n)
	defer closeAll()
	perSession := func() float64 { return float64(int64(heapInUse())-int64(base)) / float64(n) }
	idle = perSession()
	for _, s := range ss {
		s.exercise(t, 256<<10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if afterUse = perSession(); afterUse <= settle {
			return idle, afterUse
		}
		select {
		case <-ctx.Done():
			return idle, afterUse
		case <-tick.C:
		}
	}
}

// BenchmarkRendezvousSessionMemory reports the heap bytes one rendezvous
// session holds at the service and client ends (secureConn and join),
// idle and idle after use. Not a speed figure: b.N only repeats it.
func BenchmarkRendezvousSessionMemory(b *testing.B) {
	var idle, used float64
	for b.Loop() {
		idle, used = sessionMemory(b, 100, 16<<10)
	}
	b.ReportMetric(idle, "idle-B/session")
	b.ReportMetric(used, "used-idle-B/session")
}

// BenchmarkRendezvousSessionBulk: 1 MiB from the target to the client
// per iteration through one session (join and both secureConns over
// in-memory pipes), with the service's stream writes per MiB and how
// many of them end in a part-filled cell: taking buffers only while
// bytes flow must keep bulk transfers in full batches.
func BenchmarkRendezvousSessionBulk(b *testing.B) {
	ss, closeAll := openMemSessions(b, 1)
	defer closeAll()
	s := ss[0]
	const size = 1 << 20
	p := make([]byte, size)
	got := make([]byte, size)
	b.SetBytes(size)
	w0, p0 := s.svc.writes.Load(), s.svc.partial.Load()
	n := 0
	for b.Loop() {
		errc := make(chan error, 1)
		go func() {
			_, err := s.app.Write(p)
			errc <- err
		}()
		if _, err := io.ReadFull(s.cli, got); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(s.svc.writes.Load()-w0)/float64(n), "writes/MiB")
	b.ReportMetric(float64(s.svc.partial.Load()-p0)/float64(n), "part-cell-writes/MiB")
}

// TestRendezvousSessionMemory: a session that waits holds no batching
// buffer. secureConn's write batches and join's batch-sized reads from
// the target are taken while bytes flow and given back when the session
// goes quiet (idleRelease), so an idle session, fresh or once busy,
// costs a few KiB of heap, not the ~100-280 KiB of buffers a busy one
// uses.
func TestRendezvousSessionMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	// Not parallel: the heap is measured.
	const budget = 16 << 10
	idle, used := sessionMemory(t, 100, budget)
	t.Logf("heap per session: idle %.0f B, idle after 256 KiB each way %.0f B", idle, used)
	if idle > budget || used > budget {
		t.Fatalf("an idle session holds %.0f B (fresh) and %.0f B (after use) of heap, want ≤ %d", idle, used, budget)
	}
}
