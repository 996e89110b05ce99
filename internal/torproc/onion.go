package torproc

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// PortMap is one Port= of ADD_ONION (control-spec §3.27): connections to
// the service's Virtual port go to Target.
type PortMap struct {
	Virtual uint16
	Target  netip.AddrPort
}

// onionSpec is what re-adds a service after a restart: the key in
// control-port form ("ED25519-V3:<base64>") and the ports.
type onionSpec struct {
	key   string
	ports []PortMap
}

// serviceIDLen is the length of a v3 service id (rend-spec-v3 §6).
const serviceIDLen = 56

// portArgs renders ports as Port= arguments.
func portArgs(ports []PortMap) (string, error) {
	if len(ports) == 0 {
		return "", errors.New("torproc: an onion service needs at least one port")
	}
	var b strings.Builder
	for i, p := range ports {
		if p.Virtual == 0 || !p.Target.IsValid() || p.Target.Port() == 0 {
			return "", fmt.Errorf("torproc: port %d: virtual port and target are required", i)
		}
		fmt.Fprintf(&b, " Port=%d,%s", p.Virtual, p.Target)
	}
	return b.String(), nil
}

// addOnion runs ADD_ONION with spec's key (DiscardPK: we know it) and
// returns the service id.
func addOnion(ctx context.Context, c *controlConn, spec onionSpec) (string, error) {
	ports, err := portArgs(spec.ports)
	if err != nil {
		return "", err
	}
	r, err := c.do(ctx, "ADD_ONION", "ADD_ONION "+spec.key+" Flags=DiscardPK"+ports)
	if err != nil {
		return "", err
	}
	id := r.keyValues()["ServiceID"]
	if len(id) != serviceIDLen {
		return "", fmt.Errorf("torproc: ADD_ONION: %w: no service id", ErrBadReply)
	}
	return id, nil
}

// AddOnion publishes an onion service with key, the 64-byte expanded
// ed25519 secret key (scalar | prefix) in the form Tor's control port and
// rendezvous.Key use, and returns its service id (56 base32 characters,
// without ".onion"). The service is remembered and added again after a
// restart until DelOnion.
func (t *Tor) AddOnion(ctx context.Context, key [64]byte, ports []PortMap) (string, error) {
	spec := onionSpec{key: "ED25519-V3:" + base64.StdEncoding.EncodeToString(key[:]), ports: append([]PortMap(nil), ports...)}
	return t.add(ctx, spec)
}

// AddOnionNew publishes an onion service with a key tor generates (for
// tests hosting Tor-only services); the key is kept in memory so a
// restart re-adds the same address.
func (t *Tor) AddOnionNew(ctx context.Context, ports []PortMap) (string, error) {
	inst, err := t.current()
	if err != nil {
		return "", err
	}
	pa, err := portArgs(ports)
	if err != nil {
		return "", err
	}
	r, err := inst.ctl.do(ctx, "ADD_ONION", "ADD_ONION NEW:ED25519-V3"+pa)
	if err != nil {
		return "", err
	}
	kv := r.keyValues()
	id, key := kv["ServiceID"], kv["PrivateKey"]
	if len(id) != serviceIDLen || !strings.HasPrefix(key, "ED25519-V3:") {
		return "", fmt.Errorf("torproc: ADD_ONION: %w: no service id or key", ErrBadReply)
	}
	t.mu.Lock()
	t.onions[id] = onionSpec{key: key, ports: append([]PortMap(nil), ports...)}
	t.mu.Unlock()
	return id, nil
}

// add adds spec on the running tor and remembers it.
func (t *Tor) add(ctx context.Context, spec onionSpec) (string, error) {
	inst, err := t.current()
	if err != nil {
		return "", err
	}
	id, err := addOnion(ctx, inst.ctl, spec)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.onions[id] = spec
	t.mu.Unlock()
	return id, nil
}

// DelOnion removes a service added through AddOnion or AddOnionNew
// (serviceID with or without ".onion"); it is forgotten even if tor is
// down, so a restart does not bring it back.
func (t *Tor) DelOnion(ctx context.Context, serviceID string) error {
	id := strings.TrimSuffix(strings.ToLower(serviceID), ".onion")
	if len(id) != serviceIDLen || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
		return fmt.Errorf("torproc: DEL_ONION: %q is not a v3 service id", serviceID)
	}
	t.mu.Lock()
	_, known := t.onions[id]
	delete(t.onions, id)
	t.mu.Unlock()
	inst, err := t.current()
	if err != nil {
		if known && errors.Is(err, ErrNotRunning) {
			return nil
		}
		return err
	}
	_, err = inst.ctl.do(ctx, "DEL_ONION", "DEL_ONION "+id)
	return err
}
