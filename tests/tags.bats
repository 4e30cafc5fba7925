#!/usr/bin/env bats
# Tags at runtime (gossip-node tag, untag, tags: DIR/tags, a new member record spread at
# once, kept across restarts and refutations) and force-leave (a failed member marked
# left everywhere; an alive one refused; an outsider's forgery changing nothing).
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
	node_start n1 "${PORTS[0]}" "" "$@" || return 1
	node_spawn n2 "${PORTS[1]}" "${PORTS[0]}" "$@"
	node_spawn n3 "${PORTS[2]}" "${PORTS[0]}" "$@"
	node_listens n2 n3 || return 1
	for n in n1 n2 n3; do
		wait_for 15 all_alive "$n"
	done
}

all_alive() {
	[ "$(gossip-peers -d "$T/$1" -j list | jq -s '[.[] | select(.state == "alive")] | length')" = 3 ]
}

# tags_of OBSERVER NAME: NAME's tags in OBSERVER's table, as compact JSON.
tags_of() {
	gossip-peers -d "$T/$1" -j list 2>/dev/null | jq -c --arg n "$2" 'select(.name == $n) | .tags'
}

# everyone_sees NAME TAGS: every node's table has NAME with TAGS (compact JSON).
everyone_sees() {
	local n
	for n in ${NODES}; do
		[ "$(tags_of "$n" "$1")" = "$2" ] || return 1
	done
}

# state_is OBSERVER NAME STATE...: NAME is in one of STATES in OBSERVER's table.
state_is() {
	local st s
	st=$(state_of "$1" "$2")
	for s in "${@:3}"; do [ "$st" = "$s" ] && return 0; done
	return 1
}

# has_event NODE TEXT: NODE's event log (gossip-peers watch -A) has a line with TEXT.
has_event() {
	timeout 1 gossip-peers -d "$T/$1" -A watch 2>/dev/null | grep -q -- "$2"
}

# force_leaves NODE: the force-leave events in NODE's store.
force_leaves() {
	gossip-merge -d "$T/$1" -j dump | jq -c 'select(.key == "_force-leave")'
}

@test "tag and untag on a running node: every member's list shows it, DIR/tags keeps it, a restart too" {
	three_nodes
	run --separate-stderr gossip-node -d "$T/n2" tag role=db zone=a
	assert_success
	[ -z "$output$stderr" ] || fail "tag said: $output $stderr"
	wait_for 10 everyone_sees n2 '{"role":"db","zone":"a"}'
	[ "$(cat "$T/n2/tags")" = "$(printf 'role=db\nzone=a')" ] || fail "$(cat "$T/n2/tags")"
	run --separate-stderr gossip-node -d "$T/n2" tags
	assert_success
	assert_output "$(printf 'role=db\nzone=a')"
	run --separate-stderr gossip-node -d "$T/n2" -j tags
	assert_output '{"role":"db","zone":"a"}'
	# A member-update event on the members.
	wait_for 10 has_event n1 "member-update n2"
	# A value changed in place; untag removes.
	gossip-node -d "$T/n2" tag role=cache
	wait_for 10 everyone_sees n2 '{"role":"cache","zone":"a"}'
	gossip-node -d "$T/n2" untag zone
	wait_for 10 everyone_sees n2 '{"role":"cache"}'
	# The node's own prober must not bring the old tags back: pause it until n1 suspects
	# it, and it refutes with its newest record.
	node_kill n2 STOP
	wait_for 15 state_is n1 n2 suspect dead
	node_kill n2 CONT
	wait_for 15 all_alive n1
	everyone_sees n2 '{"role":"cache"}' || fail "after a refutation: $(tags_of n1 n2)"
	# A restart (stop: it leaves; start without -t): the tags are announced again.
	node_kill n2 TERM
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	wait_for 15 everyone_sees n2 '{"role":"cache"}'
}

@test "-t at start overrides DIR/tags for its names and is written there; tag on a stopped node waits for the start" {
	mkdir -p "$T/n1"
	printf 'role=old\nrack=7\n' >"$T/n1/tags"
	run --separate-stderr gossip-node -d "$T/n1" tag zone=b
	assert_success
	assert_error gossip-peers "no node is running here"
	assert_error gossip-peers "next start"
	[ "$(cat "$T/n1/tags")" = "$(printf 'role=old\nrack=7\nzone=b')" ] || fail "$(cat "$T/n1/tags")"
	node_start n1 "${PORTS[0]}" "" -t role=new
	wait_for 10 sh -c "[ \"\$(gossip-peers -d $T/n1 -j list | jq -c 'select(.self) | .tags')\" = '{\"rack\":\"7\",\"role\":\"new\",\"zone\":\"b\"}' ]"
	[ "$(cat "$T/n1/tags")" = "$(printf 'role=new\nrack=7\nzone=b')" ] || fail "$(cat "$T/n1/tags")"
}

@test "a bad tag is refused with -t's error, exit 2, and changes nothing" {
	node_start n1 "${PORTS[0]}" ""
	gossip-node -d "$T/n1" tag role=web
	wait_for 10 sh -c "[ \"\$(gossip-peers -d $T/n1 -j list | jq -c 'select(.self) | .tags')\" = '{\"role\":\"web\"}' ]"
	before=$(gossip-merge -d "$T/n1" -j dump)
	for bad in "no-equals" "=v" "a b=c" "k=v=w" "$(printf 'k%.0s' $(seq 64))=v"; do
		run --separate-stderr gossip-node -d "$T/n1" tag ok=1 "$bad"
		[ "$status" = 2 ] || fail "$bad: exit $status"
		assert_error gossip-peers "tag $bad: want key=value (no spaces, key under 64 bytes)"
		[ "$(cat "$T/n1/tags")" = role=web ] || fail "$bad: tags now $(cat "$T/n1/tags")"
	done
	run --separate-stderr gossip-node -d "$T/n1" untag "a=b"
	[ "$status" = 2 ] || fail "untag a=b: exit $status"
	assert_error gossip-peers "untag a=b: want a tag's name"
	run --separate-stderr gossip-node -d "$T/n1" tag
	[ "$status" = 2 ] || fail "tag: exit $status"
	assert_error gossip-node "tag: want name=value"
	# The same words as -t at start.
	run --separate-stderr gossip-peers -d "$T/n1" announce -t "no-equals"
	assert_error gossip-peers "-t no-equals: want key=value (no spaces, key under 64 bytes)"
	[ "$(gossip-merge -d "$T/n1" -j dump)" = "$before" ] || fail "the store changed"
	[ "$(cat "$T/n1/tags")" = role=web ] || fail "tags now $(cat "$T/n1/tags")"
}

@test "force-leave of a killed member: left on every node, by name or id" {
	three_nodes
	node_kill n3
	wait_for "$(detect_wait)" state_is n1 n3 dead
	wait_for "$(detect_wait)" state_is n2 n3 dead
	run --separate-stderr gossip-node -d "$T/n1" force-leave n3
	assert_success
	[ -z "$output$stderr" ] || fail "force-leave said: $output $stderr"
	wait_for 10 state_is n1 n3 left
	wait_for 10 state_is n2 n3 left
	[ "$(force_leaves n2 | wc -l)" = 1 ] || fail "n2 store: $(force_leaves n2)"
	wait_for 10 has_event n2 "member-leave n3"
	# Left already: refused, exit 1.
	id=$(gossip-peers -d "$T/n1" -j list | jq -r 'select(.name == "n3") | .id')
	run --separate-stderr gossip-peers -d "$T/n1" force-leave "$id"
	[ "$status" = 1 ] || fail "exit $status"
	assert_error gossip-peers "it is left already"
	# It comes back: alive again everywhere (a new incarnation outranks the force-leave).
	node_start n3 "${PORTS[2]}" "${PORTS[0]}"
	wait_for 15 state_is n1 n3 alive
	wait_for 15 state_is n2 n3 alive
}

@test "force-leave of an alive member, of itself, of no one: refused, exit 1, nothing stored" {
	three_nodes
	before=$(gossip-merge -d "$T/n1" -j dump | sort)
	run --separate-stderr gossip-node -d "$T/n1" force-leave n2
	[ "$status" = 1 ] || fail "exit $status"
	assert_error gossip-peers "force-leave n2: refused: it is alive here"
	run --separate-stderr gossip-node -d "$T/n1" force-leave n1
	[ "$status" = 1 ] || fail "self: exit $status"
	assert_error gossip-peers "that is this node"
	run --separate-stderr gossip-node -d "$T/n1" force-leave nobody
	[ "$status" = 1 ] || fail "nobody: exit $status"
	assert_error gossip-peers "no such member"
	run --separate-stderr gossip-node -d "$T/n1" force-leave
	[ "$status" = 2 ] || fail "no name: exit $status"
	assert_error gossip-node "force-leave: want one member's name or id"
	[ -z "$(force_leaves n1)" ] || fail "stored: $(force_leaves n1)"
	[ "$(gossip-merge -d "$T/n1" -j dump | sort)" = "$before" ] || fail "the store changed"
	[ "$(state_of n2 n2)" = alive ] && [ "$(state_of n1 n2)" = alive ] || fail "n2 is not alive"
}

@test "an outsider's forged _force-leave over UDP changes nothing" {
	three_nodes
	node_kill n3
	wait_for "$(detect_wait)" state_is n1 n3 dead
	gossip-keygen -d "$T/out" -n outsider >/dev/null
	# n3's key and the highest incarnation there is.
	"$PY" -c 'import base64,sys; sys.stdout.buffer.write(base64.b64decode(sys.argv[1]) + b"\xff" * 8)' \
		"$(cut -d' ' -f1 n3.pub)" >value
	for p in "${PORTS[0]}" "${PORTS[1]}"; do
		gossip-send -d "$T/out" -b -f value -t "udp://127.0.0.1:$p" event _force-leave
	done
	wait_for 10 sh -c "gossip-node -d $T/n1 -j status | jq -e '.refused_by_reason.untrusted >= 1' >/dev/null"
	wait_for 10 sh -c "gossip-node -d $T/n2 -j status | jq -e '.refused_by_reason.untrusted >= 1' >/dev/null"
	[ "$(state_of n1 n3)" = dead ] || fail "n1: n3 is $(state_of n1 n3)"
	[ "$(state_of n2 n3)" != left ] || fail "n2: n3 left"
	[ -z "$(force_leaves n1)$(force_leaves n2)" ] || fail "stored: $(force_leaves n1)"
}
