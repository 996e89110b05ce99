package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("status", aboutStatus)
	asJSON := fs.Bool("json", false, "print the status as JSON (node.Status; stable keys, \"version\" is the schema version)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	ac, err := node.NewAdminClient(*dd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if *asJSON {
		// Pass the node's answer through unchanged, so fields this
		// binary does not know yet are not lost; it must still be a
		// status object.
		var raw json.RawMessage
		if err := ac.Get(ctx, "/v1/status", &raw); err != nil {
			return err
		}
		var st node.Status
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("the node's status is not JSON the command understands: %w", err)
		}
		_, err := fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	var st node.Status
	if err := ac.Get(ctx, "/v1/status", &st); err != nil {
		return err
	}
	return printStatus(stdout, st)
}

// printStatus writes st for people: identity and front ends, then circuits
// with one line per hop, the wallet, and the relay's sessions by role.
func printStatus(w io.Writer, st node.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	id := st.ID
	if !(node.Config{Roles: st.Roles}).PersistentIdentity() {
		id += " (this run only: a client keeps no peer ID)"
	}
	fmt.Fprintf(tw, "node\t%s\n", id)
	fmt.Fprintf(tw, "roles\t%s\n", joinRoles(st.Roles))
	fmt.Fprintf(tw, "uptime\t%s\n", time.Duration(st.UptimeSec)*time.Second)
	fmt.Fprintf(tw, "socks5\t%s\n", orOff(st.SOCKS))
	fmt.Fprintf(tw, "http connect\t%s\n", orOff(st.HTTPTunnel))
	if st.Payments != "" {
		fmt.Fprintf(tw, "payments\t%s\n", st.Payments)
	}
	for i, a := range st.Addrs {
		label := ""
		if i == 0 {
			label = "addrs"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, a)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := st.Client; c != nil {
		printCircuits(w, c)
		printOnionServices(w, c.OnionServices)
		if c.Wallet != nil {
			printWalletSummary(w, c.Wallet)
		}
		if m := c.Mempool; m != nil {
			fmt.Fprintf(w, "\nmempool: json-rpc on %s; %d queued (%d accepted, awaiting the echo), %d delivered and %d rejected since start\n",
				m.RPC, m.Queued, m.Accepted, m.Delivered, m.Rejected)
			if m.GivenUp > 0 {
				fmt.Fprintf(w, "mempool: %d given up (not delivered in time; see getprivatebroadcastinfo)\n", m.GivenUp)
			}
		}
	}
	if r := st.Relay; r != nil {
		printRelay(w, r)
		if d := r.Delivery; d != nil {
			fmt.Fprintf(w, "\ndelivery: %d submitted (%d accepted, %d rejected, %d backend unavailable), %d echo queries\n",
				d.Submits, d.Accepted, d.Rejected, d.Unavailable, d.Queries)
		}
		if g := r.TorGateway; g != nil {
			fmt.Fprintf(w, "\ntor gateway: %d streams asked, %d handed to tor (%d in progress), %d refused while tor was not ready, %d refused (bad target or cap)\n",
				g.Begins, g.Dials, g.Pending, g.NotReady, g.Refused)
		}
	}
	if t := st.Tor; t != nil {
		state := "down (restarting)"
		if t.Running {
			state = fmt.Sprintf("running, bootstrapped %d%%", t.Bootstrap)
		}
		fmt.Fprintf(w, "\ntor: %s; %d restarts; %d onion services published on Tor\n", state, t.Restarts, len(t.Onions))
		if t.LastError != "" {
			fmt.Fprintf(w, "  last error: %s\n", t.LastError)
		}
	}
	return nil
}

func printCircuits(w io.Writer, c *node.ClientStatus) {
	fmt.Fprintf(w, "\ncircuits: %d open, %d pre-built\n", len(c.Circuits), c.Prebuilt)
	if len(c.Circuits) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CIRCUIT\tISOLATION\tPORT\tAGE\tSTREAMS\tHOP\tPEER\tCARRIED\tPAID FOR\tSATS")
	for _, ci := range c.Circuits {
		iso := ci.Isolation
		switch {
		case ci.Prebuilt:
			iso = "(pre-built)"
		case iso == "":
			iso = "(no credentials)"
		}
		if ci.Dirty {
			iso += " (dirty)"
		}
		head := fmt.Sprintf("%d\t%s\t%d\t%s\t%d", ci.ID, iso, ci.Port, time.Duration(ci.AgeSec)*time.Second, ci.Streams)
		if len(ci.Hops) == 0 {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\n", head)
		}
		for i, h := range ci.Hops {
			if i > 0 {
				head = "\t\t\t\t"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", head, h.Role, h.Peer, formatBytes(h.BytesCarried), formatBytes(h.BytesPaidFor), h.SatsPaid)
			if h.PayProblem != "" {
				fmt.Fprintf(tw, "\t\t\t\t\t\t  stopped paying: %s\t\t\t\n", h.PayProblem)
			}
		}
	}
	tw.Flush()
}

// printOnionServices lists the published onion services, with their
// state on Tor when dual publication is on.
func printOnionServices(w io.Writer, ss []node.OnionServiceStatus) {
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "\nonion services: %d\n", len(ss))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range ss {
		ports := make([]string, len(s.Ports))
		for i, p := range s.Ports {
			ports[i] = strconv.Itoa(int(p))
		}
		co := "pending"
		if s.Published {
			co = "published"
		}
		tor := s.Tor
		if tor == "" {
			tor = "off"
		}
		fmt.Fprintf(tw, "%s\tports %s\tintros %d\tco-infuse: %s\ttor: %s\n", s.Address, strings.Join(ports, ","), s.Intros, co, tor)
	}
	tw.Flush()
}

func printWalletSummary(w io.Writer, ws *node.WalletStatus) {
	fmt.Fprintf(w, "\nwallet: %d of %d sats of the daily budget used in the last 24 h\n", ws.BudgetUsedSat, ws.BudgetLimitSat)
	if len(ws.Balances) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAVAILABLE\tRESERVED\tPENDING\tEXPIRED")
	for _, id := range slices.Sorted(maps.Keys(ws.Balances)) {
		b := ws.Balances[id]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", id, b.Available, b.Reserved, b.Pending, b.Expired)
	}
	tw.Flush()
}

func printRelay(w io.Writer, r *node.RelayStatus) {
	fmt.Fprintf(w, "\nrelay: %d sessions open, %d since start; %s carried, %d sats earned\n",
		r.Sessions, r.SessionsTotal, formatBytes(r.BytesCarried), r.SatsEarned)
	if len(r.ByRole) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tOPEN\tCARRIED\tSATS EARNED")
	for _, role := range slices.Sorted(maps.Keys(r.ByRole)) {
		rs := r.ByRole[role]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", role, rs.Sessions, formatBytes(rs.BytesCarried), rs.SatsEarned)
	}
	tw.Flush()
}

func joinRoles(roles []node.Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

// formatBytes prints n in decimal units, as prices are per MB (10^6 bytes).
func formatBytes(n uint64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTP"[exp])
}
