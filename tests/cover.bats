#!/usr/bin/env bats
# Coverage without anti-entropy: twenty gossip-nodes on loopback (short probe interval,
# anti-entropy an hour away) list each other alive soon after the last start, and values
# published at one reach every node by rumor alone, along the trees rooted at their
# origin (gossip-peers(1), Rumor; gossip(7), THE NODE), a couple of sends a node each.
# Summaries are off (GOSSIP_SUMMARY): no repair brings a value that is slow to arrive on a
# loaded machine (and passes it on once more), so rumor is all that moves values.
load helper
load node

N=20

setup() {
	base_setup
	NODES=''
	node_ids $N
	read -ra PORTS <<<"$(freeports $N)"
	HB=0.3 JITTER=0.1 FANOUT=4 SYNC=3600
	export GOSSIP_SUMMARY=off
}

teardown() {
	nodes_stop
}

everywhere() {  # everywhere KEY: every node has KEY in its store
	local i
	for i in $(seq 1 $N); do gossip-merge -d "$T/n$i" get "$1" >/dev/null 2>&1 || return 1; done
}

sent() {  # sent: the rumor sends of values and events by every node's observe, summed
	# (membership traffic apart: a false suspicion on a loaded machine adds to it)
	cat "$T"/n*/stats/observe 2>/dev/null |
		awk '$1 == "forwarded" { s += $2 } $1 == "forwarded_membership" { s -= $2 } END { print s + 0 }'
}

sent_at_least() {  # sent_at_least COUNT: read again at each call (the stats lag a second)
	[ "$(sent)" -ge "$1" ]
}

@test "twenty nodes: membership converges quickly; values reach all by rumor, anti-entropy off" {
	node_start n1 "${PORTS[0]}"
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}"; done
	node_listens $NODES
	# Generous for a loaded 2-core machine (about 2 s when it is idle).
	wait_for 30 alive_everywhere
	sleep 1  # the stats files are written once a second
	before=$(sent)
	for r in 1 2 3 4 5; do
		gossip-send -d n3 -t "udp://127.0.0.1:${PORTS[2]}" set "cover$r" "value $r"
	done
	# By rumor alone: the next anti-entropy round is an hour away.
	for r in 1 2 3 4 5; do wait_for 10 everywhere "cover$r"; done
	for i in $(seq 1 $N); do
		[ "$(gossip-merge -d "$T/n$i" get cover5)" = "value 5" ] || fail "n$i: cover5 is not value 5"
	done
	# About two sends a node for each value (the trees), never the old fanout's 4 each;
	# membership traffic may add a few.
	# Each of the N - 1 others got each value from some member's send.
	wait_for 30 sent_at_least $((before + 5 * (N - 1)))
	sleep 1.5
	sends=$(($(sent) - before))
	echo "# $sends value sends for 5 values at $N nodes" >&3
	[ "$sends" -le $((5 * 3 * N)) ] || fail "$sends rumor sends for 5 values at $N nodes (want about $((5 * 2 * N)))"
	# Syncs: none ran (the anti-entropy interval is an hour).
	for i in $(seq 1 $N); do
		[ "$(awk '$1 == "syncs_done" { s += $2 } END { print s + 0 }' "$T/n$i"/stats/* 2>/dev/null)" = 0 ] ||
			fail "n$i ran a sync"
	done
}
