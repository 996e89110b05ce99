package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/co-infuse/co-infuse/mempool"
)

// TestMempoolGiveUpShownByRPC: a transaction the client gives up on at
// mempool.max_attempts or mempool.give_up_after (no delivery node is ever
// reachable here) shows in getprivatebroadcastinfo, through the node's
// JSON-RPC port, as given up with when and why; abortprivatebroadcast then
// forgets it.
func TestMempoolGiveUpShownByRPC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*MempoolConfig)
		why  string // in last_error
	}{
		{"max_attempts", func(m *MempoolConfig) { m.MaxAttempts = 1 }, "in 1 rounds"},
		{"give_up_after", func(m *MempoolConfig) { m.GiveUpAfter = time.Millisecond }, "within 1ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cfg := DefaultConfig(t.TempDir())
			cfg.Mempool.RPC.Enabled = true
			cfg.Mempool.RPC.Listen = "127.0.0.1:0"
			cfg.Mempool.RPC.User, cfg.Mempool.RPC.Password = "u", "p"
			cfg.Mempool.VerdictWait = 50 * time.Millisecond
			tc.mod(&cfg.Mempool)
			cfg.ApplyDefaults()
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			n := &Node{cfg: cfg, log: slog.New(slog.DiscardHandler), ctx: ctx}
			var dials atomic.Int64
			noNode := func(context.Context, mempool.Avoid) (mempool.Delivery, error) {
				dials.Add(1)
				return mempool.Delivery{}, fmt.Errorf("%w: this test has none", mempool.ErrNoDeliveryNode)
			}
			if err := n.openMempoolClient(noNode); err != nil {
				t.Fatal(err)
			}
			if err := n.startRPC(); err != nil {
				n.mempool.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() {
				sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer scancel()
				_ = n.rpc.Shutdown(sctx)
				n.wg.Wait()
				n.mempool.Close()
			})
			url := "http://" + n.RPCAddr().String() + "/"
			call := func(method string, params ...any) json.RawMessage {
				t.Helper()
				body, _ := json.Marshal(map[string]any{"jsonrpc": "1.0", "id": 1, "method": method, "params": params})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				req.SetBasicAuth("u", "p")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				defer resp.Body.Close()
				var out struct {
					Result json.RawMessage `json:"result"`
					Error  json.RawMessage `json:"error"`
				}
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
					t.Fatalf("%s: HTTP %s: %v", method, resp.Status, err)
				}
				if len(out.Error) > 0 && string(out.Error) != "null" {
					t.Fatalf("%s: %s", method, out.Error)
				}
				return out.Result
			}

			hexTx, txid := giveUpTestTx(t)
			var got string
			if err := json.Unmarshal(call("sendrawtransaction", hexTx), &got); err != nil || got != txid {
				t.Fatalf("sendrawtransaction = %q, %v; want %s (queued after verdict_wait)", got, err, txid)
			}

			// Poll until the client gives it up (its retry is due within
			// 1.5 s of the failed first round).
			type entry struct {
				TxID        string `json:"txid"`
				GivenUp     bool   `json:"given_up"`
				GivenUpTime int64  `json:"given_up_time"`
				LastError   string `json:"last_error"`
				Attempts    int    `json:"attempts"`
			}
			var e entry
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				var info struct {
					Transactions []entry `json:"transactions"`
				}
				raw := call("getprivatebroadcastinfo")
				if err := json.Unmarshal(raw, &info); err != nil {
					t.Fatalf("getprivatebroadcastinfo: %v in %s", err, raw)
				}
				if len(info.Transactions) != 1 || info.Transactions[0].TxID != txid {
					t.Fatalf("getprivatebroadcastinfo lists %s, want the one transaction %s", raw, txid)
				}
				if e = info.Transactions[0]; e.GivenUp {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("not given up in time; last getprivatebroadcastinfo: %s", raw)
				case <-tick.C:
				}
			}
			if e.GivenUpTime <= 0 || !strings.Contains(e.LastError, "given up") || !strings.Contains(e.LastError, tc.why) {
				t.Fatalf("given-up entry %+v: want given_up_time and a last_error naming %q", e, tc.why)
			}
			if e.Attempts < 1 || dials.Load() < 1 {
				t.Fatalf("given up after %d attempts and %d dials; want the first round run", e.Attempts, dials.Load())
			}
			if st := n.mempool.Stats(); st.GaveUp != 1 {
				t.Fatalf("client counted %d given up, want 1", st.GaveUp)
			}

			call("abortprivatebroadcast", txid)
			if raw := call("getprivatebroadcastinfo"); !strings.Contains(string(raw), `"transactions":[]`) {
				t.Fatalf("after abortprivatebroadcast: %s", raw)
			}
		})
	}
}

// giveUpTestTx is a well-formed transaction (hex, txid) that spends an
// output nobody has: it passes the client's pre-check.
func giveUpTestTx(t *testing.T) (string, string) {
	t.Helper()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{7, 7, 7}, 1), nil, nil))
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes()), tx.TxHash().String()
}
