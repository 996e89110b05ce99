package node

import (
	"context"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/payment"
)

// TestHopPriceMatchesLedger: the client prices each hop by the role it
// plays in the path (hopPrice), and the hop's ledger (ledgerPrices) credits
// the same sats with the same bytes for that role, so a relay that also
// runs a dearer exit is charged the relay price as a middle and the client
// sees no over-charging.
func TestHopPriceMatchesLedger(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig(t.TempDir())
	cfg.Roles = []Role{RoleClient, RoleRelay, RoleExit, RoleMempool, RoleRendezvous, RoleTorGateway}
	cfg.Discovery.PriceSatPerMB = map[Role]uint64{RoleRelay: 1, RoleExit: 5, RoleMempool: 3, RoleRendezvous: 2, RoleTorGateway: 4}
	ad := discovery.Advert{Prices: map[discovery.Role]uint64{}}
	for _, r := range []Role{RoleRelay, RoleExit, RoleMempool, RoleRendezvous, RoleTorGateway} {
		ad.Roles = append(ad.Roles, discovery.Role(r))
		ad.Prices[discovery.Role(r)] = cfg.rolePrice(r)
	}
	relayOnly := discovery.Advert{Roles: []discovery.Role{discovery.RoleRelay}, Prices: map[discovery.Role]uint64{discovery.RoleRelay: 1}}
	relay, services := cfg.ledgerPrices()

	for _, tc := range []struct {
		name  string
		hop   int
		final discovery.Role
		svc   *cell.Service // the BEGIN the hop sees; nil for a middle
		want  uint64
	}{
		{"middle of an exit circuit", 1, discovery.RoleExit, nil, 1},
		{"exit", 2, discovery.RoleExit, ptr(cell.ServiceExit), 5},
		{"mempool", 2, discovery.RoleMempool, ptr(cell.ServiceMempool), 3},
		{"rendezvous", 2, discovery.RoleRendezvous, ptr(cell.ServiceRendezvous), 2},
		{"tor gateway", 2, discovery.RoleTorGateway, ptr(cell.ServiceTorGateway), 4},
		{"middle of a mempool circuit", 1, discovery.RoleMempool, nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ads := []discovery.Advert{relayOnly, ad, ad}
			if tc.hop == 1 {
				ads = []discovery.Advert{relayOnly, ad, relayOnly}
			}
			p := paidPath{ads: ads, final: tc.final}
			price := p.hopPrice(tc.hop)
			if price != tc.want {
				t.Fatalf("client prices hop %d at %d sat/MB, want %d", tc.hop+1, price, tc.want)
			}
			const sats = 7
			l, err := payment.NewLedger(payment.LedgerConfig{
				Redeem:        func(context.Context, []byte) (uint64, error) { return sats, nil },
				PriceSatPerMB: relay, ServicePrices: services,
			})
			if err != nil {
				t.Fatal(err)
			}
			var ck [cell.CookieLen]byte
			const setup = 3 * 4096 // CREATE and the prepay's TOPUP, before any BEGIN
			if err := l.Account(ck, setup); err != nil {
				t.Fatal(err)
			}
			if _, err := l.TopUp(context.Background(), ck, nil); err != nil {
				t.Fatal(err)
			}
			if tc.svc != nil {
				l.NoteService(ck, *tc.svc)
			}
			s, _ := l.Session(ck)
			if held, want := s.Allowance+int64(s.BytesCharged), payment.CreditBytes(sats, price); held != want {
				t.Errorf("hop holds %d bytes for %d sats, the client expects %d (price %d sat/MB)", held, sats, want, price)
			}
			// A relay dearer than its exit (an odd operator): before any
			// BEGIN the hop credits at its lowest price, so neither a
			// middle nor a prepaid exit looks over-charged.
			odd := cfg
			odd.Discovery.PriceSatPerMB = map[Role]uint64{RoleRelay: 9, RoleExit: 5, RoleMempool: 3, RoleRendezvous: 2}
			oddAd := discovery.Advert{Prices: map[discovery.Role]uint64{}}
			for _, r := range ad.Roles {
				oddAd.Prices[r] = odd.rolePrice(Role(r))
			}
			ads[tc.hop] = oddAd
			oddPrice := paidPath{ads: ads, final: tc.final}.hopPrice(tc.hop)
			orelay, oservices := odd.ledgerPrices()
			ol, err := payment.NewLedger(payment.LedgerConfig{
				Redeem:        func(context.Context, []byte) (uint64, error) { return sats, nil },
				PriceSatPerMB: orelay, ServicePrices: oservices,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := ol.Account(ck, setup); err != nil {
				t.Fatal(err)
			}
			ans, err := ol.TopUp(context.Background(), ck, nil)
			if err != nil {
				t.Fatal(err)
			}
			var a payment.Ack
			if err := a.UnmarshalBinary(ans); err != nil {
				t.Fatal(err)
			}
			if held, want := a.Allowance+int64(a.Charged), payment.CreditBytes(sats, oddPrice); held < want {
				t.Errorf("dear relay: hop holds %d bytes at prepay, the client expects at least %d (price %d sat/MB)", held, want, oddPrice)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
