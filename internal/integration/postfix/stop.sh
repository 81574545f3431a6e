#!/usr/bin/env bash
# Stop the private Postfix + Dovecot instance started by start.sh.
#
# Ends exactly the daemons start.sh started, through their own stop commands
# and pid files in $TLSMAIL_POSTFIX_DIR (default /tmp/tlsmail-postfix); never
# by process name. Exits 0 when nothing is running. The directory (logs,
# Maildirs) is left in place for inspection; start.sh wipes it.
set -euo pipefail

DIR=${TLSMAIL_POSTFIX_DIR:-/tmp/tlsmail-postfix}
CONF=$DIR/conf
SPOOL=$DIR/spool
DOVE=$DIR/dovecot

log() { printf 'stop.sh: %s\n' "$*" >&2; }

# pid_alive PIDFILE EXE: prints the pid and succeeds when the file names a
# live process running EXE (guards against a stale pid file whose pid has
# been reused by an unrelated process).
pid_alive() {
	local f=$1 exe=$2 pid real
	[[ -r $f ]] || return 1
	pid=$(tr -dc '0-9' <"$f")
	[[ -n $pid ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	real=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
	real=${real% (deleted)}
	if [[ -n $real && $(basename "$real") != "$exe" ]]; then
		log "ignoring $f: pid $pid is $real, not $exe"
		return 1
	fi
	echo "$pid"
}

# wait_gone PID: wait up to 10 s for a process to exit.
wait_gone() {
	local pid=$1 i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# stop_pid NAME PIDFILE EXE: SIGTERM the pid from the file, SIGKILL after 10 s.
stop_pid() {
	local name=$1 f=$2 exe=$3 pid
	pid=$(pid_alive "$f" "$exe") || return 0
	log "stopping $name (pid $pid) by pid file $f"
	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$pid"; then
		log "$name (pid $pid) did not exit; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" || true
	fi
}

stop_postfix() {
	local pid master_pid=$SPOOL/pid/master.pid
	pid=$(pid_alive "$master_pid" master) || return 0
	log "stopping postfix -c $CONF (master pid $pid)"
	if command -v postfix >/dev/null 2>&1 && [[ -r $CONF/main.cf ]]; then
		postfix -c "$CONF" stop </dev/null >/dev/null 2>&1 || true
	fi
	wait_gone "$pid" || stop_pid "postfix master" "$master_pid" master
}

stop_dovecot() {
	local pid dove_pid=$DOVE/run/master.pid
	pid=$(pid_alive "$dove_pid" dovecot) || return 0
	log "stopping dovecot -c $DOVE/dovecot.conf (pid $pid)"
	if command -v dovecot >/dev/null 2>&1 && [[ -r $DOVE/dovecot.conf ]]; then
		dovecot -c "$DOVE/dovecot.conf" stop </dev/null >/dev/null 2>&1 || true
	fi
	wait_gone "$pid" || stop_pid dovecot "$dove_pid" dovecot
}

# The POP3 instance of issue #16 (start.sh section 9b).
stop_dovecot_pop3() {
	local pid dove_pid=$DIR/dovecot-pop3/run/master.pid
	pid=$(pid_alive "$dove_pid" dovecot) || return 0
	log "stopping dovecot -c $DIR/dovecot-pop3/dovecot.conf (pid $pid)"
	if command -v dovecot >/dev/null 2>&1 && [[ -r $DIR/dovecot-pop3/dovecot.conf ]]; then
		dovecot -c "$DIR/dovecot-pop3/dovecot.conf" stop </dev/null >/dev/null 2>&1 || true
	fi
	wait_gone "$pid" || stop_pid "dovecot (POP3)" "$dove_pid" dovecot
}

# Each takes a second or two to wind down; stop them in parallel.
stop_dovecot &
dovecot_job=$!
stop_dovecot_pop3 &
pop3_job=$!
stop_postfix || true
wait "$dovecot_job" || true
wait "$pop3_job" || true

exit 0
