// Command quickstart sends two messages through tlsmail to an SMTP server
// embedded in this program: one with SendMail over implicit TLS (as on port
// 465), one with a Dialer in STARTTLS mode (as on port 587). It needs no
// account and no network beyond loopback.
//
//	go run ./examples/quickstart
//
// For each message it prints the TLS version and cipher suite the server
// negotiated and what the server received. It never prints a password.
package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

func main() {
	log.SetFlags(0)
	srv, err := smtptest.Start(&smtptest.Config{Users: map[string]string{"quickstart@example.org": "correct horse battery staple"}})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	// SendMail verifies the server against the system roots, exactly as it
	// would for smtp.gmail.com:465. The embedded server's certificate comes
	// from a throwaway CA made at start-up, so make that CA a system root
	// for this process; Go reads SSL_CERT_FILE on first use.
	caFile, err := writeCA(srv)
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(caFile)
	os.Setenv("SSL_CERT_FILE", caFile)

	// The credentials are for the host in the address, as with net/smtp.
	const user, password = "quickstart@example.org", "correct horse battery staple"
	host := "127.0.0.1"

	// 1. Implicit TLS, with net/smtp's SendMail signature.
	implicitAddr := srv.Addr(tlsmail.ImplicitTLS)
	fmt.Printf("== SendMail, implicit TLS (RFC 8314), %s\n", implicitAddr)
	to := []string{"alice@example.net"}
	msg := message(to, "Implicit TLS", "Sent with tlsmail.SendMail: TLS from the first byte.")
	if err := tlsmail.SendMail(implicitAddr, tlsmail.PlainAuth("", user, password, host), user, to, msg); err != nil {
		log.Fatal(err)
	}
	report(srv, 0)

	// 2. STARTTLS, required: any failure to upgrade is an error, and only
	// EHLO and STARTTLS are ever sent in plaintext.
	startTLSAddr := srv.Addr(tlsmail.STARTTLS)
	fmt.Printf("\n== Dialer{Mode: STARTTLS} (RFC 3207), %s\n", startTLSAddr)
	d := &tlsmail.Dialer{Mode: tlsmail.STARTTLS, Timeout: 5 * time.Second}
	to = []string{"bob@example.net", "carol@example.net"}
	msg = message(to, "STARTTLS", "Sent through a tlsmail.Dialer in STARTTLS mode.")
	if err := d.SendMail(startTLSAddr, tlsmail.LoginAuth(user, password, host), user, to, msg); err != nil {
		log.Fatal(err)
	}
	report(srv, 1)

	fmt.Println("\n== Commands the server received (credentials hidden)")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.WaitIdle(ctx) // until the last QUIT has arrived
	inAuth := false
	for _, line := range srv.Transcript() {
		state, cmd := "plain", line.Text
		if line.TLS {
			state = "tls"
		}
		verb, _, _ := strings.Cut(cmd, " ")
		switch {
		case verb == "AUTH":
			// AUTH MECH [initial response]: keep the mechanism only.
			inAuth = true
			if f := strings.Fields(cmd); len(f) > 2 {
				cmd = f[0] + " " + f[1] + " ***"
			}
		case inAuth && !smtpVerbs[strings.ToUpper(verb)]:
			cmd = "***" // a SASL response line
		default:
			inAuth = false
		}
		fmt.Printf("  %-5s %s\n", state, cmd)
	}
}

var smtpVerbs = map[string]bool{"EHLO": true, "HELO": true, "STARTTLS": true, "MAIL": true, "RCPT": true,
	"DATA": true, "BDAT": true, "RSET": true, "NOOP": true, "QUIT": true, "VRFY": true}

func message(to []string, subject, body string) []byte {
	return []byte("From: quickstart@example.org\r\n" +
		"To: " + strings.Join(to, ", ") + "\r\n" +
		"Subject: " + subject + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"\r\n" +
		body + "\r\n" +
		".A line that starts with a dot arrives intact.\r\n")
}

func report(srv *smtptest.Server, i int) {
	m := srv.Messages()[i]
	fmt.Printf("negotiated: %s, %s\n", tls.VersionName(m.TLSVersion), tls.CipherSuiteName(m.CipherSuite))
	fmt.Printf("server received from %s to %s (authenticated: %v)\n", m.From, strings.Join(m.To, ", "), m.AuthUser != "")
	for _, line := range strings.Split(strings.TrimSuffix(string(m.Data), "\r\n"), "\r\n") {
		fmt.Println("  | " + line)
	}
}

func writeCA(srv *smtptest.Server) (string, error) {
	f, err := os.CreateTemp("", "tlsmail-quickstart-ca-*.pem")
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Write(srv.CACertPEM()); err != nil {
		return "", err
	}
	return f.Name(), nil
}
