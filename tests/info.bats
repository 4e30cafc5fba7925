#!/usr/bin/env bats
# gossip-node status as the node's info: members by state, the store (as gossip-merge
# digest gives it), the counters of the node's programs (DIR/stats) rising with traffic,
# version and uptime; -j with every field; LSB exit codes and usage errors.
load helper
load node

setup() {
	base_setup
	NODES=
	set -- $(freeports 3)
	PORTS=("$@")
	for n in n1 n2 n3; do gossip-keygen -d "$T/$n" -n "$n" >"$n.pub"; done
	for n in n1 n2 n3; do cat n1.pub n2.pub n3.pub >"$n/trusted"; done
}

teardown() {
	nodes_stop
}

# detect_wait: seconds enough for every node of three to find a killed one dead, on a
# loaded machine.
detect_wait() {
	awk -v t="$(detect_time 3)" 'BEGIN { print int(t * 5) + 5 }'
}

three_nodes() {
	node_start n1 "${PORTS[0]}" "" || return 1
	node_spawn n2 "${PORTS[1]}" "${PORTS[0]}"
	node_spawn n3 "${PORTS[2]}" "${PORTS[0]}"
	node_listens n2 n3 || return 1
	for n in n1 n2 n3; do
		wait_for 15 sh -c "[ \"\$(gossip-node -d $T/$n -j status | jq .states.alive)\" = 3 ]"
	done
}

# jqs NODE FILTER: FILTER on NODE's status -j.
jqs() {
	gossip-node -d "$T/$1" -j status | jq -e "$2" >/dev/null
}

@test "status -j on a 3-node cluster: members by state, the store as gossip-merge sees it, version, uptime" {
	three_nodes
	# Traffic: one message from n2, seen by n1 once it is stored there.
	gossip-send -d "$T/n2" set greeting hello | gossip-merge -d "$T/n2" | gossip-send -d "$T/n2" -M
	wait_for 10 sh -c "[ \"\$(gossip-merge -d $T/n1 get greeting 2>/dev/null)\" = hello ]"
	run --separate-stderr gossip-node -d "$T/n1" -j status
	assert_success
	[ -z "$stderr" ] || fail "stderr: $stderr"
	json=$output
	# The fields status -j had, and the new ones.
	jq -e --argjson pid "$PGID_n1" '.running and .pid == $pid and .name == "n1" and
		(.listening | length) == 2 and .alive == 3 and .members == 3 and
		.states == {"alive": 3, "suspect": 0, "dead": 0, "left": 0} and
		(.version | test("^[0-9]")) and .uptime_s >= 0 and
		(.store | has("messages") and has("bytes") and has("origins") and has("root")) and
		.store.origins == 3 and .store.bytes > 0 and
		(.received | type) == "number" and (.refused | type) == "number" and
		(.refused_by_reason | type) == "object" and (.forwarded | type) == "number" and
		(.forwarded_membership | type) == "number" and .forwarded_membership <= .forwarded and
		(.syncs.done | type) == "number" and (.syncs.failed | type) == "number" and
		(.counters | type) == "object"' <<<"$json" || fail "$json"
	# The store's count and root are gossip-merge digest's (unless a message came between).
	digest=$(gossip-merge -d "$T/n1" -j digest)
	again=$(gossip-node -d "$T/n1" -j status | jq -c '{root: .store.root, count: .store.messages}')
	[ "$(jq -c '{root, count}' <<<"$digest")" = "$again" ] ||
		[ "$(gossip-merge -d "$T/n1" -j digest | jq -c '{root, count}')" = "$again" ] ||
		fail "digest $digest, status $again"
	# gossip-node --version and status agree.
	[ "$(jq -r .version <<<"$json")" = "$(gossip-node --version | awk '{ print $NF; exit }')" ] ||
		fail "version: $(jq -r .version <<<"$json") vs $(gossip-node --version)"
}

@test "status: the counters rise with traffic (received, forwarded, syncs) and members by state follow a failure" {
	three_nodes
	before=$(gossip-node -d "$T/n1" -j status)
	values2=$(gossip-node -d "$T/n2" -j status | jq '.forwarded - .forwarded_membership')
	for i in 1 2 3; do
		gossip-send -d "$T/n2" set "k$i" "v$i" | gossip-merge -d "$T/n2" | gossip-send -d "$T/n2" -M
	done
	wait_for 10 sh -c "[ \"\$(gossip-merge -d $T/n1 get k3 2>/dev/null)\" = v3 ]"
	b=$(jq .received <<<"$before")
	wait_for 10 jqs n1 ".received > $b"
	wait_for 10 jqs n1 ".counters.accepted > $(jq '.counters.accepted // 0' <<<"$before")"
	# n2 passed what it published on along the rumor's trees (n1 may be a leaf of
	# both, forwarding nothing).
	# Those are sends of values, not membership traffic.
	wait_for 10 jqs n2 "(.forwarded - .forwarded_membership) > $values2"

	# Anti-entropy runs every SYNC seconds.
	wait_for 15 jqs n1 '.syncs.done > 0'
	# Text: the same numbers, one line each.
	run --separate-stderr gossip-node -d "$T/n1" status
	assert_success
	assert_line --regexp '^states     alive 3, suspect 0, dead 0, left 0$'
	assert_line --regexp '^store      [0-9]+ messages, [0-9]+ bytes, 3 origins, root [0-9a-f]{32}$'
	assert_line --regexp '^received   [1-9][0-9]* messages \([0-9]+ new, [0-9]+ duplicates\)$'
	assert_line --regexp '^refused    [0-9]+'
	assert_line --regexp '^forwarded  [0-9]+ rumor sends \([0-9]+ of them membership\)$'
	assert_line --regexp '^syncs      [1-9][0-9]* done, [0-9]+ failed$'
	assert_line --regexp '^version    [0-9]'
	assert_line --regexp '^uptime     [0-9]+ s$'
	assert_line "members    3 alive of 3"
	# A member killed: n1 counts it dead, not alive.
	node_kill n3
	wait_for "$(detect_wait)" jqs n1 '.states.dead == 1 and .states.alive == 2'
}

@test "status counts refusals by reason: an outsider's datagrams are refused as untrusted" {
	node_start n1 "${PORTS[0]}" ""
	gossip-keygen -d "$T/out" -n outsider >/dev/null
	gossip-send -d "$T/out" -t "udp://127.0.0.1:${PORTS[0]}" set evil 1
	wait_for 10 jqs n1 '.refused_by_reason.untrusted >= 1 and .refused >= 1'
	run --separate-stderr gossip-merge -d "$T/n1" get evil
	assert_failure
	run --separate-stderr gossip-node -d "$T/n1" status
	assert_line --regexp '^refused    [1-9][0-9]* \(.*untrusted [1-9]'
}

@test "status: gossip-send -M's sends count as the node's, a member record's as membership traffic" {
	three_nodes
	counter() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$T/n2/stats/send" 2>/dev/null; }
	gossip-send -d "$T/n2" set sent-by-hand 1 | gossip-merge -d "$T/n2" | gossip-send -d "$T/n2" -M
	[ "$(counter n2 forwarded)" -ge 1 ] || fail "no sends counted: $(cat "$T/n2/stats/send")"
	[ "$(counter n2 forwarded_membership)" = 0 ] || fail "a value counted as membership: $(cat "$T/n2/stats/send")"
	values=$(counter n2 forwarded)
	gossip-peers -d "$T/n2" announce -a "udp://127.0.0.1:${PORTS[1]}" -a "tcp://127.0.0.1:${PORTS[1]}" |
		gossip-merge -d "$T/n2" | gossip-send -d "$T/n2" -M
	[ "$(counter n2 forwarded_membership)" -ge 1 ] || fail "a member record not counted as membership: $(cat "$T/n2/stats/send")"
	[ "$(($(counter n2 forwarded) - $(counter n2 forwarded_membership)))" = "$values" ] ||
		fail "the record counted as a value: $(cat "$T/n2/stats/send")"
	# status adds them to observe's.
	wait_for 5 jqs n2 ".forwarded_membership >= $(counter n2 forwarded_membership)"
}

@test "status of a node not running: exit 3, text and JSON; counters start again at each start" {
	run --separate-stderr gossip-node -d "$T/n1" status
	[ "$status" = 3 ] && [ "$output" = "not running" ] || fail "$status: $output"
	run --separate-stderr gossip-node -d "$T/n1" -j status
	[ "$status" = 3 ] && [ "$output" = '{"running":false}' ] || fail "$status: $output"
	node_start n1 "${PORTS[0]}" ""
	gossip-keygen -d "$T/out" -n outsider >/dev/null
	gossip-send -d "$T/out" -t "udp://127.0.0.1:${PORTS[0]}" set evil 1
	wait_for 10 jqs n1 '.refused >= 1'
	node_kill n1 TERM
	run gossip-node -d "$T/n1" status
	[ "$status" = 3 ] || fail "stopped: exit $status"
	node_start n1 "${PORTS[0]}" ""
	run --separate-stderr gossip-node -d "$T/n1" -j status
	assert_success
	jq -e '.refused == 0' <<<"$output" || fail "$output"
}

@test "status: bad usage is exit 2 with one line, and changes nothing" {
	before=$(snapshot "$T/n1")
	for args in "status extra" "-j stop" "-n x status" "statuss" "-j force-leave n2"; do
		# shellcheck disable=SC2086
		run --separate-stderr gossip-node -d "$T/n1" $args
		[ "$status" = 2 ] || fail "$args: exit $status"
		assert_error gossip-node ""
		[ "$(snapshot "$T/n1")" = "$before" ] || fail "$args changed files"
	done
	run --separate-stderr gossip-node -d "$T/n1" status extra
	assert_error gossip-node "want one verb at most"
}
