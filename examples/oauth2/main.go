// Command oauth2 sends one message with an OAuth 2.0 access token, the
// way Gmail/Google Workspace and Microsoft 365 now require:
//
//	export TLSMAIL_TOKEN='ya29....'   # an access token with the mail scope
//	go run ./examples/oauth2 -addr smtp.gmail.com:465 -user me@gmail.com -to friend@example.net
//	go run ./examples/oauth2 -addr smtp.office365.com:587 -user me@contoso.com -to friend@example.net
//
// Port 587 is dialed with STARTTLS (required), anything else with
// implicit TLS. The mechanism (OAUTHBEARER or XOAUTH2) is picked from
// what the server offers. A real program fetches the token from a
// TokenSource that refreshes it, for example golang.org/x/oauth2's (see
// tlsmail.TokenSource); the token is read from the environment here so
// that it stays out of shell history and process listings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tlsmail/tlsmail"
)

func main() {
	addr := flag.String("addr", os.Getenv("TLSMAIL_ADDR"), "submission server, host:port ($TLSMAIL_ADDR)")
	user := flag.String("user", os.Getenv("TLSMAIL_USER"), "account name, usually the address ($TLSMAIL_USER)")
	to := flag.String("to", "", "recipient address")
	flag.Parse()
	token := os.Getenv("TLSMAIL_TOKEN")
	if *addr == "" || *user == "" || *to == "" || token == "" {
		flag.Usage()
		log.Fatal("need -addr, -user, -to and $TLSMAIL_TOKEN")
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	var d tlsmail.Dialer
	if port == "587" {
		d.Mode = tlsmail.STARTTLS
	}
	auth := tlsmail.OAuth2Auth(*user, tlsmail.StaticToken(token), host)
	msg := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: tlsmail OAuth 2.0 test\r\nDate: %s\r\n\r\nSent with an OAuth 2.0 token.\r\n",
		*user, *to, time.Now().Format(time.RFC1123Z))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := d.Send(ctx, *addr, auth, &tlsmail.Message{From: *user, To: []string{*to}, Body: strings.NewReader(msg)})
	var oe *tlsmail.OAuthError
	if errors.As(err, &oe) {
		log.Fatalf("the server refused the token (status %q, scope %q): get a token with that scope", oe.Status, oe.Scope)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sent:", res.Reply.Message)
}
