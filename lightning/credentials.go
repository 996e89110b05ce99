package lightning

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"google.golang.org/grpc/credentials"
	macaroon "gopkg.in/macaroon.v2"
)

// macaroonCredential attaches a macaroon to every RPC as the hex "macaroon"
// metadata header, which is how LND expects it.
type macaroonCredential struct {
	hex string // immutable after construction
}

var _ credentials.PerRPCCredentials = macaroonCredential{}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (m macaroonCredential) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"macaroon": m.hex}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// macaroon is a bearer token and never travels without TLS.
func (macaroonCredential) RequireTransportSecurity() bool { return true }

// readCapped reads at most limit bytes of path and fails if the file is
// larger.
func readCapped(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("file larger than %d bytes", limit)
	}
	return b, nil
}

// fileAdvice turns an open error into a hint for the user.
func fileAdvice(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "file does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "no permission to read it (run co-infuse as a user who can read LND's files)"
	default:
		return err.Error()
	}
}

// loadCertPool reads LND's tls.cert into a pool holding only that cert.
func loadCertPool(path string) (*x509.CertPool, error) {
	b, err := readCapped(path, maxCertSize)
	if err != nil {
		return nil, fmt.Errorf("%w: lnd.tlscertpath %s: %s", ErrTLSCert, path, fileAdvice(err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%w: lnd.tlscertpath %s: no PEM certificate in file (point it at LND's tls.cert, not tls.key)",
			ErrTLSCert, path)
	}
	return pool, nil
}

// loadMacaroon reads and parses a binary macaroon file (as LND writes them).
func loadMacaroon(path string) (macaroonCredential, error) {
	b, err := readCapped(path, maxMacaroonSize)
	if err != nil {
		return macaroonCredential{}, fmt.Errorf("%w: lnd.macaroonpath %s: %s", ErrMacaroon, path, fileAdvice(err))
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(b); err != nil {
		return macaroonCredential{}, fmt.Errorf("%w: lnd.macaroonpath %s: not a macaroon file (%v); use one of the *.macaroon files LND writes",
			ErrMacaroon, path, err)
	}
	return macaroonCredential{hex: hex.EncodeToString(b)}, nil
}
