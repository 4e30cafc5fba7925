#!/usr/bin/env bats
# contrib/: each example run the way its host would run it, on loopback: the inetd line
# and the tcpserver script (messages and syncs on one port), the systemd units (their
# commands, and systemd-analyze verify where systemd is), the cron lines, the tag
# script and the alert handler on a live cluster.
load helper
load node

C="${GOSSIP_SRCDIR:-$BATS_TEST_DIRNAME/..}/contrib"

setup() {
	base_setup
	NODES=
	set -- $(freeports 4)
	PORTS=("$@")
	for n in srv cli n1 n2; do gossip-keygen -d "$T/$n" -n $n >"$n.pub"; done
	for n in srv cli n1 n2; do cat ./*.pub >"$n/trusted"; done
	gossip-send -d "$T/srv" set on-server 1 | gossip-merge -d "$T/srv" >/dev/null
	gossip-send -d "$T/cli" set on-client 1 | gossip-merge -d "$T/cli" >/dev/null
	SERVER=
}

teardown() {
	nodes_stop
	[ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
}

# serves_both PORT: a sync and a message stream to PORT both work.
serves_both() {
	run gossip-merge -d "$T/cli" sync "tcp://127.0.0.1:$1"
	assert_success
	[ "$(gossip-merge -d "$T/srv" get on-client)" = 1 ]
	[ "$(gossip-merge -d "$T/cli" get on-server)" = 1 ]
	gossip-send -d "$T/cli" -t "tcp://127.0.0.1:$1" set by-stream yes
	wait_for 5 sh -c "[ \"\$(gossip-merge -d $T/srv get by-stream 2>/dev/null)\" = yes ]"
}

@test "inetd.conf: the line's command serves messages and syncs on one port" {
	cmd=$(grep -v '^#' "$C/inetd.conf" | sed -n 's/.*\/bin\/sh\tsh -c "\(.*\)"$/\1/p')
	[ -n "$cmd" ]
	cmd=${cmd//\/var\/lib\/gossip/$T/srv}
	# tcpserver runs it exactly as inetd would: the connection on stdin and stdout.
	tcpserver 127.0.0.1 "${PORTS[0]}" sh -c "$cmd" 3>&- & SERVER=$!
	wait_for 5 sh -c "echo | socat - TCP:127.0.0.1:${PORTS[0]} 2>/dev/null"
	serves_both "${PORTS[0]}"
}

@test "tcpserver-run: the run script serves messages and syncs" {
	GOSSIP_DIR="$T/srv" HOST=127.0.0.1 PORT="${PORTS[1]}" "$C/tcpserver-run" >tcpserver.log 3>&- & SERVER=$!
	wait_for 5 sh -c "echo | socat - TCP:127.0.0.1:${PORTS[1]} 2>/dev/null"
	serves_both "${PORTS[1]}"
}

@test "systemd: the sync service's command serves a sync on its socket (Accept=yes)" {
	cmd=$(sed -n 's/^ExecStart=//p' "$C/systemd/gossip-sync@.service")
	cmd=${cmd//\/usr\/local\/bin\//}
	cmd=${cmd//\/var\/lib\/gossip/$T/srv}
	grep -q '^Accept=yes' "$C/systemd/gossip-sync.socket"
	port=$(sed -n 's/^ListenStream=//p' "$C/systemd/gossip-sync.socket")
	[ "$port" -gt 0 ]
	# What systemd does per connection: the socket as stdin and stdout.
	socat TCP-LISTEN:"${PORTS[2]}",bind=127.0.0.1,reuseaddr,fork EXEC:"$cmd" 3>&- & SERVER=$!
	wait_for 5 gossip-merge -d "$T/cli" sync "tcp://127.0.0.1:${PORTS[2]}"
	[ "$(gossip-merge -d "$T/srv" get on-client)" = 1 ]
	[ "$(gossip-merge -d "$T/cli" get on-server)" = 1 ]
}

# unit_cmd KEY: the node service's KEY= command line, for a node n1 in $T.
unit_cmd() {
	local cmd
	cmd=$(sed -n "s/^$1=//p" "$C/systemd/gossip-node.service")
	cmd=${cmd//\/usr\/local\/bin\//}
	cmd=${cmd//\/var\/lib\/gossip/$T/n1}
	cmd=${cmd//\$\{GOSSIP_ADDR\}/127.0.0.1:${PORTS[3]}}
	echo "${cmd//\$GOSSIP_OPTS/-i 0.2}"
}

@test "systemd: the node service's commands run, reload and stop a node; SIGTERM to it alone stops all" {
	grep -q '^KillMode=mixed' "$C/systemd/gossip-node.service"
	for how in ExecStop SIGTERM; do
		# systemd starts the service as a session leader.
		rm -f "$T/n1/listening"
		setsid sh -c "exec $(unit_cmd ExecStart)" </dev/null >/dev/null 2>node.log 3>&- & pid=$!
		PGID_n1=$pid NODES=" n1"   # teardown stops it, whatever happens
		wait_for 5 test -s "$T/n1/listening"
		wait_for 5 sh -c "gossip-peers -d $T/n1 list | grep -q '^n1 .* alive .*127.0.0.1:${PORTS[3]}'"
		sh -c "$(unit_cmd ExecReload)"
		wait_for 5 grep -q "gossip-listen: reloaded" node.log
		[ -n "$(group_procs "$pid" | grep gossip-listen)" ] || fail "reload stopped it: $(cat node.log)"
		if [ "$how" = ExecStop ]; then
			sh -c "$(unit_cmd ExecStop)"
			[ -z "$(group_procs "$pid")" ] || fail "left running: $(group_procs "$pid")"
		else
			kill -TERM "$pid"   # KillMode=mixed: the main process only
			wait_for 10 eval '[ -z "$(group_procs "$pid")" ]'
		fi
		run gossip-merge -d "$T/n1" get _member
		assert_failure 1    # it left: its member record deleted
	done
}

@test "systemd: the units pass systemd-analyze verify" {
	command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"
	mkdir units
	for f in "$C"/systemd/*; do
		# gossip-node is a script in the source tree; the others are built (apart, in distcheck).
		sed "s|/usr/local/bin/gossip-node|$GOSSIP_SRCDIR/bin/gossip-node|g; s|/usr/local/bin/|$GOSSIP_BUILDDIR/bin/|g" "$f" >"units/$(basename "$f")"
	done
	run systemd-analyze verify --man=no units/gossip-node.service units/gossip-sync.socket
	[ "$status" = 0 ] || fail "$output"
	! grep -i "unknown\|invalid\|failed" <<<"$output" || fail "$output"
}

@test "cron: the sync line syncs with a live member; gossip-tag publishes a metric as a tag" {
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 10 sh -c "gossip-peers -d $T/n1 list | grep -q '^n2 .* alive'"
	# The crontab line, run by the shell cron uses, for a store that is no node.
	line=$(grep -v '^#' "$C/cron/gossip-sync" | cut -f3-)
	line=${line//\/var\/lib\/gossip/$T/srv}
	cp "$T/n1/peers" "$T/srv/peers"
	sh -c "$line"
	[ "$(gossip-merge -d "$T/srv" keys _member | wc -l)" -ge 1 ]
	gossip-merge -d "$T/n1" get on-server || gossip-merge -d "$T/n2" get on-server
	# gossip-tag: n2's record gets load=..., keeping its addresses and other tags.
	PATH="$C/cron:$PATH" gossip-tag -d "$T/n2" load=0.42
	wait_for 10 sh -c "gossip-peers -d $T/n1 -j list | jq -e 'select(.name == \"n2\") | .tags.load == \"0.42\"' >/dev/null"
	gossip-peers -d "$T/n1" -j list | jq -e 'select(.name == "n2") | .addrs | length == 2'
	PATH="$C/cron:$PATH" gossip-tag -d "$T/n2" load=0.50
	wait_for 10 sh -c "gossip-peers -d $T/n1 -j list | jq -e 'select(.name == \"n2\") | .tags.load == \"0.50\"' >/dev/null"
	run --separate-stderr "$C/cron/gossip-tag" -d "$T/n2" notatag
	[ "$status" = 2 ]
	[[ "$stderr" == usage:* ]]
}

@test "handlers/alert-failed: one alert when a member fails, none for other events" {
	GOSSIP_ALERT_LOG="$T/alerts" HB=0.2 node_start n1 "${PORTS[0]}" "" -x "$C/handlers/alert-failed"
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 10 sh -c "gossip-peers -d $T/n1 list | grep -q '^n2 .* alive'"
	[ ! -e alerts ]
	node_kill n2
	wait_for 15 test -s alerts
	# No second alert: one would follow within two probe intervals (a second failure
	# event) and one poll of the event log by watch (0.1 s).
	sleep "$(awk -v i="$HB" 'BEGIN { print 2 * i + 0.1 }')"
	[ "$(wc -l <alerts)" = 1 ]
	grep -q "member n2 (.*) failed at udp://127.0.0.1:${PORTS[1]}" alerts
	grep -q "1 members alive" alerts
}

@test "demo: make demo's script runs, and every process it started has ended when it returns" {
	# Its processes are those working in its directory, under TMPDIR.
	mkdir tmp
	TMPDIR="$T/tmp" NODES=3 INTERVAL=0.2 sh "$C/demo" >demo.out 2>demo.err 3>&- </dev/null ||
		fail "$(cat demo.out demo.err)"
	grep -q "3 nodes stopped, no process left" demo.out
	left=
	for f in /proc/[0-9]*; do
		[[ "$(readlink "$f/cwd" 2>/dev/null)" == "$T/tmp/"* ]] || continue
		{ mapfile -d '' -t a <"$f/cmdline"; } 2>/dev/null
		left="$left ${f#/proc/}: ${a[*]};"
	done
	[ -z "$left" ] || fail "still running after the demo returned:$left"
	[ -z "$(ls tmp)" ] || fail "left behind: $(ls tmp)"
}
