package torproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors of a managed tor; match with errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("torproc: closed")
	// ErrNotRunning is returned while tor is down between restarts.
	ErrNotRunning = errors.New("torproc: tor is not running (restarting)")
	// ErrExited is wrapped by the error of a wait that tor died during.
	ErrExited = errors.New("torproc: tor exited")
	// ErrPortInUse is wrapped by a start that failed because tor could
	// not bind one of its configured ports (its log said "Address
	// already in use"); a caller that picked the port may pick another.
	ErrPortInUse = errors.New("torproc: a configured port is already in use")
)

// File names inside Config.DataDir.
const (
	torrcName       = "torrc"
	cookieName      = "control_auth_cookie"
	controlPortName = "control_port"
)

// logTail is how many of tor's last log lines errors quote.
const logTail = 8

// Tor is a managed tor child process. Its methods are safe for concurrent
// use. The zero Tor is not usable: use Start.
type Tor struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: stops the supervisor and tor
	cancel context.CancelFunc
	done   chan struct{}  // closed when the supervisor goroutine returns
	wg     sync.WaitGroup // the bootstrap watchers; waited for by the supervisor

	mu sync.Mutex // guards the fields below
	// cur is the running instance, nil between restarts and after Close.
	cur      *instance
	closed   bool
	restarts int
	lastErr  string
	// onions are the services added through AddOnion/AddOnionNew, by
	// service id, re-added after a restart.
	onions map[string]onionSpec
	// logLines is the tail of tor's output, newest last.
	logLines []string
}

// instance is one run of the tor process.
type instance struct {
	cmd       *exec.Cmd
	ctl       *controlConn
	socks     netip.AddrPort
	control   netip.AddrPort
	exited    chan struct{} // closed when the process has been waited for
	exitErr   error         // set before exited is closed
	bootstrap int           // guarded by Tor.mu
	summary   string        // guarded by Tor.mu
}

// Start starts tor in cfg.DataDir and returns once its control port is
// authenticated and its SOCKS port known; it does not wait for bootstrap
// (WaitBootstrapped). ctx bounds the start only; tor runs until Close. A
// tor that dies later is restarted with backoff and the onion services
// added through AddOnion are added again.
func Start(ctx context.Context, cfg Config) (*Tor, error) {
	cfg.applyDefaults()
	if cfg.DataDir == "" {
		return nil, errors.New("torproc: Config.DataDir is required")
	}
	for i, l := range cfg.Torrc {
		if strings.ContainsAny(l, "\x00\r\n") {
			return nil, fmt.Errorf("torproc: Config.Torrc[%d] has a line break", i)
		}
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return nil, fmt.Errorf("torproc: tor binary %q not found (install Debian's tor package or set the binary path): %w", cfg.Binary, err)
	}
	cfg.Binary = bin
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("torproc: data dir: %w", err)
	}
	cfg.DataDir = dir
	if !torrcSafePath(dir) {
		return nil, fmt.Errorf("torproc: Config.DataDir %q has a character a torrc line cannot hold (a control character, '#', '\"' or '\\')", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("torproc: create data dir: %w", err)
	}
	// tor refuses a DataDirectory others can read.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("torproc: data dir: %w", err)
	}
	if err := writeTorrc(cfg); err != nil {
		return nil, err
	}
	tctx, cancel := context.WithCancel(context.Background())
	t := &Tor{
		cfg:    cfg,
		log:    cfg.Logger.With("subsys", "tor"),
		ctx:    tctx,
		cancel: cancel,
		done:   make(chan struct{}),
		onions: map[string]onionSpec{},
	}
	inst, err := t.launch(ctx)
	if err != nil {
		cancel()
		close(t.done)
		return nil, err
	}
	t.mu.Lock()
	t.cur = inst
	t.mu.Unlock()
	t.log.Info("tor started", "pid", inst.cmd.Process.Pid, "socks", inst.socks, "control", inst.control)
	go t.supervise(inst)
	return t, nil
}

// torrcSafePath reports whether p can be written unquoted as a torrc
// value: tor ends a line at a line break, starts a comment at '#' and
// reads '"' and '\\' as quoting, so a path with them would cut our lines
// short or add lines of its own.
func torrcSafePath(p string) bool {
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '#' || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}

// writeTorrc writes DataDir/torrc (0600): our lines, then cfg.Torrc.
func writeTorrc(cfg Config) error {
	d := cfg.DataDir
	lines := []string{
		"# Written by co-infuse (internal/torproc) at every start; edits are lost.",
		"DataDirectory " + d,
		"SocksPort 127.0.0.1:auto ExtendedErrors",
		"ControlPort 127.0.0.1:auto",
		"ControlPortWriteToFile " + filepath.Join(d, controlPortName),
		"ControlPortFileGroupReadable 0",
		"CookieAuthentication 1",
		"CookieAuthFile " + filepath.Join(d, cookieName),
		"CookieAuthFileGroupReadable 0",
		"__OwningControllerProcess " + strconv.Itoa(os.Getpid()),
		"Log notice stdout",
		"RunAsDaemon 0",
		"AvoidDiskWrites 1",
	}
	lines = append(lines, cfg.Torrc...)
	data := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(d, torrcName), []byte(data), 0o600); err != nil {
		return fmt.Errorf("torproc: write torrc: %w", err)
	}
	return nil
}

// launch starts one tor process and connects to its control port.
func (t *Tor) launch(ctx context.Context) (*instance, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.StartTimeout)
	defer cancel()
	portFile := filepath.Join(t.cfg.DataDir, controlPortName)
	os.Remove(portFile)
	cmd := exec.CommandContext(t.ctx, t.cfg.Binary,
		"-f", filepath.Join(t.cfg.DataDir, torrcName),
		"--defaults-torrc", os.DevNull)
	cmd.Dir = t.cfg.DataDir
	// Close (t.ctx) asks tor to stop with SIGTERM, then kills it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	// tor gets its own process group, so a terminal's ^C reaches us only
	// and we stop it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("torproc: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("torproc: start %s: %w", t.cfg.Binary, err)
	}
	inst := &instance{cmd: cmd, exited: make(chan struct{})}
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		t.readLog(out)
	}()
	go func() {
		<-logged
		inst.exitErr = cmd.Wait()
		close(inst.exited)
	}()
	fail := func(err error) (*instance, error) {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-inst.exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-inst.exited
		}
		return nil, fmt.Errorf("%w%s", err, t.tailText())
	}
	// Wait for tor to write its control port file.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var addr netip.AddrPort
	for {
		if b, err := os.ReadFile(portFile); err == nil && strings.HasSuffix(string(b), "\n") {
			s := strings.TrimSpace(string(b))
			ap, perr := netip.ParseAddrPort(strings.TrimPrefix(s, "PORT="))
			if perr != nil {
				return fail(fmt.Errorf("torproc: control port file says %q", s))
			}
			addr = ap
			break
		}
		select {
		case <-inst.exited:
			tail := t.tailText()
			if strings.Contains(tail, "Address already in use") {
				return nil, fmt.Errorf("torproc: tor exited before opening its control port (%v): %w%s", inst.exitErr, ErrPortInUse, tail)
			}
			return nil, fmt.Errorf("torproc: tor exited before opening its control port (%v)%s", inst.exitErr, tail)
		case <-ctx.Done():
			return fail(fmt.Errorf("torproc: tor did not open its control port: %w", ctx.Err()))
		case <-tick.C:
		}
	}
	inst.control = addr
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return fail(fmt.Errorf("torproc: dial control port: %w", err))
	}
	inst.ctl = newControlConn(c)
	if err := inst.ctl.authenticate(ctx, filepath.Join(t.cfg.DataDir, cookieName)); err != nil {
		c.Close()
		return fail(err)
	}
	// If our control connection closes (we died), tor exits too.
	if _, err := inst.ctl.do(ctx, "TAKEOWNERSHIP", "TAKEOWNERSHIP"); err != nil {
		c.Close()
		return fail(err)
	}
	r, err := inst.ctl.do(ctx, "GETINFO", "GETINFO net/listeners/socks")
	if err != nil {
		c.Close()
		return fail(err)
	}
	socks := strings.Fields(r.keyValues()["net/listeners/socks"])
	if len(socks) == 0 {
		c.Close()
		return fail(errors.New("torproc: tor reports no SOCKS listener"))
	}
	s, err := unquote(socks[0])
	if err != nil {
		s = socks[0]
	}
	if inst.socks, err = netip.ParseAddrPort(s); err != nil {
		c.Close()
		return fail(fmt.Errorf("torproc: tor's SOCKS listener %q: %w", s, err))
	}
	return inst, nil
}

// readLog keeps the tail of tor's output and logs it at debug.
func (t *Tor) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		t.log.Debug("tor log", "line", line)
		t.mu.Lock()
		t.logLines = append(t.logLines, line)
		if len(t.logLines) > logTail {
			t.logLines = slices.Delete(t.logLines, 0, len(t.logLines)-logTail)
		}
		t.mu.Unlock()
	}
	// Drain whatever remains so tor never blocks on a full pipe.
	io.Copy(io.Discard, r)
}

// tailText is tor's last log lines for an error message.
func (t *Tor) tailText() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.logLines) == 0 {
		return ""
	}
	return "; tor's last log lines: " + strings.Join(t.logLines, " | ")
}

// supervise owns the tor processes: it waits for the running one to exit
// and restarts it with backoff until Close.
func (t *Tor) supervise(inst *instance) {
	defer close(t.done)
	defer t.wg.Wait()
	backoff := t.cfg.RestartBackoff
	for {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.watchBootstrap(inst)
		}()
		started := time.Now()
		select {
		case <-inst.exited:
		case <-t.ctx.Done():
			t.stop(inst)
			return
		}
		inst.ctl.close()
		msg := fmt.Sprintf("tor exited: %v%s", inst.exitErr, t.tailText())
		t.mu.Lock()
		t.cur = nil
		t.lastErr = msg
		t.mu.Unlock()
		if t.ctx.Err() != nil {
			return
		}
		t.log.Warn("tor exited; restarting", "err", inst.exitErr, "backoff", backoff)
		if time.Since(started) > time.Minute {
			backoff = t.cfg.RestartBackoff
		}
		for {
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, t.cfg.MaxRestartBackoff)
			next, err := t.launch(t.ctx)
			if err != nil {
				if t.ctx.Err() != nil {
					return
				}
				t.mu.Lock()
				t.lastErr = err.Error()
				t.mu.Unlock()
				t.log.Warn("tor restart failed", "err", err, "backoff", backoff)
				continue
			}
			inst = next
			break
		}
		t.mu.Lock()
		t.restarts++
		specs := make(map[string]onionSpec, len(t.onions))
		for id, s := range t.onions {
			specs[id] = s
		}
		t.mu.Unlock()
		t.log.Info("tor restarted", "pid", inst.cmd.Process.Pid, "socks", inst.socks)
		for id, s := range specs {
			ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
			got, err := addOnion(ctx, inst.ctl, s)
			cancel()
			if err == nil && got != id {
				err = fmt.Errorf("tor re-added the service as %s", got)
			}
			if err != nil {
				t.mu.Lock()
				t.lastErr = "re-add onion service after restart: " + err.Error()
				t.mu.Unlock()
				t.log.Warn("re-add onion service after restart", "err", err)
			}
		}
		t.mu.Lock()
		t.cur = inst
		// A DelOnion while tor was down forgot a service this loop may
		// have added back: remove it again.
		var gone []string
		for id := range specs {
			if _, ok := t.onions[id]; !ok {
				gone = append(gone, id)
			}
		}
		t.mu.Unlock()
		for _, id := range gone {
			ctx, cancel := context.WithTimeout(t.ctx, 30*time.Second)
			inst.ctl.do(ctx, "DEL_ONION", "DEL_ONION "+id)
			cancel()
		}
	}
}

// stop ends inst: SIGTERM via the command's context (t.ctx is done),
// then kill after WaitDelay; it waits for the process.
func (t *Tor) stop(inst *instance) {
	inst.ctl.close()
	<-inst.exited
}

// watchBootstrap polls the bootstrap phase of inst until 100% or exit,
// logging progress at info.
func (t *Tor) watchBootstrap(inst *instance) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := -1
	for {
		select {
		case <-inst.exited:
			return
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
		r, err := inst.ctl.do(ctx, "GETINFO", "GETINFO status/bootstrap-phase")
		cancel()
		if err != nil {
			continue
		}
		p := params(r.keyValues()["status/bootstrap-phase"])
		n, err := strconv.Atoi(p["PROGRESS"])
		if err != nil || n < 0 || n > 100 {
			continue
		}
		t.mu.Lock()
		inst.bootstrap, inst.summary = n, p["SUMMARY"]
		t.mu.Unlock()
		if n != last {
			t.log.Info("tor bootstrap", "progress", n, "summary", p["SUMMARY"])
			last = n
		}
		if n == 100 {
			return
		}
	}
}

// current returns the running instance.
func (t *Tor) current() (*instance, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if t.cur == nil {
		return nil, ErrNotRunning
	}
	return t.cur, nil
}

// WaitBootstrapped waits until tor reports "Bootstrapped 100%". Without a
// deadline in ctx it waits at most Config.BootstrapTimeout. It fails
// with an error quoting tor's last log lines if tor exits meanwhile
// (ErrExited) or is down between restarts when called (ErrNotRunning; the
// supervisor restarts it, call again once Status says Running), or when
// the deadline passes.
func (t *Tor) WaitBootstrapped(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.cfg.BootstrapTimeout)
		defer cancel()
	}
	inst, err := t.current()
	if errors.Is(err, ErrNotRunning) {
		return fmt.Errorf("%w: %s", err, t.Status().LastError)
	}
	if err != nil {
		return err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		n, sum, closed := inst.bootstrap, inst.summary, t.closed
		t.mu.Unlock()
		if closed {
			return ErrClosed
		}
		if n == 100 {
			return nil
		}
		select {
		case <-inst.exited:
			return fmt.Errorf("torproc: %w during bootstrap (%v)%s", ErrExited, inst.exitErr, t.tailText())
		case <-ctx.Done():
			return fmt.Errorf("torproc: tor did not bootstrap (at %d%%: %s): %w%s", n, sum, ctx.Err(), t.tailText())
		case <-tick.C:
		}
	}
}

// SocksAddr is tor's SOCKS port on 127.0.0.1; it changes when tor is
// restarted. Invalid while tor is down.
func (t *Tor) SocksAddr() netip.AddrPort {
	inst, err := t.current()
	if err != nil {
		return netip.AddrPort{}
	}
	return inst.socks
}

// ControlAddr is tor's control port on 127.0.0.1 (cookie auth, the
// cookie in DataDir); it changes when tor is restarted. Invalid while tor
// is down.
func (t *Tor) ControlAddr() netip.AddrPort {
	inst, err := t.current()
	if err != nil {
		return netip.AddrPort{}
	}
	return inst.control
}

// Status is a snapshot of a managed tor.
type Status struct {
	// Running is whether a tor process is up with an authenticated
	// control connection.
	Running bool
	// Bootstrap is the running tor's bootstrap progress, 0-100.
	Bootstrap int
	// Restarts counts restarts after tor died.
	Restarts int
	// LastError is the last failure (tor's exit, a failed restart or
	// re-add), "" if none.
	LastError string
	// Onions are the service ids added through AddOnion and AddOnionNew,
	// sorted.
	Onions []string
}

// Status reports the tor's state; it never blocks on tor.
func (t *Tor) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Status{Restarts: t.restarts, LastError: t.lastErr}
	if t.cur != nil && !t.closed {
		s.Running = true
		s.Bootstrap = t.cur.bootstrap
	}
	for id := range t.onions {
		s.Onions = append(s.Onions, id)
	}
	slices.Sort(s.Onions)
	return s
}

// Close stops tor (SIGTERM, then kill after 10 s) and waits for it and
// the supervisor. It is idempotent; every method fails with ErrClosed
// after it.
func (t *Tor) Close() error {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	<-t.done
	t.mu.Lock()
	t.cur = nil
	t.mu.Unlock()
	return nil
}

// Pid is the process id of the running tor, 0 while it is down (tests
// kill it to exercise the supervisor).
func (t *Tor) Pid() int {
	inst, err := t.current()
	if err != nil {
		return 0
	}
	return inst.cmd.Process.Pid
}
