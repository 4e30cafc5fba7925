#!/usr/bin/env bats
# rotate.bats: a running cluster reconfigured live with `gossip-node reload`, no restart:
# the cluster key rotated by gossip-keyring(5)'s three steps, a sixth member added, one
# member revoked (gossip-trusted(5)). Throughout: no member but the revoked one is ever
# declared failed, every value published reaches every member, and the revoked member's
# traffic, and traffic sealed with the removed key, is refused.

load helper
load node

setup() {
	base_setup
	read -r -a PORTS <<<"$(freeports 6)"
}

teardown() {
	nodes_stop
}

# members N...: state dirs with identities, one cluster key, each trusting all of them.
members() {
	local i
	gossip-keygen -c >"$T/k1"
	for i in "$@"; do gossip-keygen -d "$T/n$i" -n "n$i" >"$T/n$i.pub"; done
	for i in "$@"; do
		cat "$T"/n*.pub >"$T/n$i/trusted"
		cp "$T/k1" "$T/n$i/keyring"
		chmod 600 "$T/n$i/keyring"
	done
}

all_alive() {  # all_alive COUNT: every node lists COUNT members alive
	local n
	for n in $NODES; do
		[ "$(gossip-peers -d "$T/$n" -j list 2>/dev/null | jq -r .state | grep -c '^alive$')" = "$1" ] || return 1
	done
}

# reload_all STEP: `gossip-node reload` at every node; return once every long-running
# program of each has logged its reload number STEP.
reload_all() {
	local n
	for n in $NODES; do gossip-node -d "$T/$n" reload || fail "reload $n failed"; done
	for n in $NODES; do
		wait_for 10 reloaded "$n" "$1" || fail "$n: $(for p in gossip-listen gossip-merge gossip-peers; do
			echo "$p $(grep -c "^$p: reloaded" "$T/$n.log")"; done; grep -v '^gossip-\(merge\|listen\|peers\): reloaded' "$T/$n.log")"
	done
}

# reloaded NODE STEP: the node's listener, store and prober (which also sends the rumor)
# have each reloaded STEP times.
reloaded() {
	local p
	for p in gossip-listen gossip-merge gossip-peers; do
		[ "$(grep -c "^$p: reloaded" "$T/$1.log")" -ge "$2" ] || return 1
	done
}

# publish_all TAG: every node publishes TAG-NODE through its own node.
publish_all() {
	local n i
	for n in $NODES; do
		i=${n#n}
		gossip-send -d "$T/$n" -t "udp://127.0.0.1:${PORTS[$((i - 1))]}" set "$1-$n" v ||
			fail "publish at $n failed"
	done
}

# everyone_has KEY...: every node has every KEY.
everyone_has() {
	local n k
	for n in $NODES; do
		for k in "$@"; do gossip-merge -d "$T/$n" get "$k" >/dev/null 2>&1 || return 1; done
	done
}

# no_failures [EXCEPT]: no node's log reports a member failed (but EXCEPT).
no_failures() {
	local n bad
	for n in $NODES; do
		bad=$(grep 'member-failed' "$T/$n.log" | grep -v "member-failed ${1:-none} " || true)
		[ -z "$bad" ] || fail "$n declared a member failed: $bad"
	done
}

@test "five live nodes: rotate the cluster key, add a sixth member, revoke one; nothing lost, no false failure" {
	members 1 2 3 4 5
	node_start n1 "${PORTS[0]}" ""
	for i in 2 3 4 5; do node_spawn "n$i" "${PORTS[$((i - 1))]}" "${PORTS[0]}"; done
	node_listens $NODES
	wait_for 20 all_alive 5
	keys=()
	publish_all before; keys+=(before-n1 before-n2 before-n3 before-n4 before-n5)

	# 1. The new key as a second line everywhere.
	gossip-keygen -c >"$T/k2"
	for n in $NODES; do cat "$T/k2" >>"$T/$n/keyring"; done
	reload_all 1
	publish_all step1; keys+=(step1-n1 step1-n2 step1-n3 step1-n4 step1-n5)
	# 2. The new key first everywhere: every node now seals with it.
	for n in $NODES; do cat "$T/k2" "$T/k1" >"$T/$n/keyring"; done
	reload_all 2
	publish_all step2; keys+=(step2-n1 step2-n2 step2-n3 step2-n4 step2-n5)
	# 3. The old key gone everywhere.
	for n in $NODES; do cat "$T/k2" >"$T/$n/keyring"; done
	reload_all 3
	publish_all step3; keys+=(step3-n1 step3-n2 step3-n3 step3-n4 step3-n5)
	wait_for 10 everyone_has "${keys[@]}"
	# Probes go on for a while under the new key alone: nobody is suspected to death.
	sleep "$(intervals 10)"
	all_alive 5 || fail "not all alive after the rotation: $(for n in $NODES; do echo "== $n"; gossip-peers -d "$T/$n" list; done)"
	no_failures

	# Traffic sealed with the removed key is refused, with a line that says why.
	mkdir -m 700 "$T/old"
	cp "$T/n1/key" "$T/n1/key.pub" "$T/old/"
	install -m 600 "$T/k1" "$T/old/keyring"
	gossip-send -d "$T/old" -t "udp://127.0.0.1:${PORTS[1]}" set old-key v
	wait_for 5 grep -q 'sealed with a cluster key this node does not hold' "$T/n2.log"
	run gossip-merge -d "$T/n2" get old-key
	assert_failure

	# A sixth member: trusted everywhere (reload), then started with the current key.
	gossip-keygen -d "$T/n6" -n n6 >"$T/n6.pub"
	for n in $NODES; do cat "$T/n6.pub" >>"$T/$n/trusted"; done
	reload_all 4
	cat "$T"/n*.pub >"$T/n6/trusted"
	install -m 600 "$T/k2" "$T/n6/keyring"
	node_start n6 "${PORTS[5]}" "${PORTS[2]}"
	wait_for 20 all_alive 6
	publish_all six; keys+=(six-n1 six-n2 six-n3 six-n4 six-n5 six-n6)
	wait_for 10 everyone_has "${keys[@]}"

	# Revoke n5: its line out of every other node's trusted, then reload.
	others=$(printf '%s\n' $NODES | grep -vx n5 | tr '\n' ' ')
	for n in $others; do
		grep -v ' n5$' "$T/$n/trusted" >"$T/$n/trusted.new"
		mv "$T/$n/trusted.new" "$T/$n/trusted"
		reload=$(grep -c '^gossip-listen: reloaded' "$T/$n.log" || true)
		gossip-node -d "$T/$n" reload
		wait_for 10 reloaded "$n" $((reload + 1)) || true
		reloaded "$n" $((reload + 1)) || fail "$n: $(grep -E 'reload|^gossip-node' "$T/$n.log")"
	done
	NODES=$others
	# What n5 wrote is hidden with it (gossip-trusted(5)); the rest stays.
	read -r -a keys <<<"$(printf '%s\n' "${keys[@]}" | grep -v -- '-n5$' | tr '\n' ' ')"
	# n5 runs on and publishes; no other member takes it.
	gossip-send -d "$T/n5" -t "udp://127.0.0.1:${PORTS[4]}" set revoked v
	publish_all after; keys+=(after-n1 after-n2 after-n3 after-n4 after-n6)
	wait_for 10 everyone_has "${keys[@]}"
	sleep "$(intervals 5)"
	for n in $NODES; do
		run gossip-merge -d "$T/$n" get revoked
		assert_failure
		state=$(state_of "$n" n5)
		[ "$state" != alive ] || fail "$n still lists the revoked n5 alive"
	done
	all_alive 5 || fail "not all of the others alive: $(for n in $NODES; do echo "== $n"; gossip-peers -d "$T/$n" list; done)"
	no_failures n5
	NODES="$NODES n5"
}
