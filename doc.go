// Package tlsmail sends mail over SMTP with TLS always on.
//
// It is a drop-in replacement for net/smtp: the same exported names and
// signatures (Dial, NewClient, SendMail, Client and its methods, Auth,
// ServerInfo, PlainAuth, CRAMMD5Auth), with Auth and ServerInfo being the
// net/smtp types themselves, so a program switches by changing its import
// line. What changes is behind the surface:
//
//   - SendMail and Dial use implicit TLS (RFC 8314, port 465) and verify
//     the server certificate. A Dialer offers STARTTLS (RFC 3207, port
//     587), always required, and an explicit implicit-then-STARTTLS
//     fallback. There is no plaintext mode.
//   - Credentials, envelope addresses and message data are only ever sent
//     over TLS. STARTTLS fails closed: not offered, refused, injected or a
//     failed handshake is an error.
//   - Every step has a timeout and every reply a size limit; a Context
//     variant exists for dialing and sending.
//   - Server replies are *Error values with Code, EnhancedCode and
//     Message; policy refusals are sentinel errors for errors.Is.
//   - Addresses and hello names with CR, LF, NUL, spaces or angle brackets
//     are rejected before anything is sent, and message data is normalised
//     to CRLF and dot-stuffed so it can never end early.
//
// The simplest use is unchanged from net/smtp:
//
//	auth := tlsmail.PlainAuth("", "user@example.com", password, "smtp.example.com")
//	err := tlsmail.SendMail("smtp.example.com:465", auth,
//		"user@example.com", []string{"friend@example.net"}, msg)
//
// For a provider that only offers STARTTLS on port 587:
//
//	d := &tlsmail.Dialer{Mode: tlsmail.STARTTLS}
//	err := d.SendMail("smtp.office365.com:587", auth, from, to, msg)
package tlsmail
