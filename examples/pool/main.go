// Command pool sends many messages from many goroutines through one
// tlsmail.Pool, as a web service or a job queue would: each goroutine
// calls Send and gets its own message's outcome, while the Pool streams
// them over a few connections.
//
// Without -addr it runs against an SMTP server embedded in the program,
// so it needs no account:
//
//	go run ./examples/pool -n 500 -callers 64
//
// Against a real provider (the password from the environment, never from
// a flag; -rate to stay under its limit, e.g. 0.5 for 30 a minute):
//
//	export TLSMAIL_PASSWORD='app password'
//	go run ./examples/pool -addr smtp.example.com:465 -user me@example.com \
//		-to me@example.com -n 10 -callers 5 -rate 0.5
//
// It prints how each message ended (accepted, refused, unknown) and the
// Pool's counters.
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
	"sync"
	"time"

	"github.com/tlsmail/tlsmail"
	"github.com/tlsmail/tlsmail/smtptest"
)

func main() {
	addr := flag.String("addr", os.Getenv("TLSMAIL_ADDR"), "implicit-TLS submission server, host:465 ($TLSMAIL_ADDR); empty: an embedded test server")
	user := flag.String("user", os.Getenv("TLSMAIL_USER"), "account name, usually the address ($TLSMAIL_USER)")
	to := flag.String("to", "", "recipient address (default: one per message at example.net)")
	n := flag.Int("n", 200, "messages to send")
	callers := flag.Int("callers", 32, "goroutines sending at once")
	rate := flag.Float64("rate", 0, "messages per second across the pool; 0: no limit")
	flag.Parse()
	log.SetFlags(0)

	pool := &tlsmail.Pool{Addr: *addr, RateLimit: *rate}
	if *addr == "" {
		srv, err := smtptest.Start(nil)
		if err != nil {
			log.Fatal(err)
		}
		defer srv.Close()
		pool.Addr = srv.Addr(tlsmail.ImplicitTLS)
		pool.Dialer = srv.Dialer(tlsmail.ImplicitTLS) // trusts the embedded server's CA
		pool.Auth = tlsmail.PlainAuth("", "user", "pass", "127.0.0.1")
		*user = "sender@example.org"
		defer func() {
			fmt.Printf("the embedded server received %d messages over %d connections\n", len(srv.Messages()), srv.Connections())
		}()
	} else {
		password := os.Getenv("TLSMAIL_PASSWORD")
		host, _, err := net.SplitHostPort(*addr)
		if *user == "" || password == "" || err != nil {
			flag.Usage()
			log.Fatal("with -addr host:port, need -user and $TLSMAIL_PASSWORD")
		}
		pool.Auth = tlsmail.PlainAuth("", *user, password, host)
	}
	defer pool.Close()

	start := time.Now()
	var accepted, refused, unknown, failed int
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range *callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rcpt := *to
				if rcpt == "" {
					rcpt = fmt.Sprintf("customer%d@example.net", i)
				}
				body := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: tlsmail pool message %d\r\nDate: %s\r\n\r\nMessage %d of %d.\r\n",
					*user, rcpt, i, time.Now().Format(time.RFC1123Z), i+1, *n)
				_, err := pool.Send(context.Background(), &tlsmail.Message{From: *user, To: []string{rcpt}, Body: strings.NewReader(body)})
				var se *tlsmail.Error
				mu.Lock()
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, tlsmail.ErrUnknownOutcome):
					// Never sent again: it may have been delivered.
					unknown++
					log.Printf("message %d: %v", i, err)
				case errors.As(err, &se):
					refused++
					log.Printf("message %d refused: %v", i, err)
				default:
					failed++
					log.Printf("message %d failed: %v", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range *n {
		work <- i
	}
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	pool.Close()
	st := pool.Stats()
	fmt.Printf("%d accepted, %d refused, %d unknown, %d failed in %v (%.0f msg/s)\n",
		accepted, refused, unknown, failed, elapsed.Round(time.Millisecond), float64(*n)/elapsed.Seconds())
	fmt.Printf("pool: %d connections opened, %d messages sent again after a connection failed\n", st.Dials, st.Retried)
}
