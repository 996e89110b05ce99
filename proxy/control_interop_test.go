package proxy

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lightningnetwork/lnd/tor"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// This file drives the control port the way its two real clients do:
// Bitcoin Core's dialogue replayed with a reply parser modelled on Core's
// (src/torcontrol.cpp), and lnd's own controller code (lnd/tor).

// coreReply is one reply as Core's TorControlConnection collects it: the
// code of the final line and the text after "NNN?" of every line.
type coreReply struct {
	code  int
	lines []string
}

// coreRead reads a reply as Core does: lines "<3 digits><sep><data>" with
// sep '-', '+' or ' ' (a '+' line is an ordinary line to Core: no data
// blocks), lines shorter than 4 skipped, codes >= 600 ignored, done at the
// first ' ' line; more than 1000 lines or a line over 100000 bytes is a
// failure (Core's MAX_LINE_COUNT / MAX_LINE_LENGTH).
func coreRead(t *testing.T, k *ctlClient) coreReply {
	t.Helper()
	var r coreReply
	for n := 0; ; n++ {
		if n >= 1000 {
			t.Fatal("reply over Core's MAX_LINE_COUNT")
		}
		l, err := k.br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(l) > 100000 {
			t.Fatal("line over Core's MAX_LINE_LENGTH")
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 {
			continue
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil {
			t.Fatalf("reply line %q: %v", l, err)
		}
		if code >= 600 {
			continue
		}
		r.lines = append(r.lines, l[4:])
		if l[3] == ' ' {
			r.code = code
			return r
		}
	}
}

func coreCmd(t *testing.T, k *ctlClient, line string) coreReply {
	t.Helper()
	if _, err := k.c.Write([]byte(line + "\r\n")); err != nil {
		t.Fatal(err)
	}
	return coreRead(t, k)
}

// splitTorReplyLine is Core's SplitTorReplyLine: the word before the first
// space and the rest.
func splitTorReplyLine(s string) (string, string) {
	typ, rest, _ := strings.Cut(s, " ")
	return typ, rest
}

// parseTorReplyMapping is Core's ParseTorReplyMapping: KEY=VALUE pairs
// separated by single spaces, values bare (up to a space) or quoted with
// C escapes (\n \t \r, octal of up to three digits, the first 0-3 for
// three, any other char as itself); nil for a malformed line; a word
// without '=' ends the mapping (OptArguments).
func parseTorReplyMapping(s string) map[string]string {
	m := map[string]string{}
	i := 0
	for i < len(s) {
		var key, val strings.Builder
		for i < len(s) && s[i] != '=' && s[i] != ' ' {
			key.WriteByte(s[i])
			i++
		}
		if i == len(s) {
			return nil
		}
		if s[i] == ' ' {
			break
		}
		i++ // '='
		if i < len(s) && s[i] == '"' {
			i++
			var raw []byte
			esc := false
			for i < len(s) && (esc || s[i] != '"') {
				esc = s[i] == '\\' && !esc
				raw = append(raw, s[i])
				i++
			}
			if i == len(s) {
				return nil
			}
			i++ // closing quote
			for j := 0; j < len(raw); j++ {
				if raw[j] != '\\' {
					val.WriteByte(raw[j])
					continue
				}
				j++
				switch c := raw[j]; {
				case c == 'n':
					val.WriteByte('\n')
				case c == 't':
					val.WriteByte('\t')
				case c == 'r':
					val.WriteByte('\r')
				case c >= '0' && c <= '7':
					n := 1
					for n < 3 && j+n < len(raw) && raw[j+n] >= '0' && raw[j+n] <= '7' {
						n++
					}
					if n == 3 && c > '3' {
						n--
					}
					v, _ := strconv.ParseUint(string(raw[j:j+n]), 8, 8)
					val.WriteByte(byte(v))
					j += n - 1
				default:
					val.WriteByte(c)
				}
			}
		} else {
			for i < len(s) && s[i] != ' ' {
				val.WriteByte(s[i])
				i++
			}
		}
		if i < len(s) && s[i] == ' ' {
			i++
		}
		m[key.String()] = val.String()
	}
	return m
}

// coreSession runs Bitcoin Core's control-port dialogue (torcontrol.cpp,
// as asserted by feature_torcontrol.py) against the server and returns the
// onion service id and the private key Core would save. password is
// Core's -torpassword; key is the saved onion_v3_private_key or "".
func coreSession(t *testing.T, s *ControlServer, password, key string, pow bool) (k *ctlClient, id, privateKey string) {
	t.Helper()
	k = dialControl(t, s)
	// 1. PROTOCOLINFO 1.
	r := coreCmd(t, k, "PROTOCOLINFO 1")
	if r.code != 250 {
		t.Fatalf("PROTOCOLINFO: %+v", r)
	}
	var methods []string
	var cookieFile, version string
	for _, l := range r.lines {
		typ, rest := splitTorReplyLine(l)
		switch typ {
		case "AUTH":
			m := parseTorReplyMapping(rest)
			methods = strings.Split(m["METHODS"], ",")
			cookieFile = m["COOKIEFILE"]
		case "VERSION":
			version = parseTorReplyMapping(rest)["Tor"]
		}
	}
	if version != DefaultControlVersion {
		t.Errorf("Core reads version %q", version)
	}
	has := func(m string) bool {
		for _, x := range methods {
			if x == m {
				return true
			}
		}
		return false
	}
	// 2. Auth choice in Core's order: password, NULL, SAFECOOKIE.
	switch {
	case password != "" && has("HASHEDPASSWORD"):
		pw := strings.ReplaceAll(password, `"`, `\"`)
		if r := coreCmd(t, k, `AUTHENTICATE "`+pw+`"`); r.code != 250 {
			t.Fatalf("AUTHENTICATE password: %+v", r)
		}
	case has("NULL"):
		if r := coreCmd(t, k, "AUTHENTICATE"); r.code != 250 {
			t.Fatalf("AUTHENTICATE NULL: %+v", r)
		}
	case has("SAFECOOKIE"):
		cookie, err := os.ReadFile(cookieFile)
		if err != nil || len(cookie) != 32 {
			t.Fatalf("Core reads the cookie file %q: %d bytes, %v", cookieFile, len(cookie), err)
		}
		clientNonce := make([]byte, 32)
		rand.Read(clientNonce)
		r := coreCmd(t, k, "AUTHCHALLENGE SAFECOOKIE "+hex.EncodeToString(clientNonce))
		typ, rest := splitTorReplyLine(r.lines[0])
		if r.code != 250 || typ != "AUTHCHALLENGE" {
			t.Fatalf("AUTHCHALLENGE: %+v", r)
		}
		m := parseTorReplyMapping(rest)
		serverHash, _ := hex.DecodeString(m["SERVERHASH"])
		serverNonce, _ := hex.DecodeString(m["SERVERNONCE"])
		if len(serverNonce) != 32 {
			t.Fatalf("server nonce %x", serverNonce)
		}
		mac := func(key string) []byte {
			h := hmac.New(sha256.New, []byte(key))
			h.Write(cookie)
			h.Write(clientNonce)
			h.Write(serverNonce)
			return h.Sum(nil)
		}
		if !bytes.Equal(mac("Tor safe cookie authentication server-to-controller hash"), serverHash) {
			t.Fatal("Core rejects the server hash")
		}
		if r := coreCmd(t, k, "AUTHENTICATE "+strings.ToUpper(hex.EncodeToString(mac("Tor safe cookie authentication controller-to-server hash")))); r.code != 250 {
			t.Fatalf("AUTHENTICATE SAFECOOKIE: %+v", r)
		}
	default:
		t.Fatalf("Core finds no auth method in %q", methods)
	}
	// 3. GETINFO net/listeners/socks: prefer a 127.0.0.1 entry.
	r = coreCmd(t, k, "GETINFO net/listeners/socks")
	var socks string
	for _, l := range r.lines {
		ports, ok := strings.CutPrefix(l, "net/listeners/socks=")
		if !ok {
			continue
		}
		for _, p := range strings.Split(ports, " ") {
			p = strings.TrimSuffix(strings.TrimPrefix(p, `"`), `"`)
			if strings.HasPrefix(p, "127.0.0.1:") {
				socks = p
				break
			}
			if socks == "" {
				socks = p
			}
		}
	}
	if r.code != 250 || socks != "127.0.0.1:9050" {
		t.Fatalf("GETINFO net/listeners/socks: %+v → %q", r, socks)
	}
	// 4. ADD_ONION, with PoW first (Core ≥ 32.1) and without on 512.
	keyArg := "NEW:ED25519-V3"
	if key != "" {
		keyArg = key
	}
	line := "ADD_ONION " + keyArg + " Port=8333,127.0.0.1:8334"
	r = coreCmd(t, k, line+map[bool]string{true: " PoWDefensesEnabled=1"}[pow])
	if r.code == 512 && pow {
		r = coreCmd(t, k, line)
	}
	if r.code != 250 {
		t.Fatalf("ADD_ONION: %+v", r)
	}
	for _, l := range r.lines {
		m := parseTorReplyMapping(l)
		if v, ok := m["ServiceID"]; ok {
			id = v
		}
		if v, ok := m["PrivateKey"]; ok {
			privateKey = v
		}
	}
	if _, err := onionaddr.ParseID(id); err != nil {
		t.Fatalf("Core's ServiceID %q: %v", id, err)
	}
	return k, id, privateKey
}

// TestControlBitcoinCore replays Bitcoin Core's dialogue with every auth
// method it may choose, then again with the key it saved: same address,
// no new key, and the service gone when Core's connection closes.
func TestControlBitcoinCore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mod      func(*ControlConfig)
		password string
		pow      bool
	}{
		{"null", func(c *ControlConfig) { c.CookiePath = ""; c.NullAuth = true }, "", true},
		{"safecookie", nil, "", true},
		{"password", func(c *ControlConfig) { c.Password = `s"cret` }, `s"cret`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := startControl(t, tc.mod)
			k, id, key := coreSession(t, s, tc.password, "", tc.pow)
			if !strings.HasPrefix(key, "ED25519-V3:") {
				t.Fatalf("Core saves %q", key)
			}
			pk, err := rendezvous.ParseKey(key)
			if err != nil || pk.ServiceID() != id {
				t.Fatalf("the saved key's id %s, want %s (%v)", pk.ServiceID(), id, err)
			}
			if req := f.req(id); req.Ports[0] != (OnionPort{8333, "127.0.0.1:8334"}) || req.PoW != tc.pow {
				t.Errorf("request %+v", req)
			}
			// Core keeps the connection; closing it removes the service.
			k.c.Close()
			f.waitGone(t, id)
			// Restart with the saved key: same id, no PrivateKey line.
			_, id2, key2 := coreSession(t, s, tc.password, key, tc.pow)
			if id2 != id || key2 != "" {
				t.Errorf("with the saved key: id %s key %q, want %s and none", id2, key2, id)
			}
		})
	}
}

// TestControlCoreParser checks the test's model of Core's parser on the
// mock replies of Core's own feature_torcontrol.py.
func TestControlCoreParser(t *testing.T) {
	t.Parallel()
	m := parseTorReplyMapping(`METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/home/x/.tor/control_auth_cookie"`)
	if m["METHODS"] != "COOKIE,SAFECOOKIE" || m["COOKIEFILE"] != "/home/x/.tor/control_auth_cookie" {
		t.Errorf("%q", m)
	}
	m = parseTorReplyMapping(`Foo="Bar\\\"Baz\n\101\400" opt args`)
	if m["Foo"] != "Bar\\\"Baz\nA\x200" {
		t.Errorf("%q", m["Foo"])
	}
	if parseTorReplyMapping(`Foo="unterminated`) != nil {
		t.Error("malformed accepted")
	}
}

// TestControlLND drives the control port with lnd's own controller
// (github.com/lightningnetwork/lnd/tor, the code lnd runs with tor.active
// and tor.v3): SAFECOOKIE or password auth, the version gate, ADD_ONION
// with a key file, the health check's GETINFO onions/current, Reconnect
// after the server dropped the service, and DEL_ONION on Stop.
func TestControlLND(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		mod      func(*ControlConfig)
		password string
	}{
		{"safecookie", nil, ""},
		{"password", func(c *ControlConfig) { c.CookiePath = ""; c.Password = "lnd-pw" }, "lnd-pw"},
		{"null", func(c *ControlConfig) { c.CookiePath = ""; c.NullAuth = true }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, f := startControl(t, tc.mod)
			addr, _ := ctlAddrs.Load(s)
			keyFile := filepath.Join(t.TempDir(), "v3_onion_private_key")
			store := tor.NewOnionFile(keyFile, 0o600, false, nil)
			c := tor.NewController(addr.(string), "", tc.password)
			if err := c.Start(); err != nil {
				t.Fatalf("lnd Start: %v", err)
			}
			onion, err := c.AddOnion(tor.AddOnionConfig{VirtualPort: 9735, TargetPorts: []int{9735, 9736}, Store: store})
			if err != nil {
				t.Fatalf("lnd AddOnion: %v", err)
			}
			id := strings.TrimSuffix(onion.OnionService, ".onion")
			if _, err := onionaddr.Parse(onion.OnionService); err != nil || onion.Port != 9735 {
				t.Fatalf("lnd got %s:%d (%v)", onion.OnionService, onion.Port, err)
			}
			saved, err := os.ReadFile(keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := rendezvous.ParseKey(string(saved)); err != nil || k.ServiceID() != id {
				t.Fatalf("lnd saved a key for %s, service is %s (%v)", k.ServiceID(), id, err)
			}
			if ports := f.req(id).Ports; len(ports) != 2 || ports[1] != (OnionPort{9735, "127.0.0.1:9736"}) {
				t.Errorf("ports %+v", ports)
			}
			// The watchtower's second service on the same controller.
			tower, err := c.AddOnion(tor.AddOnionConfig{VirtualPort: 9911, Store: tor.NewOnionFile(filepath.Join(t.TempDir(), "tower"), 0o600, false, nil)})
			if err != nil {
				t.Fatalf("lnd AddOnion (tower): %v", err)
			}
			// The health check: GETINFO onions/current with two services
			// (a "+" data block, which lnd reads).
			if err := c.CheckOnionService(); err != nil {
				t.Fatalf("lnd CheckOnionService: %v", err)
			}
			// Reconnect (lnd does it after the control port restarts): the
			// old connection's services are gone; lnd adds its own again
			// from the key file, same address.
			if err := c.Reconnect(); err != nil {
				t.Fatalf("lnd Reconnect: %v", err)
			}
			f.waitGone(t, id)
			f.waitGone(t, strings.TrimSuffix(tower.OnionService, ".onion"))
			again, err := c.AddOnion(tor.AddOnionConfig{VirtualPort: 9735, TargetPorts: []int{9735}, Store: store})
			if err != nil || again.OnionService != onion.OnionService {
				t.Fatalf("lnd AddOnion with its key: %v, %v", again, err)
			}
			if err := c.CheckOnionService(); err != nil {
				t.Fatalf("lnd CheckOnionService after re-adding: %v", err)
			}
			if err := c.Stop(); err != nil {
				t.Fatalf("lnd Stop: %v", err)
			}
			if f.has(id) {
				t.Error("service live after lnd's DEL_ONION")
			}
		})
	}
}

// TestControlLNDWrongCookie: lnd with a stale cookie fails to start and
// the server closes the connection.
func TestControlLNDWrongCookie(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, nil)
	if err := os.WriteFile(s.CookiePath(), bytes.Repeat([]byte{1}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, _ := ctlAddrs.Load(s)
	c := tor.NewController(addr.(string), "", "")
	if err := c.Start(); err == nil {
		t.Fatal("lnd authenticated with a wrong cookie")
	}
	// lnd with a password the port does not offer refuses by itself.
	c = tor.NewController(addr.(string), "", "pw")
	if err := c.Start(); err == nil || !strings.Contains(err.Error(), "HASHEDPASSWORD") {
		t.Fatalf("lnd with a password: %v", err)
	}
}
