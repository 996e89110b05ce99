package torproc

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeControl is the tor side of a control connection for tests: it
// answers each command line with answer(line), after release is closed for
// the commands hold names.
type fakeControl struct {
	conn    net.Conn
	got     chan struct{} // closed when the held command arrived
	release chan struct{}
	once    sync.Once
}

// answer lets the held command's reply go.
func (f *fakeControl) answer() { f.once.Do(func() { close(f.release) }) }

func newFakeControl(t *testing.T, hold string) (*controlConn, *fakeControl) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	f := &fakeControl{conn: b, got: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(b)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == hold {
				close(f.got)
				<-f.release
			}
			key := strings.TrimPrefix(line, "GETINFO ")
			if _, err := b.Write([]byte("250-" + key + "=answer-to-" + key + "\r\n250 OK\r\n")); err != nil {
				return
			}
		}
	}()
	c := newControlConn(a)
	t.Cleanup(func() {
		f.answer()
		c.close()
		b.Close()
		<-done
	})
	return c, f
}

// TestControlReplyAfterAbandonedCommand: a command whose caller gives up
// (deadline or cancel) before tor answers must not leave its reply in the
// stream for the next command to read as its own: tor answers every
// command, in order, however late (control-spec §2.1). Found by review:
// the late reply of an abandoned ADD_ONION was read by the next GETINFO,
// and every reply after it by the command after its own.
func TestControlReplyAfterAbandonedCommand(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deadline", "cancel"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			c, f := newFakeControl(t, "GETINFO slow")
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			if how == "cancel" {
				ctx, cancel = context.WithCancel(context.Background())
				// Cancel once tor has the command (it holds it
				// until release).
				go func() {
					<-f.got
					cancel()
				}()
			}
			_, err := c.do(ctx, "GETINFO", "GETINFO slow")
			cancel()
			select {
			case <-f.got:
			case <-time.After(10 * time.Second):
				t.Fatal("the held command never reached tor")
			}
			if err == nil {
				t.Fatal("the held command succeeded")
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				t.Fatalf("abandoned command: %v, want the context's error", err)
			}
			f.answer() // tor answers the abandoned command late
			ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel2()
			r, err := c.do(ctx2, "GETINFO", "GETINFO next")
			if err != nil {
				t.Fatalf("next command: %v", err)
			}
			if got := r.keyValues()["next"]; got != "answer-to-next" {
				t.Fatalf("next command read %v, not its own reply", r.keyValues())
			}
		})
	}
}
