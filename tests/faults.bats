#!/usr/bin/env bats
# Faults: ten gossip-node hosts, each in its own network namespace on one bridge
# (tests/netns.bash), with nftables dropping packets: 20% loss everywhere, then a
# partition into two halves and its healing. Every node must end converged.
load helper
load node
load netns

setup() {
	base_setup
	why=$(net_ok) || skip "$why"
	NS=gf$$
	NODES=
	net_up "$NS" 10 || fail "cannot set up the namespaces"
	node_ids 10
}

teardown() {
	nodes_stop
	net_down "${NS:-none}"
}

# ns_spawn I [SEED]: start node nI in host I, joining host SEED; return at once.
ns_spawn() {
	local i=$1
	ip netns exec "$NS-$i" gossip-node -d "$T/n$i" -n "n$i" -l "10.222.0.$i:7946" \
		${2:+-p "10.222.0.$2:7946"} -i "$HB" -J "$JITTER" -k "$FANOUT" -s "$SYNC" \
		</dev/null >/dev/null 2>>"$T/n$i.log" 3>&- &
	eval "PGID_n$i=$!"   # teardown stops it, whatever happens
	NODES="$NODES n$i"
}

# ns_listens I: wait until node nI listens.
ns_listens() {
	wait_for 20 test -s "$T/n$1/listening" || fail "n$1 did not start: $(cat "$T/n$1.log")"
}

# cluster: n1, then the nine others side by side, joining through it.
cluster() {
	ns_spawn 1
	ns_listens 1
	for i in $(seq 2 10); do ns_spawn "$i" 1; done
	for i in $(seq 2 10); do ns_listens "$i"; done
}

# publish nI KEY VALUE: through the node's own port, from its host, as gossip-node(1) says
# to publish: the node stores it and passes it on.
publish() {
	local i=${1#n}
	ip netns exec "$NS-$i" gossip-send -d "$T/$1" -t "udp://10.222.0.$i:7946" set "$2" "$3"
}

# converged KEY...: every store holds every KEY, the same message for each (origin, version,
# value) everywhere. Not the whole digest: under loss, members' records change every few
# seconds (each refuted suspicion is a new incarnation), so whole stores agree only by luck
# of timing; the members' states are checked on their own (sees).
# A dump line is the message (origin, name, type, key, value, version, time, in that order),
# the same at every node that holds it; grep picks the keys' lines (jq, at 25 ms of CPU
# each, ten a poll, slowed the nodes it waited for).
converged() {
	local n k
	for k; do printf '"key":"%s",\n' "$k"; done >keys.want
	for n in $NODES; do
		gossip-merge -d "$T/$n" -j dump 2>/dev/null | grep -F -f keys.want | sort >"rows.$n" || return 1
		[ "$(wc -l <"rows.$n")" = $# ] || return 1
	done
	for n in $NODES; do cat "rows.$n"; done | sort -u >rows
	[ "$(wc -l <rows)" = $# ]
}

# same_digest: every store has one Merkle digest (whole stores agree; without loss).
same_digest() {
	local n
	for n in $NODES; do gossip-merge -d "$T/$n" digest 2>/dev/null || return 1; done | sort -u >digests
	[ "$(wc -l <digests)" = 1 ]
}

report() {
	for n in $NODES; do
		echo "== $n $(gossip-merge -d "$T/$n" digest) $(gossip-merge -d "$T/$n" keys | tr '\n' ' ')"
		gossip-peers -d "$T/$n" list | sed 1d | awk '{print "   " $1, $3}' | tr '\n' ' '
		echo
	done
}

@test "20% packet loss on every host: every node still converges" {
	for i in $(seq 1 10); do
		net_nft "$NS" "$i" 'table inet loss {
			chain in {
				type filter hook input priority 0;
				iifname "eth0" counter;
				iifname "eth0" numgen random mod 100 < 20 counter drop;
			}
		}'
	done
	# Loss is real: a thousand datagrams from host 1 to host 2 and fifty end marks after
	# them (on one link, in order: once one is in, every x that made it is). Host 2's rule
	# counts what it saw and what it dropped: about a fifth. What arrives is shown, not
	# judged: a receiving socket starved of CPU drops more on its own.
	ip netns exec "$NS-2" socat -u UDP-RECV:9999,bind=10.222.0.2 OPEN:got,creat,append & sink=$!
	wait_for 5 eval 'ip netns exec "$NS-2" ss -Hlun | grep -q "10.222.0.2:9999 "'
	seq 1 1000 | sed "s/.*/x/" | ip netns exec "$NS-1" socat -b2 -u - UDP-SENDTO:10.222.0.2:9999
	seq 1 50 | sed "s/.*/e/" | ip netns exec "$NS-1" socat -b2 -u - UDP-SENDTO:10.222.0.2:9999
	wait_for 5 grep -q '^e$' got
	kill $sink 2>/dev/null || true
	got=$(grep -c '^x$' got)
	ip netns exec "$NS-2" nft list chain inet loss in | sed -n 's/.*counter packets \([0-9]*\).*/\1/p' >counted
	seen=$(sed -n 1p counted) dropped=$(sed -n 2p counted)
	echo "# 1050 datagrams sent: host 2's rule saw $seen packets and dropped $dropped; $got of 1000 x arrived" >&3
	[ "$seen" -ge 1050 ] || fail "host 2's rule saw $seen packets of the 1050 sent"
	awk -v d="$dropped" -v s="$seen" 'BEGIN { exit !(d > 0.13 * s && d < 0.27 * s) }' ||
		fail "host 2's rule dropped $dropped of $seen packets: want about a fifth"
	[ "$got" -gt 0 ] && [ "$got" -le $((1050 - dropped)) ] || fail "$got of 1000 arrived past $dropped drops"

	cluster
	# The members find each other through the loss first; then every value must reach all.
	wait_for 60 sees 10 alive $NODES || fail "$(report)"
	t0=$(date +%s)
	for i in $(seq 1 30); do publish "n$((i % 10 + 1))" "lossy$i" "$i"; done
	keys=$(seq 1 30 | sed 's/^/lossy/')
	# shellcheck disable=SC2086
	# Typically 3-10 s; the bound leaves room for a loaded machine (and sanitizers).
	wait_for 120 converged $keys || fail "$(report)"
	wait_for 60 sees 10 alive $NODES || fail "$(report)"
	echo "# converged under 20% loss $(($(date +%s) - t0)) s after the first publish" >&3
}

@test "a partition into two halves, then healed: every node converged" {
	cluster
	wait_for 30 sees 10 alive $NODES || fail "$(report)"
	# Hosts 1-5 and 6-10 no longer hear each other, in both directions.
	for i in $(seq 1 10); do
		if [ "$i" -le 5 ]; then other=10.222.0.6-10.222.0.10; else other=10.222.0.1-10.222.0.5; fi
		net_nft "$NS" "$i" "table inet part {
			chain in { type filter hook input priority 0; ip saddr $other drop; }
			chain out { type filter hook output priority 0; ip daddr $other drop; }
		}"
	done
	publish n2 left-side 1
	publish n8 right-side 1
	# Each half declares the other dead, and says it looks like a partition.
	wait_for 30 sees 5 dead n1 n2 n3 n4 n5 n6 n7 n8 n9 n10 || fail "$(report)"
	grep -q partition-suspected n1.log
	run gossip-merge -d "$T/n1" get right-side
	assert_failure 1
	run gossip-merge -d "$T/n9" get left-side
	assert_failure 1

	for i in $(seq 1 10); do ip netns exec "$NS-$i" nft delete table inet part; done
	t0=$(date +%s)
	wait_for 60 converged left-side right-side || fail "$(report)"
	wait_for 60 sees 10 alive $NODES || fail "$(report)"
	wait_for 60 same_digest || fail "$(report)"
	echo "# healed: converged and all alive $(($(date +%s) - t0)) s after the partition ended" >&3
}
