package node

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// LimitsConfig caps what other peers can make this node hold when it
// carries their circuits (relay, exit and the other last-hop roles):
// circuit.Limits, whose comments say what happens when each is reached
// (THREAT_MODEL.md, denial of service). A client-only node uses only
// keep_alive and fixed_windows. Zero fields take the default.
type LimitsConfig struct {
	// MaxLinks is the most link streams to neighbours, both directions.
	// Default 1024.
	MaxLinks int `yaml:"max_links"`
	// MaxCircuits is the most circuits relayed at once. Default 16384.
	MaxCircuits int `yaml:"max_circuits"`
	// MaxCircuitsPerPeer is the most relayed circuits one neighbour may
	// have created through this node. Default 1024.
	MaxCircuitsPerPeer int `yaml:"max_circuits_per_peer"`
	// MaxPendingCreates is the most circuit handshakes in progress.
	// Default 256.
	MaxPendingCreates int `yaml:"max_pending_creates"`
	// MaxStreamsPerCircuit is the most streams on one circuit, dials in
	// flight included. Default 64.
	MaxStreamsPerCircuit int `yaml:"max_streams_per_circuit"`
	// MaxPendingBegins is the most destination dials and DNS lookups in
	// flight, node-wide. Default 1024.
	MaxPendingBegins int `yaml:"max_pending_begins"`
	// MemoryBudgetMB is the node-wide memory budget, in MiB, for relayed
	// circuits, last-hop streams, their buffered data and relayed cells
	// queued toward neighbours; new circuits and streams are refused past
	// 3/4 of it. Default 512, at least 64.
	MemoryBudgetMB int `yaml:"memory_budget_mb"`
	// EndLinger is how long a last-hop stream ended with END done keeps
	// writing what it had buffered to a slow destination. Default 5s.
	EndLinger time.Duration `yaml:"end_linger"`
	// MaxLinkQueue is the most link-level cells (answers to refused
	// CREATEs) queued toward one neighbour. Default 256.
	MaxLinkQueue int `yaml:"max_link_queue"`
	// MaxCircuitQueue is the most cells (4 KiB each) one circuit may have
	// queued toward one neighbour; past it the circuit is destroyed.
	// Default 5120, at least 3072.
	MaxCircuitQueue int `yaml:"max_circuit_queue"`
	// MaxQueuedCells is the cells of relayed circuits queued toward all
	// neighbours above which a relayed circuit holding more than its
	// equal share is destroyed when it queues more (the node's own
	// circuits are bounded by their windows). Default 65536.
	MaxQueuedCells int `yaml:"max_queued_cells"`
	// CreateTimeout bounds a circuit handshake. Default 10s.
	CreateTimeout time.Duration `yaml:"create_timeout"`
	// ExtendTimeout bounds extending a circuit to the next hop. Default 15s.
	ExtendTimeout time.Duration `yaml:"extend_timeout"`
	// BeginTimeout bounds opening a destination (dial or lookup).
	// Default 20s.
	BeginTimeout time.Duration `yaml:"begin_timeout"`
	// IdleTimeout destroys a relayed circuit, and closes a link without
	// circuits, after this long without a cell. Default 10m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// KeepAlive is how long this node's own circuits may stay silent
	// before a keep-alive; below idle_timeout. Default 2m.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// WriteTimeout closes a link to a neighbour that takes no data for
	// this long. Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// FixedWindows keeps circuit and stream windows at their old fixed
	// sizes instead of growing them with measured RTT. Default false.
	FixedWindows bool `yaml:"fixed_windows"`
	// CreatesPerPeerPerSecond is the rate, in CREATEs per second, at which
	// one neighbour's circuit handshakes are admitted (a token bucket per
	// neighbour, checked before any public-key work). Default 50.
	CreatesPerPeerPerSecond float64 `yaml:"creates_per_peer_per_second"`
	// CreateBurstPerPeer is each neighbour's CREATE bucket, in CREATEs.
	// Default 200.
	CreateBurstPerPeer int `yaml:"create_burst_per_peer"`
	// CreatesPerSecond is the rate, in CREATEs per second, for all
	// neighbours together. Default 1000.
	CreatesPerSecond float64 `yaml:"creates_per_second"`
	// CreateBurst is the global CREATE bucket, in CREATEs. Default 4000.
	CreateBurst int `yaml:"create_burst"`
	// MintOnlyMaxCells is the most cells (4 KiB each, both directions) an
	// unpaid circuit that only reaches this node's mint may carry.
	// Default 64.
	MintOnlyMaxCells int `yaml:"mint_only_max_cells"`
	// MintOnlyLifetime is how long such a circuit may live. Default 2m.
	MintOnlyLifetime time.Duration `yaml:"mint_only_lifetime"`
}

// minMemoryBudgetMB is the smallest limits.memory_budget_mb: a few
// honest circuits' largest windows (16 MiB each) may sit at one relay.
const minMemoryBudgetMB = 64

func (l *LimitsConfig) applyDefaults() {
	d := circuit.DefaultLimits()
	for _, f := range []struct {
		p *int
		v int
	}{
		{&l.MaxLinks, d.MaxLinks},
		{&l.MaxCircuits, d.MaxCircuits},
		{&l.MaxCircuitsPerPeer, d.MaxCircuitsPerPeer},
		{&l.MaxPendingCreates, d.MaxPendingCreates},
		{&l.MaxStreamsPerCircuit, d.MaxStreamsPerCircuit},
		{&l.MaxPendingBegins, d.MaxPendingBegins},
		{&l.MemoryBudgetMB, int(d.MemoryBudget >> 20)},
		{&l.MaxLinkQueue, d.MaxLinkQueue},
		{&l.MaxCircuitQueue, d.MaxCircuitQueue},
		{&l.MaxQueuedCells, d.MaxQueuedCells},
		{&l.CreateBurstPerPeer, d.CreateBurstPerPeer},
		{&l.CreateBurst, d.CreateBurst},
		{&l.MintOnlyMaxCells, d.MintOnlyMaxCells},
	} {
		if *f.p == 0 {
			*f.p = f.v
		}
	}
	for _, f := range []struct {
		p *time.Duration
		v time.Duration
	}{
		{&l.EndLinger, d.EndLinger},
		{&l.CreateTimeout, d.CreateTimeout},
		{&l.ExtendTimeout, d.ExtendTimeout},
		{&l.BeginTimeout, d.BeginTimeout},
		{&l.IdleTimeout, d.IdleTimeout},
		{&l.KeepAlive, d.KeepAlive},
		{&l.WriteTimeout, d.WriteTimeout},
		{&l.MintOnlyLifetime, d.MintOnlyLifetime},
	} {
		if *f.p == 0 {
			*f.p = f.v
		}
	}
	if l.CreatesPerPeerPerSecond == 0 {
		l.CreatesPerPeerPerSecond = d.CreatesPerPeerPerSecond
	}
	if l.CreatesPerSecond == 0 {
		l.CreatesPerSecond = d.CreatesPerSecond
	}
}

// validate checks l after applyDefaults and names the first bad field.
func (l *LimitsConfig) validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"limits.max_links", l.MaxLinks},
		{"limits.max_circuits", l.MaxCircuits},
		{"limits.max_circuits_per_peer", l.MaxCircuitsPerPeer},
		{"limits.max_pending_creates", l.MaxPendingCreates},
		{"limits.max_streams_per_circuit", l.MaxStreamsPerCircuit},
		{"limits.max_pending_begins", l.MaxPendingBegins},
		{"limits.max_link_queue", l.MaxLinkQueue},
		{"limits.max_queued_cells", l.MaxQueuedCells},
		{"limits.create_burst_per_peer", l.CreateBurstPerPeer},
		{"limits.create_burst", l.CreateBurst},
		{"limits.mint_only_max_cells", l.MintOnlyMaxCells},
	} {
		if f.v < 1 {
			return fieldErr(f.name, "%d is not positive", f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"limits.end_linger", l.EndLinger},
		{"limits.create_timeout", l.CreateTimeout},
		{"limits.extend_timeout", l.ExtendTimeout},
		{"limits.begin_timeout", l.BeginTimeout},
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.keep_alive", l.KeepAlive},
		{"limits.write_timeout", l.WriteTimeout},
		{"limits.mint_only_lifetime", l.MintOnlyLifetime},
	} {
		if f.v <= 0 {
			return fieldErr(f.name, "%v is not positive", f.v)
		}
	}
	if !(l.CreatesPerPeerPerSecond > 0) {
		return fieldErr("limits.creates_per_peer_per_second", "%v is not positive", l.CreatesPerPeerPerSecond)
	}
	if !(l.CreatesPerSecond > 0) {
		return fieldErr("limits.creates_per_second", "%v is not positive", l.CreatesPerSecond)
	}
	if l.MemoryBudgetMB < minMemoryBudgetMB {
		return fieldErr("limits.memory_budget_mb", "%d MiB is below %d", l.MemoryBudgetMB, minMemoryBudgetMB)
	}
	if l.MemoryBudgetMB > 1<<30 {
		return fieldErr("limits.memory_budget_mb", "%d MiB is too large", l.MemoryBudgetMB)
	}
	if l.MaxCircuitQueue < circuit.MinCircuitQueue {
		return fieldErr("limits.max_circuit_queue", "%d cells is below %d (an honest circuit's window and its control cells)",
			l.MaxCircuitQueue, circuit.MinCircuitQueue)
	}
	if l.KeepAlive >= l.IdleTimeout {
		return fieldErr("limits.keep_alive", "%v is not below limits.idle_timeout (%v): relays would drop idle circuits first",
			l.KeepAlive, l.IdleTimeout)
	}
	return nil
}

// circuitLimits is l as the circuit engine takes it.
func (l *LimitsConfig) circuitLimits() circuit.Limits {
	return circuit.Limits{
		MaxLinks:             l.MaxLinks,
		MaxCircuits:          l.MaxCircuits,
		MaxCircuitsPerPeer:   l.MaxCircuitsPerPeer,
		MaxPendingCreates:    l.MaxPendingCreates,
		MaxStreamsPerCircuit: l.MaxStreamsPerCircuit,
		MaxPendingBegins:     l.MaxPendingBegins,
		MemoryBudget:         int64(l.MemoryBudgetMB) << 20,
		EndLinger:            l.EndLinger,
		MaxLinkQueue:         l.MaxLinkQueue,
		MaxCircuitQueue:      l.MaxCircuitQueue,
		MaxQueuedCells:       l.MaxQueuedCells,
		CreateTimeout:        l.CreateTimeout,
		ExtendTimeout:        l.ExtendTimeout,
		BeginTimeout:         l.BeginTimeout,
		IdleTimeout:          l.IdleTimeout,
		KeepAlive:            l.KeepAlive,
		FixedWindows:         l.FixedWindows,
		WriteTimeout:         l.WriteTimeout,

		CreatesPerPeerPerSecond: l.CreatesPerPeerPerSecond,
		CreateBurstPerPeer:      l.CreateBurstPerPeer,
		CreatesPerSecond:        l.CreatesPerSecond,
		CreateBurst:             l.CreateBurst,
		MintOnlyMaxCells:        l.MintOnlyMaxCells,
		MintOnlyLifetime:        l.MintOnlyLifetime,
	}
}

// limitsEnvVars are the CO_INFUSE_LIMITS_… variables, one per field.
func limitsEnvVars() []EnvVar {
	ints := []struct {
		key string
		p   func(c *Config) *int
	}{
		{"max_links", func(c *Config) *int { return &c.Limits.MaxLinks }},
		{"max_circuits", func(c *Config) *int { return &c.Limits.MaxCircuits }},
		{"max_circuits_per_peer", func(c *Config) *int { return &c.Limits.MaxCircuitsPerPeer }},
		{"max_pending_creates", func(c *Config) *int { return &c.Limits.MaxPendingCreates }},
		{"max_streams_per_circuit", func(c *Config) *int { return &c.Limits.MaxStreamsPerCircuit }},
		{"max_pending_begins", func(c *Config) *int { return &c.Limits.MaxPendingBegins }},
		{"memory_budget_mb", func(c *Config) *int { return &c.Limits.MemoryBudgetMB }},
		{"max_link_queue", func(c *Config) *int { return &c.Limits.MaxLinkQueue }},
		{"max_circuit_queue", func(c *Config) *int { return &c.Limits.MaxCircuitQueue }},
		{"max_queued_cells", func(c *Config) *int { return &c.Limits.MaxQueuedCells }},
		{"create_burst_per_peer", func(c *Config) *int { return &c.Limits.CreateBurstPerPeer }},
		{"create_burst", func(c *Config) *int { return &c.Limits.CreateBurst }},
		{"mint_only_max_cells", func(c *Config) *int { return &c.Limits.MintOnlyMaxCells }},
	}
	durs := []struct {
		key string
		p   func(c *Config) *time.Duration
	}{
		{"end_linger", func(c *Config) *time.Duration { return &c.Limits.EndLinger }},
		{"create_timeout", func(c *Config) *time.Duration { return &c.Limits.CreateTimeout }},
		{"extend_timeout", func(c *Config) *time.Duration { return &c.Limits.ExtendTimeout }},
		{"begin_timeout", func(c *Config) *time.Duration { return &c.Limits.BeginTimeout }},
		{"idle_timeout", func(c *Config) *time.Duration { return &c.Limits.IdleTimeout }},
		{"keep_alive", func(c *Config) *time.Duration { return &c.Limits.KeepAlive }},
		{"write_timeout", func(c *Config) *time.Duration { return &c.Limits.WriteTimeout }},
		{"mint_only_lifetime", func(c *Config) *time.Duration { return &c.Limits.MintOnlyLifetime }},
	}
	name := func(key string) string { return EnvPrefix + "LIMITS_" + strings.ToUpper(key) }
	var vars []EnvVar
	for _, f := range ints {
		vars = append(vars, EnvVar{Name: name(f.key), Field: "limits." + f.key, Doc: "integer",
			set: func(c *Config, v string) error { return parseInt(v, f.p(c)) }})
	}
	for _, f := range durs {
		vars = append(vars, EnvVar{Name: name(f.key), Field: "limits." + f.key, Doc: "duration",
			set: func(c *Config, v string) error { return parseDuration(v, f.p(c)) }})
	}
	for _, f := range []struct {
		key string
		p   func(c *Config) *float64
	}{
		{"creates_per_peer_per_second", func(c *Config) *float64 { return &c.Limits.CreatesPerPeerPerSecond }},
		{"creates_per_second", func(c *Config) *float64 { return &c.Limits.CreatesPerSecond }},
	} {
		vars = append(vars, EnvVar{Name: name(f.key), Field: "limits." + f.key, Doc: "number",
			set: func(c *Config, v string) error {
				x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					return fmt.Errorf("%q is not a number", v)
				}
				*f.p(c) = x
				return nil
			}})
	}
	return append(vars, EnvVar{Name: name("fixed_windows"), Field: "limits.fixed_windows", Doc: "true or false",
		set: func(c *Config, v string) error { return parseBool(v, &c.Limits.FixedWindows) }})
}
