package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const testHex = "0100000001abcd"

// TestRPCCalls checks one request at a time against the exact reply
// bitcoind (≥ 28) would send: body and HTTP status, for both protocol
// versions and every error code the server produces itself.
func TestRPCCalls(t *testing.T) {
	t.Parallel()
	s := startRPC(t, nil)
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	wrongType := func(pos int, name, got string) string {
		return fmt.Sprintf(`Wrong type passed:\n{\n    \"Position %d (%s)\": \"JSON value of type %s is not of expected type string\"\n}`, pos, name, got)
	}
	usage := func(r rpcReply) bool {
		return strings.Contains(r.body, `"code":-1,"message":"sendrawtransaction \"hexstring\"`)
	}
	cases := []struct {
		name   string
		body   string
		status int
		want   string              // exact body without the trailing newline, if set
		check  func(rpcReply) bool // else this
	}{
		// Success, both versions.
		{"v1 positional", `{"method":"sendrawtransaction","params":["` + testHex + `"],"id":1}`, 200,
			`{"result":"` + testTxID + `","error":null,"id":1}`, nil},
		{"v1 explicit", `{"jsonrpc":"1.0","method":"sendrawtransaction","params":["` + testHex + `"],"id":"a"}`, 200,
			`{"result":"` + testTxID + `","error":null,"id":"a"}`, nil},
		{"v2 positional", `{"jsonrpc":"2.0","method":"sendrawtransaction","params":["` + testHex + `"],"id":7}`, 200,
			`{"jsonrpc":"2.0","result":"` + testTxID + `","id":7}`, nil},
		{"v2 named", `{"jsonrpc":"2.0","method":"sendrawtransaction","params":{"hexstring":"` + testHex + `","maxfeerate":0.2},"id":[1, 2]}`, 200,
			`{"jsonrpc":"2.0","result":"` + testTxID + `","id":[1,2]}`, nil},
		{"v1 no id", `{"method":"sendrawtransaction","params":["` + testHex + `"]}`, 200,
			`{"result":"` + testTxID + `","error":null,"id":null}`, nil},
		{"v2 notification", `{"jsonrpc":"2.0","method":"sendrawtransaction","params":["` + testHex + `"]}`, 204, "", nil},
		{"info", `{"method":"getprivatebroadcastinfo","id":1}`, 200,
			`{"result":{"transactions":[{"txid":"` + testTxID + `","wtxid":"` + testTxID + `","hex":"00","peers":[{"address":"12D3KooWpeer","sent":1700000000,"received":1700000100}]}]},"error":null,"id":1}`, nil},
		{"abort", `{"method":"abortprivatebroadcast","params":["` + testTxID + `"],"id":1}`, 200,
			`{"result":{"removed_transactions":[{"txid":"` + testTxID + `","wtxid":"` + testTxID + `","hex":"00"}]},"error":null,"id":1}`, nil},

		// -32700 parse errors: HTTP 500, id null.
		{"not json", `{"method":`, 500, `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}`, nil},
		{"empty body", ``, 500, `{"result":null,"error":{"code":-32700,"message":"Parse error"},"id":null}`, nil},
		{"scalar", `42`, 500, `{"result":null,"error":{"code":-32700,"message":"Top-level object parse error"},"id":null}`, nil},
		// -32600 invalid requests: HTTP 400.
		{"missing method", `{"id":1}`, 400, `{"result":null,"error":{"code":-32600,"message":"Missing method"},"id":1}`, nil},
		{"method not string", `{"method":5,"id":1}`, 400, `{"result":null,"error":{"code":-32600,"message":"Method must be a string"},"id":1}`, nil},
		{"params scalar", `{"method":"x","params":"a","id":1}`, 400, `{"result":null,"error":{"code":-32600,"message":"Params must be an array or object"},"id":1}`, nil},
		{"bad version", `{"jsonrpc":"3.0","method":"x","id":1}`, 400, `{"result":null,"error":{"code":-32600,"message":"JSON-RPC version not supported"},"id":1}`, nil},
		{"version not string", `{"jsonrpc":2,"method":"x","id":1}`, 400, `{"result":null,"error":{"code":-32600,"message":"jsonrpc field must be a string"},"id":1}`, nil},
		{"v2 missing method", `{"jsonrpc":"2.0","id":1}`, 400, `{"jsonrpc":"2.0","error":{"code":-32600,"message":"Missing method"},"id":1}`, nil},
		// -32601 unknown method (no upstream): 404 in 1.0, 200 in 2.0.
		{"v1 unknown", `{"method":"getblockcount","id":1}`, 404, `{"result":null,"error":{"code":-32601,"message":"Method not found"},"id":1}`, nil},
		{"v2 unknown", `{"jsonrpc":"2.0","method":"getblockcount","id":1}`, 200, `{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":1}`, nil},
		{"v2 unknown notification", `{"jsonrpc":"2.0","method":"getblockcount"}`, 204, "", nil},
		// -3 wrong types.
		{"hex number", `{"method":"sendrawtransaction","params":[12],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"` + wrongType(1, "hexstring", "number") + `"},"id":1}`, nil},
		{"hex null", `{"method":"sendrawtransaction","params":[null],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"` + wrongType(1, "hexstring", "null") + `"},"id":1}`, nil},
		{"named without hex", `{"method":"sendrawtransaction","params":{"maxfeerate":0.1},"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"` + wrongType(1, "hexstring", "null") + `"},"id":1}`, nil},
		{"v2 hex object", `{"jsonrpc":"2.0","method":"sendrawtransaction","params":[{}],"id":1}`, 200,
			`{"jsonrpc":"2.0","error":{"code":-3,"message":"` + wrongType(1, "hexstring", "object") + `"},"id":1}`, nil},
		{"fee rate array", `{"method":"sendrawtransaction","params":["00",[]],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"Amount is not a number or string"},"id":1}`, nil},
		{"fee rate garbage", `{"method":"sendrawtransaction","params":["00","abc"],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"Invalid amount"},"id":1}`, nil},
		{"fee rate 9 decimals", `{"method":"sendrawtransaction","params":["00",0.123456789],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"Invalid amount"},"id":1}`, nil},
		{"fee rate negative", `{"method":"sendrawtransaction","params":["00",-0.1],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"Amount out of range"},"id":1}`, nil},
		{"burn amount garbage", `{"method":"sendrawtransaction","params":["00",0.1,"x"],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"Invalid amount"},"id":1}`, nil},
		{"abort id number", `{"method":"abortprivatebroadcast","params":[1],"id":1}`, 500,
			`{"result":null,"error":{"code":-3,"message":"` + wrongType(1, "id", "number") + `"},"id":1}`, nil},
		// -8 invalid parameters.
		{"fee rate 1 BTC", `{"method":"sendrawtransaction","params":["00",1],"id":1}`, 500,
			`{"result":null,"error":{"code":-8,"message":"Fee rates larger than or equal to 1BTC/kvB are not accepted"},"id":1}`, nil},
		{"named twice", `{"method":"sendrawtransaction","params":{"hexstring":"00","hexstring":"01"},"id":1}`, 500,
			`{"result":null,"error":{"code":-8,"message":"Parameter hexstring specified multiple times"},"id":1}`, nil},
		{"unknown named", `{"method":"sendrawtransaction","params":{"hexstring":"00","fee":1},"id":1}`, 500,
			`{"result":null,"error":{"code":-8,"message":"Unknown named parameter fee"},"id":1}`, nil},
		{"abort id short", `{"method":"abortprivatebroadcast","params":["abcd"],"id":1}`, 500,
			`{"result":null,"error":{"code":-8,"message":"id must be of length 64 (not 4, for 'abcd')"},"id":1}`, nil},
		{"abort id not hex", `{"method":"abortprivatebroadcast","params":["` + strings.Repeat("zz", 32) + `"],"id":1}`, 500,
			`{"result":null,"error":{"code":-8,"message":"id must be hexadecimal string (not '` + strings.Repeat("zz", 32) + `')"},"id":1}`, nil},
		// -5 from the Abort func through RPCCoder.
		{"abort unknown", `{"method":"abortprivatebroadcast","params":["` + strings.Repeat("00", 32) + `"],"id":1}`, 500,
			`{"result":null,"error":{"code":-5,"message":"Transaction not in private broadcast queue"},"id":1}`, nil},
		// -1 wrong argument counts: the help text.
		{"no params", `{"method":"sendrawtransaction","id":1}`, 500, "", usage},
		{"too many params", `{"method":"sendrawtransaction","params":["00",0.1,0,1],"id":1}`, 500, "", usage},
		{"info with params", `{"method":"getprivatebroadcastinfo","params":[1],"id":1}`, 500, "", func(r rpcReply) bool {
			return strings.Contains(r.body, `"code":-1,"message":"getprivatebroadcastinfo\n`)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := postRPC(t, s.url, auth, tc.body)
			if r.status != tc.status {
				t.Errorf("status %d, want %d (body %s)", r.status, tc.status, r.body)
			}
			if tc.status == 204 {
				if r.body != "" {
					t.Errorf("204 with body %q", r.body)
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if tc.check != nil {
				if !tc.check(r) {
					t.Errorf("body %s", r.body)
				}
				return
			}
			if r.body != tc.want+"\n" {
				t.Errorf("body\n got %s\nwant %s", r.body, tc.want)
			}
		})
	}
}

// TestRPCFeeRates checks what Broadcast receives for maxfeerate.
func TestRPCFeeRates(t *testing.T) {
	t.Parallel()
	s := startRPC(t, nil)
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	f := func(v float64) *float64 { return &v }
	cases := []struct {
		params string
		want   *float64
	}{
		{`["00"]`, nil},
		{`["00",null]`, nil},
		{`["00",0.2]`, f(0.2)},
		{`["00","0.25"]`, f(0.25)},
		{`["00",0]`, f(0)},
		{`["00",1e-3]`, f(0.001)},
		{`["00",0.10000000000]`, f(0.1)},
		{`["00",true]`, f(0)}, // btcd's allowhighfees
		{`["00",false]`, nil},
		{`{"hexstring":"00","maxfeerate":0.5}`, f(0.5)},
		{`{"maxfeerate":0.5,"hexstring":"00","maxburnamount":"0.01"}`, f(0.5)},
	}
	for _, tc := range cases {
		r := postRPC(t, s.url, auth, `{"method":"sendrawtransaction","params":`+tc.params+`,"id":1}`)
		if r.status != 200 {
			t.Errorf("%s: status %d %s", tc.params, r.status, r.body)
			continue
		}
		hexTx, rate, _ := s.f.last()
		if hexTx != "00" {
			t.Errorf("%s: Broadcast got %q", tc.params, hexTx)
		}
		switch {
		case tc.want == nil && rate != nil:
			t.Errorf("%s: rate %v, want nil", tc.params, *rate)
		case tc.want != nil && (rate == nil || *rate != *tc.want):
			t.Errorf("%s: rate %v, want %v", tc.params, rate, *tc.want)
		}
	}
}

// codedErr is an error of the mempool client's kind: its own type with a
// code, wrapped on its way up.
type codedErr struct{ code int }

func (e codedErr) Error() string { return "txn-mempool-conflict" }
func (e codedErr) RPCCode() int  { return e.code }

// TestRPCBroadcastErrors checks the mapping of Broadcast's errors.
func TestRPCBroadcastErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		v1   string
		v2   string
	}{
		{"coded", fmt.Errorf("deliver: %w", codedErr{RPCVerifyRejected}),
			`{"result":null,"error":{"code":-26,"message":"deliver: txn-mempool-conflict"},"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":-26,"message":"deliver: txn-mempool-conflict"},"id":1}`},
		{"RPCError -22", &RPCError{RPCDeserializationError, "TX decode failed. Make sure the tx has at least one input."},
			`{"result":null,"error":{"code":-22,"message":"TX decode failed. Make sure the tx has at least one input."},"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":-22,"message":"TX decode failed. Make sure the tx has at least one input."},"id":1}`},
		{"plain error stays private", errors.New("peer 10.1.2.3 said no to " + testTxID),
			`{"result":null,"error":{"code":-1,"message":"sendrawtransaction failed"},"id":1}`,
			`{"jsonrpc":"2.0","error":{"code":-1,"message":"sendrawtransaction failed"},"id":1}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startRPC(t, nil)
			s.f.setErr(tc.err)
			auth := basicAuth(testRPCUser + ":" + testRPCPass)
			r := postRPC(t, s.url, auth, `{"method":"sendrawtransaction","params":["00"],"id":1}`)
			if r.status != 500 || r.body != tc.v1+"\n" {
				t.Errorf("1.0: %d %s\nwant 500 %s", r.status, r.body, tc.v1)
			}
			r = postRPC(t, s.url, auth, `{"jsonrpc":"2.0","method":"sendrawtransaction","params":["00"],"id":1}`)
			if r.status != 200 || r.body != tc.v2+"\n" {
				t.Errorf("2.0: %d %s\nwant 200 %s", r.status, r.body, tc.v2)
			}
		})
	}
}

// TestRPCBatch checks batches: replies in order, none for notifications,
// errors per element, 204 for an all-notification batch, [] for an empty
// one, and the batch cap.
func TestRPCBatch(t *testing.T) {
	t.Parallel()
	s := startRPC(t, func(c *RPCConfig) { c.MaxBatch = 5 })
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"mixed",
			`[{"method":"sendrawtransaction","params":["00"],"id":1},` +
				`{"jsonrpc":"2.0","method":"nope","id":2},` +
				`{"jsonrpc":"2.0","method":"sendrawtransaction","params":["00"]},` +
				`5,` +
				`{"jsonrpc":"2.0","method":"sendrawtransaction","params":[1],"id":"x"}]`,
			200,
			`[{"result":"` + testTxID + `","error":null,"id":1},` +
				`{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":2},` +
				`{"result":null,"error":{"code":-32600,"message":"Invalid Request object"},"id":null},` +
				`{"jsonrpc":"2.0","error":{"code":-3,"message":"Wrong type passed:\n{\n    \"Position 1 (hexstring)\": \"JSON value of type number is not of expected type string\"\n}"},"id":"x"}]`},
		{"all notifications", `[{"jsonrpc":"2.0","method":"sendrawtransaction","params":["00"]},{"jsonrpc":"2.0","method":"x"}]`, 204, ""},
		{"empty", `[]`, 200, `[]`},
		{"too long", `[1,2,3,4,5,6]`, 400, `{"result":null,"error":{"code":-32600,"message":"Batch of 6 requests exceeds the limit of 5"},"id":null}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := postRPC(t, s.url, auth, tc.body)
			want := tc.want
			if want != "" {
				want += "\n"
			}
			if r.status != tc.status || r.body != want {
				t.Errorf("got %d %s\nwant %d %s", r.status, r.body, tc.status, tc.want)
			}
		})
	}
}

// TestRPCHTTP checks the HTTP layer: authentication, method and size
// limits.
func TestRPCHTTP(t *testing.T) {
	t.Parallel()
	s := startRPC(t, func(c *RPCConfig) { c.MaxBody = 1024 })
	cookie, err := readCookie(s.CookiePath())
	if err != nil {
		t.Fatal(err)
	}
	good := `{"method":"sendrawtransaction","params":["00"],"id":1}`
	cases := []struct {
		name   string
		auth   string
		body   string
		status int
	}{
		{"user/password", basicAuth(testRPCUser + ":" + testRPCPass), good, 200},
		{"cookie", basicAuth(cookie), good, 200},
		{"no auth", "", good, 401},
		{"wrong password", basicAuth(testRPCUser + ":nope"), good, 401},
		{"wrong cookie", basicAuth("__cookie__:" + strings.Repeat("0", 64)), good, 401},
		{"lower-case scheme", "basic " + strings.TrimPrefix(basicAuth(testRPCUser+":"+testRPCPass), "Basic "), good, 401},
		{"not base64", "Basic !!!", good, 401},
		{"bearer", "Bearer x", good, 401},
		{"body too large", basicAuth(testRPCUser + ":" + testRPCPass), `{"method":"sendrawtransaction","params":["` + strings.Repeat("00", 1024) + `"],"id":1}`, 413},
		{"body at the limit", basicAuth(testRPCUser + ":" + testRPCPass), `{"method":"sendrawtransaction","params":["` + strings.Repeat("0", 1024-len(good)+2) + `"],"id":1}`, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := postRPC(t, s.url, tc.auth, tc.body)
			if r.status != tc.status {
				t.Errorf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.status == 401 {
				if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="jsonrpc"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
				if r.body != "" {
					t.Errorf("401 with body %q", r.body)
				}
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		t.Parallel()
		tr := &http.Transport{Proxy: nil}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(s.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 {
			t.Errorf("GET: %d, want 405", resp.StatusCode)
		}
	})
}

// TestRPCConfigErrors checks that NewRPC names bad fields.
func TestRPCConfigErrors(t *testing.T) {
	t.Parallel()
	ok := func(context.Context, string, *float64) (string, error) { return "", nil }
	cases := []struct {
		name string
		cfg  RPCConfig
		want string
	}{
		{"no broadcast", RPCConfig{User: "u", Password: "p"}, "Broadcast"},
		{"no auth", RPCConfig{Broadcast: ok}, "no authentication"},
		{"user without password", RPCConfig{Broadcast: ok, User: "u"}, "together"},
		{"negative body", RPCConfig{Broadcast: ok, User: "u", Password: "p", MaxBody: -1}, "MaxBody"},
		{"upstream https", RPCConfig{Broadcast: ok, User: "u", Password: "p", Upstream: &RPCUpstream{URL: "https://127.0.0.1:1"}}, "only http"},
		{"upstream no port", RPCConfig{Broadcast: ok, User: "u", Password: "p", Upstream: &RPCUpstream{URL: "127.0.0.1"}}, "host:port"},
		{"upstream creds in url", RPCConfig{Broadcast: ok, User: "u", Password: "p", Upstream: &RPCUpstream{URL: "http://a:b@127.0.0.1:1"}}, "credentials"},
	}
	for _, tc := range cases {
		if _, err := NewRPC(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
	}
}
