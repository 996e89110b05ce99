package devnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// TestE2EDevnetTor: devnet --tor runs a private Tor network, a tor-gateway
// node and a client, both with a managed tor that has bootstrapped in it;
// the client's tor fetches a loopback page through the Tor network's
// exits byte for byte; status shows both tors; Close stops every tor.
func TestE2EDevnetTor(t *testing.T) {
	skipShort(t)
	for _, b := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install tor)", b)
		}
	}
	d := startTestDevnet(t, Options{Tor: true, WebListen: "off"})
	if d.TorNet() == nil {
		t.Fatal("no Tor network")
	}
	var gw *node.Node
	for _, n := range d.Nodes {
		if st := n.Status(); len(st.Roles) > 0 && strings.Contains(fmt.Sprint(st.Roles), string(node.RoleTorGateway)) {
			gw = n
		}
	}
	if gw == nil {
		t.Fatal("no node has the tor-gateway role")
	}
	for name, n := range map[string]*node.Node{"gateway": gw, "client": d.Client} {
		st := n.Status()
		if st.Tor == nil || !st.Tor.Running || st.Tor.Bootstrap != 100 {
			t.Errorf("%s status tor %+v: want running and bootstrapped", name, st.Tor)
		}
	}

	body := make([]byte, 100<<10)
	rand.Read(body)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tor := d.Client.Tor()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var p uint16
		fmt.Sscan(port, &p)
		return tor.DialSocks(ctx, "127.0.0.1", p)
	}}}
	var got []byte
	var last error
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
		resp, err := hc.Do(req)
		if err == nil {
			got, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				break
			}
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatalf("through the client's managed tor: got %d bytes, want %d (last error %v)", len(got), len(body), last)
	}

	dir := filepath.Dir(d.TorNet().Dir())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("process %s (%q) left after Close", e.Name(), strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}
