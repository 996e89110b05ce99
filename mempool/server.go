package mempool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ServerConfig configures a delivery node's Server. Submit and Lookup are
// required: node wires them to a Backend's methods.
type ServerConfig struct {
	// Submit hands one transaction to the backend and returns its verdict.
	// It must return by ctx's end (DefaultBackendTimeout).
	Submit func(ctx context.Context, s Submit) Verdict
	// Lookup says whether txid is in the backend's mempool or chain.
	Lookup func(ctx context.Context, txid [32]byte) TxState
	// ReadTimeout bounds waiting for one request. Default
	// DefaultReadTimeout.
	ReadTimeout time.Duration
	// BackendTimeout bounds one Submit or Lookup. Default
	// DefaultBackendTimeout.
	BackendTimeout time.Duration
	// MaxInFlight caps backend calls at once; a request beyond it is
	// answered Unavailable. Default DefaultMaxInFlight.
	MaxInFlight int
	// Logger; default slog.Default(). Transactions and txids are never
	// logged.
	Logger *slog.Logger
}

// Origin is what a delivery node knows of a stream's sender: the previous
// hop of the circuit, never the client (unless the circuit has one hop).
type Origin struct {
	// Peer is the previous hop's peer ID.
	Peer string
	// Addrs are the remote addresses of this node's links to Peer.
	Addrs []string
}

// maxOrigins bounds the origins a Server remembers (Stats).
const maxOrigins = 64

// Server is the delivery role: it serves BEGIN service mempool streams at
// the last hop (PROTOCOL.md §6). Create it with NewServer; ServeConn serves
// one stream.
type Server struct {
	cfg      ServerConfig
	log      *slog.Logger
	inFlight chan struct{} // semaphore, MaxInFlight slots

	submits, accepted, rejected, unavailable, queries atomic.Uint64
	backendNs                                         atomic.Int64 // time in Submit calls

	mu      sync.Mutex
	origins []Origin // guarded by mu; the last maxOrigins, oldest first
}

// NewServer checks cfg and fills its defaults.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Submit == nil || cfg.Lookup == nil {
		return nil, errors.New("mempool server: Submit and Lookup are required")
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = DefaultBackendTimeout
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger.With("subsys", "mempool"), inFlight: make(chan struct{}, cfg.MaxInFlight)}, nil
}

// ServeConn serves one stream: up to MaxRequestsPerStream requests, each
// answered before the next is read. It closes conn. A malformed frame ends
// the stream at once; ctx ends it too.
func (s *Server) ServeConn(ctx context.Context, conn net.Conn, from Origin) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s.note(from)
	for range MaxRequestsPerStream {
		_ = conn.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout))
		k, body, err := ReadFrame(conn)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
				s.log.Debug("mempool stream ended", "err", err)
			}
			return
		}
		var (
			rk   Kind
			resp []byte
		)
		switch k {
		case KindSubmit:
			sub, err := ParseSubmit(body)
			if err != nil {
				s.log.Debug("bad SUBMIT", "err", err)
				return
			}
			v := s.submit(ctx, sub)
			if resp, err = v.Marshal(); err != nil {
				s.log.Error("verdict does not encode", "err", err) // our bug: backend.go builds verdicts
				v = Verdict{Status: Unavailable}
				resp, _ = v.Marshal()
			}
			rk = KindVerdict
		case KindQuery:
			q, err := ParseQuery(body)
			if err != nil {
				s.log.Debug("bad QUERY", "err", err)
				return
			}
			rk, resp = KindStatus, s.lookup(ctx, q.TxID).Marshal()
		default:
			s.log.Debug("unexpected frame on mempool stream", "kind", k)
			return
		}
		_ = conn.SetWriteDeadline(time.Now().Add(s.cfg.ReadTimeout))
		if err := WriteFrame(conn, rk, resp); err != nil {
			return
		}
	}
}

func (s *Server) submit(ctx context.Context, sub Submit) Verdict {
	s.submits.Add(1)
	select {
	case s.inFlight <- struct{}{}:
	default:
		s.unavailable.Add(1)
		return Verdict{Status: Unavailable, Message: "busy"}
	}
	defer func() { <-s.inFlight }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BackendTimeout)
	defer cancel()
	start := time.Now()
	v := s.cfg.Submit(ctx, sub)
	s.backendNs.Add(int64(time.Since(start)))
	switch v.Status {
	case Accepted:
		s.accepted.Add(1)
	case Rejected:
		s.rejected.Add(1)
	default:
		s.unavailable.Add(1)
	}
	return v
}

func (s *Server) lookup(ctx context.Context, txid [32]byte) TxState {
	s.queries.Add(1)
	select {
	case s.inFlight <- struct{}{}:
	default:
		return StateUnavailable
	}
	defer func() { <-s.inFlight }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.BackendTimeout)
	defer cancel()
	return s.cfg.Lookup(ctx, txid)
}

func (s *Server) note(o Origin) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.origins) == maxOrigins {
		s.origins = append(s.origins[:0], s.origins[1:]...)
	}
	s.origins = append(s.origins, o)
}

// ServerStats counts what a delivery node did and saw.
type ServerStats struct {
	Submits     uint64 `json:"submits"`
	Accepted    uint64 `json:"accepted"`
	Rejected    uint64 `json:"rejected"`
	Unavailable uint64 `json:"unavailable"`
	Queries     uint64 `json:"queries"`
	// SubmitTime sums the time spent in the backend's Submit (for
	// BenchmarkE2EMempool's split of a broadcast's latency).
	SubmitTime time.Duration `json:"submit_ns"`
	// Origins are the senders of the last streams (at most 64): the
	// previous hops, which is all a delivery node learns of where a
	// transaction came from.
	Origins []Origin `json:"origins"`
}

// Stats returns the Server's counters and the origins it saw.
func (s *Server) Stats() ServerStats {
	s.mu.Lock()
	o := append([]Origin(nil), s.origins...)
	s.mu.Unlock()
	return ServerStats{
		Submits: s.submits.Load(), Accepted: s.accepted.Load(), Rejected: s.rejected.Load(),
		Unavailable: s.unavailable.Load(), Queries: s.queries.Load(), Origins: o,
		SubmitTime: time.Duration(s.backendNs.Load()),
	}
}

func (o Origin) String() string { return fmt.Sprintf("%s %v", o.Peer, o.Addrs) }
