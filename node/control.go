package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/co-infuse/co-infuse/proxy"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// ControlCookieFile is the control port's cookie inside the data directory
// unless control.cookie_file says otherwise (Tor's name for it).
const ControlCookieFile = "control_auth_cookie"

// controlPublishWait bounds how long ADD_ONION waits for the first
// descriptor to be stored. Tor answers at once and publishes in the
// background; waiting a little means the address works when bitcoind or
// lnd advertise it. The service keeps trying after the reply either way.
const controlPublishWait = 10 * time.Second

// controlPort is the running control port.
type controlPort struct {
	srv *proxy.ControlServer
	ln  net.Listener
}

// startControl opens the Tor-compatible control port (proxy.ControlServer)
// and hands it funcs that publish through the client's rendezvous.Manager.
func (n *Node) startControl() error {
	cc := n.cfg.Control
	if !cc.Enabled {
		return nil
	}
	if n.hs == nil {
		return errors.New("control: the control port needs the client role")
	}
	srv, err := proxy.NewControl(proxy.ControlConfig{
		AddOnion:       n.controlAddOnion,
		DelOnion:       n.controlDelOnion,
		SOCKSListeners: n.socksListeners,
		NullAuth:       cc.NullAuth,
		CookiePath:     n.controlCookiePath(),
		Password:       cc.Password,
		Logger:         n.log,
	})
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	ln, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		return fmt.Errorf("control.listen %s: %w (is Tor or another co-infuse already using it? set control.listen)", cc.Listen, err)
	}
	n.ctl = &controlPort{srv: srv, ln: ln}
	n.serve("control", func() error { return srv.Serve(ln) })
	return nil
}

// closeControl closes the control port and its connections, which
// removes the services they made (before the Manager itself closes).
func (n *Node) closeControl(ctx context.Context) {
	if n.ctl != nil {
		_ = n.ctl.srv.Shutdown(ctx)
	}
}

// controlCookiePath is where the cookie goes, "" with cookie auth off. It
// is made absolute: PROTOCOLINFO hands it to clients that run elsewhere.
func (n *Node) controlCookiePath() string {
	cc := n.cfg.Control
	p := cc.CookieFile
	switch {
	case cc.NullAuth || p == "off":
		return ""
	case p == "":
		p = filepath.Join(n.cfg.DataDir, ControlCookieFile)
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}

// ControlAddr is the control port's address, or nil when it is off.
func (n *Node) ControlAddr() net.Addr {
	if n.ctl == nil {
		return nil
	}
	return n.ctl.ln.Addr()
}

// ControlCookie is the control port's cookie file, or "" without one.
func (n *Node) ControlCookie() string {
	if n.ctl == nil {
		return ""
	}
	return n.ctl.srv.CookiePath()
}

// socksListeners answers GETINFO net/listeners/socks.
func (n *Node) socksListeners() []string {
	if a := n.SOCKSAddr(); a != nil {
		return []string{a.String()}
	}
	return nil
}

// controlAddOnion is ADD_ONION: make or parse the key (Tor's expanded
// ED25519-V3 form), check the targets, publish.
func (n *Node) controlAddOnion(ctx context.Context, req proxy.OnionRequest) (proxy.OnionReply, error) {
	var (
		key rendezvous.Key
		rep proxy.OnionReply
		err error
	)
	if req.NewKey() {
		if key, err = rendezvous.GenerateKey(rand.Reader); err != nil {
			return proxy.OnionReply{}, err
		}
		rep.PrivateKey = key.String()
	} else if key, err = rendezvous.ParseKey(req.KeySpec); err != nil {
		return proxy.OnionReply{}, fmt.Errorf("%w: %w", proxy.ErrOnionBadKey, err)
	}
	ports := make([]rendezvous.Port, 0, len(req.Ports))
	for _, p := range req.Ports {
		if !n.cfg.Rendezvous.AllowNonLoopbackTargets && !loopbackTarget(p.Target) {
			return proxy.OnionReply{}, fmt.Errorf("%w: not a loopback address (rendezvous.allow_non_loopback_targets is off)", proxy.ErrOnionBadTarget)
		}
		ports = append(ports, rendezvous.Port{Virtual: p.Virtual, Target: p.Target})
	}
	pctx, cancel := context.WithTimeout(ctx, controlPublishWait)
	defer cancel()
	if _, err := n.hs.Publish(pctx, key, ports); err != nil {
		if errors.Is(err, rendezvous.ErrDuplicate) {
			return proxy.OnionReply{}, fmt.Errorf("%w: %w", proxy.ErrOnionCollision, err)
		}
		return proxy.OnionReply{}, err
	}
	rep.ServiceID = key.ServiceID()
	return rep, nil
}

// controlDelOnion is DEL_ONION and a closed connection's cleanup.
func (n *Node) controlDelOnion(id string) error { return n.hs.Unpublish(id) }

// loopbackTarget reports whether a host:port target is on loopback.
func loopbackTarget(target string) bool {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
