package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// upstream forwards calls unchanged to the user's own bitcoind or btcd.
type upstream struct {
	base       *url.URL // http://host:port[/path]
	userPass   string   // "user:password", or "" to read cookiePath per call
	cookiePath string
	maxReply   int64
	client     *http.Client // no environment proxy, no compression
}

func newUpstream(u *RPCUpstream, maxConns int) (*upstream, error) {
	raw := u.URL
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	base, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("rpc config: Upstream.URL: %w", err)
	case base.Scheme != "http":
		return nil, fmt.Errorf("rpc config: Upstream.URL scheme %q: only http is supported", base.Scheme)
	case base.Host == "" || base.Port() == "":
		return nil, errors.New("rpc config: Upstream.URL needs host:port")
	case base.User != nil:
		return nil, errors.New("rpc config: Upstream.URL must not carry credentials: use Upstream.User/Password")
	}
	up := &upstream{
		base:       base,
		cookiePath: u.CookiePath,
		maxReply:   u.MaxReply,
	}
	if u.User != "" {
		up.userPass = u.User + ":" + u.Password
	}
	if up.maxReply == 0 {
		up.maxReply = DefaultRPCMaxUpstreamReply
	}
	up.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil, // never an environment proxy: the node is local
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
	return up, nil
}

// errUpstreamAuth: the upstream refused our configured credentials.
var errUpstreamAuth = errors.New("upstream refused the configured credentials")

// post sends body to the upstream at the client's path (bitcoind's
// /wallet/<name> endpoints keep working) and returns the response, whose
// body the caller closes. A 401 from the upstream is errUpstreamAuth: the
// client's own credentials were fine, so it must not see a 401.
func (u *upstream) post(ctx context.Context, clientPath string, body []byte) (*http.Response, error) {
	target := *u.base
	target.RawQuery, target.Fragment = "", ""
	target.Path = path.Join("/", u.base.Path, clientPath)
	target.RawPath = ""
	userPass := u.userPass
	if userPass == "" && u.cookiePath != "" {
		c, err := readCookie(u.cookiePath)
		if err != nil {
			return nil, fmt.Errorf("upstream cookie: %w", err)
		}
		userPass = c
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if userPass != "" {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(userPass)))
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		_ = resp.Body.Close()
		return nil, errUpstreamAuth
	}
	return resp, nil
}

// upstreamError is the error a client gets for a call the upstream did not
// answer. It never carries the upstream's address.
func upstreamError(err error) *RPCError {
	switch {
	case errors.Is(err, errUpstreamAuth):
		return &RPCError{RPCMiscError, "upstream node: " + errUpstreamAuth.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		return &RPCError{RPCMiscError, "upstream node: request timed out"}
	case errors.Is(err, context.Canceled):
		return &RPCError{RPCMiscError, "upstream node: request cancelled"}
	}
	return &RPCError{RPCClientNotConnected, "upstream node: not reachable"}
}

// forward sends a whole body (a single call, or a batch with no local
// method) unchanged and streams the upstream's status and reply back. If
// the upstream cannot be asked, it returns the error and writes nothing.
func (s *RPCServer) forward(ctx context.Context, w http.ResponseWriter, clientPath string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.up.post(ctx, clientPath, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	setWriteDeadline(w, s.cfg.CallTimeout) // a large getblock still fits
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		s.log.Debug("rpc upstream reply cut short", "err", err)
	}
	return nil
}

// forwardBatch sends the calls at indexes fwd as one batch (each element
// as the client sent it) and puts the upstream's replies into replies at
// the same indexes. Replies are matched in order when the upstream sent
// one per call that expects one, else by id; a call left without a reply
// gets an error.
func (s *RPCServer) forwardBatch(ctx context.Context, clientPath string, calls []rpcCall, fwd []int, replies []json.RawMessage) {
	var want []int // calls that expect a reply
	for _, i := range fwd {
		if !calls[i].notification() {
			want = append(want, i)
		}
	}
	fail := func(rerr *RPCError) {
		for _, i := range want {
			if replies[i] == nil {
				replies[i] = appendRPCReply(nil, calls[i].version, calls[i].id, calls[i].hasID, nil, rerr)
			}
		}
	}

	body := []byte{'['}
	for k, i := range fwd {
		if k > 0 {
			body = append(body, ',')
		}
		body = append(body, calls[i].raw...)
	}
	body = append(body, ']')

	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	resp, err := s.up.post(ctx, clientPath, body)
	if err != nil {
		fail(upstreamError(err))
		return
	}
	defer resp.Body.Close()
	data, err := readAtMost(resp.Body, s.up.maxReply)
	switch {
	case err != nil:
		fail(upstreamError(err))
		return
	case int64(len(data)) > s.up.maxReply:
		fail(&RPCError{RPCMiscError, "upstream node: reply too large"})
		return
	}
	if len(bytes.TrimSpace(data)) == 0 { // 204: all notifications to it
		fail(&RPCError{RPCMiscError, "upstream node: no reply"})
		return
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(data, &arr); err != nil {
		// One object for the whole batch (an error): every call gets its
		// error member, else a generic one.
		var one struct {
			Error *RPCError `json:"error"`
		}
		if json.Unmarshal(data, &one) == nil && one.Error != nil {
			fail(one.Error)
		} else {
			fail(&RPCError{RPCMiscError, "upstream node: malformed reply"})
		}
		return
	}
	if len(arr) == len(want) {
		for k, i := range want {
			replies[i] = arr[k]
		}
		return
	}
	// Match by id among calls whose id is unique.
	byID := make(map[string]int, len(want))
	dup := make(map[string]bool)
	for _, i := range want {
		k := string(calls[i].id)
		if _, ok := byID[k]; ok {
			dup[k] = true
		}
		byID[k] = i
	}
	for _, r := range arr {
		var head struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(r, &head) != nil {
			continue
		}
		k := string(compactJSON(head.ID))
		if i, ok := byID[k]; ok && !dup[k] && replies[i] == nil {
			replies[i] = r
		}
	}
	fail(&RPCError{RPCMiscError, "upstream node: no reply to this call"})
}

// readAtMost reads r to its end but at most limit+1 bytes, so a caller can
// tell "exactly limit" from "more".
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(io.LimitReader(r, limit+1))
	return b.Bytes(), err
}
