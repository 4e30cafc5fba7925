#!/usr/bin/env bats
# Repair (gossip(7), THE NODE): pings and acks carry a short summary of the sender's store,
# and a node whose summary differs from a member's for two probe intervals runs a
# push-pull sync with it. A miss is repaired within a few intervals, with anti-entropy an
# hour away; outsiders, liars and replays cannot make a node sync more than once an
# interval, nor again on a pair of summaries it synced on, nor change what it stores.
load helper
load node
load netns

I="$BATS_TEST_DIRNAME/interop.py"

setup() {
	base_setup
	NODES=
	NS=
	HB=0.3 JITTER=0.1 FANOUT=3 SYNC=3600
}

teardown() {
	nodes_stop
	[ -z "$NS" ] || net_down "$NS"
}

# ns_start I [SEED]: node nI in host I, joining host SEED (as faults.bats does).
ns_start() {
	local i=$1
	ip netns exec "$NS-$i" gossip-node -d "$T/n$i" -n "n$i" -l "10.222.0.$i:7946" \
		${2:+-p "10.222.0.$2:7946"} -i "$HB" -J "$JITTER" -k "$FANOUT" -s "$SYNC" \
		</dev/null >/dev/null 2>>"$T/n$i.log" 3>&- &
	eval "PGID_n$i=$!"
	NODES="$NODES n$i"
}

# publish nI KIND KEY VALUE: through the node's own port, from its host.
publish() {
	local i=${1#n}
	ip netns exec "$NS-$i" gossip-send -d "$T/$1" -t "udp://10.222.0.$i:7946" "$2" "$3" "$4"
}

has() {  # has KEY NODES...: each node stores KEY
	local n key=$1
	shift
	for n in "$@"; do gossip-merge -d "$T/$n" get "$key" >/dev/null 2>&1 || return 1; done
}

# logged_at DIR EVENT: when DIR/events logged the user event EVENT (ms since 1970): the
# moment the node stored it, whatever brought it.
logged_at() {
	$PY -c 'import cbor2, io, sys
data = open(sys.argv[1], "rb").read(); b = io.BytesIO(data); d = cbor2.CBORDecoder(b)
while b.tell() < len(data):
    r = d.decode()
    if len(r) == 3 and r[1] == "message":
        m = cbor2.loads(r[2]); m = m.value if hasattr(m, "value") else m
        if cbor2.loads(m[2]).get(4) == sys.argv[2]:
            print(r[0]); sys.exit(0)
sys.exit(1)' "$1/events" "$2" 2>/dev/null
}

repairs() {  # repairs NODE: the repairs it started (DIR/stats/observe, written once a second)
	awk '$1 == "repairs" { s += $2 } END { print s + 0 }' "$T/$1/stats/observe" 2>/dev/null || echo 0
}

# same_stores: every node's store has the same digest. Without summaries nothing repairs
# what the formation's rumors missed (a suspicion and its refutation under load, say), so
# the control first syncs each store with n1's through the files, twice round: both
# tests then start from equal stores, and the drop below is the only difference.
same_stores() {
	local i
	if [ "${GOSSIP_SUMMARY-}" = off ]; then
		for i in 2 3 4 5 2 3 4 5; do
			gossip-merge -d "$T/n$i" sync "gossip-merge -d $T/n1 serve" >/dev/null 2>&1 || return 1
		done
	fi
	[ "$(for i in $NODES; do gossip-merge -d "$T/$i" digest; done | sort -u | wc -l)" = 1 ]
}

# a_miss: five hosts, anti-entropy an hour away; host 4 drops all input while n1 publishes
# the event missed-event and the key missed-key, which the others then have (unless n4 was
# above one in both trees); the drop is lifted at $lifted (ms since 1970).
a_miss() {
	why=$(net_ok) || skip "$why"
	NS=gr$$
	net_up "$NS" 5 || fail "cannot set up the namespaces"
	node_ids 5
	ns_start 1
	wait_for 10 test -s "$T/n1/listening"
	for i in 2 3 4 5; do ns_start "$i" 1; done
	for i in 2 3 4 5; do wait_for 10 test -s "$T/n$i/listening"; done
	wait_for 30 sees 5 alive $NODES
	wait_for 10 same_stores
	net_nft "$NS" 4 'table inet deaf {
		chain in { type filter hook input priority 0; iifname "eth0" drop; }
	}'
	publish n1 event missed-event 1
	publish n1 set missed-key 1
	wait_for 10 has missed-key n1
	wait_for 10 eval 'logged_at "$T/n1" missed-event >/dev/null'
	# The rumor reaches the others in milliseconds; a member below n4 in both trees
	# misses it too (and, with no summaries, keeps missing it).
	wait_until 3 has missed-key n1 n2 n3 n5 || echo "# a member below n4 missed it too" >&3
	run gossip-merge -d "$T/n4" get missed-key
	assert_failure 1
	lifted=$(($(date +%s%N) / 1000000))
	ip netns exec "$NS-4" nft delete table inet deaf
}

@test "a host that missed a value (all its input dropped) has it within a few probe intervals, anti-entropy off" {
	a_miss
	# Anti-entropy is an hour away: only a repair brings it. Typically 3-4 intervals
	# (0.3 s each); the bound leaves room for a loaded machine.
	wait_for 15 has missed-key n1 n2 n3 n4 n5
	wait_for 5 eval 'logged_at "$T/n4" missed-event >/dev/null'
	at=$(logged_at "$T/n4" missed-event)
	took=$((at - lifted))
	echo "# the miss repaired $took ms after the drop was lifted (probe interval 300 ms)" >&3
	[ "$took" -lt 6000 ] || fail "repaired $took ms after the drop was lifted: want a few intervals"
	[ "$(gossip-merge -d "$T/n4" get missed-key)" = 1 ]
	total=0
	wait_for 5 eval 'total=0; for n in $NODES; do total=$((total + $(repairs "$n"))); done; [ "$total" -ge 1 ]' ||
		fail "no repair counted"
	# What the repair brought is logged (one line: only a repair that exchanged something),
	# by the sync's child once the sync has ended: after the value was stored at n4, and
	# after the repair was counted (at its start).
	logs=$(for n in $NODES; do echo "$T/$n.log"; done)
	# shellcheck disable=SC2086
	wait_for 5 grep -qh '^gossip-peers: repair: store summaries differ from .*: sent [0-9]* messages, received' $logs ||
		fail "no repair logged what it exchanged: $(cat $logs)"
	# Anti-entropy ran nowhere.
	for n in $NODES; do
		[ "$(stats_sum "$T/$n" syncs_done)" = 0 ] ||
			fail "$n ran an anti-entropy sync"
	done
}

@test "the control: with no summaries (GOSSIP_SUMMARY=off), the miss stays" {
	export GOSSIP_SUMMARY=off
	a_miss
	# Twenty intervals, five times what a repair takes above: still missing, and no
	# repair started anywhere (the counters are written once a second: 6 s is after).
	sleep 6
	run gossip-merge -d "$T/n4" get missed-key
	assert_failure 1
	for n in $NODES; do [ "$(repairs "$n")" = 0 ] || fail "$n repaired"; done
}

# A cluster of three on loopback, each listing all alive.
three() {
	node_ids 3
	read -ra PORTS <<<"$(freeports 4)"
	node_start n1 "${PORTS[0]}"
	node_spawn n2 "${PORTS[1]}" "${PORTS[0]}"
	node_spawn n3 "${PORTS[2]}" "${PORTS[0]}"
	node_listens n2 n3
	N=3
	wait_for 30 alive_everywhere
}

# ping_by KEYDIR VALUEHEX: a ping signed with KEYDIR's key, its value VALUEHEX.
ping_by() {
	$PY "$I" probe "$(base64 -d <"$1/key" | od -An -tx1 | tr -d ' \n')" 4 "$2"
}

# send_to PORT FILE COUNT: FILE's bytes as COUNT datagrams to 127.0.0.1:PORT, one every
# 50 ms (paced, so that they span intervals).
send_to() {
	for _ in $(seq 1 "$3"); do
		socat -u "OPEN:$2" "UDP-SENDTO:127.0.0.1:$1"
		sleep 0.05
	done
}

data_rows() {  # data_rows NODE: what it stores under keys that are not a member's own
	gossip-merge -d "$T/$1" -j dump | jq -c 'select(.key | startswith("_") | not)' | sort
}

@test "an outsider's pings with a summary, or a member's ping replayed, start no repair" {
	three
	gossip-keygen -d "$T/outsider" -n outsider >/dev/null
	gossip-send -d "$T/n2" -t "udp://127.0.0.1:${PORTS[1]}" set kept 1
	wait_for 10 eval 'gossip-merge -d "$T/n1" get kept >/dev/null 2>&1'
	data_rows n1 >before
	# A summary no store has, after a fresh nonce.
	ping_by "$T/outsider" "0102030405060708ffff" >outsider.ping
	send_to "${PORTS[0]}" outsider.ping 40
	# n2's key (a member's, trusted): one ping, replayed for six intervals. gossip-listen's
	# duplicate filter drops the copies before the prober sees them: this shows only
	# that filter. The prober's own rule (summaries from acks to its own pings only, so a
	# replayed ping, or a member's fresh one, starts nothing) is shown in t-swim.
	ping_by "$T/n2" "1112131415161718ffff" >replay.ping
	send_to "${PORTS[0]}" replay.ping 40
	# A ping made the old way (the nonce alone) and one with a summary are both a
	# member's probe, never a rejection.
	ping_by "$T/n2" "2122232425262728" >old.ping
	send_to "${PORTS[0]}" old.ping 1
	# The outsider's were refused as from an untrusted signer; n2's were not: n1's
	# listener counted none malformed (its statistics, written once a second).
	wait_for 10 grep -q "untrusted" "$T/n1.log"
	wait_for 5 grep -q '^refused_untrusted [1-9]' "$T/n1/stats/listen"
	run grep '^refused_malformed ' "$T/n1/stats/listen"
	[ -z "$output" ] || [ "$output" = "refused_malformed 0" ] || fail "n1 refused some as malformed: $output"
	[ "$(repairs n1)" = 0 ] || fail "n1 repaired: $(grep repair "$T/n1.log")"
	data_rows n1 >after
	diff before after || fail "n1's data changed"
}

@test "a member whose summary never matches: synced with once per pair of summaries, nothing stored changes" {
	node_ids 3
	read -ra PORTS <<<"$(freeports 3)"
	node_start n1 "${PORTS[0]}"
	node_spawn n2 "${PORTS[1]}" "${PORTS[0]}"
	GOSSIP_SUMMARY=ffff node_spawn n3 "${PORTS[2]}" "${PORTS[0]}"
	node_listens n2 n3
	N=3
	wait_for 30 alive_everywhere
	gossip-send -d "$T/n2" -t "udp://127.0.0.1:${PORTS[1]}" set kept 1
	wait_for 10 eval 'gossip-merge -d "$T/n1" get kept >/dev/null 2>&1'
	data_rows n1 >before
	# The liar is repaired with once (a push-pull sync that finds the stores equal and
	# exchanges nothing, so it logs nothing), and not again on that pair of summaries:
	# twenty intervals on, still one (the pair is remembered until a side changes).
	wait_for 20 eval '[ "$(repairs n1)" -ge 1 ]'
	sleep 6
	r=$(repairs n1)
	echo "# n1 synced with the liar $r times in 6 s and more (interval 300 ms)" >&3
	[ "$r" -le 2 ] || fail "$r repairs with the liar: want one per pair of summaries"
	# None with n2 (its summary matches), and none brought anything.
	run grep '^gossip-peers: repair: store summaries differ' "$T/n1.log"
	refute_output --partial "from n2's"
	refute_output --regexp '[1-9][0-9]* new here'
	data_rows n1 >after
	diff before after || fail "n1's data changed"
	# The liar's pings and acks still count as its: it is alive everywhere.
	alive_everywhere || fail "a member lying about its summary is not alive everywhere"
}

@test "GOSSIP_SUMMARY: a bad value is an error, exit 2" {
	mknode a
	GOSSIP_SUMMARY=xyz run gossip-peers -d a -p observe </dev/null
	assert_failure 2
	assert_output --partial "GOSSIP_SUMMARY: xyz: want off or 2 bytes in hex"
}
