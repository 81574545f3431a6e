// Package integration holds tlsmail's tests against a real mail server: a
// private Postfix instance with Dovecot SASL, started on 127.0.0.1 by
// postfix/start.sh. The package has no code of its own; see its tests.
//
// Run everything with one command (as root, on Debian or Ubuntu):
//
//	internal/integration/run.sh
//
// or start the server once and run the tests as often as needed:
//
//	sudo internal/integration/postfix/start.sh
//	go test -count=1 ./internal/integration/
//	sudo internal/integration/postfix/stop.sh
//
// Without a server the tests skip, except under CI=true, where they fail.
package integration
