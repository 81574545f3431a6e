#!/usr/bin/env bash
# thirdparty.sh runs the own test suites of two libraries written against
# net/smtp, gopkg.in/gomail.v2 and github.com/go-mail/mail, with their
# "net/smtp" import swapped for tlsmail: the drop-in promise, checked by
# code we did not write. Their tests compare Auth values with
# reflect.DeepEqual, among other things.
#
# Each library is copied out of the module cache into a scratch module in
# a temporary directory, outside this repository, with a replace
# directive pointing at this checkout: tlsmail's own go.mod never
# requires anything. Needs the Go module proxy (go mod download).
# TLSMAIL_DIR overrides the checkout tested. Exits non-zero if a suite
# fails.
set -euo pipefail
root="${TLSMAIL_DIR:-$(cd "$(dirname "$0")/.." && pwd)}"
scratch="$(mktemp -d)"
trap 'chmod -R u+w "$scratch"; rm -rf "$scratch"' EXIT

# suite MODULE VERSION: copy MODULE@VERSION, swap the import, run its tests.
# Runs in a subshell, so that its cd stays inside.
suite() (
	set -e
	mod="$1" ver="$2"
	printf '\n== %s@%s with net/smtp swapped for tlsmail\n' "$mod" "$ver"
	dir="$(cd "$scratch" && go mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	cp -R "$dir" "$scratch/$(basename "$mod")"
	cd "$scratch/$(basename "$mod")"
	chmod -R u+w .
	for f in *.go; do
		sed -i 's#"net/smtp"#smtp "github.com/tlsmail/tlsmail"#' "$f"
	done
	# Old modules without a go.mod get one; the replace is what matters.
	if [ ! -f go.mod ]; then
		go mod init "$mod" >/dev/null 2>&1
	fi
	go mod edit -require=github.com/tlsmail/tlsmail@v0.0.0 -replace=github.com/tlsmail/tlsmail="$root"
	go mod tidy >/dev/null 2>&1
	go test -count=1 ./...
)

# A scratch module for go mod download to run in.
(cd "$scratch" && go mod init scratch >/dev/null 2>&1)

failed=0
suite gopkg.in/gomail.v2 v2.0.0-20160411212932-81ebce5c23df || failed=1
suite github.com/go-mail/mail v2.3.1+incompatible || failed=1
exit $failed
