package pool

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/libp2p/go-libp2p/core/peer"
)

// startBuildLocked starts the on-demand build bk on a pool goroutine and
// registers it, so that later Gets for the same key and port wait for it.
// The build is not tied to the ctx of the Get that started it: it runs
// while any Get waits for it, for at most BuildTimeout once it has a slot,
// and stops at Close.
func (p *Pool) startBuildLocked(bk buildKey) *build {
	ctx, cancel := context.WithCancel(p.ctx)
	b := &build{done: make(chan struct{}), cancel: cancel}
	p.building[bk] = b
	p.stats.OnDemand++
	p.wg.Add(1)
	go p.runBuild(ctx, bk, b)
	return b
}

func (p *Pool) runBuild(ctx context.Context, bk buildKey, b *build) {
	defer p.wg.Done()
	defer b.cancel()
	var (
		c    *circuit.Circuit
		path Path
		err  error
	)
	select {
	case p.slots <- struct{}{}:
		c, path, err = p.buildCircuit(ctx, bk.port)
		<-p.slots
	case <-ctx.Done():
		err = fmt.Errorf("build circuit: waiting for a build slot: %w", ctx.Err())
	}
	var victims []*circuit.Circuit
	p.mu.Lock()
	if p.building[bk] == b {
		delete(p.building, bk)
	}
	if p.closed {
		// Close cancelled or outran the build: its waiters learn why.
		if err == nil {
			victims = append(victims, c)
		}
		err = ErrClosed
	}
	if err == nil {
		e := &entry{circ: c, path: path, port: bk.port, built: p.cfg.Now(), key: bk.key}
		victims = p.addKeyedLocked(e, e.built)
		b.e = e
		p.stats.Built++
	} else {
		p.stats.Failed++
		b.err = err
	}
	close(b.done)
	p.mu.Unlock()
	closeAll(victims)
}

// refillLocked starts pre-builds until clean and pre-building circuits
// number Preemptive, while build slots are free, after Start, and not
// within a failure backoff. Each pre-build targets the most recently used
// predicted port that no clean or pre-building circuit covers yet, or the
// most recently used one if all are covered. Nothing is predicted, nothing
// is built.
func (p *Pool) refillLocked(now time.Time) {
	if !p.started || p.closed || now.Before(p.retryAt) {
		return
	}
	for len(p.clean)+len(p.prebuilding) < p.cfg.Preemptive {
		ports := p.predictedLocked(now)
		if len(ports) == 0 {
			return
		}
		select {
		case p.slots <- struct{}{}:
		default:
			return // busy; the next sweep or finished build tries again
		}
		port := ports[0]
		for _, q := range ports {
			if !p.coveredLocked(q) {
				port = q
				break
			}
		}
		p.prebuilding = append(p.prebuilding, port)
		p.stats.Preemptive++
		p.wg.Add(1)
		go p.runPrebuild(port)
	}
}

// coveredLocked reports whether a clean or pre-building circuit serves port.
func (p *Pool) coveredLocked(port uint16) bool {
	for _, q := range p.prebuilding {
		if q == port {
			return true
		}
	}
	for _, e := range p.clean {
		if e.path.accepts(port) && e.circ.Err() == nil {
			return true
		}
	}
	return false
}

// runPrebuild builds one clean circuit for port; refillLocked took its
// build slot.
func (p *Pool) runPrebuild(port uint16) {
	defer p.wg.Done()
	c, path, err := p.buildCircuit(p.ctx, port)
	<-p.slots
	var victim *circuit.Circuit
	p.mu.Lock()
	if i := indexOf(p.prebuilding, port); i >= 0 {
		p.prebuilding = append(p.prebuilding[:i], p.prebuilding[i+1:]...)
	}
	now := p.cfg.Now()
	switch {
	case err != nil:
		p.stats.Failed++
		p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
		p.retryAt = now.Add(p.backoff)
		p.log.Debug("pre-build failed", "err", err, "retry_in", p.backoff)
	case p.closed:
		victim = c
	default:
		e := &entry{circ: c, path: path, port: port, built: now, clean: true}
		p.clean = append(p.clean, e)
		p.byCirc[c] = e
		p.stats.Built++
		p.backoff = 0
		p.refillLocked(now)
	}
	p.mu.Unlock()
	if victim != nil {
		_ = victim.Close()
	}
}

func indexOf(s []uint16, v uint16) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// buildCircuit selects a path for port and builds it, up to buildAttempts
// times, all within BuildTimeout. A hop named by a *circuit.BuildError is
// reported (Report(hop, false)) and excluded from the next attempt; when
// ctx itself ended (the pool closed, every waiter left, or BuildTimeout),
// nobody is blamed, for the hop was cut short rather than at fault. A
// Prepare failure is a failed attempt with no blame. A Select error ends
// the build.
func (p *Pool) buildCircuit(ctx context.Context, port uint16) (*circuit.Circuit, Path, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.BuildTimeout)
	defer cancel()
	var (
		exclude []peer.ID
		lastErr error
	)
	for attempt := range buildAttempts {
		path, err := p.cfg.Select(ctx, port, exclude)
		if err != nil {
			err = fmt.Errorf("select path: %w", err)
			if lastErr != nil {
				err = fmt.Errorf("%w; then %w", lastErr, err)
			}
			return nil, Path{}, err
		}
		c, err := p.cfg.Build(ctx, path.Hops)
		if err == nil && p.cfg.Prepare != nil {
			if err = p.cfg.Prepare(ctx, c, path); err != nil {
				_ = c.Close()
				lastErr = fmt.Errorf("prepare circuit: %w", err)
				p.log.Debug("prepare failed", "attempt", attempt+1, "err", err)
				if ctx.Err() != nil {
					break
				}
				continue
			}
		}
		if err == nil {
			p.log.Debug("circuit built", "circuit", c.ID(), "attempt", attempt+1)
			return c, path, nil
		}
		lastErr = fmt.Errorf("build circuit: %w", err)
		if ctx.Err() != nil {
			break
		}
		var be *circuit.BuildError
		if errors.As(err, &be) && be.Hop >= 0 && be.Hop < len(path.Hops) {
			bad := path.Hops[be.Hop].Peer
			if errors.Is(err, circuit.ErrPayment) {
				// PROTOCOL.md §4.4: a paid hop refused the handshake's
				// payment (or got none); say which hop and why.
				p.log.Warn("a hop refused the circuit for payment", "attempt", attempt+1, "hop", be.Hop+1, "peer", bad, "err", err)
			} else {
				p.log.Debug("build failed at a hop", "attempt", attempt+1, "hop", be.Hop+1, "peer", bad, "err", err)
			}
			if p.cfg.Report != nil {
				p.cfg.Report(bad, false)
			}
			exclude = append(exclude, bad)
		} else {
			p.log.Debug("build failed", "attempt", attempt+1, "err", err)
		}
	}
	return nil, Path{}, lastErr
}
