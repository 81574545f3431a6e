// Command starttls sends one message through a real provider's STARTTLS
// submission port (587, RFC 3207), such as Microsoft 365's, which offers
// no implicit TLS. STARTTLS is required: if the server does not offer it,
// refuses it or the handshake fails, nothing but EHLO and STARTTLS has
// been sent and the program stops with the reason.
//
//	export TLSMAIL_PASSWORD='password'
//	go run ./examples/starttls -addr smtp.office365.com:587 \
//		-user me@example.com -to friend@example.net
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail"
)

func main() {
	addr := flag.String("addr", os.Getenv("TLSMAIL_ADDR"), "STARTTLS submission server, host:587 ($TLSMAIL_ADDR)")
	user := flag.String("user", os.Getenv("TLSMAIL_USER"), "account name ($TLSMAIL_USER)")
	to := flag.String("to", "", "recipient address")
	flag.Parse()
	password := os.Getenv("TLSMAIL_PASSWORD")
	if *addr == "" || *user == "" || *to == "" || password == "" {
		flag.Usage()
		log.Fatal("need -addr, -user, -to and $TLSMAIL_PASSWORD")
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := &tlsmail.Dialer{Mode: tlsmail.STARTTLS}
	c, err := d.DialContext(ctx, *addr)
	if errors.Is(err, tlsmail.ErrSTARTTLSUnsupported) {
		log.Fatalf("%v\n(the server, or something between us, offers no TLS: not sending)", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	st, _ := c.TLSConnectionState()
	fmt.Printf("connected: %s, certificate verified for %s\n", tls.VersionName(st.Version), st.ServerName)

	// Microsoft 365 offers LOGIN and sometimes not PLAIN: pick what the
	// server advertised.
	var auth tlsmail.Auth = tlsmail.PlainAuth("", *user, password, host)
	_, mechs := c.Extension("AUTH")
	if m := strings.Fields(mechs); !slices.Contains(m, "PLAIN") && slices.Contains(m, "LOGIN") {
		auth = tlsmail.LoginAuth(*user, password, host)
	}
	if err := c.Auth(auth); err != nil {
		log.Fatal(err)
	}
	if err := c.Mail(*user); err != nil {
		log.Fatal(err)
	}
	if err := c.Rcpt(*to); err != nil {
		log.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: tlsmail STARTTLS test\r\nDate: %s\r\n\r\nSent after STARTTLS.\r\n",
		*user, *to, time.Now().Format(time.RFC1123Z))
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	c.Quit()
	fmt.Println("sent")
}
