package regtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// stopGrace is how long a daemon gets to exit after SIGTERM before SIGKILL.
const stopGrace = 30 * time.Second

// logTailBytes is how much of a daemon's log an error message carries.
const logTailBytes = 3000

// daemon is one child process. Its waiter goroutine is the only caller of
// cmd.Wait; it closes done when the process has exited.
type daemon struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	logFile *os.File
	done    chan struct{} // closed by the waiter after exit
	waitErr error         // written by the waiter before close(done)
}

// startDaemon starts bin with args, its stdout and stderr appended to
// logPath.
func startDaemon(name, bin, logPath string, args []string) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = lf
	cmd.Stderr = lf
	cmd.SysProcAttr = daemonSysProcAttr()
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, logPath: logPath, cmd: cmd, logFile: lf, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	return d, nil
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to stopGrace, then kills. It waits for the
// waiter goroutine in every case and is safe to call more than once.
func (d *daemon) stop() error {
	if d.exited() {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = d.cmd.Process.Kill()
	}
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-d.done:
		return nil
	case <-t.C:
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s did not exit within %v of SIGTERM; killed", d.name, stopGrace)
	}
}

// failure builds an error about this daemon carrying the tail of its log.
func (d *daemon) failure(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if d.exited() {
		msg += fmt.Sprintf(" (%s exited: %v)", d.name, d.waitErr)
	}
	return fmt.Errorf("%s: %s\n--- last lines of %s ---\n%s", d.name, msg, d.logPath, logTail(d.logPath))
}

// logTail returns the last logTailBytes of a file, or why it cannot.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := fi.Size() - logTailBytes
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, logTailBytes))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
