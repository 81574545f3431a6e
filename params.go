package tlsmail

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tlsmail/tlsmail/internal/wire"
)

// plan is the MAIL and RCPT parameters for one message, decided before
// anything is sent.
type plan struct {
	mailParams string
	rcptParams []string
	sevenBit   bool // enforce 7-bit data while streaming
}

// plan checks m against the server's extensions and builds the
// parameters. Every refusal happens here, before MAIL.
func (c *Client) plan(m *Message, body content) (plan, error) {
	var p plan
	var params []string
	has := func(ext string) bool { _, ok := c.ext[ext]; return ok }
	missing := func(what, ext, rfc string) error {
		return missingExtension(what, ext, rfc, c.serverName, nothingSent)
	}

	// SIZE (RFC 1870): declare what is known and refuse what is too big.
	size := body.size
	if m.Size > 0 {
		size = m.Size
	}
	if v, ok := c.ext["SIZE"]; ok && size >= 0 {
		if limit, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && limit > 0 && size > limit {
			return p, fmt.Errorf("%w: the message is %d bytes and %s accepts at most %d (RFC 1870); nothing was sent", ErrMessageTooLarge, size, c.serverName, limit)
		}
		params = append(params, "SIZE="+strconv.FormatInt(size, 10))
	}

	// 8BITMIME (RFC 6152): ask only when the content needs it.
	switch {
	case body.known && body.eightBit && !has("8BITMIME"):
		// Why refuse: sending 8-bit data to a 7-bit server lets a relay
		// mangle it; the caller can re-encode it (quoted-printable).
		return p, no8BITMIME(c.serverName, nothingSent)
	case body.known && body.eightBit, !body.known && has("8BITMIME"):
		params = append(params, "BODY=8BITMIME")
	case !body.known:
		p.sevenBit = true
	}

	// SMTPUTF8 (RFC 6531): for non-ASCII addresses or headers.
	utf8 := body.utf8Head || !wire.IsASCII(m.From)
	for _, r := range m.To {
		utf8 = utf8 || !wire.IsASCII(r)
	}
	if utf8 {
		if !has("SMTPUTF8") {
			return p, missing("the message has a non-ASCII address or header", "SMTPUTF8", "RFC 6531")
		}
		params = append(params, "SMTPUTF8")
	}

	// DSN (RFC 3461).
	if m.DSN.active() {
		if !has("DSN") {
			return p, missing("the message asks for delivery status notifications", "DSN", "RFC 3461")
		}
		switch m.DSN.Return {
		case "":
		case ReturnFull, ReturnHeaders:
			params = append(params, "RET="+string(m.DSN.Return))
		default:
			return p, fmt.Errorf("%w: DSN.Return %q is neither FULL nor HDRS", ErrInvalidInput, m.DSN.Return)
		}
		if m.DSN.EnvelopeID != "" {
			if err := checkPrintable(m.DSN.EnvelopeID, 100); err != nil {
				return p, fmt.Errorf("%w: DSN.EnvelopeID %v", ErrInvalidInput, err)
			}
			params = append(params, "ENVID="+xtext(m.DSN.EnvelopeID))
		}
		if n := m.DSN.Notify; n&NotifyNever != 0 && n != NotifyNever {
			return p, fmt.Errorf("%w: DSN.Notify combines NotifyNever with other conditions (RFC 3461 section 4.1)", ErrInvalidInput)
		}
	}

	// REQUIRETLS (RFC 8689 section 4.1).
	if m.RequireTLS {
		if !has("REQUIRETLS") {
			// Why refuse: the caller asked that the message never travel
			// in plaintext; sending it without the flag would quietly
			// drop that guarantee.
			return p, missing("the message sets RequireTLS", "REQUIRETLS", "RFC 8689")
		}
		params = append(params, "REQUIRETLS")
	}
	p.mailParams = strings.Join(params, " ")

	p.rcptParams = make([]string, len(m.To))
	for i, r := range m.To {
		var rp []string
		if m.DSN.Notify != 0 {
			rp = append(rp, "NOTIFY="+m.DSN.Notify.String())
		}
		if m.DSN.OriginalRecipient {
			rp = append(rp, orcpt(r))
		}
		p.rcptParams[i] = strings.Join(rp, " ")
	}
	return p, nil
}

// checkPrintable checks an ENVID: printable ASCII, bounded (RFC 3461
// section 4.4 allows 100 characters).
func checkPrintable(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("is longer than %d characters", max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("contains %q, which is not printable ASCII", s[i])
		}
	}
	return nil
}

// xtext encodes s as RFC 3461 section 4 xtext: "+", "=" and anything
// outside "!" to "~" become "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// orcpt returns the ORCPT parameter for addr: "rfc822" with xtext for
// ASCII addresses, "utf-8" with RFC 6533 utf-8-addr-xtext otherwise.
func orcpt(addr string) string {
	if wire.IsASCII(addr) {
		return "ORCPT=rfc822;" + xtext(addr)
	}
	var b strings.Builder
	for _, r := range addr {
		if r < '!' || r > '~' || r == '+' || r == '=' || r == '\\' {
			fmt.Fprintf(&b, `\x{%X}`, r)
		} else {
			b.WriteRune(r)
		}
	}
	return "ORCPT=utf-8;" + b.String()
}
