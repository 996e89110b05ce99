package regtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/rpcclient"
	"github.com/co-infuse/co-infuse/lightning"
)

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestStartMineClose(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: starts btcd and two lnd on regtest (and builds them once, several minutes); run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	net, err := Start(ctx, Options{Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			net.Close()
		}
	})

	for _, n := range []NodeInfo{net.Alice(), net.Bob()} {
		if len(n.Pubkey) != 66 || !strings.HasPrefix(n.RPCHost, "127.0.0.1:") || !strings.HasPrefix(n.P2PHost, "127.0.0.1:") {
			t.Fatalf("%s: bad NodeInfo %+v", n.Alias, n)
		}
		for _, p := range []string{n.TLSCertPath, n.MacaroonPath} {
			if _, err := os.Stat(p); err != nil {
				t.Fatalf("%s: %v", n.Alias, err)
			}
		}
	}

	host, user, pass, certPath := net.BtcdRPC()
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("btcd RPC host %s is not loopback", host)
	}
	cert, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	rpc, err := rpcclient.New(&rpcclient.ConnConfig{Host: host, User: user, Pass: pass,
		HTTPPostMode: true, Certificates: cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		rpc.Shutdown()
		rpc.WaitForShutdown()
	}()
	h0, err := rpc.GetBlockCount()
	if err != nil {
		t.Fatal(err)
	}
	if err := net.Mine(ctx, 3); err != nil {
		t.Fatal(err)
	}
	h1, err := rpc.GetBlockCount()
	if err != nil || h1 != h0+3 {
		t.Fatalf("height %d → %d (%v), want +3", h0, h1, err)
	}
	// Mine returns only after both nodes have seen the new tip.
	for _, n := range []NodeInfo{net.Alice(), net.Bob()} {
		c, err := lightning.Dial(ctx, n.LightningConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Info().BlockHeight; int64(got) != h1 {
			t.Errorf("%s at height %d, want %d", n.Alias, got, h1)
		}
		c.Close()
	}

	dir := net.Dir()
	if err := net.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := net.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, d := range []*daemon{net.alice.d, net.bob.d, net.btcd.d} {
		if !d.exited() {
			t.Errorf("%s still running after Close", d.name)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary dir %s not removed: %v", dir, err)
	}
	if err := net.Mine(ctx, 1); err == nil {
		t.Error("Mine after Close succeeded")
	}
}
