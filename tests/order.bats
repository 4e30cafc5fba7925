#!/usr/bin/env bats
# gossip-order: ordered events merged out of order into one store (FIFO, causal, total),
# restarts that neither repeat nor skip, loopback nodes whose total orders agree, and ten
# namespaced hosts under 20% loss, where FIFO and causal lose nothing and total order is
# the same everywhere; bad usage.
load helper
load node
load netns

setup() {
	base_setup
	FILTERS=
	NODES=
}

teardown() {
	local p
	for p in $FILTERS; do kill "$p" 2>/dev/null || true; done
	# A failed test shows what its filters said.
	[ -n "${BATS_TEST_COMPLETED:-}" ] || tail -n 3 "$T"/*.err 2>/dev/null || true
	nodes_stop
	net_down "${NS:-none}"
}

# filter NAME DIR MODE [ARGS...]: run a filter in the background, its output in NAME.out.
filter() {
	local out=$1 dir=$2
	shift 2
	gossip-order -d "$dir" "$@" >"$T/$out.out" 2>>"$T/$out.err" &
	FILTERS="$FILTERS $!"
}

# lines N FILE: FILE has at least N lines.
lines() {
	[ "$(wc -l <"$2" 2>/dev/null || echo 0)" -ge "$1" ]
}

# in_order FILE: every origin's lines in FILE have rising seq numbers (heartbeats, never
# shown, take some) and payloads ending in numbers that rise by one.
in_order() {
	awk '{ k = $5; gsub(/[^0-9]/, "", k); k = substr(k, length(k)); k += 0
	       if (($1 in seq) && ($2 <= seq[$1] || k != num[$1] + 1)) { print "out of order: " $0; bad = 1 }
	       seq[$1] = $2; num[$1] = k }
	     END { exit bad }' "$1"
}

# osend DIR PAYLOAD: DIR's next ordered event "ev" into the file DIR+PAYLOAD's name (a1, b2...)
# and into DIR's own store, as a node would keep it (else the next send repeats it).
osend() {
	gossip-order -d "$1" send ev "$2" >"$2"
	gossip-merge -d "$1" <"$2" >/dev/null
}

# Three signers a, b, c and a store s that trusts them.
signers() {
	for n in a b c s; do mknode "$n"; done
	cat a.pub b.pub c.pub >s/trusted
	for n in a b c; do cat a.pub b.pub c.pub >"$n/trusted"; done
}

@test "fifo: each origin's events in the order it sent them, whatever order they merge in" {
	signers
	for i in 1 2 3 4; do osend a "a$i"; done
	for i in 1 2 3; do osend b "b$i"; done
	# Reordered and duplicated; a2 held back until it comes.
	gossip-merge -d s </dev/null   # an empty store: the filter starts afresh, at seq 1
	filter f s fifo
	sleep 0.2
	cat a4 b3 a3 b1 a3 b2 | gossip-merge -d s >/dev/null
	wait_for 5 lines 3 f.out
	run grep -c '^a ' f.out
	assert_output 0
	cat a2 a1 | gossip-merge -d s >/dev/null
	wait_for 5 lines 7 f.out
	run in_order f.out
	assert_success
	run awk '$1 == "a" {print $5}' f.out
	assert_output "$(printf '"a%s"\n' 1 2 3 4)"
}

@test "causal: an event after every event its sender had when it sent it" {
	signers
	osend a a1
	gossip-merge -d b <a1 >/dev/null   # b has a's event, then answers it
	gossip-order -d b send ev reply >b1
	gossip-order -d c send ev other >c1
	gossip-merge -d s </dev/null
	filter c s causal
	filter f s fifo
	sleep 0.2
	cat b1 c1 | gossip-merge -d s >/dev/null
	wait_for 5 lines 2 f.out
	wait_for 5 lines 1 c.out
	run cat c.out
	assert_output 'c 1 1 ev "other"'
	gossip-merge -d s <a1 >/dev/null
	wait_for 5 lines 3 c.out
	run awk '{print $5}' c.out
	assert_output "$(printf '"other"\n"a1"\n"reply"')"
	# fifo had the reply before what it answers
	run head -n 1 f.out
	assert_output --partial '"reply"'
}

@test "total: one order by (Lamport clock, origin), each event once every origin is past it" {
	signers
	osend a a1
	osend b b1
	osend a a2
	osend c c1
	gossip-merge -d s </dev/null
	filter t s total
	filter t2 s -j total
	sleep 0.2
	cat a2 c1 | gossip-merge -d s >/dev/null
	sleep 0.3
	run cat t.out
	assert_output ""
	cat b1 a1 | gossip-merge -d s >/dev/null
	# a1 b1 c1 at clock 1 (by key), a2 at 2 waits for b and c to pass 2.
	wait_for 5 lines 3 t.out
	run awk '{print $1}' t.out
	assert_output "$($PY -c 'import base64, sys
print("\n".join(n for _, n in sorted((base64.b64decode(open(n + ".pub").read().split()[0]), n) for n in "abc")))')"
	gossip-order -d b send ev b2 | gossip-merge -d s >/dev/null
	gossip-order -d c send ev c2 | gossip-merge -d s >/dev/null
	# a2, b2 and c2 all at clock 2: the first of them in key order comes next.
	first=$($PY -c 'import base64
print(sorted((base64.b64decode(open(n + ".pub").read().split()[0]), n) for n in "abc")[0][1])')
	wait_for 5 lines 4 t.out
	run sed -n 4p t.out
	assert_output "$first 2 2 ev \"${first}2\""
	wait_for 5 lines 4 t2.out
	run jq -r '"\(.name) \(.seq) \(.lamport) \(.event) \(.payload)"' t2.out
	assert_line --index 3 "$first 2 2 ev ${first}2"
}

@test "a filter started again neither repeats nor skips" {
	signers
	for i in 1 2 3; do gossip-order -d a send ev "a$i"; done | gossip-merge -d s >/dev/null
	filter f s fifo
	wait_for 5 lines 3 f.out
	kill $FILTERS
	wait
	FILTERS=
	for i in 4 5; do gossip-order -d a send ev "a$i"; done | gossip-merge -d s >/dev/null
	filter g s fifo
	wait_for 5 lines 2 g.out
	sleep 0.2
	run awk '{print $2}' g.out
	assert_output "$(printf '4\n5')"
}

@test "send: seq numbers are never reused, and one that did not leave goes again" {
	mknode a
	gossip-order -d a send ev one >m1
	gossip-order -d a send ev two >m2
	# a's store does not hold one: it goes again, before two.
	run cbor_count m2
	assert_output 2
	gossip-merge -d a <m2 >/dev/null
	gossip-order -d a send ev three >m3
	run cbor_count m3
	assert_output 1
	run gossip-inspect -j m3
	assert_output --partial '"key":"ev"'
	$PY -c 'import cbor2,sys
m = cbor2.loads(open(sys.argv[1],"rb").read())
p = cbor2.loads(m.value[2]); v = cbor2.loads(p[5])
assert v[1] == 3 and v[2] == 3 and v[3] == [] and v[4] == b"three", v' m3
}

@test "the filters of one node ask anti-entropy for a gap one at a time, not each its own" {
	signers
	for i in 1 2 3; do osend a "a$i"; done
	cat a1 a3 | gossip-merge -d s >/dev/null   # a2 is the gap
	# A gossip-peers that says when each sync's pick starts and ends, slowly, and finds
	# nobody (the sync goes no further).
	mkdir fake
	printf '#!/bin/sh\necho "start $(date +%%s%%N)" >>%s/picks\nsleep 0.3\necho "end $(date +%%s%%N)" >>%s/picks\nexit 1\n' \
		"$T" "$T" >fake/gossip-peers
	chmod +x fake/gossip-peers
	for mode in fifo causal total; do
		PATH=$T/fake:$PATH filter "$mode" s -g 0.2 "$mode"
	done
	wait_for 10 eval '[ "$(cat picks 2>/dev/null | grep -c start)" -ge 6 ]'
	kill $FILTERS
	wait $FILTERS 2>/dev/null || true
	FILTERS=
	# Never two at once: sorted by time, each start is followed by its end.
	run sh -c "sort -k2,2n picks | awk '{ print \$1 }' | uniq -c | awk '\$1 != 1'"
	assert_output ''
	run cat fifo.err causal.err total.err
	assert_output ''
}

# waits_for_lock PID: PID is blocked on a file lock (/proc/locks lists it with "->").
waits_for_lock() {
	grep -q -- "-> FLOCK .* $1 " /proc/locks
}

@test "a stop while a filter waits for the store's lock is a stop: exit 0, not one line" {
	signers
	for i in 1 2; do gossip-order -d a send ev "a$i"; done | gossip-merge -d s >/dev/null
	gossip-order -d s fifo >f.out 2>f.err &
	pid=$!
	FILTERS="$FILTERS $pid"
	wait_for 5 lines 2 f.out
	# Another process holds the lock while the store grows: the filter waits for it.
	flock -o s/store.lock sleep 60 </dev/null >/dev/null 2>&1 3>&- &
	holder=$!
	wait_for 5 sh -c '! flock -n s/store.lock true'
	printf x >>s/store
	wait_for 5 waits_for_lock "$pid"
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	FILTERS=
	pkill -P "$holder" sleep || true
	kill "$holder" 2>/dev/null || true
	[ "$rc" = 0 ] || fail "the filter stopped with exit $rc"
	run cat f.err
	assert_output ''
	run awk '{print $2}' f.out
	assert_output "$(printf '1\n2')"
}

# lie DIR SEQ LAMPORT DEPS: DIR's ordered event "ev" as a liar signs it (DEPS: Python, a
# list of [origin, seq]), on stdout.
lie() {
	"$PY" -c 'import cbor2, os, sys
sys.stdout.buffer.write(cbor2.dumps({1: int(sys.argv[1]), 2: int(sys.argv[2]), 3: sorted(eval(sys.argv[3])), 4: b"lie"}))' \
		"$2" "$3" "$4" >"$1.lie"
	gossip-send -b -d "$1" -f "$1.lie" event ev
}

@test "causal: a member's event that depends on what never comes is held only as long as a gap, and what depends on it goes after it" {
	signers
	# b's event depends on an origin that never sends, and a's on b's: every honest event
	# after it waited for good (a gap in seq was skipped, a dependency never).
	lie b 1 1 "[[os.urandom(32), 1]]" >b1
	gossip-merge -d a <b1 >/dev/null
	osend a a1
	osend a a2
	gossip-merge -d s </dev/null
	filter c s -e 1 -g 1 causal
	cat b1 a1 a2 | gossip-merge -d s >/dev/null
	wait_for 10 lines 3 c.out || fail "$(cat c.out c.err)"
	run awk '{print $1, $5}' c.out
	assert_output "$(printf 'b "lie"\na "a1"\na "a2"')"
	grep -q ": 1 ordered events an event depends on never came (older than the stores keep events): it goes without them" c.err ||
		fail "$(cat c.err)"
	# A dependency on its own origin is no ordered event: a gap in b's seq, skipped.
	lie b 2 2 "[[__import__('base64').b64decode(open('b/key.pub').read().split()[0]), 5]]" >b2
	lie b 3 3 "[]" >b3
	cat b2 b3 | gossip-merge -d s >/dev/null
	wait_for 10 lines 4 c.out || fail "$(cat c.out c.err)"
	run tail -n 1 c.out
	assert_output --partial 'b 3 3 ev'
	grep -q "b: 1 ordered events are gone" c.err || fail "$(cat c.err)"
	[ "$(grep -c "never came" c.err)" = 1 ] || fail "$(cat c.err)"
}

@test "a member's event with a clock near 2^62 does not use up the clock of the nodes that store it" {
	signers
	osend a a1
	lie b 1 $(((1 << 62) - 1)) "[]" >b1
	gossip-merge -d a <b1 >/dev/null
	for i in 2 3 4; do osend a "a$i"; done
	# The lie does not count: a's clock went on by one a send.
	run "$PY" -c 'import cbor2; print(cbor2.loads(open("a/order.state", "rb").read())[1])'
	[ "$output" = 4 ] || fail "a's clock: $output"
	# c, which has a's events and b's, goes on from a's.
	gossip-merge -d c <a/store >/dev/null
	osend c c1
	run "$PY" -c 'import cbor2; print(cbor2.loads(open("c/order.state", "rb").read())[1])'
	[ "$output" = 5 ] || fail "c's clock: $output"
}

@test "bad usage: exit 2, one line, nothing stored changed" {
	mknode a
	gossip-order -d a send ev x | gossip-merge -d a >/dev/null
	before=$(snapshot a)
	for args in "-d a" "-d a bogus" "-d a send" "-d a send a b c" "-d a send _order x" "-d a -g 0 fifo" \
		"-d a -g x fifo" "-d a -H -1 total" "-d a -j send ev x" "-d a -t nowhere send ev x" \
		"-d $T/none fifo" "-d a fifo ''" "-d a -d a fifo"; do
		eval "run --separate-stderr gossip-order $args </dev/null"
		assert_failure 2
		[ "${#stderr_lines[@]}" -eq 1 ] || fail "$args: want one line, got: $stderr"
		[[ ${stderr_lines[0]} == "gossip-order: "* ]] || fail "$args: $stderr"
	done
	[ "$(snapshot a)" = "$before" ] || fail "the state dir changed"
}

# Three loopback nodes, each with a total filter; each sends: every node prints one
# sequence, and every origin's events in order.
@test "loopback nodes: total order is the same on every node" {
	set -- $(freeports 3)
	local ports=("$@")
	for i in 1 2 3; do gossip-keygen -d "$T/n$i" -n "n$i" >"$T/n$i.pub"; done
	for i in 1 2 3; do cat "$T"/n*.pub >"$T/n$i/trusted"; done
	node_start n1 "$1"
	node_spawn n2 "$2" "$1"
	node_spawn n3 "$3" "$1"
	node_listens n2 n3 || return 1
	# Total order waits on the members in the table: start once every node knows all.
	for i in 1 2 3; do
		wait_for 20 eval '[ "$(gossip-peers -d n'$i' -j list | jq -r .state | grep -c alive)" = 3 ]'
	done
	for i in 1 2 3; do
		filter "t$i" "n$i" -H 0.2 total
		filter "f$i" "n$i" fifo
	done
	for k in 1 2 3 4 5; do
		for i in 1 2 3; do gossip-order -d "n$i" -t "udp://127.0.0.1:${ports[$((i - 1))]}" send ev "n$i-$k"; done
	done
	for i in 1 2 3; do wait_for 30 lines 15 "t$i.out"; done
	for i in 1 2 3; do wait_for 30 lines 15 "f$i.out"; run in_order "f$i.out"; assert_success; done
	run diff t1.out t2.out
	assert_success
	run diff t1.out t3.out
	assert_success
	run in_order t1.out
	assert_success
}

@test "ten hosts, 20% loss: fifo and causal lose nothing and keep order; total is the same everywhere" {
	why=$(net_ok) || skip "$why"
	NS=go$$
	net_up "$NS" 10 || fail "cannot set up the namespaces"
	for i in $(seq 1 10); do gossip-keygen -d "$T/n$i" -n "n$i" >"$T/n$i.pub"; done
	for i in $(seq 1 10); do cat "$T"/n*.pub >"$T/n$i/trusted"; done
	# Anti-entropy (-s, and each filter's -g when it sees a gap) starts processes, and each
	# total filter's heartbeat (-H) is a message every store takes: under the sanitizers
	# they come $(slow) times less often (helper.bash). So do the probes (-i): a probe's
	# ack window and the suspicion timeout are counted in intervals, and a node slowed
	# that much by the sanitizers, its acks lost one time in five, was once taken for dead.
	sync=$((2 * $(slow)))
	beat=$(slow_times 0.3)
	probe=$(slow_times 0.5)
	for i in $(seq 1 10); do
		ip netns exec "$NS-$i" gossip-node -d "$T/n$i" -n "n$i" -l "10.222.0.$i:7946" \
			$([ "$i" = 1 ] || echo -p 10.222.0.1:7946) -i "$probe" -S 8 -J "$JITTER" -k "$FANOUT" -s "$sync" \
			</dev/null >/dev/null 2>>"$T/n$i.log" 3>&- &
		eval "PGID_n$i=$!"
		NODES="$NODES n$i"
		# One after another: ten joins at once, on a loaded machine, are not what this tests.
		wait_for 10 test -s "$T/n$i/listening"
	done
	for i in $(seq 1 10); do
		wait_for 60 eval '[ "$(gossip-peers -d n'$i' -j list | jq -r .state | grep -c alive)" = 10 ]'
	done
	# Probes every 0.5 s ($(slow) times that under the sanitizers) with a long suspicion
	# (-S 8): 20% loss must not make a live member dead (total order drops what a member
	# declared dead sends after the order passed it).
	for i in $(seq 1 10); do
		net_nft "$NS" "$i" 'table inet loss {
			chain in { type filter hook input priority 0; iifname "eth0" numgen random mod 100 < 20 drop; }
		}'
	done
	for i in $(seq 1 10); do
		ip netns exec "$NS-$i" gossip-order -d "$T/n$i" -g "$sync" fifo >"f$i.out" 2>>"f$i.err" & FILTERS="$FILTERS $!"
		ip netns exec "$NS-$i" gossip-order -d "$T/n$i" -g "$sync" causal >"c$i.out" 2>>"c$i.err" & FILTERS="$FILTERS $!"
		ip netns exec "$NS-$i" gossip-order -d "$T/n$i" -g "$sync" -H "$beat" total >"t$i.out" 2>>"t$i.err" & FILTERS="$FILTERS $!"
	done
	for k in 1 2 3 4 5; do
		for i in $(seq 1 10); do
			ip netns exec "$NS-$i" gossip-order -d "$T/n$i" -t "udp://10.222.0.$i:7946" send ev "n$i-$k" 2>/dev/null || true
		done
	done
	# The last one of each may have been lost: its sender's anti-entropy brings it.
	for i in $(seq 1 10); do
		wait_for 120 lines 50 "f$i.out"
		wait_for 60 lines 50 "c$i.out"
	done
	for i in $(seq 1 10); do
		run in_order "f$i.out"
		assert_success
		run in_order "c$i.out"
		assert_success
		[ "$(sort -u "f$i.out" | wc -l)" = 50 ] || fail "n$i: fifo repeated or lost events"
	done
	# A member taken for dead anywhere (a false failure) shows in that filter's errors.
	run cat t*.err
	refute_output --partial "not delivered"
	wait_for 120 lines 50 t1.out
	for i in $(seq 2 10); do
		wait_for 120 lines 50 "t$i.out"
		run diff <(head -n 50 t1.out) <(head -n 50 "t$i.out")
		assert_success
	done
}
