#!/usr/bin/env bats
# Anti-entropy as the node runs it: gossip-peers observe -e (gossip-node -s), every
# interval a push-pull sync with a member picked at random, in a child process that syncs
# with the observer's own store (no whole read of it, no process started), one at a time;
# what it stores is counted, and goes on as rumor. Summaries are off (GOSSIP_SUMMARY), so
# no repair runs: only anti-entropy can move a value stored in one store only.
load helper
load node

setup() {
	base_setup
	NODES=
	HB=0.2 JITTER=0.1 FANOUT=1 SYNC=3600
	export GOSSIP_SUMMARY=off
	node_ids 4  # n4 never runs: a trusted signer that is no member
	read -ra PORTS <<<"$(freeports 3)"
}

teardown() {
	nodes_stop
}

has() {  # has KEY NODES...: each node stores KEY
	local n key=$1
	shift
	for n in "$@"; do gossip-merge -d "$T/$n" get "$key" >/dev/null 2>&1 || return 1; done
}

counter() {  # counter NODE FILE NAME: a counter of DIR/stats/FILE (0 when none)
	awk -v k="$3" '$1 == k { s += $2 } END { print s + 0 }' "$T/$1/stats/$2" 2>/dev/null || echo 0
}

# only_in NODE SIGNER KEY VALUE: SIGNER's set of KEY, stored in NODE's store and sent nowhere
# (a running node passes on only the member records it finds in its store).
only_in() {
	gossip-send -d "$T/$2" set "$3" "$4" | gossip-merge -d "$T/$1" >/dev/null
}

syncs_at_least() { [ "$(counter "$1" observe syncs_done)" -ge "$2" ]; }
failed_at_least() { [ "$(counter "$1" observe syncs_failed)" -ge "$2" ]; }

# cluster: n1 and n3 without anti-entropy (an hour), n2 with it every 0.3 s.
cluster() {
	node_start n1 "${PORTS[0]}" ""
	node_start n3 "${PORTS[2]}" "${PORTS[0]}"
	node_start n2 "${PORTS[1]}" "${PORTS[0]}" -s 0.3
	wait_for 20 all_alive 3 || fail "not all alive: $(nodes_diag)"
}

@test "anti-entropy: a value in one store only reaches a node by its sync, is counted there, and goes on as rumor" {
	cluster
	only_in n1 n4 only-in-n1 v1
	wait_for 15 has only-in-n1 n2 n3 || fail "not everywhere: $(cat "$T"/n*.log)"
	[ "$(gossip-merge -d "$T/n2" get only-in-n1)" = v1 ]
	# n2 brought it (n1 and n3 run no anti-entropy), stored it as gossip-merge sync would
	# (counted in merge.others), and passed it on: its origin, n4, is no member, so the
	# rumor went to 2 members at random (gossip-peers(1), Rumor).
	# (observe writes its counters once a second at most.)
	wait_for 5 syncs_at_least n2 1 || fail "n2 ran no sync: $(cat "$T/n2/stats/observe")"
	[ "$(counter n2 merge.others stored)" -ge 1 ] || fail "$(cat "$T/n2/stats/"*)"
	[ "$(counter n2 rumor forwarded)" -ge 1 ] || fail "nothing passed on: $(cat "$T/n2/stats/"*)"
	for n in n1 n3; do
		[ "$(counter $n observe syncs_done)" = 0 ] || fail "$n ran a sync"
	done
	# gossip-node status counts the syncs.
	run gossip-node -j -d "$T/n2" status
	assert_success
	echo "$output" | jq -e '.syncs.done >= 1' >/dev/null || fail "$output"
	# A failed sync (the members gone) is counted, not logged at every round: now and
	# then anti-entropy picks a member believed down on purpose.
	node_kill n1
	node_kill n3
	wait_for 15 failed_at_least n2 2
	! grep -q "anti-entropy" "$T/n2.log" || fail "$(cat "$T/n2.log")"
}

@test "anti-entropy takes only what the trusted file allows as reloaded: a revoked signer's value is not brought, nothing else changes" {
	cluster
	# n2 stops trusting n4, and reloads (gossip-node reload: SIGHUP to its processes).
	grep -v ' n4$' "$T/n2/trusted" >"$T/n2/trusted.new"
	[ "$(wc -l <"$T/n2/trusted.new")" = 3 ] || fail "$(cat "$T/n2/trusted.new")"
	mv "$T/n2/trusted.new" "$T/n2/trusted"
	gossip-node -d "$T/n2" reload
	wait_for 10 grep -q "reloaded: 3 trusted signers" "$T/n2.log"
	only_in n1 n4 revoked v1
	only_in n1 n1 fine v2
	wait_for 15 has fine n2 || fail "fine never reached n2: $(cat "$T/n2.log")"
	before=$(gossip-merge -d "$T/n2" -j digest)
	wait_for 15 syncs_at_least n2 "$(($(counter n2 observe syncs_done) + 3))"
	[ "$(gossip-merge -d "$T/n2" -j digest)" = "$before" ] || fail "n2's store changed"
	# Not in the file at all (a revoked signer's messages are hidden from get and digest,
	# so those could not tell).
	! gossip-inspect -j "$T/n2/store" 2>/dev/null | grep -q "\"origin\":\"$(cut -d' ' -f1 "$T/n4.pub")\"" ||
		fail "n2 took a revoked signer's value by anti-entropy"
}

@test "observe -e, gossip-node -s: a bad interval is a usage error, one line, exit 2" {
	mknode a
	for e in 0 0.0009 x 86401 -1; do
		run --separate-stderr gossip-peers -d a -e "$e" observe </dev/null
		assert_failure 2
		assert_error gossip-peers "-e $e: want seconds, 0.001 to 86400"
	done
	for s in 0.0009 86401 86400.000001; do
		run --separate-stderr timeout 10 gossip-node -d "$T/fresh" -s "$s"
		assert_failure 2
		assert_error gossip-node "-s $s: want the anti-entropy interval in seconds, 0.001 to 86400"
		[ ! -e "$T/fresh" ] || fail "-s $s made the state directory"
	done
	for s in 0.001 86400; do
		run --separate-stderr gossip-node -d "$T/fresh" -s "$s" stop
		[ "$stderr" = "gossip-node: -s is for running a node, not for stop" ] || fail "-s $s: $stderr"
	done
}
