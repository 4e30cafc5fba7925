#!/usr/bin/env bats
# The rumor's trust boundaries (gossip-peers observe -r, as gossip-node runs it): only
# what gossip-listen verified and gossip-merge found new is passed on; an outsider with
# the members' public keys makes no node forward anything, and a replay forwards nothing
# and changes nothing stored.
load helper
load node

N=5

setup() {
	base_setup
	NODES=''
	node_ids $N
	gossip-keygen -d "$T/mallory" -n mallory >/dev/null
	cat n*.pub >mallory/trusted  # she knows every public key; no member trusts her
	read -ra PORTS <<<"$(freeports $N)"
	HB=0.2 JITTER=0.1 FANOUT=2 SYNC=3600
	node_start n1 "${PORTS[0]}"
	for i in $(seq 2 $N); do node_spawn "n$i" "${PORTS[$i - 1]}" "${PORTS[0]}"; done
	node_listens $NODES
	wait_for 20 alive_everywhere
}

teardown() {
	nodes_stop
}

forwarded() {  # the rumor sends of every node's observe, summed
	cat "$T"/n*/stats/observe 2>/dev/null | awk '$1 == "forwarded" { s += $2 } END { print s + 0 }'
}
# value_sends: those of values and events only (less membership traffic, which a false
# suspicion on a loaded machine adds to at any moment)
value_sends() {
	cat "$T"/n*/stats/observe 2>/dev/null |
		awk '$1 == "forwarded" { s += $2 } $1 == "forwarded_membership" { s -= $2 } END { print s + 0 }'
}
stores() { for i in $(seq 1 $N); do gossip-merge -d "$T/n$i" -j digest; done; }
everywhere() {
	local i
	for i in $(seq 1 $N); do gossip-merge -d "$T/n$i" get "$1" >/dev/null 2>&1 || return 1; done
}
value_sends_at_least() { [ "$(value_sends)" -ge "$1" ]; }
# marker_sends BEFORE: a member's value sent after the attack reaches all and its sends
# are counted (so the counters work and were written since the attack); print how many
# value sends there were since BEFORE (a value_sends): the marker's are at most 2(N-1).
marker_sends() {
	gossip-send -d n2 set "marker$RANDOM" m | gossip-send -d n2 "udp://127.0.0.1:${PORTS[1]}"
	wait_for 15 value_sends_at_least $(($1 + N - 1))
	sleep 1.5  # the last stats files settle (written once a second)
	echo $(($(value_sends) - $1))
}

@test "an outsider's messages, a member record of hers included, are forwarded by no node" {
	sleep 1.5  # the stats files settle (written once a second)
	before=$(forwarded) before_values=$(value_sends)
	gossip-peers -d mallory announce -a "udp://127.0.0.1:9" >rec
	gossip-send -d mallory set evil x >>rec
	for i in $(seq 1 $N); do gossip-send -d mallory "udp://127.0.0.1:${PORTS[$i - 1]}" <rec; done
	sleep 2
	# Only probes went out meanwhile: no rumor send; then a member's value, which is.
	[ "$(forwarded)" = "$before" ] || fail "forwarded went from $before to $(forwarded)"
	sends=$(marker_sends "$before_values")
	[ "$sends" -le $((2 * (N - 1))) ] || fail "$sends rumor sends: more than a member's one value"

	for i in $(seq 1 $N); do
		run gossip-merge -d "$T/n$i" get evil
		assert_failure 1
		gossip-peers -d "$T/n$i" list | grep -q mallory && fail "n$i lists mallory"
	done
	grep -q "untrusted signer" n1.log
}

@test "a replayed value is forwarded by no node and changes no store" {
	gossip-send -d n2 set k v1 >v1
	gossip-send -d n2 "udp://127.0.0.1:${PORTS[1]}" <v1
	wait_for 10 everywhere k
	sleep 1.5
	before=$(value_sends)
	stores >before.digest
	for r in 1 2 3; do
		for i in $(seq 1 $N); do gossip-send -d n2 "udp://127.0.0.1:${PORTS[$i - 1]}" <v1; done
	done
	sleep 2
	[ "$(value_sends)" = "$before" ] || fail "value sends went from $before to $(value_sends) for a replay"
	stores >after.digest
	sends=$(marker_sends "$before")
	[ "$sends" -le $((2 * (N - 1))) ] || fail "$sends rumor sends: more than a member's one value"
	cmp -s before.digest after.digest || fail "a store changed: $(diff before.digest after.digest)"
}

@test "observe -r, rumor -r: a bad arity is a usage error; -r is theirs only, and rumor needs it" {
	run --separate-stderr gossip-peers -d n1 -r 0 observe
	assert_failure 2
	assert_error gossip-peers "-r 0: want the rumor trees' arity, 1 to 64"
	run --separate-stderr gossip-peers -d n1 -r x observe
	assert_failure 2
	assert_error gossip-peers "-r x: want the rumor trees' arity, 1 to 64"
	run --separate-stderr gossip-peers -d n1 -r 65 observe
	assert_failure 2
	assert_error gossip-peers "-r 65: want the rumor trees' arity, 1 to 64"
	run --separate-stderr gossip-peers -d n1 -r 3 list
	assert_failure 2
	run --separate-stderr gossip-peers -d n1 rumor
	assert_failure 2
	# Without the prober, a replayed claim would be passed on at every copy.
	run --separate-stderr gossip-peers -d n1 -r 3 observe
	assert_failure 2
	assert_error gossip-peers "observe -r needs -p: the prober judges which claims are news"
}

@test "gossip-peers rumor: what a sync brought goes on along the trees, and reaches every node" {
	# As gossip-node's anti-entropy loop does: stored here first, then passed on.
	gossip-send -d n1 set viarumor 1 | gossip-merge -d n1 | gossip-peers -d n1 -r 2 rumor
	wait_for 10 everywhere viarumor
	grep -q '^forwarded [1-9]' n1/stats/rumor || fail "no sends counted: $(cat n1/stats/rumor)"
}
