package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AdminSocket is the node's local admin endpoint inside the data directory:
// HTTP over a unix socket with mode 0600, so only the node's own user can ask
// it things (`co-infuse peers`, `co-infuse wallet`). It never listens on TCP.
const AdminSocket = "admin.sock"

type adminServer struct {
	srv  *http.Server
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

func startAdmin(n *Node) (*adminServer, error) {
	path := filepath.Join(n.cfg.DataDir, AdminSocket)
	// A socket left by a crashed node blocks Listen; a live node would
	// answer a dial, so only remove the file when nothing does.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another node is running with data dir %s (its admin socket answers); stop it first", n.cfg.DataDir)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st := Status{ID: n.host.ID().String(), Roles: n.cfg.Roles}
		for _, a := range n.P2PAddrs() {
			st.Addrs = append(st.Addrs, a.String())
		}
		if a := n.SOCKSAddr(); a != nil {
			st.SOCKS = a.String()
		}
		if a := n.HTTPAddr(); a != nil {
			st.HTTPTunnel = a.String()
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.disc.Known())
	})
	mux.HandleFunc("GET /v1/circuits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.Circuits())
	})
	mux.HandleFunc("GET /v1/wallet", func(w http.ResponseWriter, r *http.Request) {
		st, err := n.WalletStatus()
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /v1/wallet/buy", func(w http.ResponseWriter, r *http.Request) {
		var req BuyRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		id, err := peer.Decode(req.Node)
		if err != nil || req.Sats == 0 {
			http.Error(w, "want {\"node\": <peer id>, \"sats\": N>0}", http.StatusBadRequest)
			return
		}
		p, err := n.Buy(r.Context(), id, req.Sats)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		writeJSON(w, p)
	})
	a := &adminServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		ln:   ln,
		path: path,
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("admin socket stopped", "err", err)
		}
	}()
	return a, nil
}

func (a *adminServer) close(ctx context.Context) {
	a.srv.Shutdown(ctx)
	a.wg.Wait()
	os.Remove(a.path)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// Status is what GET /v1/status answers.
type Status struct {
	ID         string   `json:"id"`
	Roles      []Role   `json:"roles"`
	Addrs      []string `json:"addrs"`
	SOCKS      string   `json:"socks,omitempty"`
	HTTPTunnel string   `json:"httptunnel,omitempty"`
}

// BuyRequest is the body of POST /v1/wallet/buy.
type BuyRequest struct {
	Node string `json:"node"`
	Sats uint64 `json:"sats"`
}

// AdminClient talks to a running node's admin socket.
type AdminClient struct {
	c *http.Client
}

// NewAdminClient returns a client for the node whose data directory is dataDir.
func NewAdminClient(dataDir string) *AdminClient {
	path := filepath.Join(dataDir, AdminSocket)
	return &AdminClient{c: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Get decodes the JSON answer of GET path (e.g. "/v1/peers") into v.
func (a *AdminClient) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://co-infuse"+path, nil)
	if err != nil {
		return err
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return fmt.Errorf("no node answers on the admin socket (is `co-infuse run` running with this --datadir?): %w", err)
	}
	defer resp.Body.Close()
	return decodeAdmin(resp, path, v)
}

// Post sends body as JSON to path and decodes the answer into v.
func (a *AdminClient) Post(ctx context.Context, path string, body, v any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://co-infuse"+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return fmt.Errorf("no node answers on the admin socket (is `co-infuse run` running with this --datadir?): %w", err)
	}
	defer resp.Body.Close()
	return decodeAdmin(resp, path, v)
}

func decodeAdmin(resp *http.Response, path string, v any) error {
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s", path, strings.TrimSpace(string(msg)))
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}
