package rendezvous

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTor stands in for a local tor's ADD_ONION/DEL_ONION in these unit
// tests (the real tor is in node's and devnet's tests).
type fakeTor struct {
	mu     sync.Mutex
	events []string          // "add <id>", "del <id>", in order
	live   map[string][]Port // what "tor" serves now
	fail   error             // Add fails with it while set
	rename string            // Add reports this id instead, if set
	keys   [][64]byte        // the expanded keys Add was given
	ready  chan struct{}     // Ready blocks until it is closed, if set
}

func newFakeTor() *fakeTor { return &fakeTor{live: map[string][]Port{}} }

func (f *fakeTor) Ready(ctx context.Context) error {
	f.mu.Lock()
	ch := f.ready
	f.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeTor) Add(_ context.Context, key Key, ports []Port) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append(f.keys, key.Expanded())
	if f.fail != nil {
		f.events = append(f.events, "fail")
		return "", f.fail
	}
	id := key.ServiceID()
	if f.rename != "" {
		id = f.rename
	}
	f.events = append(f.events, "add "+id)
	f.live[id] = slices.Clone(ports)
	return id, nil
}

func (f *fakeTor) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, "del "+id)
	if _, ok := f.live[id]; !ok {
		return errors.New("552 Unknown Onion Service id")
	}
	delete(f.live, id)
	return nil
}

func (f *fakeTor) snapshot() ([]string, map[string][]Port) {
	f.mu.Lock()
	defer f.mu.Unlock()
	live := map[string][]Port{}
	for k, v := range f.live {
		live[k] = v
	}
	return slices.Clone(f.events), live
}

func newTestMirror(t *testing.T, f *fakeTor) *Mirror {
	t.Helper()
	m, err := NewMirror(MirrorConfig{Ready: f.Ready, Add: f.Add, Remove: f.Remove, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// waitStatus polls m until cond holds for id's status, failing after a
// generous deadline.
func waitStatus(t *testing.T, m *Mirror, id string, what string, cond func(MirrorStatus, bool) bool) MirrorStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		st, ok := m.Status(id)
		if cond(st, ok) {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: status %v (known %v)", what, st, ok)
		case <-tick.C:
		}
	}
}

func mustKey(t *testing.T) Key {
	t.Helper()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyExpandedIsTheControllerForm(t *testing.T) {
	t.Parallel()
	k := mustKey(t)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(k.String(), KeyPrefix))
	if err != nil {
		t.Fatal(err)
	}
	if e := k.Expanded(); string(e[:]) != string(raw) {
		t.Fatal("Expanded differs from the bytes of String")
	}
}

func TestMirrorPublishAndUnpublish(t *testing.T) {
	t.Parallel()
	f := newFakeTor()
	m := newTestMirror(t, f)
	k := mustKey(t)
	ports := []Port{{Virtual: 9735, Target: "127.0.0.1:9911"}, {Virtual: 80, Target: "127.0.0.1:8080"}}
	m.Publish(k, ports)
	st := waitStatus(t, m, k.ServiceID(), "published", func(s MirrorStatus, _ bool) bool { return s.State == MirrorPublished })
	if st.String() != "published" || st.Err != "" {
		t.Fatalf("status %+v", st)
	}
	_, live := f.snapshot()
	if !slices.Equal(live[k.ServiceID()], ports) {
		t.Fatalf("tor serves %v, want %v", live, ports)
	}
	f.mu.Lock()
	if e := k.Expanded(); len(f.keys) != 1 || f.keys[0] != e {
		t.Error("Add was not given the service's expanded key")
	}
	f.mu.Unlock()
	if !m.Unpublish(k.Address()) {
		t.Fatal("Unpublish by address: not known")
	}
	if m.Unpublish(k.ServiceID()) {
		t.Fatal("Unpublish twice: still known")
	}
	if _, ok := m.Status(k.ServiceID()); ok {
		t.Fatal("status after Unpublish")
	}
	m.Close() // waits for the removal
	ev, live := f.snapshot()
	if len(live) != 0 || !slices.Equal(ev, []string{"add " + k.ServiceID(), "del " + k.ServiceID()}) {
		t.Fatalf("events %v, live %v", ev, live)
	}
}

// A down tor never fails Publish: the service is pending, then "error: …"
// while the mirror retries, then published once tor takes it.
func TestMirrorRetriesUntilTorTakesIt(t *testing.T) {
	t.Parallel()
	f := newFakeTor()
	f.ready = make(chan struct{})
	m := newTestMirror(t, f)
	k := mustKey(t)
	m.Publish(k, []Port{{Virtual: 80, Target: "127.0.0.1:1"}})
	if st, ok := m.Status(k.ServiceID()); !ok || st.State != MirrorPending || st.String() != "pending" {
		t.Fatalf("before tor is ready: %v %v", st, ok)
	}
	f.mu.Lock()
	f.fail = errors.New("tor control: connection refused")
	close(f.ready)
	f.mu.Unlock()
	st := waitStatus(t, m, k.ServiceID(), "error while tor is down", func(s MirrorStatus, _ bool) bool { return s.State == MirrorError })
	if !st.Retrying || st.String() != "error: tor control: connection refused" {
		t.Fatalf("status %+v %q", st, st)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	waitStatus(t, m, k.ServiceID(), "published after tor came back", func(s MirrorStatus, _ bool) bool { return s.State == MirrorPublished })
	m.Close()
	ev, live := f.snapshot()
	if len(live) != 0 || ev[len(ev)-1] != "del "+k.ServiceID() || ev[len(ev)-2] != "add "+k.ServiceID() {
		t.Fatalf("events %v, live %v", ev, live)
	}
}

// A tor that reports another address for the key is a permanent error:
// the wrong service is removed and not retried.
func TestMirrorAddressMismatch(t *testing.T) {
	t.Parallel()
	f := newFakeTor()
	other := mustKey(t).ServiceID()
	f.rename = other
	m := newTestMirror(t, f)
	k := mustKey(t)
	m.Publish(k, []Port{{Virtual: 80, Target: "127.0.0.1:1"}})
	st := waitStatus(t, m, k.ServiceID(), "mismatch", func(s MirrorStatus, _ bool) bool { return s.State == MirrorError })
	if st.Retrying || !strings.Contains(st.Err, "different address") || !strings.Contains(st.Err, other) {
		t.Fatalf("status %+v", st)
	}
	m.Close()
	ev, live := f.snapshot()
	if len(live) != 0 || !slices.Equal(ev, []string{"add " + other, "del " + other}) {
		t.Fatalf("events %v (retried or not removed), live %v", ev, live)
	}
}

// Publishing a key again (a controller reconnecting after DEL_ONION)
// removes the earlier copy before adding the new one, so the late removal
// cannot take the new one down.
func TestMirrorRepublishOrdersRemovalFirst(t *testing.T) {
	t.Parallel()
	f := newFakeTor()
	m := newTestMirror(t, f)
	k := mustKey(t)
	id := k.ServiceID()
	m.Publish(k, []Port{{Virtual: 80, Target: "127.0.0.1:1"}})
	waitStatus(t, m, id, "first", func(s MirrorStatus, _ bool) bool { return s.State == MirrorPublished })
	m.Unpublish(id)
	m.Publish(k, []Port{{Virtual: 80, Target: "127.0.0.1:2"}})
	waitStatus(t, m, id, "second", func(s MirrorStatus, _ bool) bool { return s.State == MirrorPublished })
	ev, live := f.snapshot()
	if !slices.Equal(ev, []string{"add " + id, "del " + id, "add " + id}) || live[id][0].Target != "127.0.0.1:2" {
		t.Fatalf("events %v, live %v", ev, live)
	}
	m.Close()
	m.Close()
	m.Publish(k, []Port{{Virtual: 80, Target: "127.0.0.1:3"}}) // after Close: nothing
	if _, ok := m.Status(id); ok {
		t.Fatal("Publish after Close took effect")
	}
	if _, live := f.snapshot(); len(live) != 0 {
		t.Fatalf("left on tor after Close: %v", live)
	}
}

func TestNewMirrorChecksConfig(t *testing.T) {
	t.Parallel()
	f := newFakeTor()
	for _, cfg := range []MirrorConfig{
		{Remove: f.Remove},
		{Add: f.Add},
		{Add: f.Add, Remove: f.Remove, RetryMin: -1},
	} {
		if _, err := NewMirror(cfg); err == nil {
			t.Errorf("NewMirror(%+v) accepted", cfg)
		}
	}
}
