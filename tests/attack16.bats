#!/usr/bin/env bats
# Attacks on issue 16's surfaces (queries, force-leave, handlers, watch, status), by an
# outsider (only public keys), a trusted but hostile member (h, unrestricted, and r, held
# to prefix=app/), and a peer that lies, replays or floods. Each checks that nothing
# stored or delivered changed and that the nodes keep running.
load helper
load node

setup() {
	base_setup
	NODES=
	set -- $(freeports 3)
	PORTS=("$@")
	for n in n1 n2 n3 h r mallory; do gossip-keygen -d "$T/$n" -n "$n" >"$n.pub"; done
	for n in n1 n2 n3; do
		cat n1.pub n2.pub n3.pub h.pub >"$n/trusted"
		sed 's|^|prefix=app/ |' r.pub >>"$n/trusted"
	done
}

teardown() {
	nodes_stop
}

all_alive() {
	[ "$(gossip-peers -d "$T/$1" -j list | jq -s '[.[] | select(.state == "alive")] | length')" = "$2" ]
}

# cluster N [gossip-node options...]: nodes n1..nN, each answering every query with
# "NAME ok", all alive everywhere.
cluster() {
	local k=$1 i
	shift
	node_start n1 "${PORTS[0]}" "" -x "query=printf '%s ok' \"\$GOSSIP_SELF_NAME\"" "$@" || return 1
	for ((i = 2; i <= k; i++)); do
		node_start "n$i" "${PORTS[i - 1]}" "${PORTS[0]}" -x "query=printf '%s ok' \"\$GOSSIP_SELF_NAME\"" "$@" ||
			return 1
	done
	for ((i = 1; i <= k; i++)); do
		wait_for 20 all_alive "n$i" "$k"
	done
}

# query_value FILE NAME REPLY [TAG REGEX]: a query's value (the CBOR map of gossip(7),
# QUERIES), as a hostile member makes it by hand: deadline 60 s ahead, ack, no relay.
query_value() {
	$PY - "$@" <<'PY'
import cbor2, sys, time
out, name, reply = sys.argv[1:4]
q = {1: name, 2: b"", 3: reply, 4: int(time.time() * 1000) + 60000, 5: 100, 6: 1, 7: 0}
if len(sys.argv) > 5:
    q[9] = {sys.argv[4]: sys.argv[5]}
open(out, "wb").write(cbor2.dumps(q, canonical=True))
PY
}

# peak_kb PID: the most memory the process has held (VmHWM), in kB.
peak_kb() {
	sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$1/status"
}

# answerer NODE: the pid of the node's gossip-query answer.
answerer() {
	local line
	line=$(dir_procs "$T/$1" | grep ' gossip-query .* answer' | head -1)
	echo "${line%% *}"
}

@test "a tag regex whose repetitions expand to gigabytes is refused by the asker at once, exit 2" {
	mknode solo
	for re in '((a{1,1000}){1,1000})' '(((.{1,60}){1,60}){1,60})' '(x{0,32767}){0,32767}'; do
		run --separate-stderr timeout 20 bash -c 'ulimit -v 1000000; exec "$@"' sh \
			gossip-query -d "$T/solo" -t "role=$re" hello
		assert_failure 2
		assert_error gossip-query "too costly"
	done
	# Back-references are not POSIX ERE, and their matching can take exponential time.
	run --separate-stderr gossip-query -d "$T/solo" -t 'role=(.*)(.*)\1\2' hello
	assert_failure 2
	assert_error gossip-query "back-reference"
	# What people write still goes (it fails only for want of a node here).
	run --separate-stderr gossip-query -d "$T/solo" -t 'role=web-[0-9]{1,3}|db[a-f0-9]{8}' hello
	assert_failure 2
	assert_error gossip-query "no node listens here"
}

@test "a hostile member's query with a regex bomb: every answerer refuses it small and fast, and answers the next query" {
	ulimit -v 3000000  # were it compiled, a bound on what it takes from the machine
	cluster 2
	a1=$(answerer n1)
	a2=$(answerer n2)
	[ -n "$a1" ] && [ -n "$a2" ] || fail "no answerer: $(dir_procs "$T/n1")"
	query_value bomb hello udp://127.0.0.1:9 role '((a{1,1000}){1,1000})'
	gossip-send -d "$T/h" -b -f bomb -t "udp://127.0.0.1:${PORTS[0]}" event _query
	wait_for 10 grep -q "query that is not one refused: .*too costly" "$T/n1.log"
	wait_for 10 grep -q "query that is not one refused: .*too costly" "$T/n2.log"
	for p in "$a1" "$a2"; do
		kill -0 "$p" || fail "answerer $p died"
		[ "$(peak_kb "$p")" -lt 100000 ] || fail "answerer $p held $(peak_kb "$p") kB"
	done
	run --separate-stderr gossip-query -d "$T/n1" -T 10 hello
	assert_success
	[ "$(printf '%s\n' "$output" | sort)" = "$(printf 'n1\tn1 ok\nn2\tn2 ok')" ] || fail "$output $stderr"
}
