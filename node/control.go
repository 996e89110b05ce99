package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/co-infuse/co-infuse/internal/torproc"
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

// controlMirrorRemoveWait bounds the removal of one service from the
// local tor (DEL_ONION there); at shutdown tor stops right after anyway.
const controlMirrorRemoveWait = 5 * time.Second

// controlPort is the running control port.
type controlPort struct {
	srv *proxy.ControlServer
	ln  net.Listener
	// mirror publishes its services on Tor too (dual publication); nil
	// without a local tor or with tor.publish_onions off.
	mirror *rendezvous.Mirror
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
	mirror, err := n.newTorMirror()
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	ln, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		return fmt.Errorf("control.listen %s: %w (is Tor or another co-infuse already using it? set control.listen)", cc.Listen, err)
	}
	n.ctl = &controlPort{srv: srv, ln: ln, mirror: mirror}
	n.serve("control", func() error { return srv.Serve(ln) })
	return nil
}

// closeControl closes the control port and its connections, which
// removes the services they made (before the Manager itself closes), on
// Tor too (before the local tor stops).
func (n *Node) closeControl(ctx context.Context) {
	if n.ctl != nil {
		_ = n.ctl.srv.Shutdown(ctx)
		if n.ctl.mirror != nil {
			_ = n.ctl.mirror.Close()
		}
	}
}

// newTorMirror is dual publication: with a local tor and
// tor.publish_onions on (its default), every control-port service is
// also published on Tor under the same key, in the background
// (rendezvous.Mirror). Nil otherwise.
func (n *Node) newTorMirror() (*rendezvous.Mirror, error) {
	if n.tor == nil || !n.cfg.TorPublishOnions() {
		return nil, nil
	}
	return torMirror(n.tor, n.log)
}

// torMirror is a rendezvous.Mirror onto t: it waits for t to bootstrap,
// then adds each service with its 64-byte expanded key and Port= lines.
func torMirror(t *torproc.Tor, log *slog.Logger) (*rendezvous.Mirror, error) {
	return rendezvous.NewMirror(rendezvous.MirrorConfig{
		Ready: t.WaitBootstrapped,
		Add: func(ctx context.Context, key rendezvous.Key, ports []rendezvous.Port) (string, error) {
			pm, err := torPortMaps(ports)
			if err != nil {
				return "", err
			}
			raw := key.Expanded()
			defer clear(raw[:])
			return t.AddOnion(ctx, raw, pm)
		},
		Remove:        t.DelOnion,
		RemoveTimeout: controlMirrorRemoveWait,
		Logger:        log,
	})
}

// torPortMaps turns a service's ports into tor's Port= lines: the target
// must be an IP address (or localhost, as 127.0.0.1).
func torPortMaps(ports []rendezvous.Port) ([]torproc.PortMap, error) {
	out := make([]torproc.PortMap, 0, len(ports))
	for _, p := range ports {
		host, port, err := net.SplitHostPort(p.Target)
		if err != nil {
			return nil, fmt.Errorf("port target: %w", err)
		}
		if strings.EqualFold(host, "localhost") {
			host = "127.0.0.1"
		}
		ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("port target for tor is not an IP address and port: %w", err)
		}
		out = append(out, torproc.PortMap{Virtual: p.Virtual, Target: ap})
	}
	return out, nil
}

// onionServiceStatus lists the published services for status, with each
// one's state on Tor under dual publication.
func (n *Node) onionServiceStatus() []OnionServiceStatus {
	out := []OnionServiceStatus{}
	if n.hs == nil {
		return out
	}
	var mirror *rendezvous.Mirror
	if n.ctl != nil {
		mirror = n.ctl.mirror
	}
	// A service tor took is "pending" again while tor restarts (torproc
	// adds it back once tor runs).
	torDown := mirror != nil && !n.tor.Status().Running
	for _, s := range n.hs.Services() {
		st := OnionServiceStatus{Address: s.Address, Ports: []uint16{}, Intros: s.Intros, Published: s.Published}
		for _, p := range s.Ports {
			st.Ports = append(st.Ports, p.Virtual)
		}
		if mirror != nil {
			if ms, ok := mirror.Status(s.ServiceID); ok {
				if torDown && ms.State == rendezvous.MirrorPublished {
					ms.State = rendezvous.MirrorPending
				}
				st.Tor = ms.String()
			}
		}
		out = append(out, st)
	}
	return out
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
	if n.ctl != nil && n.ctl.mirror != nil {
		n.ctl.mirror.Publish(key, ports) // in the background; never fails the reply
	}
	rep.ServiceID = key.ServiceID()
	return rep, nil
}

// controlDelOnion is DEL_ONION and a closed connection's cleanup: the
// service goes from co-infuse and (in the background) from Tor.
func (n *Node) controlDelOnion(id string) error {
	if n.ctl != nil && n.ctl.mirror != nil {
		n.ctl.mirror.Unpublish(id)
	}
	return n.hs.Unpublish(id)
}

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
