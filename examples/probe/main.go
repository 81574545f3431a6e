// Command probe answers "what does this mail server speak?".
//
//	go run ./examples/probe -host smtp.gmail.com
//
// For each port (465, 587 and 25 by default, and 995 and 110 as POP3;
// -ports to choose, or -addr for explicit host:port addresses) it reports:
//
//   - whether the port speaks implicit TLS, STARTTLS, plaintext only, is
//     closed, or answers with something that is not SMTP;
//   - the TLS version and cipher suite, and the certificate chain as the
//     server sent it, with subject, issuer, DNS and IP names and days to
//     expiry;
//   - whether the certificate verifies and matches the host (system roots,
//     or -ca file.pem; -servername when the address is not the name in the
//     certificate). When it does not, the verification error is reported
//     and the chain is read on a second connection made with
//     InsecureSkipVerify, which the output says; nothing secret is sent
//     on that connection;
//   - the EHLO extensions before and after TLS, with a warning when AUTH
//     is offered in plaintext;
//   - STARTTLS injection: the probe sends "STARTTLS\r\nNOOP\r\n" in one
//     write; a server that answers that plaintext NOOP after the TLS
//     handshake is vulnerable to command injection (CVE-2011-0411): the
//     first command under TLS is one no server knows (XTLSMAILPROBE), so a
//     250 read before its error reply answers that NOOP; and
//     bytes the server sent after its 220 reply and before the handshake
//     are response injection, which tlsmail refuses (ErrResponseInjection);
//   - the TCP connect time and one NOOP round trip;
//   - whether tlsmail's Dialer connects, and its error if not;
//   - with -user (the password is read from $TLSMAIL_PASSWORD and never
//     printed), whether tlsmail.PasswordAuth logs in over a verified TLS
//     connection, and with which mechanism (Client.AuthMechanism).
//
// Ports 995 and 110 are probed as POP3 with the pop3 package: implicit TLS
// or STLS (status "stls"), the verified TLS connection and chain, the CAPA
// reply under TLS ("capa_after_tls" in JSON), a port without STLS
// reported as plaintext, a mode mix-up (implicit TLS on 110, STLS on 995)
// as a warning naming the likely port, and with -user a login with
// tlsmail.PasswordAuth and one NOOP round trip.
//
// Other flags: -ehlo sets the EHLO name, -json prints JSON (below);
// go run ./examples/probe -h lists them all.
//
// Every step is bounded by -timeout (10s): a closed or filtered port does
// not hang the probe, and the ports are probed at the same time.
//
// Raw net, net/textproto and crypto/tls are used where tlsmail
// deliberately refuses to go: EHLO in plaintext, the injection tests and
// the inspection of a chain that does not verify. Everything else,
// including the login, goes through tlsmail.
//
// # JSON
//
// With -json the output is one object:
//
//	{
//	  "host": "smtp.example.com",         // -host, or "" with -addr
//	  "ports": [                          // one Report per address, in order
//	    {
//	      "addr": "smtp.example.com:465",
//	      "status": "implicit-tls",       // implicit-tls | starttls | plaintext | closed | no-smtp
//	      "error": "...",                 // what failed, if anything
//	      "connect_ms": 12.5,             // TCP connect time
//	      "noop_ms": 25.1,                // one NOOP round trip (under TLS when there is TLS)
//	      "greeting": "220 mx ESMTP",
//	      "ehlo_before_tls": ["PIPELINING", "STARTTLS"],
//	      "ehlo_after_tls": ["PIPELINING", "AUTH PLAIN LOGIN"],
//	      "tls": {
//	        "version": "TLS 1.3", "cipher_suite": "TLS_AES_128_GCM_SHA256",
//	        "server_name": "smtp.example.com",
//	        "verified": true, "verify_error": "...",
//	        "matches_name": true,           // the leaf names server_name (even if the chain fails)
//	        "insecure_inspection": false, // chain read with InsecureSkipVerify after a failed verification
//	        "chain": [{"subject": "CN=...", "issuer": "CN=...", "dns_names": ["..."],
//	                   "ip_addresses": ["..."], "not_before": "...", "not_after": "...",
//	                   "days_left": 61, "expired": false}]
//	      },
//	      "starttls": {                   // plaintext greetings only
//	        "offered": true, "reply": "220 2.0.0 Ready to start TLS",
//	        "response_injection_bytes": 0, "response_injection": "\"...\"",
//	        "command_injection_tested": true, "command_injection": false
//	      },
//	      "tlsmail_mode": "ImplicitTLS", "tlsmail_error": "",
//	      "login": {"user": "me@example.com", "mechanism": "PLAIN", "error": ""},
//	      "warnings": ["..."]
//	    }
//	  ]
//	}
//
// Empty fields are left out. The exit status is 0 when every address
// was probed, whatever was found, and 2 for a usage error.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"
)

// Result is the -json output.
type Result struct {
	Host  string   `json:"host"`
	Ports []Report `json:"ports"`
}

func main() {
	host := flag.String("host", "", "mail server host name to probe on -ports")
	ports := flag.String("ports", "465,587,25,995,110", "comma-separated ports to probe on -host (995 and 110 as POP3)")
	addrs := flag.String("addr", "", "comma-separated host:port addresses to probe instead of -host and -ports")
	serverName := flag.String("servername", "", "name the certificate must match (default: the host of each address)")
	caFile := flag.String("ca", "", "PEM file of CA certificates to verify with instead of the system roots")
	timeout := flag.Duration("timeout", 10*time.Second, "bound on each network step")
	localName := flag.String("ehlo", "localhost", "name sent with EHLO")
	user := flag.String("user", "", "also log in as this user with tlsmail.PasswordAuth; password from $TLSMAIL_PASSWORD")
	asJSON := flag.Bool("json", false, "print JSON (see the package documentation) instead of text")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: probe -host smtp.example.com [-ports 465,587,25,995,110] [flags]\n       probe -addr host:port[,host:port...] [flags]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()

	targets, err := targetList(*host, *ports, *addrs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		flag.Usage()
		os.Exit(2)
	}
	o := Options{ServerName: *serverName, Timeout: *timeout, LocalName: *localName, User: *user}
	if *user != "" {
		o.Password = os.Getenv("TLSMAIL_PASSWORD")
		if o.Password == "" {
			fmt.Fprintln(os.Stderr, "probe: -user needs the password in $TLSMAIL_PASSWORD")
			os.Exit(2)
		}
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(2)
		}
		o.RootCAs = x509.NewCertPool()
		if !o.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "probe: no PEM certificate in %s\n", *caFile)
			os.Exit(2)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res := Result{Host: *host, Ports: probeAll(ctx, targets, o)}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return
	}
	printText(os.Stdout, res)
}

// targetList returns the addresses to probe.
func targetList(host, ports, addrs string) ([]string, error) {
	var out []string
	if addrs != "" {
		for _, a := range strings.Split(addrs, ",") {
			a = strings.TrimSpace(a)
			if _, _, err := net.SplitHostPort(a); err != nil {
				return nil, fmt.Errorf("-addr %q: %v", a, err)
			}
			out = append(out, a)
		}
		return out, nil
	}
	if host == "" {
		return nil, fmt.Errorf("give -host or -addr")
	}
	for _, p := range strings.Split(ports, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, net.JoinHostPort(host, p))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-ports is empty")
	}
	return out, nil
}

// probeAll probes every address at once and returns the reports in the
// order of addrs.
func probeAll(ctx context.Context, addrs []string, o Options) []Report {
	reports := make([]Report, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reports[i] = probe(ctx, a, o)
		}()
	}
	wg.Wait()
	return reports
}

var statusText = map[Status]string{
	StatusImplicitTLS: "implicit TLS",
	StatusSTARTTLS:    "STARTTLS",
	StatusPlaintext:   "plaintext only",
	StatusClosed:      "closed",
	StatusNoSMTP:      "no SMTP",
	StatusSTLS:        "POP3 with STLS",
}

func printText(w io.Writer, res Result) {
	for i, r := range res.Ports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: %s\n", r.Addr, statusText[r.Status])
		if r.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", r.Error)
		}
		if r.ConnectMS > 0 {
			fmt.Fprintf(w, "  connect %.2f ms", r.ConnectMS)
			if r.NoopMS > 0 {
				fmt.Fprintf(w, ", NOOP round trip %.2f ms", r.NoopMS)
			}
			fmt.Fprintln(w)
		}
		if r.Greeting != "" {
			fmt.Fprintf(w, "  greeting: %s\n", r.Greeting)
		}
		if r.EHLOBeforeTLS != nil {
			fmt.Fprintf(w, "  EHLO before TLS: %s\n", strings.Join(r.EHLOBeforeTLS, ", "))
		}
		if st := r.STARTTLS; st != nil && st.Offered {
			fmt.Fprintf(w, "  STARTTLS reply: %s\n", st.Reply)
			if st.ResponseInjectionBytes > 0 {
				fmt.Fprintf(w, "  response injection: %d bytes before the handshake: %s\n", st.ResponseInjectionBytes, st.ResponseInjection)
			}
			if st.CommandInjectionTested {
				verdict := "not vulnerable (the plaintext NOOP was discarded)"
				if st.CommandInjection {
					verdict = "VULNERABLE (CVE-2011-0411: the plaintext NOOP was answered under TLS)"
				}
				fmt.Fprintf(w, "  command injection: %s\n", verdict)
			}
		}
		if t := r.TLS; t != nil {
			fmt.Fprintf(w, "  %s, %s\n", t.Version, t.CipherSuite)
			if t.Verified {
				fmt.Fprintf(w, "  certificate verifies for %s\n", t.ServerName)
			} else {
				fmt.Fprintf(w, "  certificate does NOT verify for %s: %s\n", t.ServerName, t.VerifyError)
				if t.MatchesName {
					fmt.Fprintf(w, "  (its name does match %s)\n", t.ServerName)
				}
			}
			if t.InsecureInspection {
				fmt.Fprintf(w, "  (chain and EHLO below read with InsecureSkipVerify, for inspection only)\n")
			}
			for j, c := range t.Chain {
				fmt.Fprintf(w, "  [%d] %s\n", j, c.Subject)
				var names []string
				if len(c.DNSNames) > 0 {
					names = append(names, "DNS: "+strings.Join(c.DNSNames, ", "))
				}
				if len(c.IPAddresses) > 0 {
					names = append(names, "IP: "+strings.Join(c.IPAddresses, ", "))
				}
				if len(names) > 0 {
					fmt.Fprintf(w, "      %s\n", strings.Join(names, "; "))
				}
				exp := fmt.Sprintf("expires %s (in %s)", c.NotAfter.Format(time.DateOnly), days(c.DaysLeft))
				if c.Expired {
					exp = fmt.Sprintf("EXPIRED %s (%s ago)", c.NotAfter.Format(time.DateOnly), days(-c.DaysLeft))
				}
				fmt.Fprintf(w, "      issuer: %s; %s\n", c.Issuer, exp)
			}
		}
		if r.EHLOAfterTLS != nil {
			fmt.Fprintf(w, "  EHLO after TLS: %s\n", strings.Join(r.EHLOAfterTLS, ", "))
		}
		if r.CapaAfterTLS != nil {
			fmt.Fprintf(w, "  POP3 CAPA after TLS: %s\n", strings.Join(r.CapaAfterTLS, ", "))
		}
		if r.TlsmailMode != "" {
			if r.TlsmailError == "" {
				fmt.Fprintf(w, "  tlsmail (%s): connects\n", r.TlsmailMode)
			} else {
				fmt.Fprintf(w, "  tlsmail (%s): %s\n", r.TlsmailMode, r.TlsmailError)
			}
		}
		if l := r.Login; l != nil {
			if l.Error == "" {
				fmt.Fprintf(w, "  login as %s: ok, mechanism %s\n", l.User, l.Mechanism)
			} else {
				fmt.Fprintf(w, "  login as %s: %s\n", l.User, l.Error)
			}
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "  WARNING: %s\n", warn)
		}
	}
}

func days(n int) string {
	if n == 1 {
		return "1 day"
	}
	return fmt.Sprintf("%d days", n)
}
