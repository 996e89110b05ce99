package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// This file is the control port's text layer (Tor control-spec §2-§3):
// splitting a command line, quoted strings with C escapes, and the
// arguments of ADD_ONION. No I/O.

// controlCmd is one command line split the way tor does (control_cmd.c
// control_cmd_parse_args): the keyword up to the first space, matched
// without regard to case, and the rest.
type controlCmd struct {
	name string // upper-cased keyword
	rest string // everything after the first space, untrimmed
}

func splitCommand(line string) controlCmd {
	name, rest, _ := strings.Cut(line, " ")
	return controlCmd{name: strings.ToUpper(name), rest: rest}
}

// fields splits arguments on spaces, ignoring empty ones (tor's
// SPLIT_SKIP_SPACE|SPLIT_IGNORE_BLANK), so lnd's trailing space after the
// last Port= is harmless.
func fields(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' })
}

// errQuoted is a malformed quoted string.
var errQuoted = errors.New("invalid quoted string")

// unquote decodes a control-spec QuotedString at the start of s (which must
// begin with '"'): the escapes \\ \" \n \t \r and \ooo (octal) of tor's
// decode_qstring / Bitcoin Core's ParseTorReplyMapping. It returns the value
// and what follows the closing quote.
func unquote(s string) (val, rest string, err error) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, errQuoted
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\r', '\n':
			return "", s, errQuoted
		case '\\':
			i++
			if i >= len(s) {
				return "", s, errQuoted
			}
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0', '1', '2', '3', '4', '5', '6', '7':
				// Up to three octal digits, value at most 0377.
				j := i
				for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
					j++
				}
				v, err := strconv.ParseUint(s[i:j], 8, 16)
				if err != nil || v > 0377 {
					return "", s, errQuoted
				}
				b.WriteByte(byte(v))
				i = j - 1
			default:
				b.WriteByte(e) // \\ \" and any other char stand for themselves
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", s, errQuoted
}

// quote writes s as a QuotedString that Tor, lnd and Bitcoin Core all read
// back: backslash and double quote escaped, CR, LF and tab as \r \n \t,
// other control bytes and bytes >= 0x7f in octal.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// controlError is a reply code and text for a refused command.
type controlError struct {
	code int
	msg  string
}

func (e *controlError) Error() string { return strconv.Itoa(e.code) + " " + e.msg }

func ctlErr(code int, format string, args ...any) *controlError {
	return &controlError{code: code, msg: fmt.Sprintf(format, args...)}
}

// Key specs of ADD_ONION (control-spec ADD_ONION KeyType:KeyBlob).
const (
	KeySpecNew   = "NEW:ED25519-V3" // a new ed25519 key; "NEW:BEST" is the same
	keyTypeV3    = "ED25519-V3"
	maxPortsArgs = 64 // Port= arguments per ADD_ONION; Tor has no limit, a node with 64 listeners is rare
)

// OnionPort is one Port= argument of ADD_ONION: connections to Virtual on
// the onion address go to Target.
type OnionPort struct {
	// Virtual is the onion service's port, 1-65535.
	Virtual uint16
	// Target is "host:port" with host an IP literal or "localhost"; a
	// bare port, or none, means 127.0.0.1 (Tor's default).
	Target string
}

// OnionRequest is a parsed ADD_ONION.
type OnionRequest struct {
	// KeySpec is KeySpecNew, or "ED25519-V3:<base64 64-byte expanded
	// key>" as the controller gave it (a secret: never log it). The front
	// end checks only the key type; the AddOnion func parses the key.
	KeySpec string
	// Ports has at least one entry, in the order given.
	Ports []OnionPort
	// DiscardPK: do not return a newly generated key.
	DiscardPK bool
	// Detach: the service outlives the control connection that made it.
	Detach bool
	// MaxStreams is the MaxStreams= value (0 = unlimited); accepted for
	// compatibility, advisory.
	MaxStreams int
	// PoW is PoWDefensesEnabled=1 (Bitcoin Core ≥ 32.1 sends it);
	// advisory: co-infuse intro points rate-limit introductions anyway.
	PoW bool
}

// NewKey reports whether the request asks for a new key.
func (r OnionRequest) NewKey() bool { return r.KeySpec == KeySpecNew }

// parseAddOnion parses the arguments of ADD_ONION (tor control_cmd.c
// handle_control_add_onion, add_onion_helper_keyarg): one positional
// KeyType:KeyBlob, then keyword arguments in any order. Errors carry Tor's
// codes and texts.
func parseAddOnion(rest string) (OnionRequest, *controlError) {
	args := fields(rest)
	if len(args) < 1 {
		return OnionRequest{}, ctlErr(512, "Bad arguments to ADD_ONION: Need at least 1 argument(s)")
	}
	var req OnionRequest
	for _, kv := range args[1:] {
		key, val, _ := strings.Cut(kv, "=")
		switch strings.ToLower(key) {
		case "port":
			if len(req.Ports) >= maxPortsArgs {
				return OnionRequest{}, ctlErr(512, "Too many Port arguments (at most %d)", maxPortsArgs)
			}
			p, ok := parseOnionPort(val)
			if !ok {
				return OnionRequest{}, ctlErr(512, "Invalid VIRTPORT/TARGET")
			}
			req.Ports = append(req.Ports, p)
		case "maxstreams":
			n, err := strconv.ParseUint(val, 10, 16)
			if err != nil {
				return OnionRequest{}, ctlErr(512, "Invalid MaxStreams")
			}
			req.MaxStreams = int(n)
		case "flags":
			flags := strings.FieldsFunc(val, func(r rune) bool { return r == ',' })
			if len(flags) == 0 {
				return OnionRequest{}, ctlErr(512, "Invalid 'Flags' argument")
			}
			for _, f := range flags {
				switch strings.ToLower(f) {
				case "discardpk":
					req.DiscardPK = true
				case "detach":
					req.Detach = true
				case "maxstreamsclosecircuit":
				case "nonanonymous":
					return OnionRequest{}, ctlErr(512, "Tor is in anonymous hidden service mode")
				case "v3auth", "basicauth":
					return OnionRequest{}, ctlErr(512, "Invalid client authorization")
				default:
					return OnionRequest{}, ctlErr(512, "Invalid 'Flags' argument: %s", quote(f))
				}
			}
		case "powdefensesenabled":
			switch val {
			case "0":
			case "1":
				req.PoW = true
			default:
				return OnionRequest{}, ctlErr(512, "Invalid PoWDefensesEnabled")
			}
		case "clientauth", "clientauthv3":
			return OnionRequest{}, ctlErr(512, "Invalid client authorization")
		default:
			return OnionRequest{}, ctlErr(512, "Bad arguments to ADD_ONION: Unrecognized keyword argument %s", quote(key))
		}
	}
	if len(req.Ports) == 0 {
		return OnionRequest{}, ctlErr(512, "Missing 'Port' argument")
	}
	typ, blob, ok := strings.Cut(args[0], ":")
	if !ok || typ == "" || blob == "" || strings.Contains(blob, ":") {
		return OnionRequest{}, ctlErr(512, "Invalid key type/blob")
	}
	switch {
	case strings.EqualFold(typ, "NEW"):
		if !strings.EqualFold(blob, keyTypeV3) && !strings.EqualFold(blob, "BEST") {
			return OnionRequest{}, ctlErr(513, "Invalid key type")
		}
		req.KeySpec = KeySpecNew
	case strings.EqualFold(typ, keyTypeV3):
		req.KeySpec = keyTypeV3 + ":" + blob
	default:
		return OnionRequest{}, ctlErr(513, "Invalid key type")
	}
	return req, nil
}

// parseOnionPort reads "VIRTPORT[,TARGET]" where TARGET is a port or
// host:port (tor hs_parse_port_config); unix: targets are not supported.
func parseOnionPort(s string) (OnionPort, bool) {
	virt, target, hasTarget := strings.Cut(s, ",")
	v, ok := parsePort(virt)
	if !ok {
		return OnionPort{}, false
	}
	if !hasTarget {
		return OnionPort{Virtual: v, Target: net.JoinHostPort("127.0.0.1", virt)}, true
	}
	if p, ok := parsePort(target); ok {
		return OnionPort{Virtual: v, Target: net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p)))}, true
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return OnionPort{}, false
	}
	p, ok := parsePort(port)
	if !ok {
		return OnionPort{}, false
	}
	if !strings.EqualFold(host, "localhost") {
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return OnionPort{}, false
		}
		host = a.Unmap().String()
	} else {
		host = "localhost"
	}
	return OnionPort{Virtual: v, Target: net.JoinHostPort(host, strconv.Itoa(int(p)))}, true
}

// parsePort reads a decimal port 1-65535 with no sign or leading zeros
// beyond a plain number.
func parsePort(s string) (uint16, bool) {
	if s == "" || len(s) > 5 || s[0] == '+' || s[0] == '-' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint16(n), true
}
