package lightning

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// RPC method names as LND's permission table spells them.
const (
	rpcGetInfo        = "/lnrpc.Lightning/GetInfo"
	rpcAddInvoice     = "/lnrpc.Lightning/AddInvoice"
	rpcLookupInvoice  = "/lnrpc.Lightning/LookupInvoice"
	rpcDecodePayReq   = "/lnrpc.Lightning/DecodePayReq"
	rpcSendPaymentV2  = "/routerrpc.Router/SendPaymentV2"
	rpcTrackPaymentV2 = "/routerrpc.Router/TrackPaymentV2"
	rpcNewAddress     = "/lnrpc.Lightning/NewAddress"
	rpcConnectPeer    = "/lnrpc.Lightning/ConnectPeer"
	rpcOpenChannel    = "/lnrpc.Lightning/OpenChannelSync"
	rpcListChannels   = "/lnrpc.Lightning/ListChannels"
	rpcChannelBalance = "/lnrpc.Lightning/ChannelBalance"
	rpcWalletBalance  = "/lnrpc.Lightning/WalletBalance"
	rpcQueryRoutes    = "/lnrpc.Lightning/QueryRoutes"
	rpcSignMessage    = "/lnrpc.Lightning/SignMessage"
	rpcVerifyMessage  = "/lnrpc.Lightning/VerifyMessage"
	rpcGetNodeInfo    = "/lnrpc.Lightning/GetNodeInfo"
)

// permissionFor is the macaroon permission LND requires for each RPC we use
// (from LND's rpcserver.go and routerrpc permission tables).
func permissionFor(method string) string {
	switch method {
	case rpcGetInfo, rpcGetNodeInfo:
		return "info:read"
	case rpcSignMessage:
		return "message:write"
	case rpcVerifyMessage:
		return "message:read"
	case rpcAddInvoice:
		return "invoices:write"
	case rpcLookupInvoice:
		return "invoices:read"
	case rpcDecodePayReq, rpcTrackPaymentV2, rpcListChannels, rpcChannelBalance, rpcQueryRoutes:
		return "offchain:read"
	case rpcSendPaymentV2:
		return "offchain:write"
	case rpcNewAddress:
		return "address:write"
	case rpcConnectPeer:
		return "peers:write"
	case rpcOpenChannel:
		return "onchain:write and offchain:write"
	case rpcWalletBalance:
		return "onchain:read"
	}
	return ""
}

// shortName drops the service prefix: "/lnrpc.Lightning/GetInfo" → "GetInfo".
func shortName(method string) string {
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		return method[i+1:]
	}
	return method
}

// classify turns an error from an LND RPC into one wrapping a sentinel from
// errors.go, with advice naming the file, permission or state at fault.
// Errors it does not recognise are wrapped with the RPC name only. A nil err
// gives nil.
func classify(method string, cfg Config, err error) error {
	if err == nil {
		return nil
	}
	name := shortName(method)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("lnd %s: %w", name, err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("lnd %s: %w", name, err)
	}
	msg := st.Message()
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "wallet locked"), strings.Contains(lower, "wallet not created"):
		return fmt.Errorf("lnd %s: %w: LND at %s has no unlocked wallet; unlock it with `lncli unlock` (or create one with `lncli create`), then retry (lnd said: %s)",
			name, ErrWalletLocked, cfg.Host, msg)

	case strings.Contains(lower, "waiting to start"), strings.Contains(lower, "in the process of starting"):
		return fmt.Errorf("lnd %s: %w: LND at %s is still starting; wait until `lncli getinfo` works, then retry (lnd said: %s)",
			name, ErrNotReady, cfg.Host, msg)

	case st.Code() == codes.PermissionDenied, strings.Contains(lower, "permission denied"):
		perm := permissionFor(method)
		if perm == "" {
			perm = "the permission for " + name
		}
		return fmt.Errorf("lnd %s: %w: the macaroon %s lacks %s; use admin.macaroon or bake one with `lncli bakemacaroon info:read invoices:read invoices:write offchain:read offchain:write message:read message:write` (see docs/LIGHTNING.md)",
			name, ErrPermissionDenied, cfg.MacaroonPath, perm)

	case st.Code() == codes.Unauthenticated,
		strings.Contains(lower, "verification failed"),
		strings.Contains(lower, "cannot get macaroon"),
		strings.Contains(lower, "macaroon"),
		strings.Contains(lower, "invalid id"):
		return fmt.Errorf("lnd %s: %w: LND at %s rejected the macaroon %s; check it belongs to this node and network and has not expired (lnd said: %s)",
			name, ErrMacaroon, cfg.Host, cfg.MacaroonPath, msg)

	case st.Code() == codes.Unavailable && isTLSFailure(lower):
		return fmt.Errorf("lnd %s: %w: LND at %s presented a certificate that %s does not vouch for; copy LND's current tls.cert (it is regenerated when deleted or when tlsextraip/tlsextradomain change) (%s)",
			name, ErrTLSCert, cfg.Host, cfg.TLSCertPath, msg)

	case st.Code() == codes.Unavailable:
		return fmt.Errorf("lnd %s: %w: cannot connect to LND at %s; is lnd running and does lnd.host match its rpclisten address? (%s)",
			name, ErrUnreachable, cfg.Host, msg)

	case st.Code() == codes.DeadlineExceeded:
		return fmt.Errorf("lnd %s: %w", name, context.DeadlineExceeded)

	case st.Code() == codes.Canceled:
		return fmt.Errorf("lnd %s: %w", name, context.Canceled)

	case method == rpcGetNodeInfo && (st.Code() == codes.NotFound || strings.Contains(lower, "unable to find node")):
		return fmt.Errorf("lnd %s: %w", name, ErrNodeNotInGraph)

	case st.Code() == codes.NotFound && method == rpcLookupInvoice:
		return fmt.Errorf("lnd %s: %w", name, ErrInvoiceNotFound)

	case method == rpcSendPaymentV2 && strings.Contains(lower, "invoice expired"):
		return fmt.Errorf("lnd %s: %w: ask the payee for a new invoice (%s)", name, ErrInvoiceExpired, msg)

	case method == rpcQueryRoutes && strings.Contains(lower, "insufficient local balance"):
		return fmt.Errorf("lnd %s: %w: %s", name, ErrInsufficientBalance, msg)

	case method == rpcQueryRoutes && (strings.Contains(lower, "unable to find a path") ||
		strings.Contains(lower, "no route")):
		return fmt.Errorf("lnd %s: %w: %s", name, ErrNoRoute, msg)

	case method == rpcDecodePayReq:
		return fmt.Errorf("lnd %s: %w: %s", name, ErrBadInvoice, msg)
	}
	return fmt.Errorf("lnd %s: %s: %s", name, st.Code(), msg)
}

func isTLSFailure(lower string) bool {
	for _, s := range []string{"certificate", "x509", "tls:", "handshake"} {
		if strings.Contains(lower, s) {
			return true
		}
	}
	return false
}
