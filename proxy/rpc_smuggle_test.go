package proxy

import (
	"strings"
	"testing"
)

// TestRPCDuplicateMethodNotSmuggled: bitcoind's UniValue keeps the first of
// two equal keys, encoding/json the last. A request naming
// sendrawtransaction first and a harmless method second must not be
// forwarded unchanged, or the upstream broadcasts it in the clear.
func TestRPCDuplicateMethodNotSmuggled(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, "up:pw")
	s := startRPC(t, func(c *RPCConfig) {
		c.Upstream = &RPCUpstream{URL: strings.TrimPrefix(up.srv.URL, "http://"), User: "up", Password: "pw"}
	})
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	for _, body := range []string{
		`{"method":"sendrawtransaction","method":"getblockcount","params":["00"],"id":1}`,
		`[{"method":"submitpackage","method":"getblockcount","params":[["00"]],"id":1}]`,
		`[{"method":"getblockcount","id":0},{"method":"sendrawtransaction","method":"getblockcount","params":["00"],"id":1}]`,
		`{"method":"getblockcount","params":[],"params":["00"],"method":"sendrawtransaction","id":1}`,
	} {
		r := postRPC(t, s.url, auth, body)
		if !strings.Contains(r.body, `"code":-32600`) {
			t.Errorf("%s: got %d %s, want -32600", body, r.status, r.body)
		}
	}
	bodies, _ := up.seen()
	for _, b := range bodies {
		if strings.Contains(b, "sendrawtransaction") || strings.Contains(b, "submitpackage") {
			t.Errorf("a broadcast reached the upstream: %s", b)
		}
	}
}

// TestRPCSendMsgToPeerWithheld: bitcoind's hidden sendmsgtopeer can send a
// "tx" message from the upstream's own connections; it is never forwarded.
func TestRPCSendMsgToPeerWithheld(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, "up:pw")
	s := startRPC(t, func(c *RPCConfig) {
		c.Upstream = &RPCUpstream{URL: strings.TrimPrefix(up.srv.URL, "http://"), User: "up", Password: "pw"}
	})
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	for _, body := range []string{
		`{"method":"sendmsgtopeer","params":[0,"tx","00"],"id":1}`,
		`[{"method":"sendmsgtopeer","params":[0,"tx","00"],"id":1}]`,
	} {
		if r := postRPC(t, s.url, auth, body); !strings.Contains(r.body, `"code":-32601`) {
			t.Errorf("%s: got %d %s, want -32601", body, r.status, r.body)
		}
	}
	if bodies, _ := up.seen(); len(bodies) != 0 {
		t.Errorf("upstream got %q", bodies)
	}
}

// TestRPCWalletSendsWithheld: wallet methods that would broadcast from the
// upstream's wallet are refused by default, on a wallet path and in a
// batch, and forwarded only with ForwardWalletSends.
func TestRPCWalletSendsWithheld(t *testing.T) {
	t.Parallel()
	bodies := []string{
		`{"method":"sendtoaddress","params":["bcrt1qexample",0.1],"id":1}`,
		`{"jsonrpc":"2.0","method":"sendmany","params":["",{"bcrt1qexample":0.1}],"id":2}`,
		`[{"method":"getblockcount","id":1},{"method":"send","params":[[{"bcrt1qexample":0.1}]],"id":2}]`,
		`{"method":"sendall","params":[["bcrt1qexample"]],"id":3}`,
		`{"method":"bumpfee","params":["` + strings.Repeat("00", 32) + `"],"id":4}`,
	}
	for _, forward := range []bool{false, true} {
		up := newFakeUpstream(t, "up:pw")
		s := startRPC(t, func(c *RPCConfig) {
			c.Upstream = &RPCUpstream{URL: strings.TrimPrefix(up.srv.URL, "http://"), User: "up", Password: "pw"}
			c.ForwardWalletSends = forward
		})
		auth := basicAuth(testRPCUser + ":" + testRPCPass)
		for _, body := range bodies {
			r := postRPC(t, s.url+"/wallet/w", auth, body)
			refused := strings.Contains(r.body, `"code":-32601`) && strings.Contains(r.body, "walletbroadcast=0")
			if refused == forward {
				t.Errorf("forward=%v %s: got %d %s", forward, body, r.status, r.body)
			}
		}
		got, _ := up.seen()
		for _, b := range got {
			if !forward && (strings.Contains(b, "send") || strings.Contains(b, "bumpfee")) {
				t.Errorf("forward=false: upstream got %q", b)
			}
		}
		if forward && len(got) < len(bodies) {
			t.Errorf("forward=true: upstream got %d bodies, want %d", len(got), len(bodies))
		}
	}
}
