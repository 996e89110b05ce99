package torproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Caps on what tor's control port may send us (control-spec §2.3 has no
// limits of its own): one line, and one whole reply with its data lines.
const (
	maxLineLen  = 16 << 10
	maxReplyLen = 1 << 20
)

// Errors of the control-port reply parser; match with errors.Is.
var (
	ErrLineTooLong  = errors.New("torproc: control reply line too long")
	ErrReplyTooLong = errors.New("torproc: control reply too long")
	ErrBadReply     = errors.New("torproc: malformed control reply")
)

// ControlError is a tor control-port reply other than 2xx to one of our
// commands. Command is the command's keyword only (never its arguments,
// which may hold keys).
type ControlError struct {
	Command string
	Code    int
	Message string
}

func (e *ControlError) Error() string {
	return fmt.Sprintf("tor control %s: %d %s", e.Command, e.Code, e.Message)
}

// replyLine is one line of a control reply (control-spec §2.3): the
// status code, the separator ('-' mid reply, '+' for a data reply, ' '
// at the end), the text after it, and for '+' the data lines with their
// dot-escaping removed.
type replyLine struct {
	Code int
	Sep  byte
	Text string
	Data []string
}

// reply is a whole control reply; its last line has Sep ' '.
type reply []replyLine

// status is the reply's final code.
func (r reply) status() int { return r[len(r)-1].Code }

// readLine reads one CRLF- (or LF-) terminated line of at most maxLineLen
// bytes, without the terminator.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(b)+len(frag) > maxLineLen+2 {
			return "", ErrLineTooLong
		}
		b = append(b, frag...)
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(b) > 0 {
			return "", io.ErrUnexpectedEOF
		}
		return "", err
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte("\r"))
	if len(b) > maxLineLen {
		return "", ErrLineTooLong
	}
	return string(b), nil
}

// readReply reads one control reply: "XYZ-" and "XYZ+" lines up to an
// "XYZ " line, each "+" followed by data lines ending in ".".
func readReply(r *bufio.Reader) (reply, error) {
	var out reply
	total := 0
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, io.EOF) && len(out) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		total += len(line) + 2
		if total > maxReplyLen {
			return nil, ErrReplyTooLong
		}
		if len(line) < 4 {
			return nil, fmt.Errorf("%w: short line", ErrBadReply)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 || line[0] > '9' {
			return nil, fmt.Errorf("%w: no status code", ErrBadReply)
		}
		if len(out) > 0 && out[0].Code != code {
			return nil, fmt.Errorf("%w: status code changed within a reply", ErrBadReply)
		}
		rl := replyLine{Code: code, Sep: line[3], Text: line[4:]}
		switch rl.Sep {
		case ' ':
			out = append(out, rl)
			return out, nil
		case '-':
		case '+':
			rl.Data = []string{}
			for {
				d, err := readLine(r)
				if err != nil {
					if errors.Is(err, io.EOF) {
						err = io.ErrUnexpectedEOF
					}
					return nil, err
				}
				total += len(d) + 2
				if total > maxReplyLen {
					return nil, ErrReplyTooLong
				}
				if d == "." {
					break
				}
				// A leading "." is doubled on the wire (§2.4).
				rl.Data = append(rl.Data, strings.TrimPrefix(d, "."))
			}
		default:
			return nil, fmt.Errorf("%w: bad separator %q", ErrBadReply, rl.Sep)
		}
		out = append(out, rl)
	}
}

// encode writes r back in wire form (the fuzz target's round trip).
func (r reply) encode() []byte {
	var b bytes.Buffer
	for _, l := range r {
		fmt.Fprintf(&b, "%03d%c%s\r\n", l.Code, l.Sep, l.Text)
		if l.Sep == '+' {
			for _, d := range l.Data {
				if strings.HasPrefix(d, ".") {
					b.WriteByte('.')
				}
				b.WriteString(d)
				b.WriteString("\r\n")
			}
			b.WriteString(".\r\n")
		}
	}
	return b.Bytes()
}

// keyValues collects the "key=value" pairs of a reply's lines (GETINFO,
// ADD_ONION), unquoting quoted values.
func (r reply) keyValues() map[string]string {
	kv := map[string]string{}
	for _, l := range r {
		k, v, ok := strings.Cut(l.Text, "=")
		if !ok {
			continue
		}
		if l.Sep == '+' {
			v = strings.Join(l.Data, "\n")
		} else if uq, err := unquote(v); err == nil {
			v = uq
		}
		kv[k] = v
	}
	return kv
}

// unquote reads a control-spec QuotedString (§2.1.1: backslash escapes).
func unquote(s string) (string, error) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", fmt.Errorf("%w: not a quoted string", ErrBadReply)
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '\\' {
			i++
			if i == len(s) {
				return "", fmt.Errorf("%w: dangling backslash", ErrBadReply)
			}
			switch s[i] {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				c = s[i]
			}
		} else if c == '"' {
			return "", fmt.Errorf("%w: unescaped quote", ErrBadReply)
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// params parses space-separated KEY=VALUE arguments of one reply line
// (PROTOCOLINFO, AUTHCHALLENGE, status/bootstrap-phase), values quoted or
// not.
func params(s string) map[string]string {
	out := map[string]string{}
	for len(s) > 0 {
		s = strings.TrimLeft(s, " ")
		k, rest, ok := strings.Cut(s, "=")
		if !ok || strings.Contains(k, " ") {
			// A bare word: skip it.
			_, s, _ = strings.Cut(s, " ")
			continue
		}
		if strings.HasPrefix(rest, "\"") {
			end := 1
			for end < len(rest) && rest[end] != '"' {
				if rest[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(rest) {
				return out
			}
			v, err := unquote(rest[:end+1])
			if err == nil {
				out[k] = v
			}
			s = rest[end+1:]
			continue
		}
		v, after, _ := strings.Cut(rest, " ")
		out[k] = v
		s = after
	}
	return out
}

// controlReplyWait is how long a command's exchange may take on the wire
// when its caller's ctx allows less: a caller that gives up gets its ctx
// error at once, but the reply is still read (up to this long after the
// command was sent), so it is not left in the stream for the next command.
const controlReplyWait = 30 * time.Second

// errControlBroken marks a control connection that failed mid-exchange:
// the stream is out of step (a reply not read, or read in part), so no
// later reply could be matched to its command. It is closed.
var errControlBroken = errors.New("torproc: control connection broken")

// controlConn is one authenticated control connection. Commands are
// serialized by sem (one command, one reply, in order): tor answers every
// command in order, so a reply is read to its end even when the caller
// stops waiting, and an exchange that fails on the wire breaks the
// connection for good (err) instead of leaving it out of step.
type controlConn struct {
	sem  chan struct{} // held by one exchange at a time
	conn net.Conn
	r    *bufio.Reader
	err  error          // guarded by sem: why the connection broke, or nil
	wg   sync.WaitGroup // the exchange goroutines; waited for by close
}

func newControlConn(c net.Conn) *controlConn {
	return &controlConn{sem: make(chan struct{}, 1), conn: c, r: bufio.NewReaderSize(c, 4096)}
}

// do sends one command line (without CRLF) and returns its reply; name is
// the keyword errors carry. A non-2xx reply is a *ControlError. Async
// event replies (6xx) are skipped. When ctx ends first do returns its
// error; a command already sent still has its reply read (for at most
// controlReplyWait) by a goroutine the connection owns.
func (c *controlConn) do(ctx context.Context, name, line string) (reply, error) {
	if strings.ContainsAny(line, "\r\n") {
		return nil, fmt.Errorf("torproc: %s: line break in command", name)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("torproc: %s: %w", name, ctx.Err())
	}
	if c.err != nil {
		err := c.err
		<-c.sem
		return nil, fmt.Errorf("torproc: %s: %w", name, err)
	}
	dl := time.Now().Add(controlReplyWait)
	if d, ok := ctx.Deadline(); ok && d.After(dl) {
		dl = d
	}
	type result struct {
		r   reply
		err error
	}
	res := make(chan result, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer func() { <-c.sem }()
		r, err := c.exchange(line, dl)
		if err != nil {
			c.err = fmt.Errorf("%w: %w", errControlBroken, err)
			c.conn.Close()
		}
		res <- result{r, err}
	}()
	select {
	case x := <-res:
		if x.err != nil {
			return nil, fmt.Errorf("torproc: %s: %w", name, x.err)
		}
		if x.r.status()/100 != 2 {
			return nil, &ControlError{Command: name, Code: x.r.status(), Message: x.r[len(x.r)-1].Text}
		}
		return x.r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("torproc: %s: %w", name, ctx.Err())
	}
}

// exchange writes line and reads its reply (skipping async 6xx replies),
// all before dl. The caller holds sem.
func (c *controlConn) exchange(line string, dl time.Time) (reply, error) {
	c.conn.SetDeadline(dl)
	defer c.conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return nil, err
	}
	for {
		r, err := readReply(c.r)
		if err != nil {
			return nil, err
		}
		if r.status()/100 == 6 {
			continue
		}
		return r, nil
	}
}

// close closes the connection and waits for an exchange in progress.
func (c *controlConn) close() error {
	err := c.conn.Close()
	c.wg.Wait()
	return err
}
