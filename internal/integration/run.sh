#!/usr/bin/env bash
# Run tlsmail's integration tests against a real Postfix + Dovecot in one
# command: start the private server, run the tests, stop the server (also on
# failure or Ctrl-C).
#
#   internal/integration/run.sh [go test flags...]     e.g. -v -run TestAuth
#
# Needs root for the server (installs postfix and dovecot-core on first use);
# when not run as root it uses sudo for start.sh and stop.sh only, and the
# tests themselves run as the calling user. Set TLSMAIL_POSTFIX_KEEP=1 to
# leave the server running afterwards.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export TLSMAIL_POSTFIX_DIR=${TLSMAIL_POSTFIX_DIR:-/tmp/tlsmail-postfix}
export TLSMAIL_POSTFIX_ENV=$TLSMAIL_POSTFIX_DIR/env

asroot=()
if [[ $(id -u) -ne 0 ]]; then
	asroot=(sudo --preserve-env=TLSMAIL_POSTFIX_DIR)
fi

stop() {
	if [[ ${TLSMAIL_POSTFIX_KEEP:-} == 1 ]]; then
		echo "run.sh: leaving the server running (env file $TLSMAIL_POSTFIX_ENV)" >&2
		return
	fi
	"${asroot[@]}" "$HERE/postfix/stop.sh" || true
}
trap stop EXIT

"${asroot[@]}" "$HERE/postfix/start.sh" >/dev/null
cd "$ROOT"
go test -count=1 "$@" ./internal/integration/
