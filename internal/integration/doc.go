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
// Without a server no test runs, and go test reports the package as
// "ok ... [no tests to run]" (with a notice on standard error that says
// why, shown in local directory mode and with -v); under CI=true the tests
// run and fail instead.
package integration
