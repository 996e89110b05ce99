package node

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/tor"

	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// startIdleTor starts Debian's tor with one bridge on a closed loopback
// port and no other way out: it answers its control port (ADD_ONION,
// DEL_ONION) but never bootstraps, and sends nothing off the machine.
func startIdleTor(t *testing.T) *torproc.Tor {
	t.Helper()
	if _, err := exec.LookPath("tor"); err != nil {
		t.Skip("tor not installed (apt-get install tor)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tp, err := torproc.Start(ctx, torproc.Config{
		DataDir: filepath.Join(t.TempDir(), "tor"),
		Torrc:   []string{"UseBridges 1", "Bridge 127.0.0.1:1"},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("start tor: %v", err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp
}

// TestTorKeyEncoding: the real tor, handed a rendezvous.Key's 64-byte
// expanded form (what dual publication sends), publishes it under the
// same service id co-infuse computes, for a generated key and for one
// parsed from the controller form; so the mirror's mismatch check holds
// only for a real encoding fault.
func TestTorKeyEncoding(t *testing.T) {
	t.Parallel()
	tp := startIdleTor(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	gen, err := rendezvous.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := rendezvous.ParseKey(gen.String())
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rendezvous.GenerateKey(rand.Reader)
	ports := []torproc.PortMap{{Virtual: 80, Target: netip.MustParseAddrPort("127.0.0.1:9")}}
	for _, k := range []rendezvous.Key{gen, other} {
		id, err := tp.AddOnion(ctx, k.Expanded(), ports)
		if err != nil || id != k.ServiceID() {
			t.Fatalf("tor ADD_ONION = %q, %v; co-infuse's id %q", id, err, k.ServiceID())
		}
	}
	if err := tp.DelOnion(ctx, gen.ServiceID()); err != nil {
		t.Fatal(err)
	}
	if id, err := tp.AddOnion(ctx, parsed.Expanded(), ports); err != nil || id != gen.ServiceID() {
		t.Fatalf("parsed key: tor says %q, %v; want %q", id, err, gen.ServiceID())
	}
}

// TestTorMirrorNotBootstrapped: with a real tor that never bootstraps,
// dual publication keeps the service pending and neither Publish,
// Unpublish nor Close waits for tor; once tor is gone it is an error that
// is retried.
func TestTorMirrorNotBootstrapped(t *testing.T) {
	t.Parallel()
	tp := startIdleTor(t)
	m, err := torMirror(tp, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k, _ := rendezvous.GenerateKey(rand.Reader)
	m.Publish(k, []rendezvous.Port{{Virtual: 80, Target: "localhost:9"}})
	if st, ok := m.Status(k.ServiceID()); !ok || st.String() != "pending" {
		t.Fatalf("status %v, %v; want pending", st, ok)
	}
	if s := tp.Status(); len(s.Onions) != 0 || s.Bootstrap == 100 {
		t.Fatalf("tor status %+v: added before bootstrap, or bootstrapped with its network off", s)
	}
	if !m.Unpublish(k.Address()) {
		t.Fatal("Unpublish: unknown")
	}
	done := make(chan struct{})
	go func() { m.Close(); close(done) }()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("Close hangs on a tor that never bootstraps")
	}

	// A tor that is gone: the service shows tor's error and is retried.
	tp.Close()
	m2, err := torMirror(tp, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	m2.Publish(k, []rendezvous.Port{{Virtual: 80, Target: "127.0.0.1:9"}})
	var st rendezvous.MirrorStatus
	for st.State != rendezvous.MirrorError {
		select {
		case <-ctx.Done():
			t.Fatalf("no error with tor closed: %v", st)
		case <-time.After(10 * time.Millisecond):
		}
		st, _ = m2.Status(k.ServiceID())
	}
	if !st.Retrying || !strings.Contains(st.Err, torproc.ErrClosed.Error()) {
		t.Fatalf("status %+v", st)
	}
	t.Logf("tor closed: %s", st)
}

// TestControlDualPublicationPending: a client node with a control port
// and a managed tor that cannot bootstrap (its only directory authority
// is a closed loopback port). lnd's controller code adds a service on the
// control port: the reply comes without waiting for tor, status lists the
// service with "tor: pending" and tor holds nothing yet; DEL_ONION (lnd's
// Stop) removes it from status.
func TestControlDualPublicationPending(t *testing.T) {
	if _, err := exec.LookPath("tor"); err != nil {
		t.Skip("tor not installed (apt-get install tor)")
	}
	t.Parallel()
	n := startUnreachableTorNode(t, true)

	ctl := tor.NewController(n.ControlAddr().String(), "127.0.0.1", "")
	if err := ctl.Start(); err != nil {
		t.Fatalf("lnd controller Start: %v", err)
	}
	onion, err := ctl.AddOnion(tor.AddOnionConfig{VirtualPort: 9735, TargetPorts: []int{9911}, Store: tor.NewOnionFile(filepath.Join(t.TempDir(), "key"), 0o600, false, nil)})
	if err != nil {
		t.Fatalf("ADD_ONION with tor not bootstrapped: %v", err)
	}
	host, _, err := net.SplitHostPort(onion.OnionService)
	if err != nil {
		host = onion.OnionService
	}
	svcs := n.Status().Client.OnionServices
	if len(svcs) != 1 || svcs[0].Address != host || svcs[0].Tor != "pending" || !slices.Equal(svcs[0].Ports, []uint16{9735}) {
		t.Fatalf("status onion services %+v, want %s with tor pending", svcs, host)
	}
	if on := n.Tor().Status().Onions; len(on) != 0 {
		t.Fatalf("tor holds %v before it bootstrapped", on)
	}
	if err := ctl.Stop(); err != nil {
		t.Fatalf("lnd controller Stop (DEL_ONION): %v", err)
	}
	if svcs := n.Status().Client.OnionServices; len(svcs) != 0 {
		t.Fatalf("status after DEL_ONION: %+v", svcs)
	}
}
