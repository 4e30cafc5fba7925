#!/usr/bin/env bats
# A node's start: its announcement (this start's member record) and its join are
# gossip-peers observe's (--announce, --join), with the store observe keeps open, so that
# a start runs neither gossip-merge on the announcement nor gossip-peers join, each of
# which read the whole store. What the start must still do: store and send the
# announcement, join through the seeds until one answers, say each new reason for failing
# once; and refuse what is not this node's to store.
load helper
load node

setup() {
	base_setup
	NODES=
	node_ids 2
	read -ra PORTS <<<"$(freeports 2)"
}

teardown() {
	nodes_stop
}

# shims: gossip-merge and gossip-peers that log their arguments (to $T/ran) and run the
# real ones, in $T/shim, first on PATH from here.
shims() {
	local p real
	mkdir -p "$T/shim"
	for p in gossip-merge gossip-peers; do
		real=$(command -v "$p")
		printf '#!/bin/sh\nprintf "%%s\\n" "%s $*" >>"%s/ran"\nexec "%s" "$@"\n' "$p" "$T" "$real" >"$T/shim/$p"
		chmod +x "$T/shim/$p"
	done
	PATH="$T/shim:$PATH"
}

no_table() {  # a snapshot without DIR/peers (observe saves its table when it ends)
	awk '/^\.\/peers / { skip = 2 } skip > 0 { skip--; next } { print }'
}

no_children() {  # no_children PID
	[ -z "$(cat "/proc/$1/task/"*/children 2>/dev/null | tr -d ' \n')" ]
}

has_member() {  # has_member NODE: NODE's store holds a member record (its own, here)
	[ -n "$(gossip-merge -d "$T/$1" get _member 2>/dev/null)" ]
}

@test "a start: the announcement and the join go through observe; no gossip-merge of it, no gossip-peers join" {
	shims
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 10 all_alive 2 || fail "$(nodes_diag)"
	# Each start stored its own announcement (counted beside the pipeline's merge) and
	# removed the file.
	for n in n1 n2; do
		[ ! -e "$T/$n/announce" ] || fail "$n/announce is left"
		wait_for 3 test -s "$T/$n/stats/merge.others"
		grep -q '^stored [1-9]' "$T/$n/stats/merge.others" || fail "$(cat "$T/$n/stats/merge.others")"
	done
	# What ran: the pipeline's merge, observe, watch, announce signing, the status
	# questions above; nothing that opens the store for the announcement or the join.
	run grep -E '^gossip-peers .* join( |$)|^gossip-merge -d [^ ]*$|^gossip-peers .* pick$' "$T/ran"
	[ "$status" = 1 ] || fail "ran: $output"
	grep -q -- '--announce .* --join tcp://127.0.0.1:'"${PORTS[0]}"' --leave .*/n2/leave observe$' "$T/ran" ||
		fail "$(cat "$T/ran")"
	# A restart announces again: the member that saw it leave sees it alive at once
	# (told directly, the restarted node having no seed).
	node_kill n1 TERM
	NODES=" n2"
	wait_for 10 eval '[ "$(state_of n2 n1)" = left ]'
	# Observe left (--leave), before the processes ended: no gossip-peers leave after.
	run grep -E '^gossip-peers .* leave$' "$T/ran"
	[ "$status" = 1 ] || fail "ran: $output"
	node_start n1 "${PORTS[0]}" ""
	wait_for 10 eval '[ "$(state_of n2 n1)" = alive ]' || fail "$(nodes_diag)"
}

@test "--join: a seed that is not there yet is one line in the log however often it is tried; joined once it comes" {
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	# Tried every interval (0.2 s): a dozen attempts, one line.
	sleep "$(intervals 12)"
	run grep -c "tcp://127.0.0.1:${PORTS[0]}: no answer" n2.log
	[ "$output" = 1 ] || fail "$(cat n2.log)"
	node_start n1 "${PORTS[0]}" ""
	wait_for 10 all_alive 2 || fail "$(nodes_diag)"
	has_member n1 && has_member n2
	run grep -c "no answer" n2.log
	[ "$output" = 1 ] || fail "$(cat n2.log)"
}

@test "--announce: not a file, junk, or a record signed by an outsider: one line each, nothing stored, observe runs on" {
	# (each file given once: a file read is removed, refused or not)
	mknode out
	gossip-peers -d "$T/out" announce -a udp://127.0.0.1:9 >forged
	gossip-send -d "$T/n1" set k v | gossip-merge -d "$T/n1" >/dev/null
	printf 'not cbor at all' >junk
	before=$(snapshot "$T/n1")
	mkfifo fifo
	run --separate-stderr timeout 5 gossip-peers -d "$T/n1" --announce fifo observe </dev/null
	[ "$status" = 0 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "--announce: fifo: not a regular file"
	head -c 3000000 /dev/zero >big
	run --separate-stderr gossip-peers -d "$T/n1" --announce big observe </dev/null
	[ "$status" = 0 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "--announce: "
	[[ "$stderr" == *big* && "$stderr" != *"No such file"* ]] || fail "$stderr"
	printf '\377\377' >bad
	run --separate-stderr gossip-peers -d "$T/n1" --announce bad observe </dev/null
	[ "$status" = 0 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "--announce: bad: byte 0: not a CBOR sequence of signed messages"
	# CBOR (a text string), but no message: the merge's own line.
	run --separate-stderr gossip-peers -d "$T/n1" --announce junk observe </dev/null
	[ "$status" = 0 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "junk: offset 0: not a COSE_Sign1"
	run --separate-stderr gossip-peers -d "$T/n1" --announce forged observe </dev/null
	[ "$status" = 0 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "forged: offset 0: "
	[[ "$stderr" == *"trusted"* ]] || fail "$stderr"
	# Read (and refused): removed, as gossip-node waits for; not read: left.
	[ ! -e forged ] && [ ! -e junk ] && [ ! -e bad ] || fail "a file read was left"
	[ -e big ] && [ -e fifo ] || fail "a file not read was removed"
	# The table observe saves at its end may change (peers); the store may not.
	diff <(echo "$before" | no_table) <(snapshot "$T/n1" | no_table) || fail "changed"
	! has_member n1 || fail "a member record was stored"
	[ "$(gossip-merge -d "$T/n1" get k)" = v ]
	# Its own announcement is stored and the file removed.
	gossip-peers -d "$T/n1" announce -a udp://127.0.0.1:9 >mine
	run --separate-stderr gossip-peers -d "$T/n1" --announce mine observe </dev/null
	[ "$status" = 0 ] && [ -z "$stderr" ] || fail "exit $status: $stderr"
	[ ! -e mine ] || fail "mine is left"
	has_member n1
}

@test "--announce, --join, --leave, --second-tree: observe's only; an empty value is a usage error, one line, exit 2" {
	run --separate-stderr gossip-peers -d "$T/n1" --announce "" observe
	[ "$status" = 2 ]
	assert_error gossip-peers "--announce: want the file gossip-peers announce wrote"
	run --separate-stderr gossip-peers -d "$T/n1" --join "" observe
	[ "$status" = 2 ]
	assert_error gossip-peers "--join: want a seed's address, as gossip-peers join takes it"
	run --separate-stderr gossip-peers -d "$T/n1" --announce x list
	[ "$status" = 2 ]
	run --separate-stderr gossip-peers -d "$T/n1" --join tcp://127.0.0.1:9 list
	[ "$status" = 2 ]
	run --separate-stderr gossip-peers -d "$T/n1" -p --leave "" observe
	[ "$status" = 2 ]
	assert_error gossip-peers "--leave: want the file whose coming makes observe leave the cluster"
	# Without the prober there is no key to sign the leave with, nor refutation to stop.
	run --separate-stderr gossip-peers -d "$T/n1" --leave x observe
	[ "$status" = 2 ]
	assert_error gossip-peers "observe --leave needs -p: the prober signs the leave and stops refuting it"
	run --separate-stderr gossip-peers -d "$T/n1" --leave x list
	[ "$status" = 2 ]
	# --second-tree: always or doubt, with -r (observe's and rumor's).
	run --separate-stderr gossip-peers -d "$T/n1" -p -r 3 --second-tree lazy observe
	[ "$status" = 2 ]
	assert_error gossip-peers "--second-tree lazy: want always (both trees send every message) or doubt (the second only below a suspect)"
	run --separate-stderr gossip-peers -d "$T/n1" -p --second-tree doubt observe
	[ "$status" = 2 ]
	assert_error gossip-peers "--second-tree needs -r: it says how the rumor's second tree sends"
	run --separate-stderr gossip-peers -d "$T/n1" -r 3 --second-tree doubt list
	[ "$status" = 2 ]
	[ ! -e "$T/n1/store" ] || fail "something was stored"
}

@test "--announce: a file not there yet is waited for (gossip-node moves it there once its port is bound)" {
	gossip-peers -d "$T/n1" announce -a udp://127.0.0.1:9 >mine
	{ sleep 3; } | gossip-peers -d "$T/n1" -i 0.1 --announce "$T/later" observe 2>err &
	pid=$!
	sleep 0.5
	! has_member n1 || fail "stored before the file was there"
	mv mine later
	wait_for 2 has_member n1
	[ ! -e later ] || fail "later is left"
	wait "$pid"
	[ ! -s err ] || fail "$(cat err)"
}

@test "a start that cannot bind its port announces nothing: the members see no join, nothing is stored" {
	node_start n2 "${PORTS[1]}" ""
	node_start n1 "${PORTS[0]}" "${PORTS[1]}"
	wait_for 10 all_alive 2 || fail "$(nodes_diag)"
	node_kill n1 TERM
	NODES=" n2"
	wait_for 10 eval '[ "$(state_of n2 n1)" = left ]'
	stored=$(sha256sum <"$T/n1/store")
	# Its port taken: the start fails before it says it listens.
	/usr/bin/python3 -c 'import socket,sys,time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", int(sys.argv[1])))
time.sleep(8)' "${PORTS[0]}" &
	holder=$!
	sleep 0.3
	run gossip-node -d "$T/n1" -n n1 -l "127.0.0.1:${PORTS[0]}" -p "127.0.0.1:${PORTS[1]}" -i "$HB" </dev/null
	kill "$holder"
	wait "$holder" 2>/dev/null || true
	[ "$status" = 2 ] || fail "exit $status: $output"
	[[ "$output" == *"cannot listen on 127.0.0.1:${PORTS[0]}"* ]] || fail "$output"
	[ "$(sha256sum <"$T/n1/store")" = "$stored" ] || fail "n1 stored something"
	[ ! -e "$T/n1/announce" ] && [ ! -e "$T/n1/announce.new" ] || fail "an announcement is left"
	# Two probe intervals and more: n2 heard of no new incarnation.
	sleep "$(intervals 5)"
	[ "$(state_of n2 n1)" = left ] || fail "n2 sees n1 $(state_of n2 n1): $(cat n2.log)"
	run ! grep -q "member-join n1" <(sed -n '/member-leave n1/,$p' n2.log)
}

@test "a restart whose saved table lists a member gone elsewhere still joins through the seed given" {
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 10 all_alive 2 || fail "$(nodes_diag)"
	# n2 leaves (n1 sees it left, and will not look for it), then n1 stops (n2's table,
	# saved, still lists it alive) and comes back on another port.
	node_kill n2 TERM
	wait_for 10 eval '[ "$(state_of n1 n2)" = left ]'
	node_kill n1 9
	NODES=
	read -r other <<<"$(freeports 1)"
	node_start n1 "$other" ""
	node_start n2 "${PORTS[1]}" "$other"
	wait_for 10 all_alive 2 || fail "$(nodes_diag)"
}

@test "a join whose sync brings a flood of refusals (a signer this node does not trust) ends, and the node is in" {
	mknode out
	cat out.pub >>"$T/n1/trusted"
	seq 1 1500 | sed 's/^/set k/; s/$/ v/' | gossip-send -d "$T/out" batch | gossip-merge -d "$T/n1" >/dev/null
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 15 all_alive 2 || fail "$(nodes_diag)"
	# The attempt ended (its 150 kB of lines never filled a pipe it waits on): observe is
	# left with no child now and then (anti-entropy's come and go).
	pid=$(dir_procs "$T/n2" | awk '/gossip-peers .* observe$/ { print $1; exit }')
	[ -n "$pid" ] || fail "no observe"
	wait_for 10 no_children "$pid"
	# A join that succeeded says nothing of the refusals. A sync after it (a repair: n1's
	# summary counts what n2 refuses, on a slow machine) says ten at most, then a count
	# (none when it was cut short after ten at most).
	lines=$(grep -c 'untrusted' n2.log || true)
	counts=$(grep -c 'more messages refused, not said one by one' n2.log || true)
	[ "$lines" -le $((10 * (counts + 1))) ] || fail "$lines refusal lines, $counts counts: $(grep -v untrusted n2.log)"
}

@test "a restart after a clean stop: the last stop's leave is not logged as this running node's member-leave" {
	HB=0.3 JITTER=0.1 FANOUT=3 SYNC=3600
	self_alive() { gossip-peers -d n1 -j list | jq -e 'select(.self) | .state == "alive"' >/dev/null; }
	node_start n1 "${PORTS[0]}"
	wait_for 10 self_alive  # in the table observe saves when it ends
	run gossip-node -d n1 stop
	assert_success
	node_start n1 "${PORTS[0]}"
	# Its record replaced the leave: it lists itself alive, and nothing says it left.
	wait_for 10 self_alive
	sleep 0.5  # observe's looks at the store (every 100 ms) have come and gone
	! grep -q 'member-leave n1' n1.log || fail "a member-leave of its own: $(cat n1.log)"
	run timeout 2 gossip-peers -d n1 watch -A </dev/null
	assert_output --partial 'member-join n1'  # the first start's
	refute_output --partial 'member-leave n1'
}
