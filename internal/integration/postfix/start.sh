#!/usr/bin/env bash
# Start a private, throwaway Postfix + Dovecot (auth only) instance for the
# tlsmail integration tests.
#
# Run as root on Debian/Ubuntu:  sudo internal/integration/postfix/start.sh
#
# Everything lives below $TLSMAIL_POSTFIX_DIR (default /tmp/tlsmail-postfix):
# config, queue, data, certificates, logs, Maildirs and the env file that the
# Go tests read. The system's /etc/postfix and /etc/dovecot are not touched and
# the system services are not started. Every listener binds 127.0.0.1 only.
#
# Ports (picked free at random below the ephemeral range):
#   TLSMAIL_IMPLICIT_ADDR  implicit TLS submission (RFC 8314), AUTH required
#   TLSMAIL_STARTTLS_ADDR  submission with STARTTLS required, AUTH after TLS only
#   TLSMAIL_PLAIN_ADDR     plaintext only: no STARTTLS, no AUTH (must be refused)
#   TLSMAIL_NOCHUNKING_ADDR  implicit TLS as above, without CHUNKING (DATA only)
#   TLSMAIL_LIMITED_ADDR   implicit TLS as above, with low anvil limits per
#                          client IP and no exceptions: 2 connections at once,
#                          30 messages a minute (for the Pool tests)
#   TLSMAIL_OAUTH_PORT     where Dovecot's oauth2 passdb expects the token
#                          introspection endpoint, http://127.0.0.1:PORT/introspect;
#                          nothing listens there until a Go test serves it
#
# Postfix's message_size_limit is TLSMAIL_SIZE_LIMIT (10 MiB); addresses of the
# test domain other than the sender and TLSMAIL_RCPTS are refused at RCPT time
# (550 5.1.1, virtual_mailbox_maps).
#
# Stop with internal/integration/postfix/stop.sh (same TLSMAIL_POSTFIX_DIR).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${TLSMAIL_POSTFIX_DIR:-/tmp/tlsmail-postfix}
DOMAIN=tlsmail.test
HOSTNAME_=mail.$DOMAIN
SENDER=sender@$DOMAIN
RCPTS=(rcpt1 rcpt2 rcpt3)
MARKER=.tlsmail-postfix-instance

log() { printf 'start.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0)"
[[ $DIR == /* ]] || die "TLSMAIL_POSTFIX_DIR must be an absolute path: $DIR"
[[ $DIR != / ]] || die "refusing TLSMAIL_POSTFIX_DIR=/"

t_start=$(date +%s.%N)

# ---------------------------------------------------------------------------
# 1. Packages (skipped when already installed).
# ---------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
need=()
for p in postfix dovecot-core dovecot-pop3d openssl; do
	pkg_installed "$p" || need+=("$p")
done
if ((${#need[@]})); then
	log "installing: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -q >"/tmp/tlsmail-apt-update.log" 2>&1 || {
		cat /tmp/tlsmail-apt-update.log >&2
		die "apt-get update failed"
	}
	# Package scripts must not start the system daemons (there may be no
	# init system at all); policy-rc.d already denies that on most
	# containers, and the system instances are not used anyway.
	apt-get install -y -q --no-install-recommends "${need[@]}" \
		</dev/null >"/tmp/tlsmail-apt-install.log" 2>&1 || {
		tail -n 50 /tmp/tlsmail-apt-install.log >&2
		die "apt-get install failed"
	}
fi
t_installed=$(date +%s.%N)

# ---------------------------------------------------------------------------
# 2. Stop a previous instance and start from an empty directory.
# ---------------------------------------------------------------------------
TLSMAIL_POSTFIX_DIR=$DIR "$SCRIPT_DIR/stop.sh" >&2 || die "stop.sh failed"
if [[ -e $DIR ]]; then
	# Only ever delete a directory this script created.
	if [[ -e $DIR/$MARKER ]] || [[ -z $(ls -A "$DIR") ]]; then
		rm -rf -- "$DIR"
	else
		die "$DIR exists and was not created by start.sh; remove it or set TLSMAIL_POSTFIX_DIR"
	fi
fi
mkdir -p "$DIR"
chmod 0755 "$DIR"
: >"$DIR/$MARKER"

CONF=$DIR/conf        # Postfix config_directory
SPOOL=$DIR/spool      # Postfix queue_directory
DATA=$DIR/data        # Postfix data_directory
TLS=$DIR/tls          # CA + server certificate
MAILDIR=$DIR/maildir  # virtual_mailbox_base
DOVE=$DIR/dovecot     # Dovecot config, base_dir, state_dir, log
MAILLOG=$DIR/maillog  # Postfix log (postlogd)
ENVFILE=$DIR/env
mkdir -p "$CONF" "$SPOOL" "$DATA" "$TLS" "$MAILDIR" "$DOVE/run" "$DOVE/state"
chown postfix:postfix "$DATA"
chmod 0755 "$CONF" "$SPOOL" "$TLS" "$DOVE" "$MAILDIR"

# ---------------------------------------------------------------------------
# 3. Delivery user. Postfix never delivers as root. When invoked through sudo
#    by a normal user, deliver as that user so that an unprivileged `go test`
#    can read the Maildir files (virtual(8) creates them mode 0600).
# ---------------------------------------------------------------------------
if [[ -n ${SUDO_UID:-} && ${SUDO_UID} -ge 100 && -n ${SUDO_GID:-} ]]; then
	VUID=$SUDO_UID
	VGID=$SUDO_GID
else
	if ! id -u tlsmailtest >/dev/null 2>&1; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin tlsmailtest
	fi
	VUID=$(id -u tlsmailtest)
	VGID=$(id -g tlsmailtest)
fi
for r in "${RCPTS[@]}" sender; do
	for sub in tmp new cur; do
		mkdir -p "$MAILDIR/$r/$sub"
	done
done
chown -R "$VUID:$VGID" "$MAILDIR"
chmod -R 0755 "$MAILDIR"

# ---------------------------------------------------------------------------
# 4. Throwaway CA and server certificate.
# ---------------------------------------------------------------------------
(
	cd "$TLS"
	umask 022
	openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 30 \
		-keyout ca.key -out ca.pem -subj "/CN=tlsmail throwaway test CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
	openssl req -new -newkey rsa:2048 -nodes -sha256 \
		-keyout server.key -out server.csr -subj "/CN=$HOSTNAME_" 2>/dev/null
	cat >server.ext <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$HOSTNAME_,DNS:localhost,IP:127.0.0.1
EOF
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
		-days 30 -sha256 -extfile server.ext -out server.pem 2>/dev/null
	chmod 0600 ca.key server.key
	chmod 0644 ca.pem server.pem
)

# ---------------------------------------------------------------------------
# 5. Free ports: random, below the ephemeral range, not currently listening.
# ---------------------------------------------------------------------------
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range || eph_lo=32768
port_hi=$((eph_lo - 1))
port_lo=20000
((port_hi > port_lo + 100)) || { port_lo=10000; }
port_busy() {
	local p=$1
	if command -v ss >/dev/null 2>&1; then
		[[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
	fi
}
PORTS=()
while ((${#PORTS[@]} < 5)); do
	p=$(shuf -i "$port_lo-$port_hi" -n 1)
	[[ " ${PORTS[*]-} " == *" $p "* ]] && continue
	port_busy "$p" && continue
	PORTS+=("$p")
done
P_IMPLICIT=${PORTS[0]}
P_STARTTLS=${PORTS[1]}
P_PLAIN=${PORTS[2]}
P_OAUTH=${PORTS[3]}
P_NOCHUNK=${PORTS[4]}
SIZE_LIMIT=10485760

# ---------------------------------------------------------------------------
# 6. Dovecot: private auth-only instance.
# ---------------------------------------------------------------------------
PASSWORD=$(openssl rand -hex 16)
AUTH_SOCKET=$DOVE/run/auth-postfix
umask 077
printf '%s:{PLAIN}%s\n' "$SENDER" "$PASSWORD" >"$DOVE/passwd"
umask 022
chown root:dovecot "$DOVE/passwd"
chmod 0640 "$DOVE/passwd"
cat >"$DOVE/dovecot.conf" <<EOF
# Private auth-only Dovecot instance for the tlsmail integration tests.
instance_name = tlsmail-test
base_dir = $DOVE/run
state_dir = $DOVE/state
protocols = none
listen = 127.0.0.1
ssl = no
log_path = $DOVE/dovecot.log
info_log_path = $DOVE/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
# Postfix decides where AUTH is offered (TLS only); plaintext mechanisms are
# fine over Postfix's TLS connections.
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 xoauth2 oauthbearer
auth_username_format = %u
# Passwords for the password mechanisms; the token mechanisms never look here.
passdb {
  driver = passwd-file
  mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256
  args = scheme=PLAIN username_format=%u $DOVE/passwd
}
# Tokens for XOAUTH2 and OAUTHBEARER, checked with the introspection endpoint
# (RFC 7662) that the Go tests serve on 127.0.0.1:$P_OAUTH while they run.
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DOVE/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=$VUID gid=$VGID home=/nonexistent
}
service auth {
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# No authentication penalty (up to 15 s of delay for an IP after failed
# logins): the tests fail logins from 127.0.0.1 on purpose, several times.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF

cat >"$DOVE/dovecot-oauth2.conf.ext" <<EOF
# Token introspection (RFC 7662) by POST, against the Go tests' endpoint. The
# endpoint answers {"active":true,"username":...} for the token it issued.
introspection_mode = post
introspection_url = http://127.0.0.1:$P_OAUTH/introspect
force_introspection = yes
username_attribute = username
username_format = %u
active_attribute = active
active_value = true
timeout_msecs = 5000
EOF

# Run a daemon-starting command detached: new session, no inherited fds.
run_detached() {
	local out=$1
	shift
	(
		for fd in "/proc/$BASHPID/fd/"*; do
			fd=${fd##*/}
			if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2)); then
				eval "exec $fd>&-" 2>/dev/null || true
			fi
		done
		exec setsid --wait "$@" </dev/null >>"$out" 2>&1
	)
}

run_detached "$DOVE/start.log" dovecot -c "$DOVE/dovecot.conf" ||
	{ cat "$DOVE/start.log" "$DOVE/dovecot.log" >&2 2>/dev/null || true; die "dovecot failed to start"; }

# ---------------------------------------------------------------------------
# 7. Postfix: private instance.
# ---------------------------------------------------------------------------
{
	printf '%s\t%s/\n' "$SENDER" sender
	for r in "${RCPTS[@]}"; do
		printf '%s@%s\t%s/\n' "$r" "$DOMAIN" "$r"
	done
} >"$CONF/vmailbox"

cat >"$CONF/main.cf" <<EOF
# Private Postfix instance for the tlsmail integration tests.
compatibility_level = 3.6
config_directory = $CONF
queue_directory = $SPOOL
data_directory = $DATA
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-tlsmail
maillog_file = $MAILLOG
maillog_file_prefixes = $DIR
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C

myhostname = $HOSTNAME_
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
mynetworks_style = host
relay_domains =
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
biff = no

virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $MAILDIR
virtual_mailbox_maps = texthash:$CONF/vmailbox
virtual_uid_maps = static:$VUID
virtual_gid_maps = static:$VGID
virtual_minimum_uid = 100
virtual_mailbox_limit = 0

# Do not touch messages beyond the Received: trace header.
local_header_rewrite_clients =
remote_header_rewrite_domain =
always_add_missing_headers = no
smtpd_sasl_authenticated_header = no
smtpd_tls_received_header = no
message_size_limit = $SIZE_LIMIT
mailbox_size_limit = 0
smtputf8_enable = yes
smtpd_client_port_logging = yes
smtpd_delay_reject = yes
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 100
smtpd_client_connection_rate_limit = 0
smtpd_client_auth_rate_limit = 0
anvil_rate_time_unit = 60s

# Deny everything by default; the submission services below open it up.
smtpd_sasl_auth_enable = no
smtpd_sasl_type = dovecot
smtpd_sasl_path = $AUTH_SOCKET
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject

smtpd_tls_security_level = none
smtpd_tls_cert_file = $TLS/server.pem
smtpd_tls_key_file = $TLS/server.key
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
smtpd_tls_session_cache_database =
tls_random_source = dev:/dev/urandom

smtp_tls_security_level = none
default_transport = error:outbound mail disabled on this test server
relay_transport = error:outbound mail disabled on this test server
EOF

# chroot column is "n" everywhere: there is no chroot setup.
cat >"$CONF/master.cf" <<EOF
# service type  private unpriv  chroot  wakeup  maxproc command + args
$P_IMPLICIT inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-tlsmail/implicit
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
$P_NOCHUNK inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-tlsmail/nochunking
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o smtpd_discard_ehlo_keywords=chunking
$P_STARTTLS inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-tlsmail/starttls
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
$P_PLAIN inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-tlsmail/plain
  -o smtpd_tls_security_level=none
  -o smtpd_sasl_auth_enable=no
  -o smtpd_recipient_restrictions=reject
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# Make the log readable by an unprivileged `go test` (postlogd appends).
: >"$MAILLOG"
chmod 0644 "$MAILLOG"

# ---------------------------------------------------------------------------
# 7a. Pool tests (issue #15): one more implicit-TLS submission listener with
#     low anvil(8) limits per client IP (anvil is in master.cf above), and no
#     exceptions: smtpd_client_event_limit_exceptions defaults to
#     $mynetworks, which holds 127.0.0.1. A second connection from one IP is
#     fine, a third gets "421 4.7.0 Error: too many connections"; the 31st
#     MAIL from one IP within anvil_rate_time_unit (60s) gets "450 4.7.1
#     Error: too much mail" (Postfix 3.7). No reverse lookup: the tests
#     connect from fresh 127.x.y.z addresses, for a fresh anvil count each
#     time.
#     The Pool tests restart Postfix with TLSMAIL_POSTFIX_CONFIG; postfix
#     start then runs postsuper(1), which writes the log itself, as
#     mail_owner (a warning about a file left in the queue by a stopped
#     cleanup would otherwise be fatal), so mail_owner owns the log.
# ---------------------------------------------------------------------------
chown postfix "$MAILLOG"
while :; do
	P_LIMITED=$(shuf -i "$port_lo-$port_hi" -n 1)
	[[ " ${PORTS[*]} " == *" $P_LIMITED "* ]] && continue
	port_busy "$P_LIMITED" || break
done
LIMITED_CONN_LIMIT=2
LIMITED_RATE_LIMIT=30
cat >>"$CONF/master.cf" <<EOF
$P_LIMITED inet n       -       n       -       -       smtpd
  -o syslog_name=postfix-tlsmail/limited
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_tls_auth_only=yes
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o smtpd_client_connection_count_limit=$LIMITED_CONN_LIMIT
  -o smtpd_client_message_rate_limit=$LIMITED_RATE_LIMIT
  -o smtpd_client_event_limit_exceptions=
  -o smtpd_peername_lookup=no
EOF

postfix -c "$CONF" check >"$DIR/postfix-check.log" 2>&1 ||
	{ cat "$DIR/postfix-check.log" >&2; die "postfix check failed"; }
run_detached "$DIR/postfix-start.log" postfix -c "$CONF" start ||
	{ cat "$DIR/postfix-start.log" "$MAILLOG" >&2 2>/dev/null || true; die "postfix failed to start"; }

# ---------------------------------------------------------------------------
# 8. Wait (bounded) until all three ports accept connections.
# ---------------------------------------------------------------------------
wait_port() {
	local p=$1 i
	for ((i = 0; i < 150; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}
for p in "$P_IMPLICIT" "$P_STARTTLS" "$P_PLAIN"; do
	wait_port "$p" || { tail -n 50 "$MAILLOG" >&2 || true; die "port $p did not open within 15s"; }
done
[[ -S $AUTH_SOCKET ]] || { cat "$DOVE/dovecot.log" >&2 || true; die "dovecot auth socket $AUTH_SOCKET missing"; }

# ---------------------------------------------------------------------------
# 9. Env file for the Go tests.
# ---------------------------------------------------------------------------
rcpt_list=$(printf "%s@$DOMAIN," "${RCPTS[@]}")
rcpt_list=${rcpt_list%,}
umask 022
cat >"$ENVFILE.tmp" <<EOF
TLSMAIL_IMPLICIT_ADDR=127.0.0.1:$P_IMPLICIT
TLSMAIL_STARTTLS_ADDR=127.0.0.1:$P_STARTTLS
TLSMAIL_PLAIN_ADDR=127.0.0.1:$P_PLAIN
TLSMAIL_NOCHUNKING_ADDR=127.0.0.1:$P_NOCHUNK
TLSMAIL_LIMITED_ADDR=127.0.0.1:$P_LIMITED
TLSMAIL_LIMITED_CONN_LIMIT=$LIMITED_CONN_LIMIT
TLSMAIL_LIMITED_RATE_LIMIT=$LIMITED_RATE_LIMIT
TLSMAIL_POSTFIX_CONFIG=$CONF
TLSMAIL_OAUTH_PORT=$P_OAUTH
TLSMAIL_SIZE_LIMIT=$SIZE_LIMIT
TLSMAIL_CA_FILE=$TLS/ca.pem
TLSMAIL_SERVER_NAME=$HOSTNAME_
TLSMAIL_USER=$SENDER
TLSMAIL_PASSWORD=$PASSWORD
TLSMAIL_MAILDIR=$MAILDIR
TLSMAIL_DOMAIN=$DOMAIN
TLSMAIL_MAILLOG=$MAILLOG
TLSMAIL_RCPTS=$rcpt_list
TLSMAIL_POSTFIX_STOP=$SCRIPT_DIR/stop.sh
TLSMAIL_POSTFIX_DIR=$DIR
EOF
mv "$ENVFILE.tmp" "$ENVFILE"
chmod 0644 "$ENVFILE"

# ---------------------------------------------------------------------------
# 9b. POP3 (issue #16): a second private Dovecot instance serving POP3 from
#     the Maildirs Postfix delivers to, for the pop3 package's tests.
#       TLSMAIL_POP3S_ADDR      implicit TLS (RFC 8314) on 127.0.0.1
#       TLSMAIL_POP3_STLS_ADDR  STLS required (RFC 2595) on 127.0.0.2: Dovecot
#                               2.3 treats a connection whose remote address
#                               equals its local one as secure and would allow
#                               plaintext login; from 127.0.0.1 to 127.0.0.2
#                               (Linux's source for 127.0.0.2) the refusal of
#                               plaintext login is real.
#     The user is TLSMAIL_USER (mailbox $MAILDIR/sender, which no SMTP test
#     delivers to) with TLSMAIL_PASSWORD, or a token through the same oauth2
#     passdb. pop3_no_flag_updates keeps messages in new/ after a POP3 login.
#     stop.sh stops it by its pid file ($DIR/dovecot-pop3/run/master.pid).
# ---------------------------------------------------------------------------
POP3D=$DIR/dovecot-pop3
mkdir -p "$POP3D/run" "$POP3D/state"
chmod 0755 "$POP3D"
P_POP3S='' P_POP3_STLS=''
while [[ -z $P_POP3S || -z $P_POP3_STLS ]]; do
	p=$(shuf -i "$port_lo-$port_hi" -n 1)
	[[ " ${PORTS[*]} ${P_LIMITED-} $P_POP3S " == *" $p "* ]] && continue
	port_busy "$p" && continue
	if [[ -z $P_POP3S ]]; then P_POP3S=$p; else P_POP3_STLS=$p; fi
done
cat >"$POP3D/dovecot.conf" <<EOF
# Private POP3 Dovecot instance for the tlsmail pop3 integration tests.
instance_name = tlsmail-test-pop3
base_dir = $POP3D/run
state_dir = $POP3D/state
protocols = pop3
listen = 127.0.0.1
log_path = $POP3D/dovecot.log
info_log_path = $POP3D/dovecot.log
auth_verbose = yes
auth_failure_delay = 0
ssl = yes
ssl_cert = <$TLS/server.pem
ssl_key = <$TLS/server.key
ssl_min_protocol = TLSv1.2
# No login before TLS: USER, PASS and AUTH are refused in plaintext.
disable_plaintext_auth = yes
auth_mechanisms = plain login scram-sha-1 scram-sha-256 xoauth2 oauthbearer
auth_username_format = %u
mail_location = maildir:$MAILDIR/%n
first_valid_uid = $VUID
pop3_no_flag_updates = yes
passdb {
  driver = passwd-file
  mechanisms = plain login scram-sha-1 scram-sha-256
  args = scheme=PLAIN username_format=%u $DOVE/passwd
}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $DOVE/dovecot-oauth2.conf.ext
}
userdb {
  driver = static
  args = uid=$VUID gid=$VGID home=$MAILDIR/%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.2
    port = $P_POP3_STLS
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $P_POP3S
    ssl = yes
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
EOF
run_detached "$POP3D/start.log" dovecot -c "$POP3D/dovecot.conf" ||
	{ cat "$POP3D/start.log" "$POP3D/dovecot.log" >&2 2>/dev/null || true; die "dovecot (POP3) failed to start"; }
wait_port "$P_POP3S" || { cat "$POP3D/dovecot.log" >&2 || true; die "POP3 port $P_POP3S did not open within 15s"; }
for ((i = 0; i < 150; i++)); do
	(exec 3<>"/dev/tcp/127.0.0.2/$P_POP3_STLS") 2>/dev/null && break
	sleep 0.1
done
((i < 150)) || { cat "$POP3D/dovecot.log" >&2 || true; die "POP3 port 127.0.0.2:$P_POP3_STLS did not open within 15s"; }
cat >>"$ENVFILE" <<EOF
TLSMAIL_POP3S_ADDR=127.0.0.1:$P_POP3S
TLSMAIL_POP3_STLS_ADDR=127.0.0.2:$P_POP3_STLS
TLSMAIL_POP3_USER=$SENDER
TLSMAIL_POP3_PASSWORD=$PASSWORD
EOF

t_end=$(date +%s.%N)
log "$(awk -v a="$t_start" -v b="$t_installed" -v c="$t_end" \
	'BEGIN { printf "ready in %.1fs (packages %.1fs, start %.1fs)", c - a, b - a, c - b }')"
echo "$ENVFILE"
