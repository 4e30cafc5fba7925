#!/usr/bin/env bats
# An idle node's watch (gossip-peers watch -x) and query answerer (gossip-query answer)
# sleep until the state directory changes or a signal comes (a second at most), instead of
# waking every 50 ms, and its observe until a probe is due, a message comes or the
# directory changes, instead of every 100 ms: counted as the voluntary context switches
# of each process, which needs no clock. They still run a handler as soon as an event is
# stored, answer a query, see a record another process stored, reload on HUP and end at
# once on a stop; a fetch observe starts is reaped.
load helper
load node

setup() {
	base_setup
	NODES=''
	node_ids 1
	HB=0.3 JITTER=0.1 FANOUT=3 SYNC=3600
	read -ra PORTS <<<"$(freeports 1)"
	printf '#!/bin/sh\necho "$GOSSIP_USER_EVENT $(cat)" >>"$1"\n' >h.sh
	chmod +x h.sh
}

teardown() {
	nodes_stop
}

# switches PID: its voluntary context switches so far (each sleep that ended is one).
switches() {
	awk '$1 == "voluntary_ctxt_switches:" { print $2 }' "/proc/$1/status"
}

# wakeups PID...: the switches of each over 3 seconds, on one line.
wakeups() {
	local p before=() i=0
	for p in "$@"; do before+=("$(switches "$p")"); done
	sleep 3
	for p in "$@"; do
		echo -n "$(($(switches "$p") - before[i])) "
		i=$((i + 1))
	done
	echo
}

# few WAKEUPS...: each at most 15 in 3 seconds (a loop woken every 50 ms makes 60 and more;
# the node's own writes to its directory, a second's sleep and the stats add a few).
few() {
	local w
	for w in "$@"; do [ "$w" -le 15 ] || return 1; done
}

@test "an idle node's watch and query answer sleep until something comes; events, queries, HUP and stop still reach them" {
	node_start n1 "${PORTS[0]}" "" -x "user:ping=$T/h.sh $T/pings" -x "query:hello=echo hi"
	watch=$(pgrep -f "^gossip-peers -d $T/n1 .*watch$")
	answer=$(pgrep -f "^gossip-query -d $T/n1 answer")
	[ -n "$watch" ] && [ -n "$answer" ] || fail "no watch ($watch) or answerer ($answer)"
	sleep 1  # the start's writes settle
	read -r w a <<<"$(wakeups "$watch" "$answer")"
	echo "# idle, in 3 s: watch woke $w times, query answer $a" >&3
	few "$w" "$a" || fail "idle: watch woke $w times in 3 s, query answer $a"

	# An event runs the handler as soon as it is stored: the watch sleeps on DIR/events.
	gossip-send -d n1 -t "udp://127.0.0.1:${PORTS[0]}" event ping one
	wait_for 5 grep -qx 'ping one' pings
	# Once the handler has ended, the watch is idle again.
	sleep 1
	read -r w a <<<"$(wakeups "$watch" "$answer")"
	few "$w" "$a" || fail "after an event: watch woke $w times in 3 s, query answer $a"

	# A query is answered (the answerer sleeps on DIR/store).
	run --separate-stderr gossip-query -d "$T/n1" -T 10 hello
	assert_success
	assert_output "$(printf 'n1\thi')"

	# A reload's HUP wakes the answerer at once: it says it reloaded.
	gossip-node -d n1 reload
	wait_for 5 grep -q '^gossip-query: reloaded' n1.log

	# A stop ends them (TERM wakes the sleep) and the node exits 0.
	run gossip-node -d n1 stop
	assert_success
	for p in "$watch" "$answer"; do ! kill -0 "$p" 2>/dev/null || fail "$p still runs after the stop"; done
}

@test "an idle node's observe sleeps until a probe is due, a message comes or DIR changes; what is stored by others is still seen" {
	HB=2  # a probe every 2 s: the clock's own wakes, not the probes', are counted
	node_start n1 "${PORTS[0]}" ""
	obs=$(pgrep -f "^gossip-peers -d $T/n1 .* observe$")
	[ -n "$obs" ] || fail "no observe: $(dir_procs "$T/n1")"
	sleep 1  # the start's writes settle
	read -r o <<<"$(wakeups "$obs")"
	echo "# idle, in 3 s: observe woke $o times" >&3
	# Its clock woke it every 100 ms (30 and more in 3 s); now its table's save once a
	# second (and the write's own wake: the directory changed), the stats, a second's
	# sleep and the probe round.
	[ "$o" -le 20 ] || fail "idle: observe woke $o times in 3 s"
	# A member record another process stores (a tag) reaches the table: the store's
	# write wakes observe.
	gossip-node -d n1 tag role=idle
	wait_for 5 sh -c "gossip-peers -d $T/n1 -j list | grep -q '\"role\":\"idle\"'" ||
		fail "the tag did not reach the table: $(gossip-peers -d "$T/n1" -j list)"
	run gossip-node -d n1 stop
	assert_success
}

# served NODE: the syncs NODE's observe has served (DIR/stats/observe, written once a second).
served() {
	awk '$1 == "serves_done" { print $2 }' "$T/$1/stats/observe" 2>/dev/null || echo 0
}

@test "a probe from a member with no record here: the fetch of its record ends and is reaped, and observe sleeps again" {
	HB=2
	read -ra PORTS <<<"$(freeports 2)"
	gossip-keygen -d "$T/n2" -n n2 >n2.pub
	seed=$(printf '%064d' 7)
	"$PY" "$BATS_TEST_DIRNAME/interop.py" pub "$seed" >x.pub
	cat n1.pub n2.pub x.pub >n1/trusted
	cat n1.pub n2.pub >n2/trusted
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 10 eval '[ "$(count_state n1 alive)" = 2 ] && [ "$(count_state n2 alive)" = 2 ]'
	obs=$(pgrep -f "^gossip-peers -d $T/n1 .* observe$")
	[ -n "$obs" ] || fail "no observe: $(dir_procs "$T/n1")"
	sleep 2  # the join's syncs and repairs are over
	before=$(served n2)
	# A ping signed by a trusted key no node holds: n1 has no record of its signer, so its
	# observe pulls from a live member (n2) in a child.
	"$PY" "$BATS_TEST_DIRNAME/interop.py" probe "$seed" 4 0102030405060708 |
		gossip-send -d "$T/n2" "udp://127.0.0.1:${PORTS[0]}"
	wait_for 10 eval '[ "$(served n2)" -gt "$before" ]'
	# Reaped: a zombie left behind kept the clock at 100 ms for good.
	wait_for 5 eval '! ps --ppid "$obs" -o stat= | grep -q Z' ||
		fail "the fetch is left a zombie: $(ps --ppid "$obs" -o pid=,stat=,args=)"
}
