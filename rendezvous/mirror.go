package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// Mirror defaults (MirrorConfig).
const (
	DefaultMirrorAttemptTimeout = 60 * time.Second
	DefaultMirrorRetryMin       = 5 * time.Second
	DefaultMirrorRetryMax       = 2 * time.Minute
	DefaultMirrorRemoveTimeout  = 15 * time.Second
)

// ErrMirrorMismatch: the other network published the key under a
// different service id than Key.ServiceID, so the two networks would not
// share one address (the key encodings differ). It is permanent: the
// mirror removes what it added there and does not retry.
var ErrMirrorMismatch = errors.New("rendezvous: the mirror network published the key under a different address")

// MirrorState is where one service stands on the mirror network.
type MirrorState string

// Mirror states.
const (
	// MirrorPending: not yet published there (waiting for the network to
	// be ready, or for the first attempt to finish).
	MirrorPending MirrorState = "pending"
	// MirrorPublished: the other network accepted the service with the
	// same address.
	MirrorPublished MirrorState = "published"
	// MirrorError: the last attempt failed (Err says why); the mirror
	// retries with back-off unless Err is ErrMirrorMismatch.
	MirrorError MirrorState = "error"
)

// MirrorStatus is one service's state on the mirror network.
type MirrorStatus struct {
	State MirrorState
	// Err is the last failure, "" unless State is MirrorError.
	Err string
	// Retrying is set with MirrorError while the mirror keeps trying.
	Retrying bool
}

// String is "published", "pending" or "error: <why>".
func (s MirrorStatus) String() string {
	if s.State == MirrorError {
		return string(s.State) + ": " + s.Err
	}
	return string(s.State)
}

// MirrorConfig wires a Mirror to the second network (node/control.go
// plugs in a local tor). Add and Remove are required.
type MirrorConfig struct {
	// Ready, if set, blocks until the network can take services (a tor
	// bootstrapped) or ctx ends; an error counts as a failed attempt.
	// While it blocks the service is MirrorPending.
	Ready func(ctx context.Context) error
	// Add publishes key's service on ports there and returns the service
	// id the network reports (56 characters, no ".onion"). It is bounded
	// by AttemptTimeout.
	Add func(ctx context.Context, key Key, ports []Port) (serviceID string, err error)
	// Remove takes the service with this id down there. Bounded by
	// RemoveTimeout; its error is logged at debug and otherwise ignored.
	Remove func(ctx context.Context, serviceID string) error
	// AttemptTimeout bounds one Add. Default DefaultMirrorAttemptTimeout.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the back-off between failed attempts;
	// it doubles from RetryMin to RetryMax. Defaults 5s and 2m.
	RetryMin, RetryMax time.Duration
	// RemoveTimeout bounds one Remove. Default 15s.
	RemoveTimeout time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Mirror publishes this node's onion services on a second onion network
// too (Tor, through a local tor) under the same key, so one .onion is
// reachable from both. Everything happens in the background: Publish and
// Unpublish never wait for the other network, and its failures only show
// in Status (and once in the log), never in the co-infuse publication.
//
// A Mirror is safe for concurrent use. Its goroutines end by Close.
type Mirror struct {
	cfg MirrorConfig
	log *slog.Logger

	// mu guards services, last and closed.
	mu       sync.Mutex
	services map[string]*mirrorEntry // published now, by service id
	// last is the newest entry per service id whose goroutine still runs
	// (published, or unpublished and removing its copy).
	last   map[string]*mirrorEntry
	closed bool
	wg     sync.WaitGroup
}

// mirrorEntry is one service's publication; its goroutine (run) owns the
// other network's copy.
type mirrorEntry struct {
	key    Key
	ports  []Port
	ctx    context.Context
	cancel context.CancelFunc
	// done closes when run has returned (and removed the copy).
	done chan struct{}

	// mu guards status.
	mu     sync.Mutex
	status MirrorStatus
}

// NewMirror checks cfg and returns an empty Mirror.
func NewMirror(cfg MirrorConfig) (*Mirror, error) {
	if cfg.Add == nil || cfg.Remove == nil {
		return nil, errors.New("rendezvous: mirror: Add and Remove are required")
	}
	if cfg.AttemptTimeout < 0 || cfg.RetryMin < 0 || cfg.RetryMax < 0 || cfg.RemoveTimeout < 0 {
		return nil, errors.New("rendezvous: mirror: negative duration")
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = DefaultMirrorAttemptTimeout
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = DefaultMirrorRetryMin
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultMirrorRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.RemoveTimeout == 0 {
		cfg.RemoveTimeout = DefaultMirrorRemoveTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mirror{cfg: cfg, log: log.With("subsys", "onion-mirror"), services: map[string]*mirrorEntry{}, last: map[string]*mirrorEntry{}}, nil
}

// Publish starts publishing key's service on ports on the other network
// and returns at once. Publishing a key again replaces the earlier entry
// (its copy is removed first). After Close it does nothing.
func (m *Mirror) Publish(key Key, ports []Port) {
	id := key.ServiceID()
	ctx, cancel := context.WithCancel(context.Background())
	e := &mirrorEntry{key: key, ports: slices.Clone(ports), ctx: ctx, cancel: cancel,
		done: make(chan struct{}), status: MirrorStatus{State: MirrorPending}}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		cancel()
		return
	}
	var prev <-chan struct{}
	if old := m.last[id]; old != nil {
		old.cancel()
		prev = old.done
	}
	m.services[id] = e
	m.last[id] = e
	m.wg.Add(1)
	m.mu.Unlock()
	go func() {
		defer m.wg.Done()
		m.run(e, prev)
		m.mu.Lock()
		if m.last[id] == e {
			delete(m.last, id)
		}
		m.mu.Unlock()
	}()
}

// Unpublish stops publishing the service with this id ("<id>" or
// "<id>.onion") and removes it from the other network in the background.
// It reports whether the service was there.
func (m *Mirror) Unpublish(id string) bool {
	if len(id) == onionaddr.IDLen+len(onionaddr.Suffix) {
		id = id[:onionaddr.IDLen]
	}
	m.mu.Lock()
	e := m.services[id]
	delete(m.services, id)
	m.mu.Unlock()
	if e == nil {
		return false
	}
	e.cancel()
	return true
}

// Status reports the service's state on the other network; ok is false
// for an id not published through the Mirror.
func (m *Mirror) Status(id string) (st MirrorStatus, ok bool) {
	if len(id) == onionaddr.IDLen+len(onionaddr.Suffix) {
		id = id[:onionaddr.IDLen]
	}
	m.mu.Lock()
	e := m.services[id]
	m.mu.Unlock()
	if e == nil {
		return MirrorStatus{}, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.status, true
}

// Close stops every publication, removes each service from the other
// network (each Remove bounded by RemoveTimeout) and waits for it.
// Calling it again does nothing.
func (m *Mirror) Close() error {
	m.mu.Lock()
	m.closed = true
	for id, e := range m.services {
		e.cancel()
		delete(m.services, id)
	}
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

func (e *mirrorEntry) set(st MirrorStatus) {
	e.mu.Lock()
	e.status = st
	e.mu.Unlock()
}

// run publishes e until it is cancelled, then removes it. prev, if set,
// is the earlier entry for the same key, whose removal must come first.
func (m *Mirror) run(e *mirrorEntry, prev <-chan struct{}) {
	defer close(e.done)
	if prev != nil {
		select {
		case <-prev:
		case <-e.ctx.Done():
			return
		}
	}
	want := e.key.ServiceID()
	var (
		added   string // the id Add reported, to remove at the end
		tried   bool   // an Add was sent; it may have taken effect
		logged  bool   // the current run of failures was logged
		backoff = m.cfg.RetryMin
	)
	defer func() {
		if added == "" && tried {
			added = want
		}
		if added == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RemoveTimeout)
		defer cancel()
		if err := m.cfg.Remove(ctx, added); err != nil {
			m.log.Debug("removing a mirrored service failed", "err", err)
		}
	}()
	for {
		err := m.attempt(e, &tried, &added)
		if e.ctx.Err() != nil {
			return
		}
		if err == nil {
			e.set(MirrorStatus{State: MirrorPublished})
			m.log.Info("onion service mirrored", "ports", len(e.ports))
			<-e.ctx.Done()
			return
		}
		permanent := errors.Is(err, ErrMirrorMismatch)
		e.set(MirrorStatus{State: MirrorError, Err: err.Error(), Retrying: !permanent})
		switch {
		case permanent:
			// err names both addresses; the log gets the fixed sentinel.
			m.log.Warn("onion service not mirrored: the address differs", "err", ErrMirrorMismatch)
			<-e.ctx.Done()
			return
		case !logged:
			logged = true
			m.log.Warn("onion service not mirrored yet; retrying in the background", "err", err)
		default:
			m.log.Debug("onion service mirror attempt failed", "err", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-e.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, m.cfg.RetryMax)
	}
}

// attempt is one Ready + Add. A mismatching id is removed at once (it is
// not this key's address) and reported as ErrMirrorMismatch.
func (m *Mirror) attempt(e *mirrorEntry, tried *bool, added *string) error {
	if m.cfg.Ready != nil {
		if err := m.cfg.Ready(e.ctx); err != nil {
			return fmt.Errorf("not ready: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, m.cfg.AttemptTimeout)
	defer cancel()
	*tried = true
	got, err := m.cfg.Add(ctx, e.key, e.ports)
	if err != nil {
		return err
	}
	if want := e.key.ServiceID(); got != want {
		*tried = false
		rctx, rcancel := context.WithTimeout(context.Background(), m.cfg.RemoveTimeout)
		defer rcancel()
		if err := m.cfg.Remove(rctx, got); err != nil {
			m.log.Debug("removing a mismatched mirrored service failed", "err", err)
		}
		return fmt.Errorf("%w: %s.onion, not %s.onion", ErrMirrorMismatch, got, want)
	}
	*added = got
	return nil
}
