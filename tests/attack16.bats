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

# cluster N [gossip-node options...]: nodes n1..nN, each answering every query with
# "NAME ok", all alive everywhere.
cluster() {
	local k=$1 i
	shift
	node_start n1 "${PORTS[0]}" "" -x "query=printf '%s ok' \"\$GOSSIP_SELF_NAME\"" "$@" || return 1
	for ((i = 2; i <= k; i++)); do
		node_spawn "n$i" "${PORTS[i - 1]}" "${PORTS[0]}" -x "query=printf '%s ok' \"\$GOSSIP_SELF_NAME\"" "$@"
	done
	node_listens $NODES || return 1
	for ((i = 1; i <= k; i++)); do
		wait_for 20 sees "$k" alive "n$i"
	done
}

# query_value FILE NAME REPLY [TAG REGEX]: a query's value (the CBOR map of gossip(7),
# QUERIES), as a hostile member makes it by hand: deadline AHEAD ms ahead (60000 unless
# set), ack, no relay.
query_value() {
	AHEAD=${AHEAD:-60000} $PY - "$@" <<'PY'
import cbor2, os, sys, time
out, name, reply = sys.argv[1:4]
q = {1: name, 2: b"", 3: reply, 4: int(time.time() * 1000) + int(os.environ["AHEAD"]), 5: 100, 6: 1, 7: 0}
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
	limit="ulimit -v 1000000"
	! under_asan || limit=:
	for re in '((a{1,1000}){1,1000})' '(((.{1,60}){1,60}){1,60})' '(x{0,32767}){0,32767}'; do
		# A bound on what it takes, were it compiled (none under ASan, whose shadow memory
		# needs the address space: the timeout bounds it there).
		run --separate-stderr timeout 20 bash -c "$limit"'; exec "$@"' sh \
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
	under_asan || ulimit -v 3000000  # were it compiled, a bound on what it takes from the machine
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

# udp_sink PORT FILE: in the background, each datagram to 127.0.0.1:PORT as a line of hex
# in FILE; its pid in SINKS (stopped by teardown).
udp_sink() {
	: >"$2"
	$PY - "$@" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    d = s.recv(65536)
    with open(sys.argv[2], "a") as f:
        f.write(d.hex() + "\n")
PY
	SINKS="${SINKS:-} $!"
	wait_for 5 sh -c "ss -Hlun 'sport = :$1' | grep -q ."
}

# send_response SIGNER_DIR PORT REPLY ANSWER: an answer to a made-up query, signed by
# SIGNER_DIR's key, reply address REPLY, sent to 127.0.0.1:PORT (a node, to relay it).
send_response() {
	$PY - "$@" <<'PY'
import base64, cbor2, os, socket, sys
from nacl.signing import SigningKey
d, port, reply, answer = sys.argv[1:5]
sk = SigningKey(base64.b64decode(open(d + "/key").read().strip()))
value = cbor2.dumps([os.urandom(16), 2, answer.encode(), reply])
payload = cbor2.dumps({1: 6, 5: value})
prot = bytes([0xa1, 0x01, 0x27])
sig = sk.sign(cbor2.dumps(["Signature1", prot, b"", payload])).signature
msg = cbor2.dumps(cbor2.CBORTag(18, [prot, {4: bytes(sk.verify_key)}, payload, sig]))
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(msg, ("127.0.0.1", int(port)))
PY
}

hex_of() {
	printf '%s' "$1" | od -An -tx1 | tr -d ' \n'
}

lines_in() {
	[ "$(wc -l <"$1")" -ge "$2" ]
}

@test "a reply address that names a host, or many: a relay and an answerer send nothing there and look nothing up" {
	teardown() { for p in ${SINKS:-}; do kill "$p" 2>/dev/null; done; nodes_stop; }
	cluster 1
	sink=${PORTS[2]}
	udp_sink "$sink" relayed
	# A restricted member's responses (a response needs no prefix): a name (localhost
	# resolves without DNS here; elsewhere a lookup holds up the failure detector as long
	# as DNS takes), a multicast group; then a numeric address, which is relayed.
	send_response "$T/r" "${PORTS[0]}" "udp://localhost:$sink" named
	send_response "$T/r" "${PORTS[0]}" "udp://224.0.0.1:$sink" multicast
	send_response "$T/r" "${PORTS[0]}" "udp://127.0.0.1:$sink" numeric
	wait_for 10 lines_in relayed 1
	run ! grep -q "$(hex_of named)" relayed
	grep -q "$(hex_of numeric)" relayed || fail "$(cat relayed)"
	# A hostile member's query with a named reply address: not acked, not answered.
	sink2=${PORTS[1]}
	udp_sink "$sink2" answered
	query_value named hello "udp://localhost:$sink2"
	gossip-send -d "$T/h" -b -f named -t "udp://127.0.0.1:${PORTS[0]}" event _query
	wait_for 10 grep -q "query hello not answered: udp://localhost:$sink2: not a numeric address" "$T/n1.log"
	query_value numeric hello "udp://127.0.0.1:$sink2"
	gossip-send -d "$T/h" -b -f numeric -t "udp://127.0.0.1:${PORTS[0]}" event _query
	wait_for 10 lines_in answered 2
	grep -q "$(hex_of 'n1 ok')" answered || fail "no answer: $(cat answered)"
	[ "$(wc -l <answered)" = 2 ] || fail "$(wc -l <answered) datagrams, want an ack and an answer"
	[ "$(wc -l <relayed)" = 1 ] || fail "relayed: $(cat relayed)"
	kill -0 "$PGID_n1" || fail "the node died"
}

@test "a query whose deadline is hours ahead holds no handler slot: refused, not acked, the next query answered" {
	teardown() { for p in ${SINKS:-}; do kill "$p" 2>/dev/null; done; nodes_stop; }
	cluster 1
	sink=${PORTS[2]}
	udp_sink "$sink" answered
	AHEAD=7200000 query_value far hello "udp://127.0.0.1:$sink"
	gossip-send -d "$T/h" -b -f far -t "udp://127.0.0.1:${PORTS[0]}" event _query
	wait_for 10 grep -q "query hello refused: its deadline is more than an hour ahead" "$T/n1.log"
	query_value near hello "udp://127.0.0.1:$sink"
	gossip-send -d "$T/h" -b -f near -t "udp://127.0.0.1:${PORTS[0]}" event _query
	wait_for 10 lines_in answered 2
	[ "$(wc -l <answered)" = 2 ] || fail "$(wc -l <answered) datagrams, want the near query's ack and answer only"
}

# force_leave_value FILE KEYFILE INCARNATION: a _force-leave's value, the member's key and
# the 8-byte big-endian incarnation.
force_leave_value() {
	$PY -c 'import base64, sys
k = base64.b64decode(open(sys.argv[2]).read().split()[0])
open(sys.argv[1], "wb").write(k + int(sys.argv[3]).to_bytes(8, "big"))' "$@"
}

state_is() {
	[ "$(state_of "$1" "$2")" = "$3" ]
}

@test "force-leave forged by a restricted member, or naming an alive member or the node itself, changes no table" {
	cluster 3
	node_kill n3
	for n in n1 n2; do wait_for 30 state_is "$n" n3 dead; done
	max=18446744073709551615
	# r holds prefix=app/: its force-leave of the dead n3 is refused (forbidden).
	force_leave_value fl3 n3.pub "$max"
	for p in "${PORTS[0]}" "${PORTS[1]}"; do
		gossip-send -d "$T/r" -b -f fl3 -t "udp://127.0.0.1:$p" event _force-leave
	done
	for n in n1 n2; do
		wait_for 10 sh -c "gossip-node -d $T/$n -j status | jq -e '.refused_by_reason.forbidden >= 1' >/dev/null"
	done
	# h may force members out, but not an alive one (n2), nor n1 that runs (it refutes).
	force_leave_value fl2 n2.pub "$max"
	force_leave_value fl1 n1.pub "$max"
	for f in fl2 fl1; do
		for p in "${PORTS[0]}" "${PORTS[1]}"; do
			gossip-send -d "$T/h" -b -f "$f" -t "udp://127.0.0.1:$p" event _force-leave
		done
	done
	wait_for 10 grep -q "a force-leave of this node, which runs: refuting it" "$T/n1.log"
	for n in n1 n2; do
		[ "$(state_of "$n" n3)" = dead ] || fail "$n: n3 is $(state_of "$n" n3)"
		wait_for 10 state_is "$n" n1 alive
		wait_for 10 state_is "$n" n2 alive
	done
	# The nodes still take a force-leave that is allowed: h's of the dead n3.
	for p in "${PORTS[0]}" "${PORTS[1]}"; do
		gossip-send -d "$T/h" -b -f fl3 -t "udp://127.0.0.1:$p" event _force-leave
	done
	for n in n1 n2; do wait_for 10 state_is "$n" n3 left; done
}

# claim_value FILE PUBFILE INC: the value of a claim that the member of PUBFILE is down at
# incarnation INC (gossip(7), MEMBERSHIP: [key, incarnation]), as a hostile member makes it.
claim_value() {
	$PY -c 'import base64, cbor2, sys
k = base64.b64decode(open(sys.argv[2]).read().split()[0])
open(sys.argv[1], "wb").write(cbor2.dumps([k, int(sys.argv[3])]))' "$@"
}

# not_dead_throughout SECONDS NAME OBSERVERS...: NAME is not dead in any observer's table
# at each look, a probe interval apart, for SECONDS (a suspicion a loaded machine causes
# is refuted; a claim at 2^64-1 could not be).
not_dead_throughout() {
	local until=$(($(date +%s%N) / 1000000 + ${1%.*} * 1000)) name=$2 n
	shift 2
	while [ "$(($(date +%s%N) / 1000000))" -lt "$until" ]; do
		for n in "$@"; do
			[ "$(state_of "$n" "$name")" != dead ] || fail "$n: $name is dead: $(grep -h "claim\|refut" "$T"/n*.log | tail -5)"
		done
		sleep "$HB"
	done
}

@test "a member's claims about incarnations never announced (up to 2^64-1): nobody takes the target down, and it is not driven to 2^64-1" {
	cluster 3
	# The reviewer's two steps: 2^64-2 to n2 (it used to refute at 2^64-1), then 2^64-1
	# to n1 (which took n2 dead for good: no incarnation is newer).
	claim_value c2 n2.pub 18446744073709551614
	claim_value c1 n2.pub 18446744073709551615
	gossip-send -d "$T/h" -b -f c2 -t "udp://127.0.0.1:${PORTS[1]}" set _dead
	gossip-send -d "$T/h" -b -f c1 -t "udp://127.0.0.1:${PORTS[0]}" set _dead
	for p in "${PORTS[@]}"; do
		gossip-send -d "$T/h" -b -f c1 -t "udp://127.0.0.1:$p" set _suspect
		gossip-send -d "$T/h" -b -f c2 -t "udp://127.0.0.1:$p" set _dead
	done
	wait_for 10 grep -q "and no record of its own" "$T/n2.log"
	# Twenty probe intervals: n2 is dead nowhere, and refuted nothing at such heights.
	not_dead_throughout "$(awk -v hb="$HB" 'BEGIN { printf "%d", 20 * hb + 1 }')" n2 n1 n3
	! grep -E "refuting a claim .*incarnation [0-9]{19}" "$T/n2.log" || fail "n2 refuted a lie"
	[ "$(grep -c "and no record of its own" "$T/n2.log")" = 1 ] || fail "the lie said more than once a minute"
}

@test "a heartbeat replayed to nodes that probe (one captured, or by anyone who saw it) does not bring a dead member back" {
	cluster 3
	# A heartbeat of n3's, signed before it died (members that probe send none: this
	# stands for one captured, or made by an older version).
	gossip-send -d "$T/n3" set _hb "" >hb
	node_kill n3
	for n in n1 n2; do wait_for 30 state_is "$n" n3 dead; done
	for p in "${PORTS[0]}" "${PORTS[1]}"; do
		gossip-send "udp://127.0.0.1:$p" <hb
	done
	# Ten probe intervals: still dead (it came back alive at once, and went dead again
	# only after a suspicion).
	for _ in $(seq 1 10); do
		for n in n1 n2; do
			state_is "$n" n3 dead || fail "$n: n3 is $(state_of "$n" n3) after a replayed heartbeat"
		done
		sleep "$HB"
	done
}

@test "handlers: an event name, payload and key full of shell syntax reach the handler as data, never run" {
	cluster 1 -x "user,key:app/=printf '%s|%s|%s\\n' \"\$GOSSIP_EVENT\" \"\${GOSSIP_USER_EVENT:-\$GOSSIP_KEY}\" \"\$GOSSIP_ORIGIN_NAME\" >>$T/ran; cat >>$T/ran; echo >>$T/ran"
	evil='$(touch '"$T"'/pwned1)`touch '"$T"'/pwned2`;touch '"$T"'/pwned3 "'"'"'\'
	gossip-send -d "$T/h" -t "udp://127.0.0.1:${PORTS[0]}" event "$evil" "$evil"
	gossip-send -d "$T/r" -t "udp://127.0.0.1:${PORTS[0]}" set "app/$evil" "$evil"
	wait_for 10 lines_in "$T/ran" 4
	[ "$(cat "$T/ran")" = "$(printf 'user|%s|h\n%s\nkey|app/%s|r\n%s' "$evil" "$evil" "$evil" "$evil")" ] ||
		fail "handler saw: $(cat "$T/ran")"
	run ! ls "$T"/pwned*
	kill -0 "$PGID_n1" || fail "the node died"
}
