package node

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/tor"
	macaroon "gopkg.in/macaroon.v2"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/lightning"
)

// lockedBuffer is a log sink tests read while the node writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitConfig is a client with payments on, the SOCKS and control ports on
// loopback, and an LND at a closed port whose cert and macaroon are to be
// written in creds.
func waitConfig(t *testing.T, creds string, wait time.Duration) Config {
	t.Helper()
	c := DefaultConfig(t.TempDir())
	c.Discovery.Mode = discovery.ModePrivate
	c.Discovery.Bootstrap = nil
	c.SOCKS.Listen = "127.0.0.1:0"
	c.Control.Enabled = true
	c.Control.Listen = "127.0.0.1:0"
	c.Payments.Enabled = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.LND.Host = l.Addr().String()
	l.Close() // nothing answers there: LND "not up yet"
	c.LND.TLSCertPath = filepath.Join(creds, "tls.cert")
	c.LND.MacaroonPath = filepath.Join(creds, "admin.macaroon")
	c.LND.WaitForCredentials = wait
	c.ApplyDefaults()
	return c
}

// pollStatus waits, under ctx, until the status's payments line is want.
func pollStatus(ctx context.Context, t *testing.T, n *Node, want string) {
	t.Helper()
	for {
		got := n.Status().Payments
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("status payments %q, want %q", got, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func writeTestCert(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lnd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeTestMacaroon(t *testing.T, path string) {
	t.Helper()
	m, err := macaroon.New([]byte("root key"), []byte{3, 0}, "lnd", macaroon.V2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPaymentsWaitForLND: a client with lnd.wait_for_credentials starts
// with LND's cert and macaroon absent. Its SOCKS and control ports answer
// (lnd's own controller authenticates on the control port), status and
// the log say what it waits for, and a path with a paid hop is refused
// with "payments not ready" and no prepay, while a free path passes. As
// LND writes its files the wait moves on to the next thing.
func TestPaymentsWaitForLND(t *testing.T) {
	t.Parallel()
	creds := t.TempDir()
	c := waitConfig(t, creds, 10*time.Minute)
	var logs lockedBuffer
	n, err := New(c, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start with no lnd credentials: %v", err)
	}
	defer n.Close()

	// The control port works as lnd uses it when its wallet unlocks
	// (PROTOCOLINFO, cookie auth, ADD_ONION), so lnd does not exit.
	ctl := tor.NewController(n.ControlAddr().String(), "127.0.0.1", "")
	if err := ctl.Start(); err != nil {
		t.Fatalf("lnd controller on the control port while payments wait: %v", err)
	}
	if _, err := ctl.AddOnion(tor.AddOnionConfig{VirtualPort: 9735, TargetPorts: []int{9911},
		Store: tor.NewOnionFile(filepath.Join(t.TempDir(), "key"), 0o600, false, nil)}); err != nil {
		t.Fatalf("lnd's ADD_ONION while payments wait: %v", err)
	}
	if svcs := n.Status().Client.OnionServices; len(svcs) != 1 {
		t.Fatalf("status onion services %+v, want lnd's", svcs)
	}
	if err := ctl.Stop(); err != nil {
		t.Fatalf("lnd controller Stop (DEL_ONION): %v", err)
	}
	// The SOCKS port answers a SOCKS5 greeting (no auth).
	s, err := net.DialTimeout("tcp", n.SOCKSAddr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := s.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 2)
	if _, err := io.ReadFull(s, reply); err != nil || reply[0] != 5 || reply[1] != 0 {
		t.Fatalf("SOCKS greeting reply %v, %v", reply, err)
	}
	s.Close()

	pollStatus(ctx, t, n, "waiting for lnd tls cert at "+c.LND.TLSCertPath)

	// A path whose exit is paid is refused before any build; no hop is
	// given a prepay (none is paid for with vouchers we do not have).
	paid := paidPath{ads: []discovery.Advert{{Payee: "02" + strings.Repeat("11", 32)}}, final: discovery.RoleExit}
	hops := make([]circuit.HopInfo, 1)
	err = n.attachPrepay(hops, &paid, false)
	if !errors.Is(err, errPaymentsNotReady) || !strings.Contains(err.Error(), "payments not ready: waiting for lnd tls cert at "+c.LND.TLSCertPath) {
		t.Fatalf("paid path while waiting: %v, want payments not ready naming the cert", err)
	}
	if hops[0].Prepay != nil || paid.build != nil {
		t.Fatal("paid path got a prepay while payments wait")
	}
	if _, err := n.WalletStatus(); !errors.Is(err, errPaymentsNotReady) {
		t.Fatalf("WalletStatus while waiting: %v, want payments not ready", err)
	}
	if st := n.Status(); st.Client == nil || st.Client.Wallet != nil {
		t.Fatalf("status client %+v while waiting, want no wallet", st.Client)
	}
	free := paidPath{ads: []discovery.Advert{{}}, final: discovery.RoleExit}
	if err := n.attachPrepay(make([]circuit.HopInfo, 1), &free, false); err != nil {
		t.Fatalf("free path while waiting: %v", err)
	}

	writeTestCert(t, c.LND.TLSCertPath)
	pollStatus(ctx, t, n, "waiting for lnd macaroon at "+c.LND.MacaroonPath)
	writeTestMacaroon(t, c.LND.MacaroonPath)
	pollStatus(ctx, t, n, "waiting for lnd to answer at "+c.LND.Host)

	for _, want := range []string{"waiting for lnd tls cert at " + c.LND.TLSCertPath, "waiting for lnd macaroon at " + c.LND.MacaroonPath} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n.pay() != nil || n.payer() != nil {
		t.Fatal("payments set up without lnd")
	}
	select {
	case err := <-n.Fatal():
		t.Fatalf("Fatal while still within the wait: %v", err)
	default:
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close while waiting: %v", err)
	}
}

// TestPaymentsWaitExpires: the macaroon never appears; when the wait
// expires the node reports, on Fatal, one line naming the macaroon file.
func TestPaymentsWaitExpires(t *testing.T) {
	t.Parallel()
	creds := t.TempDir()
	c := waitConfig(t, creds, 500*time.Millisecond)
	writeTestCert(t, c.LND.TLSCertPath)
	n, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer n.Close()
	select {
	case err = <-n.Fatal():
	case <-ctx.Done():
		t.Fatal("no Fatal after the wait expired")
	}
	if !errors.Is(err, lightning.ErrMacaroon) || !strings.Contains(err.Error(), "lnd.macaroonpath "+c.LND.MacaroonPath) ||
		!strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Fatal = %q, want one line naming the missing macaroon", err)
	}
	// Paid paths stay refused until the node is closed.
	paid := paidPath{ads: []discovery.Advert{{Payee: "02" + strings.Repeat("11", 32)}}, final: discovery.RoleExit}
	if err := n.attachPrepay(make([]circuit.HopInfo, 1), &paid, false); !errors.Is(err, errPaymentsNotReady) {
		t.Fatalf("paid path after the wait expired: %v", err)
	}
}

// TestPaymentsNoWaitUnchanged: with no wait a missing macaroon still
// stops Start at once, naming the file.
func TestPaymentsNoWaitUnchanged(t *testing.T) {
	t.Parallel()
	creds := t.TempDir()
	c := waitConfig(t, creds, 0)
	writeTestCert(t, c.LND.TLSCertPath)
	n, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = n.Start(ctx)
	n.Close()
	if !errors.Is(err, lightning.ErrMacaroon) || !strings.Contains(err.Error(), c.LND.MacaroonPath) {
		t.Fatalf("Start = %v, want ErrMacaroon naming the file", err)
	}
}

func copyTestFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
