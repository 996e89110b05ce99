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
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// AdminSocket is the node's local admin endpoint inside the data directory:
// HTTP over a unix socket with mode 0600, so only the node's own user can ask
// it things (`co-infuse status`, `peers`, `wallet`); AdminClient refuses a
// socket with any other owner or mode. It never listens on TCP.
const AdminSocket = "admin.sock"

type adminServer struct {
	srv     *http.Server
	ln      net.Listener
	path    string
	started time.Time // when the node finished starting; read-only
	wg      sync.WaitGroup
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
	ln, err := listenPrivate(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	a := &adminServer{ln: ln, path: path, started: time.Now()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, n.status(a.started))
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
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("admin socket stopped", "err", err)
		}
	}()
	return a, nil
}

// listenPrivate listens on a unix socket at path that only this user can
// use. The socket is bound under a temporary name, restricted to 0600, then
// renamed into place, so no client ever sees it with a wider mode (which
// AdminClient refuses).
func listenPrivate(path string) (net.Listener, error) {
	tmp := path + ".new"
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	// The socket file is removed by adminServer.close under its final
	// name; the listener must not unlink a path it no longer owns.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return ln, nil
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

// BuyRequest is the body of POST /v1/wallet/buy.
type BuyRequest struct {
	Node string `json:"node"`
	Sats uint64 `json:"sats"`
}

// Errors of AdminClient. Each is wrapped in a one-line message that names
// the data directory or socket and says what to do.
var (
	// ErrNotDataDir: the directory does not exist or has no config.yaml.
	ErrNotDataDir = errors.New("not a co-infuse data directory")
	// ErrNoNode: the admin socket is missing or refuses connections.
	ErrNoNode = errors.New("no co-infuse node is running")
	// ErrUnsafeSocket: the admin socket is not a socket, belongs to
	// another user or is open to the group or others, so whoever answers
	// on it may not be our node.
	ErrUnsafeSocket = errors.New("refusing admin socket")
)

// AdminClient talks to a running node's admin socket.
type AdminClient struct {
	c       *http.Client
	dataDir string
}

// NewAdminClient returns a client for the node whose data directory is
// dataDir. It checks that dataDir holds a config or, for a node configured
// from the environment, an admin socket (else ErrNotDataDir), that
// the admin socket exists (else ErrNoNode), and that it is a socket owned by
// this user with no group or other permissions (else ErrUnsafeSocket): a
// node's answers (peers, wallet balances) are trusted, so a socket someone
// else could have bound is refused before anything is sent to it.
func NewAdminClient(dataDir string) (*AdminClient, error) {
	if fi, err := os.Stat(dataDir); err != nil || !fi.IsDir() {
		return nil, notDataDir(dataDir)
	}
	path := filepath.Join(dataDir, AdminSocket)
	if _, err := os.Stat(filepath.Join(dataDir, ConfigFile)); err != nil {
		// A node configured by CO_INFUSE_ variables alone (a container)
		// has no config.yaml, only its socket.
		if _, err := os.Lstat(path); err != nil {
			return nil, notDataDir(dataDir)
		}
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, noNode(dataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := checkSocket(path, fi); err != nil {
		return nil, err
	}
	return &AdminClient{dataDir: dataDir, c: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}, nil
}

func notDataDir(dataDir string) error {
	return fmt.Errorf("%s is %w (create one with `co-infuse init --datadir %s`)", dataDir, ErrNotDataDir, dataDir)
}

func noNode(dataDir string) error {
	return fmt.Errorf("%w with --datadir %s (start one with `co-infuse run --datadir %s`)", ErrNoNode, dataDir, dataDir)
}

// unsafeSocket says why the socket at path is refused; what describes it
// ("mode 0666", "owned by uid 1001", "a regular file, not a socket").
func unsafeSocket(path, what string) error {
	return fmt.Errorf("%w %s: %s, want a socket with mode 0600 owned by uid %d — another user may be impersonating the node; remove it and restart the node", ErrUnsafeSocket, path, what, os.Getuid())
}

// Get decodes the JSON answer of GET path (e.g. "/v1/peers") into v.
func (a *AdminClient) Get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://co-infuse"+path, nil)
	if err != nil {
		return err
	}
	return a.do(req, path, v)
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
	return a.do(req, path, v)
}

func (a *AdminClient) do(req *http.Request, path string, v any) error {
	resp, err := a.c.Do(req)
	if err != nil {
		// Refused or gone: a socket left behind by a node that died.
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) {
			return noNode(a.dataDir)
		}
		return fmt.Errorf("the co-infuse node with --datadir %s did not answer %s %s: %w", a.dataDir, req.Method, path, err)
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
