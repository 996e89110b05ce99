package lightning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	macaroon "gopkg.in/macaroon.v2"
)

// writeCert writes a self-signed PEM certificate for 127.0.0.1.
func writeCert(t *testing.T, dir string) string {
	t.Helper()
	p, _ := writeCertKey(t, dir)
	return p
}

// writeCertKey writes a self-signed PEM certificate for 127.0.0.1 and
// returns its path and the TLS certificate with key for a server.
func writeCertKey(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test lnd"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "tls.cert")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// writeMacaroon writes a syntactically valid binary macaroon.
func writeMacaroon(t *testing.T, dir string) string {
	t.Helper()
	m, err := macaroon.New([]byte("root key"), []byte{3, 0}, "lnd", macaroon.V2)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "test.macaroon")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestDialFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert := writeCert(t, dir)
	mac := writeMacaroon(t, dir)
	notPEM := writeFile(t, dir, "tls.key", "not a certificate")
	notMac := writeFile(t, dir, "bad.macaroon", "\x00\x01garbage")
	big := writeFile(t, dir, "big.macaroon", strings.Repeat("x", maxMacaroonSize+1))
	missing := filepath.Join(dir, "missing")
	down := closedPort(t)

	tests := []struct {
		name     string
		cfg      Config
		want     error
		contains string
	}{
		{"bad host", Config{Host: "nope", TLSCertPath: cert, MacaroonPath: mac}, ErrInvalidConfig, "lnd.host"},
		{"missing cert", Config{Host: down, TLSCertPath: missing, MacaroonPath: mac}, ErrTLSCert, "does not exist"},
		{"cert not pem", Config{Host: down, TLSCertPath: notPEM, MacaroonPath: mac}, ErrTLSCert, "no PEM certificate"},
		{"missing macaroon", Config{Host: down, TLSCertPath: cert, MacaroonPath: missing}, ErrMacaroon, "does not exist"},
		{"macaroon garbage", Config{Host: down, TLSCertPath: cert, MacaroonPath: notMac}, ErrMacaroon, "not a macaroon"},
		{"macaroon too big", Config{Host: down, TLSCertPath: cert, MacaroonPath: big}, ErrMacaroon, "larger than"},
		{"nothing listening", Config{Host: down, TLSCertPath: cert, MacaroonPath: mac}, ErrUnreachable, down},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, tc.cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial() = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("Dial() = %q, lacks %q", err, tc.contains)
			}
		})
	}
}
