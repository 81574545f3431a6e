// Command fallback sends one message trying implicit TLS on port 465 first
// and, only if nothing answers there or the port speaks plaintext SMTP,
// STARTTLS on port 587 of the same host. It never falls back after a
// certificate error, and the STARTTLS leg is as strict as STARTTLS mode.
//
//	export TLSMAIL_PASSWORD='password'
//	go run ./examples/fallback -host smtp.example.com \
//		-user me@example.com -to friend@example.net
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/tlsmail/tlsmail"
)

func main() {
	host := flag.String("host", os.Getenv("TLSMAIL_HOST"), "submission server host name ($TLSMAIL_HOST)")
	user := flag.String("user", os.Getenv("TLSMAIL_USER"), "account name ($TLSMAIL_USER)")
	to := flag.String("to", "", "recipient address")
	flag.Parse()
	password := os.Getenv("TLSMAIL_PASSWORD")
	if *host == "" || *user == "" || *to == "" || password == "" {
		flag.Usage()
		log.Fatal("need -host, -user, -to and $TLSMAIL_PASSWORD")
	}

	d := &tlsmail.Dialer{
		Mode:         tlsmail.ImplicitTLSOrSTARTTLS,
		FallbackAddr: net.JoinHostPort(*host, "587"), // the default, spelled out
		Timeout:      10 * time.Second,
	}
	c, err := d.Dial(net.JoinHostPort(*host, "465"))
	var fe *tlsmail.FallbackError
	if errors.As(err, &fe) {
		log.Fatalf("both ways failed:\n  implicit TLS: %v\n  STARTTLS:     %v", fe.ImplicitErr, fe.STARTTLSErr)
	}
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	mode, _ := c.Mode()
	fmt.Println("connected with", mode)

	if err := c.Auth(tlsmail.PlainAuth("", *user, password, *host)); err != nil {
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
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: tlsmail fallback test\r\nDate: %s\r\n\r\nSent with %v.\r\n",
		*user, *to, time.Now().Format(time.RFC1123Z), mode)
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}
	c.Quit()
	fmt.Println("sent")
}
