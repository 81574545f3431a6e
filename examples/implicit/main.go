// Command implicit sends one message through a real provider's
// implicit-TLS submission port (465, RFC 8314), such as Gmail's, with the
// package-level SendMail: the net/smtp call, made secure.
//
//	export TLSMAIL_PASSWORD='app password'
//	go run ./examples/implicit -addr smtp.gmail.com:465 \
//		-user me@gmail.com -to friend@example.net
//
// The password is read from the environment, never from a flag, so it
// stays out of shell history and process listings.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/tlsmail/tlsmail"
)

func main() {
	addr := flag.String("addr", os.Getenv("TLSMAIL_ADDR"), "implicit-TLS submission server, host:465 ($TLSMAIL_ADDR)")
	user := flag.String("user", os.Getenv("TLSMAIL_USER"), "account name, usually the address ($TLSMAIL_USER)")
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
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: tlsmail implicit TLS test\r\nDate: %s\r\n\r\nSent over implicit TLS.\r\n",
		*user, *to, time.Now().Format(time.RFC1123Z))
	auth := tlsmail.PlainAuth("", *user, password, host)
	if err := tlsmail.SendMail(*addr, auth, *user, []string{*to}, []byte(msg)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent")
}
