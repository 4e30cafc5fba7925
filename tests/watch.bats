#!/usr/bin/env bats
# gossip-merge watch: each key change printed as it is merged (text and JSON lines), from
# now on, once, across compactions; a prefix; membership's keys, events and revoked
# signers left out; it ends with its reader or a signal, and never changes the store.
load helper
load node

setup() {
	base_setup
	NODES=
	WPID=
	HPID=
	two_nodes
	mknode c
	trust b c
}

teardown() {
	if [ -n "$WPID" ]; then kill "$WPID" 2>/dev/null || true; fi
	if [ -n "$HPID" ]; then kill "$HPID" 2>/dev/null || true; fi
	nodes_stop
}

# put KEY VALUE [SIGNER]: a set signed by SIGNER (default a), merged into b.
put() {
	gossip-send -d "$T/${3:-a}" set "$1" "$2" | gossip-merge -d b >/dev/null
}

# watch_start [OPTIONS] [-- WATCH ARGS]: gossip-merge watch on b in the background, its
# output in out and its errors in err; return once it is watching.
watch_start() {
	local opts=() args=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
	[ $# -gt 0 ] && shift
	args=("$@")
	rm -f out err
	gossip-merge -v "${opts[@]}" -d b watch "${args[@]}" >out 2>err &
	WPID=$!
	wait_for 5 grep -q "^gossip-merge: watching b/store" err
}

# printed TEXT: a line of out holds TEXT.
printed() {
	grep -q -- "$1" out
}

# lines_of TEXT: how many lines of out hold TEXT.
lines_of() {
	count_lines "$1" out
}

# watch_stop: end the watch with SIGTERM; fail unless it exits 0 with only its "watching"
# line (and reload lines) on stderr.
watch_stop() {
	local st=0
	kill -TERM "$WPID"
	wait "$WPID" || st=$?
	WPID=
	[ "$st" = 0 ] || fail "watch exited $st: $(cat err)"
	! grep -v -e "^gossip-merge: watching " -e "^gossip-merge: reloaded: " err ||
		fail "unexpected errors: $(cat err)"
}

@test "changes are printed as they are merged, not what was stored before; -j for scripts" {
	put old before
	watch_start
	put k1 v1
	gossip-send -d a set k2 "two words" | gossip-merge -d b >/dev/null
	wait_for 5 printed '"two words"'
	watch_stop
	run cat out
	assert_line --index 0 --regexp '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z set k1 a v[0-9]+ "v1"$'
	assert_line --index 1 --regexp '^[0-9T:.Z-]+ set k2 a v[0-9]+ "two words"$'
	[ "${#lines[@]}" = 2 ] || fail "want two lines: $output"

	watch_start -j
	put k3 "tab	and \"quote\""
	wait_for 5 printed k3
	watch_stop
	[ "$(wc -l <out)" = 1 ] || fail "$(cat out)"
	pk=$(cut -d' ' -f1 a.pub)
	run $PY -c 'import json, sys
r = json.loads(open("out").read())
assert sorted(r) == ["key", "name", "op", "origin", "time", "value", "version"], r
print(r["op"], r["key"], r["origin"], r["name"], r["value"], r["version"] > 0, r["time"] > 0)'
	assert_success
	assert_output "set k3 $pk a tab	and \"quote\" True True"
}

@test "a control byte is escaped, a key with a space quoted" {
	watch_start
	gossip-send -d a set "odd key" $'bell\a\x1b[31m' | gossip-merge -d b >/dev/null
	wait_for 5 printed odd
	watch_stop
	run cat out
	assert_output --regexp ' set "odd key" a v[0-9]+ "bell\\u0007\\u001b\[31m"$'
	run grep -c $'\x1b' out
	assert_output 0
}

@test "a delete prints del and no value; an event is no key change" {
	put k v
	watch_start
	gossip-send -d a del k | gossip-merge -d b >/dev/null
	gossip-send -d a event deploy now | gossip-merge -d b >/dev/null
	put sentinel 1
	wait_for 5 printed sentinel
	watch_stop
	run cat out
	assert_line --index 0 --regexp '^[0-9T:.Z-]+ del k a v[0-9]+$'
	assert_line --index 1 --regexp ' set sentinel a '
	[ "${#lines[@]}" = 2 ] || fail "the event was printed: $output"
	watch_start -j
	gossip-send -d a del k2 | gossip-merge -d b >/dev/null
	wait_for 5 printed k2
	watch_stop
	run jq -c 'del(.time, .version, .origin)' out
	assert_output '{"op":"del","key":"k2","name":"a"}'
}

@test "bytes values: base64 with a marker (text), value64 (JSON)" {
	head -c 20 /dev/urandom >small
	head -c 300 /dev/urandom >big
	b64=$(base64 -w0 small)
	watch_start
	gossip-send -d a -b -f small set small | gossip-merge -d b >/dev/null
	gossip-send -d a -b -f big set big | gossip-merge -d b >/dev/null
	wait_for 5 printed ' set big '
	watch_stop
	run cat out
	assert_line --index 0 --regexp " set small a v[0-9]+ b64'${b64//+/\\+}'\$"
	assert_line --index 1 --regexp " set big a v[0-9]+ b64'[A-Za-z0-9+/]{64}\.\.\.' \(300 bytes\)\$"
	watch_start -j
	gossip-send -d a -b -f big set big | gossip-merge -d b >/dev/null
	wait_for 5 printed big
	watch_stop
	run jq -r '[has("value"), .value64] | @tsv' out
	assert_output "false	$(base64 -w0 big)"
}

@test "a prefix filters keys; membership's _ keys only when the prefix asks for them" {
	watch_start -- app/
	put app/x 1
	put other 2
	put _app 3
	put app/y 4
	wait_for 5 printed app/y
	watch_stop
	run cut -d' ' -f3 out
	assert_output $'app/x\napp/y'

	watch_start
	put _member-ish 1
	put plain 2
	wait_for 5 printed plain
	watch_stop
	[ "$(lines_of _member-ish)" = 0 ] || fail "an _ key was shown: $(cat out)"

	watch_start -- _m
	put _member-ish 3
	put plain 4
	put _mine 5
	wait_for 5 printed _mine
	watch_stop
	run cut -d' ' -f3 out
	assert_output $'_member-ish\n_mine'

	# A prefix that starts with -, after --.
	watch_start -- -- -dash
	put -dash/1 x
	wait_for 5 printed -dash/1
	watch_stop
}

@test "a compaction while watching prints nothing again and loses nothing merged meanwhile" {
	for i in 1 2 3; do put "old$i" "$i"; done
	watch_start
	put k1 v1
	put k2 v2
	wait_for 5 printed k2
	run gossip-merge -d b compact
	assert_success
	put k3 v3
	wait_for 5 printed k3
	# Paused: merged, compacted and merged again before it looks.
	kill -STOP "$WPID"
	put k4 v4
	put k1 v1-again
	gossip-merge -d b compact >/dev/null
	put k5 v5
	kill -CONT "$WPID"
	wait_for 5 printed k5
	put last 1
	wait_for 5 printed last
	watch_stop
	run cut -d' ' -f3,6 out
	assert_output $'k1 "v1"\nk2 "v2"\nk3 "v3"\nk4 "v4"\nk1 "v1-again"\nk5 "v5"\nlast "1"'
}

@test "a revoked signer's changes are not shown (trusted is read again when it changes)" {
	watch_start
	put from-c 1 c
	wait_for 5 printed from-c
	# c leaves trusted; a writer that has not noticed yet stores c's next change.
	grep -v "$(cut -d' ' -f1 c.pub)" b/trusted >trusted.new
	mv trusted.new b/trusted
	wait_for 5 grep -q "reloaded: " err
	gossip-send -d c set again 2 >>b/store
	put sentinel 1
	wait_for 5 printed sentinel
	watch_stop
	[ "$(lines_of again)" = 0 ] || fail "$(cat out)"
	[ "$(lines_of from-c)" = 1 ] || fail "$(cat out)"
}

@test "it ends when its reader goes, even while nothing is merged, and on SIGINT; exit 0" {
	mkfifo pipe
	gossip-merge -v -d b watch >pipe 2>err &
	WPID=$!
	head -1 <pipe >out &
	HPID=$!
	wait_for 5 grep -q "watching" err
	put k1 v1
	wait_for 5 test -s out
	# head has its line and is gone; nothing more is merged: the watch ends by itself.
	wait_for 5 gone "$WPID"
	st=0
	wait "$WPID" || st=$?
	WPID=
	[ "$st" = 0 ] || fail "exit status $st: $(cat err)"
	[ "$(grep -vc watching err)" = 0 ] || fail "$(cat err)"
	run cat out
	assert_output --regexp ' set k1 '
	# No pipe: SIGINT.
	watch_start
	kill -INT "$WPID"
	st=0
	wait "$WPID" || st=$?
	WPID=
	[ "$st" = 0 ] || fail "exit $st on SIGINT"
}

# gone PID: the process has ended (a zombie counts: it is waited for after).
gone() {
	local s
	{ read -r s <"/proc/$1/stat"; } 2>/dev/null || return 0
	s=${s##*) }
	[ "${s%% *}" = Z ]
}

@test "watch never changes the store; bad usage is one line, exit 2, nothing changed" {
	put k v
	watch_start
	put k2 v2
	wait_for 5 printed k2
	before=$(snapshot b)
	# Let it look at the store a few times.
	gossip-merge -d b digest >/dev/null
	sleep 0.2
	watch_stop
	[ "$(snapshot b)" = "$before" ] || fail "the watch changed b"
	for args in "watch a b" "watch --bogus" "watch -j" "watch -- a b"; do
		run --separate-stderr gossip-merge -d b $args
		assert_failure 2
		case $args in
		*bogus | *-j) assert_error gossip-merge "unknown option; options go before the verb" ;;
		*) assert_error gossip-merge "give at most one prefix" ;;
		esac
	done
	for args in "-a watch" "--verified watch" "--max-skew 5 watch" "-o a watch" "--bogus watch"; do
		run --separate-stderr gossip-merge -d b $args
		assert_failure 2
	done
	run --separate-stderr gossip-merge -d nowhere watch
	assert_failure 2
	assert_error gossip-merge "watch: nowhere: No such file or directory; give a node's state directory with -d"
	[ ! -e nowhere ]
	[ "$(snapshot b)" = "$before" ]
}

@test "a two-node cluster: a set published at node 1 appears in watch at node 2" {
	set -- $(freeports 2)
	for n in n1 n2; do gossip-keygen -d "$T/$n" -n "$n" >"$n.pub"; done
	# trusted names the members otherwise: the member records' names are shown.
	for n in n1 n2; do sed 's/ n\([12]\)$/ t\1/' n1.pub n2.pub >"$n/trusted"; done
	node_start n1 "$1" ""
	node_start n2 "$2" "$1"
	wait_for 30 alive_at n2 2
	watch_start_at n2
	gossip-send -d n1 set deploy v1 | gossip-merge -d n1 | gossip-send -d n1 -k 3 -M
	wait_for 20 printed deploy
	watch_stop
	run jq -r 'select(.key == "deploy") | [.op, .name, .value] | @tsv' out
	assert_line --index 0 "set	n1	v1"
}

# alive_at NODE N: NODE sees N members alive.
alive_at() {
	[ "$(gossip-peers -d "$1" -j list 2>/dev/null | jq -r .state | grep -c '^alive$')" = "$2" ]
}

# watch_start_at DIR: gossip-merge -j watch on DIR, as watch_start does on b.
watch_start_at() {
	rm -f out err
	gossip-merge -v -j -d "$1" watch >out 2>err &
	WPID=$!
	wait_for 5 grep -q "^gossip-merge: watching $1/store" err
}
