package circuit

import (
	"sync"
	"time"
)

// deadline is a resettable read or write deadline for a Stream: wait
// returns a channel that is closed once the deadline has passed.
type deadline struct {
	mu    sync.Mutex // guards timer, ch
	timer *time.Timer
	ch    chan struct{} // closed when expired; replaced on reset
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

// set arms the deadline at t; the zero time disarms it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.ch // the timer fired (or is firing); wait for it to close ch
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{})
	default:
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch
	d.timer = time.AfterFunc(dur, func() { close(ch) })
}

// wait returns the channel closed at the deadline.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}
