#!/usr/bin/env bats
# Handlers for everything (Serf's shape): user events and key changes logged by
# gossip-merge into DIR/events and run by gossip-peers watch -x (gossip-node -x): on
# every node once, with Serf's environment and the payload on stdin; filters; a slow or
# failing handler stalls nothing; the place kept across restarts; coalescing; bad specs.
load helper
load node

setup() {
	base_setup
	NODES= WATCH=
	# h.sh OUT: one line per run: event|name or key|op|origin|self|role tag|stdin
	cat >"$T/h.sh" <<'SH'
#!/bin/sh
printf '%s|%s|%s|%s|%s|%s|%s\n' "$GOSSIP_EVENT" "$GOSSIP_USER_EVENT$GOSSIP_KEY" \
	"${GOSSIP_KEY_OP:-}" "${GOSSIP_ORIGIN_NAME:-}" "$GOSSIP_SELF_NAME" "${GOSSIP_TAG_ROLE:-}" \
	"$(cat)" >>"$1"
SH
	chmod +x "$T/h.sh"
}

teardown() {
	nodes_stop
	[ -z "$WATCH" ] || kill "$WATCH" 2>/dev/null || true
	[ -z "$WATCH" ] || wait "$WATCH" 2>/dev/null || true
}

# watch_start DIR ARGS...: gossip-peers watch on DIR in the background (its stderr in
# DIR.log, stdout in DIR.out), returning once it has its place in the log.
watch_start() {
	local d=$1
	shift
	rm -f "$T/ready"
	gossip-peers -d "$d" "$@" --ready "$T/ready" watch >>"$d.out" 2>>"$d.log" &
	WATCH=$!
	wait_for 5 test -e "$T/ready"
}

watch_stop() {
	kill "$WATCH"
	wait "$WATCH" || true
	WATCH=
}

# lines_are N FILE: FILE has exactly N lines.
lines_are() {
	[ "$(wc -l <"$2" 2>/dev/null || echo 0)" -eq "$1" ]
}

# emit DIR ARGS...: sign with admin's key and merge into DIR (what the network would bring).
emit() {
	local d=$1
	shift
	gossip-send -d "$T/admin" "$@" | gossip-merge -d "$d" >/dev/null
}

local_node() {
	mknode admin
	mknode a
	trust a admin
}

@test "gossip-merge logs user events and key changes, [time, \"message\", bytes], not _ names" {
	local_node
	# Key changes only while a handler wants them (DIR/events.keys): not written twice
	# for nothing.
	emit a set app/size 1
	[ ! -e a/events ] || fail "a key change logged with no handler for it"
	touch a/events.keys
	emit a event deploy v1
	emit a set app/color blue
	emit a set _private x
	emit a event _query q
	emit a del app/color
	[ "$(cbor_count a/events)" = 3 ]
	run $PY -c 'import cbor2, io, sys
f = open(sys.argv[1], "rb"); data = f.read(); b = io.BytesIO(data); d = cbor2.CBORDecoder(b)
while b.tell() < len(data):
    r = d.decode(); print(len(r), type(r[0]).__name__, r[1], type(r[2]).__name__)' a/events
	assert_success
	assert_output "$(printf '3 int message bytes\n%.0s' 1 2 3)"
	# The same messages again store nothing, and log nothing.
	gossip-send -d "$T/admin" event again x >again
	gossip-merge -d a again >/dev/null
	gossip-merge -d a again >/dev/null
	[ "$(cbor_count a/events)" = 4 ]
}

@test "watch -x makes DIR/events.keys when a handler wants key changes, and removes it when none does" {
	local_node
	watch_start a -x "key:app/=true"
	[ -e a/events.keys ] || fail "no events.keys with a key handler"
	emit a set app/color blue
	wait_for 5 lines_are 1 a.out
	watch_stop
	watch_start a -x "user:deploy=true"
	[ ! -e a/events.keys ] || fail "events.keys kept with no key handler"
	emit a set app/color red
	emit a event deploy v2
	wait_for 5 lines_are 2 a.out
	run grep -c red a.out
	assert_output 0
}

@test "watch prints user events and key changes, in text and -j" {
	local_node
	touch a/events.keys  # as a watch with a key handler makes it
	watch_start a -j
	emit a event deploy 'v1 2'
	emit a set app/color blue
	emit a del app/color
	wait_for 5 lines_are 3 a.out
	run jq -r '[.event, .name, .op // "-", .value, .version > 0, .origin == $o] | join(" ")' \
		--arg o "$(cut -d' ' -f1 admin.pub)" a.out
	assert_output "user deploy - v1 2 true true
key app/color set blue true true
key app/color del  true true"
	watch_stop
	rm a.out
	watch_start a
	emit a event deploy x
	wait_for 5 lines_are 1 a.out
	run cat a.out
	assert_output --regexp "^[0-9TZ:.-]+ user deploy $(cut -d' ' -f1 admin.pub | sed 's/[+/]/./g') [0-9]+ 1$"
}

@test "five nodes: a user event runs every node's handlers once, with Serf's environment and the payload" {
	mknode admin
	for i in 1 2 3 4 5; do mknode "n$i"; done
	for i in 1 2 3 4 5; do cat admin.pub n1.pub n2.pub n3.pub n4.pub n5.pub >"n$i/trusted"; done
	set -- $(freeports 5)
	PORTS=("$@")
	for i in 1 2 3 4 5; do
		node_spawn "n$i" "${PORTS[i - 1]}" "$([ "$i" = 1 ] || echo "${PORTS[0]}")" -t "role=r$i" \
			-x "user=$T/h.sh $T/n$i.user" -x "key:app/=$T/h.sh $T/n$i.key" \
			-x "user:deploy=$T/h.sh $T/n$i.deploy" -x "user:slow=sleep 30" -x "user:fail=exit 1"
	done
	node_listens $NODES
	N=5 wait_for 20 alive_everywhere
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[2]}" event deploy 'v1.2 now'
	for i in 1 2 3 4 5; do wait_for 20 lines_are 1 "n$i.deploy"; done
	for i in 1 2 3 4 5; do
		run cat "n$i.deploy"
		assert_output "user|deploy||admin|n$i|r$i|v1.2 now"
	done
	# A slow one and a failing one, then another event: every other handler still runs.
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[0]}" event slow z
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[1]}" event fail y
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[4]}" event later x
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[3]}" set app/color blue
	for i in 1 2 3 4 5; do
		wait_for 20 grep -q '^user|later|' "n$i.user"
		wait_for 20 grep -q '^key|app/color|set|admin|' "n$i.key"
		wait_for 10 grep -q "handler exit 1 for user fail failed (exit 1)" "n$i.log"
	done
	for i in 1 2 3 4 5; do
		run cat "n$i.key"
		assert_output "key|app/color|set|admin|n$i|r$i|blue"
		# Exactly once each (the later ones arrived: the first would have come again by now).
		[ "$(count_lines '^user|deploy|' "n$i.user")" = 1 ] || fail "n$i: deploy ran twice"
		[ "$(count_lines '^user|later|' "n$i.user")" = 1 ] || fail "n$i: later ran twice"
		lines_are 1 "n$i.deploy" || fail "n$i: user:deploy ran for other events: $(cat "n$i.deploy")"
	done
	# The sets still replicate with a handler asleep.
	gossip-send -d "$T/admin" -t "udp://127.0.0.1:${PORTS[0]}" set app/size big
	for i in 1 2 3 4 5; do wait_for 20 grep -q '^key|app/size|set|admin|.*|big$' "n$i.key"; done
}

@test "a key change runs key:PREFIX handlers with GOSSIP_KEY, GOSSIP_KEY_OP and the value" {
	local_node
	watch_start a -x "key:app/=$T/h.sh $T/key.out" -x "key=$T/h.sh $T/anykey.out"
	emit a set app/color blue
	emit a set web/x 1
	emit a del app/color
	wait_for 5 lines_are 2 key.out
	wait_for 5 lines_are 3 anykey.out
	run cat key.out
	assert_output "key|app/color|set|admin|a||blue
key|app/color|del|admin|a||"
}

@test "a user event or key whose name holds a NUL runs no handler (it would pass for the name before the NUL)" {
	local_node
	local seed=0303030303030303030303030303030303030303030303030303030303030303
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $seed py >>a/trusted
	watch_start a -x "user:deploy=$T/h.sh $T/deploy.out" -x "user=$T/h.sh $T/user.out" -x "key=$T/h.sh $T/key.out"
	# "deploy\0; rm -rf /" as an event, and as a key; then plain ones, which run.
	for type in 3 1; do
		$PY "$BATS_TEST_DIRNAME/interop.py" make $seed --type $type --key-hex 6465706c6f79003b20726d202d7266202f \
			--value x | gossip-merge -d a >/dev/null
	done
	emit a event deploy plain
	emit a set deploy 1
	wait_for 5 lines_are 1 deploy.out
	wait_for 5 lines_are 1 key.out
	wait_for 5 lines_are 1 user.out
	run cat deploy.out user.out key.out
	assert_output "user|deploy||admin|a||plain
user|deploy||admin|a||plain
key|deploy|set|admin|a||1"
}

@test "a restart of watch delivers nothing twice, and what was logged while it was down once" {
	local_node
	watch_start a -x "$T/h.sh $T/out"
	emit a event one 1
	wait_for 5 lines_are 1 out
	watch_stop
	emit a event two 2
	watch_start a -x "$T/h.sh $T/out"
	emit a event three 3
	wait_for 5 lines_are 3 out
	run cut -d'|' -f2 out
	assert_output "one
two
three"
	# The place lost (the log replaced): from the end, and said so.
	watch_stop
	mv a/events a/events.old
	cp a/events.old a/events
	emit a event four 4
	watch_start a -x "$T/h.sh $T/out"
	emit a event five 5
	wait_for 5 grep -q '|five|' out
	grep -q 'starting at the end' a.log || fail "no word of the place lost: $(cat a.log)"
	run grep -c '|four|' out
	assert_output 0
}

@test "a handler past the limit (-k) is reported with its pid and stopped; a failing one with its exit code" {
	local_node
	watch_start a -k 1 -x "user:slow=sleep 30" -x "user:fail=exit 3" -x "$T/h.sh $T/out"
	emit a event slow 1
	emit a event fail 1
	emit a event later 1
	wait_for 5 grep -q '|later|' out
	wait_for 5 grep -q 'handler exit 3 for user fail failed (exit 3)' a.log
	wait_for 5 grep -q 'handler sleep 30 for user slow (pid [0-9]*) still runs after 1 s: stopping it' a.log
	pid=$(sed -n 's/.*(pid \([0-9]*\)).*/\1/p' a.log)
	wait_for 5 sh -c "! kill -0 $pid 2>/dev/null"
	emit a event slow 2
	wait_for 5 lines_are 4 out
}

@test "coalescing (-c): user events once per name with the last payload, keys once per key" {
	local_node
	watch_start a -c 1 -x "$T/h.sh $T/out"
	# Signed first and stored by one merge, so that they come within one window however
	# slowly the programs start (seven merges took longer than the window under ASan).
	for m in "event deploy 1" "event deploy 2" "event deploy 3" "event other x" \
		"set app/x a" "set app/x b" "set app/y c"; do
		# shellcheck disable=SC2086
		gossip-send -d "$T/admin" $m
	done >batch
	gossip-merge -d a batch >/dev/null
	wait_for 5 lines_are 4 out
	sleep 1.5  # one more window: nothing else comes
	run cat out
	assert_output "user|deploy||admin|a||3
user|other||admin|a||x
key|app/x|set|admin|a||b
key|app/y|set|admin|a||c"
}

@test "bad -x specs: exit 2 with the one-line error, in watch and gossip-node" {
	local_node
	for spec in "user:=./h" "member-jion=./h" "user,=./h" "user:deploy=" ""; do
		run --separate-stderr gossip-peers -d "$T/a" -x "$spec" watch
		[ "$status" = 2 ] || fail "$spec: exit $status"
		assert_error gossip-peers "-x $spec"
	done
	run --separate-stderr gossip-peers -d "$T/a" -x ./h list
	[ "$status" = 2 ]
	run --separate-stderr gossip-peers -d "$T/a" -c 0 -x ./h watch
	[ "$status" = 2 ]
	assert_error gossip-peers "-c 0: want a window in seconds"
	set -- $(freeports 1)
	cp a/key.pub key.before
	run --separate-stderr gossip-node -d "$T/a" -l "127.0.0.1:$1" -x "user:=./h"
	[ "$status" = 2 ] || fail "exit $status: $stderr"
	assert_error gossip-peers "-x user:=./h: user:: want a name after the colon"
	run gossip-node -d "$T/a" status
	[ "$status" = 3 ]
	cmp key.before a/key.pub
	[ ! -e a/store ] || fail "the node stored something"
}
