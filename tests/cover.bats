#!/usr/bin/env bats
# Coverage without anti-entropy: twenty gossip-nodes on loopback (short probe interval,
# anti-entropy an hour away) list each other alive soon after the last start, and values
# published at one reach every node by rumor alone, along the trees rooted at their
# origin (gossip-peers(1), Rumor; gossip(7), THE NODE), about one send a node each (two
# with -B always).
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

changes() {  # changes: the membership events every node has logged so far, summed
	"$PY" - "$T"/n*/events <<'PY'
import cbor2, io, os, sys
n = 0
for path in sys.argv[1:]:
    data = open(path, "rb").read() if os.path.exists(path) else b""
    f = io.BytesIO(data)
    dec = cbor2.CBORDecoder(f)
    while f.tell() < len(data):
        try:
            dec.decode()
        except Exception:
            break
        n += 1
print(n)
PY
}

settle() {  # settle: two probe intervals and a little, after which the tables are settled
	sleep "$(awk -v hb="$HB" 'BEGIN { print 2 * hb + 0.2 }')"
}

@test "twenty nodes: membership converges quickly; values reach all by rumor, anti-entropy off (-B always)" {
	node_start n1 "${PORTS[0]}" "" -B always
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}" -B always; done
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
	# About two sends a node for each value (both trees eager), never the old fanout's 4
	# each; membership traffic may add a few.
	wait_for 30 sent_at_least $((before + 5 * 3 * (N - 1) / 2))
	sleep 1.5
	sends=$(($(sent) - before))
	echo "# $sends value sends for 5 values at $N nodes (-B always)" >&3
	[ "$sends" -le $((5 * 3 * N)) ] || fail "$sends rumor sends for 5 values at $N nodes (want about $((5 * 2 * N)))"
	# Syncs: none ran (the anti-entropy interval is an hour).
	for i in $(seq 1 $N); do
		[ "$(stats_sum "$T/n$i" syncs_done)" = 0 ] ||
			fail "n$i ran a sync"
	done
}

@test "by default (-B doubt) values reach all by rumor with about one send a node each" {
	node_start n1 "${PORTS[0]}"
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}"; done
	node_listens $NODES
	wait_for 30 alive_everywhere
	# One send a node for each value (N - 1 in all) on a settled cluster. A state change
	# (a false suspicion on a loaded machine) makes every table send along both trees for
	# two intervals: a measurement it overlapped is made again, three times at most.
	for attempt in 1 2 3; do
		c0=$(changes)
		settle
		before=$(sent)
		for r in 1 2 3 4 5; do
			gossip-send -d n3 -t "udp://127.0.0.1:${PORTS[2]}" set "lazy$attempt.$r" "value $r"
		done
		for r in 1 2 3 4 5; do wait_for 10 everywhere "lazy$attempt.$r"; done
		wait_for 30 sent_at_least $((before + 5 * (N - 1)))
		sleep 1.5  # the stats files are written once a second
		sends=$(($(sent) - before))
		[ "$sends" -gt $((5 * 3 * N / 2)) ] && [ "$(changes)" != "$c0" ] || break
		echo "# attempt $attempt: $sends sends, with membership changes meanwhile; again" >&3
	done
	echo "# $sends value sends for 5 values at $N nodes (-B doubt)" >&3
	# The eager trees send about 2N.
	[ "$sends" -le $((5 * 3 * N / 2)) ] || fail "$sends rumor sends for 5 values at $N nodes (want about $((5 * (N - 1))))"
}

# interior ORIGIN: a member with children in the first rumor tree rooted at ORIGIN (k =
# FANOUT; gossip.h, gossip_peers_rumor, by the same hash, from the key files) that is above
# none of its subtree in the second tree: failed there, it cuts them off from the first
# tree only, and the eager second tree would reach every one of them.
interior() {
	"$PY" - "$1" "$FANOUT" "$T"/n*/key.pub <<'PY'
import base64, hashlib, sys
def key(path):
    k, name = open(path).read().split()
    return base64.b64decode(k), name
origin, _ = key(sys.argv[1])
k = int(sys.argv[2])
members = [key(p) for p in sys.argv[3:]]
members = [(pk, name) for pk, name in members if pk != origin]
def order(tree):  # rank (1 first; the origin is 0) of each member's name
    ranked = sorted((hashlib.blake2b(bytes([tree]) + origin + pk, digest_size=8).digest(), pk, name)
                    for pk, name in members)
    return {name: i + 1 for i, (_, _, name) in enumerate(ranked)}
rank = [order(0), order(1)]
def below(tree, top, name):  # name lies in top's subtree in tree
    r, t = rank[tree][name], rank[tree][top]
    while r > t:
        r = (r - 1) // k
    return r == t
for top in sorted(rank[0], key=rank[0].get):
    sub = [n for n in rank[0] if n != top and below(0, top, n)]
    if sub and not any(below(1, top, n) for n in sub):
        print(top)
        break
PY
}

suspect_to() {  # suspect_to NAME OBSERVER...: each OBSERVER lists NAME suspect
	local name=$1 o
	shift
	for o in "$@"; do [ "$(state_of "$o" "$name")" = suspect ] || return 1; done
}

@test "-B doubt: below a member every node holds suspect, the second tree still sends" {
	# Suspicion lasts 100 * log10(N + 1) intervals here, so that the stopped member stays
	# suspect (in the trees) and is not declared dead while the values go out.
	node_start n1 "${PORTS[0]}" "" -B doubt -S 100
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}" -B doubt -S 100; done
	node_listens $NODES
	wait_for 30 alive_everywhere
	# A member with a subtree in the first tree for n2's values (and none of it below it in
	# the second): stopped (SIGSTOP), it passes nothing on, and without the second tree its
	# subtree would miss every value.
	victim=$(interior "$T/n2/key.pub")
	[ -n "$victim" ] || fail "no member fit in the trees from n2"
	node_kill "$victim" STOP
	others=$(for i in $(seq 1 $N); do [ "n$i" = "$victim" ] || echo "n$i"; done)
	wait_for 30 suspect_to "$victim" $others
	# Two intervals on, the tables are settled again (until then the second tree sends
	# everything, whatever the doubt): what goes out now goes lazily.
	settle
	for r in 1 2 3; do
		gossip-send -d n2 -t "udp://127.0.0.1:${PORTS[1]}" set "doubt$r" "value $r"
	done
	for r in 1 2 3; do
		for o in $others; do wait_for 10 gossip-merge -d "$T/$o" get "doubt$r"; done
	done
	# Still suspect, not dead: the trees stayed as they were, and the second tree is what
	# reached the victim's subtree.
	suspect_to "$victim" $others || fail "$victim is no longer suspect everywhere: the trees changed under the test"
}

@test "-B doubt: a member that passes nothing on where it should is not suspected, and repair fills its subtree" {
	# The lie: a member with a subtree in the first tree for n2's values runs with -k 1
	# (interior, above), so it sends to
	# another member than the ones the others count on it for, and answers every probe.
	# Nobody suspects it, so the lazy second tree does not cover its children: summaries
	# (on here) show them a difference and a repair brings the values, well before the
	# anti-entropy round an hour away.
	unset GOSSIP_SUMMARY
	node_start n1 "${PORTS[0]}" "" -B doubt
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}" -B doubt; done
	node_listens $NODES
	wait_for 30 alive_everywhere
	liar=$(interior "$T/n2/key.pub")
	[ -n "$liar" ] || fail "no member fit in the trees from n2"
	node_kill "$liar" 9
	wait_for 10 flock -n "$T/$liar/node.lock" true
	# Seeded by n2 (never the liar: n2 is the root of its own trees).
	FANOUT=1 node_start "$liar" "${PORTS[${liar#n} - 1]}" "${PORTS[1]}" -B doubt
	wait_for 30 alive_everywhere
	# The restart's own repairs (its record, its leave) are done and counted before the
	# values go out: the stats are written once a second. A state change meanwhile (a
	# false suspicion on a loaded machine) makes the tables send along both trees, which
	# reach the liar's subtree without a repair: such an attempt is made again.
	sleep 2
	for attempt in 1 2 3; do
		c0=$(changes)
		settle
		repairs_before=$(cat "$T"/n*/stats/observe | awk '$1 == "repairs" { s += $2 } END { print s + 0 }')
		for r in 1 2 3; do
			gossip-send -d n2 -t "udp://127.0.0.1:${PORTS[1]}" set "lie$attempt.$r" "value $r"
		done
		for r in 1 2 3; do wait_for 20 everywhere "lie$attempt.$r"; done
		sleep 1  # the stats files are written once a second
		repairs=$(($(cat "$T"/n*/stats/observe | awk '$1 == "repairs" { s += $2 } END { print s + 0 }') - repairs_before))
		[ "$repairs" = 0 ] && [ "$(changes)" != "$c0" ] || break
		echo "# attempt $attempt: no repair, with membership changes meanwhile; again" >&3
	done
	echo "# $repairs repairs brought the values below $liar" >&3
	[ "$repairs" -ge 1 ] || fail "no repair ran: the values came another way"
}
