package tlsmail

import (
	"fmt"
	"io"
	"strconv"
)

// Format implements fmt.Formatter. Every verb prints the same description,
// made of the server name and how the connection is secured, for example
//
//	tlsmail.Client(server "mx.example.com", ImplicitTLS)
//
// Why every verb: once credentials have been sent, a Client keeps what it
// needs to recognise them in replies, and without a Formatter a verb such
// as %x or %+v would make fmt walk the Client's fields. A description that
// does not depend on the verb cannot show more under one verb than under
// another.
func (c *Client) Format(f fmt.State, verb rune) {
	if c == nil {
		formatSafe(f, "<nil>")
		return
	}
	secured := "plaintext"
	if c.isTLS {
		secured = c.mode.String()
	}
	formatSafe(f, "tlsmail.Client(server "+strconv.Quote(c.serverName)+", "+secured+")")
}

// formatSafe writes desc for any verb, padded to the width in f, if any
// (on the right with the '-' flag). Why ignore the verb and every other
// flag: desc is all there is to print, and hex, quoting or truncation
// would only make it harder to recognise.
func formatSafe(f fmt.State, desc string) {
	w, ok := f.Width()
	switch {
	case !ok:
		io.WriteString(f, desc)
	case f.Flag('-'):
		fmt.Fprintf(f, "%-*s", w, desc)
	default:
		fmt.Fprintf(f, "%*s", w, desc)
	}
}
