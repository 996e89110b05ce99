package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// rpcVersion is the JSON-RPC dialect of one request (bitcoind ≥ 28,
// src/rpc/request.cpp JSONRPCRequest::parse): "jsonrpc":"2.0" asks for 2.0
// replies, anything else that parses is 1.0 ("legacy").
type rpcVersion uint8

const (
	rpcV1 rpcVersion = iota // absent or "1.0": result and error both present
	rpcV2                   // "2.0": one of result/error, no reply to notifications
)

// rpcCall is one request object of a body (the whole body, or one element
// of a batch).
type rpcCall struct {
	raw     json.RawMessage // the object as the client sent it; forwarded unchanged
	version rpcVersion
	hasID   bool            // the object has an "id" member
	id      json.RawMessage // its value, compacted; meaningful when hasID
	method  string
	params  json.RawMessage // nil when absent or null
}

// notification reports a 2.0 request without "id": it is executed but
// gets no reply.
func (c *rpcCall) notification() bool { return c.version == rpcV2 && !c.hasID }

// parseCall parses one request object as bitcoind does: id first (so
// later errors carry it), then version, method, params. On error the
// returned call holds what was parsed so far, for the error reply.
func parseCall(raw json.RawMessage) (rpcCall, *RPCError) {
	c := rpcCall{raw: raw}
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return c, &RPCError{RPCInvalidRequest, "Invalid Request object"}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return c, &RPCError{RPCInvalidRequest, "Invalid Request object"}
	}
	// bitcoind's UniValue keeps the first of two equal keys, encoding/json
	// the last: {"method":"sendrawtransaction","method":"getblockcount"}
	// would look harmless here and be forwarded, and the upstream would
	// broadcast in the clear. Refuse any repeated key.
	if duplicateKey(raw) != "" {
		return c, &RPCError{RPCInvalidRequest, "Invalid Request object"}
	}
	if id, ok := m["id"]; ok {
		c.hasID = true
		c.id = compactJSON(id)
	}
	if v, ok := m["jsonrpc"]; ok && !isNull(v) {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return c, &RPCError{RPCInvalidRequest, "jsonrpc field must be a string"}
		}
		switch s {
		case "1.0":
		case "2.0":
			c.version = rpcV2
		default:
			return c, &RPCError{RPCInvalidRequest, "JSON-RPC version not supported"}
		}
	}
	mv, ok := m["method"]
	if !ok || isNull(mv) {
		return c, &RPCError{RPCInvalidRequest, "Missing method"}
	}
	if json.Unmarshal(mv, &c.method) != nil {
		return c, &RPCError{RPCInvalidRequest, "Method must be a string"}
	}
	if p, ok := m["params"]; ok && !isNull(p) {
		switch jsonType(p) {
		case "array", "object":
			c.params = p
		default:
			return c, &RPCError{RPCInvalidRequest, "Params must be an array or object"}
		}
	}
	return c, nil
}

// isNull reports whether v is the JSON literal null.
func isNull(v json.RawMessage) bool {
	return string(bytes.TrimSpace(v)) == "null"
}

// jsonType names the type of a valid JSON value as UniValue's uvTypeName
// does, for bitcoind's "JSON value of type X" messages.
func jsonType(v json.RawMessage) string {
	t := bytes.TrimLeft(v, " \t\r\n")
	if len(t) == 0 {
		return "null"
	}
	switch t[0] {
	case 'n':
		return "null"
	case 't', 'f':
		return "bool"
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	}
	return "number"
}

// compactJSON returns v without insignificant white space (v is valid).
func compactJSON(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return v
	}
	return b.Bytes()
}

// appendRPCReply appends one reply object in bitcoind's member order
// (JSONRPCReplyObj): 1.0 has result, error and id, one of result/error
// null; 2.0 has "jsonrpc":"2.0", then result or error, then id. A reply
// to a request whose id is unknown (not parsed yet) carries "id":null.
func appendRPCReply(b []byte, version rpcVersion, id json.RawMessage, hasID bool, result json.RawMessage, rerr *RPCError) []byte {
	if !hasID || len(id) == 0 {
		id = json.RawMessage("null")
	}
	if result == nil {
		result = json.RawMessage("null")
	}
	var errJSON []byte
	if rerr != nil {
		errJSON, _ = json.Marshal(rerr) // two plain fields: cannot fail
	}
	if version == rpcV2 {
		b = append(b, `{"jsonrpc":"2.0",`...)
		if rerr != nil {
			b = append(b, `"error":`...)
			b = append(b, errJSON...)
		} else {
			b = append(b, `"result":`...)
			b = append(b, result...)
		}
	} else {
		if rerr != nil {
			b = append(b, `{"result":null,"error":`...)
			b = append(b, errJSON...)
		} else {
			b = append(b, `{"result":`...)
			b = append(b, result...)
			b = append(b, `,"error":null`...)
		}
	}
	b = append(b, `,"id":`...)
	b = append(b, id...)
	return append(b, '}')
}

// errorStatus is the HTTP status bitcoind sends with a 1.0 error reply
// (src/httprpc.cpp JSONErrorReply), and with any reply to a request it
// could not parse: 400 for an invalid request, 404 for an unknown method,
// 500 for every other code.
func errorStatus(code int) int {
	switch code {
	case RPCInvalidRequest:
		return http.StatusBadRequest
	case RPCMethodNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// writeJSON sends body (one reply object or a batch array) with status, and
// a newline as bitcoind does. The client has rpcReplyTimeout to take it.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	setWriteDeadline(w, rpcReplyTimeout)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// rpcReplyTimeout bounds writing a reply built here: a client that stops
// reading must not hold its request slot (bitcoind: -rpcservertimeout).
const rpcReplyTimeout = 30 * time.Second

// setWriteDeadline gives the client d from now to take the reply. The
// http.Server's WriteTimeout resets the deadline before each request, so
// it never leaks into the next request on a kept-alive connection. A
// ResponseWriter without deadlines (tests) is left alone.
func setWriteDeadline(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}
