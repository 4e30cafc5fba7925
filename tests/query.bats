#!/usr/bin/env bats
# gossip-query: five loopback nodes, each answering queries with its -x handlers
# (gossip-node starts gossip-query answer). A query answered by all, filtered by tag
# and by name, a handler past the deadline, answers cut at the limit; forged, replayed and
# unasked responses refused; bad usage.
load helper
load node

# One cluster for the file: starting five nodes is the slow part.
setup_file() {
	T="$BATS_FILE_TMPDIR"
	export T
	cd "$T" || return 1
	unset GOSSIP_DIR
	NODES=
	set -- $(freeports 5)
	for i in 1 2 3 4 5; do gossip-keygen -d "$T/n$i" -n "n$i" >"$T/n$i.pub"; done
	for i in 1 2 3 4 5; do cat "$T"/n*.pub >"$T/n$i/trusted"; done
	gossip-keygen -d "$T/mallory" -n mallory >/dev/null
	# Tags: role=web on n1 and n2, db on n3, dbx on n4 (a regex must match it whole).
	local tags=([1]="-t role=web" [2]="-t role=web" [3]="-t role=db" [4]="-t role=dbx" [5]="")
	# Every node answers every query with NAME:PAYLOAD; "big" with 100 bytes; n5 sleeps
	# past any deadline on "slow".
	local h="query=printf '%s:%s' \"\$GOSSIP_SELF_NAME\" \"\$(cat)\""
	local big="query:big=head -c 100 /dev/zero | tr '\\000' x"
	# What the handler's processes ignore: SIGHUP (a reload), not SIGXFSZ (the node's
	# programs ignore it; the handler gets its default back).
	local sig="query:sigign=grep '^SigIgn:' /proc/self/status"
	# gossip-node starts gossip-query answer with its -x handlers.
	local slow=()
	node_start n1 "$1" "" ${tags[1]} -x "$big" -x "$sig" -x "$h"
	for i in 2 3 4 5; do
		eval "port=\${$i}"
		[ "$i" = 5 ] && slow=(-x "query:slow=sleep 30")
		node_start "n$i" "$port" "$1" ${tags[$i]} "${slow[@]}" -x "$big" -x "$h"
	done
	export NODES PGID_n1 PGID_n2 PGID_n3 PGID_n4 PGID_n5
	local tries=0
	until all_alive 5; do
		tries=$((tries + 1))
		[ "$tries" -lt 600 ] || { echo "the cluster did not form" >&2; return 1; }
		sleep 0.05
	done
}

teardown_file() {
	nodes_stop
}

setup() {
	cd "$T" || return 1
	unset GOSSIP_DIR
}

teardown() {
	:
}

@test "a query is answered by every member: names and answers, the summary, exit 0" {
	run --separate-stderr gossip-query -d "$T/n1" -T 10 hello there
	assert_success
	[ "$(printf '%s\n' "$output" | sort)" = "$(printf 'n%s\tn%s:there\n' 1 1 2 2 3 3 4 4 5 5)" ] ||
		fail "answers: $output"
	[[ $stderr == *"5 asked, 5 acked, 5 answered in "* ]] || fail "summary: $stderr"
	[[ $stderr != *"no answer"* ]] || fail "$stderr"
}

@test "-j: JSON lines, acks and answers, and a summary" {
	run --separate-stderr gossip-query -j -d "$T/n2" -T 10 hello -
	assert_success
	[ "$(printf '%s\n' "$output" | jq -r 'select(.type == "answer") | .name + " " + .answer' | sort)" = \
		"$(printf 'n%s n%s:\n' 1 1 2 2 3 3 4 4 5 5)" ] || fail "$output"
	printf '%s\n' "$output" | jq -s -e 'map(select(.type == "summary")) | length == 1 and (.[0] |
		.asked == 5 and .answered == 5 and .acked == 5 and .refused == 0 and .missing == [] and
		(.query | length) == 32)' >/dev/null || fail "$output"
	[ "$(printf '%s\n' "$output" | jq -r 'select(.type == "ack") | .name' | sort | paste -sd' ')" = "n1 n2 n3 n4 n5" ] ||
		fail "acks: $output"
	key=$(cut -d' ' -f1 "$T/n3.pub")
	printf '%s\n' "$output" | jq -s -e --arg k "$key" 'map(select(.type == "answer" and .name == "n3")) |
		length == 1 and .[0].id == $k and .[0].ms >= 0' >/dev/null || fail "n3's id: $output"
}

@test "-t tag=regex asks only the members whose tag matches it whole" {
	run --separate-stderr gossip-query -d "$T/n1" -T 10 -t role=db hello x
	assert_success
	[ "$output" = "$(printf 'n3\tn3:x')" ] || fail "answers: $output"
	[[ $stderr == *"1 asked, 1 acked, 1 answered"* ]] || fail "$stderr"
	run --separate-stderr gossip-query -d "$T/n4" -T 10 -t 'role=web|db.*' hello y
	assert_success
	[ "$(printf '%s\n' "$output" | sort)" = "$(printf 'n%s\tn%s:y\n' 1 1 2 2 3 3 4 4)" ] || fail "$output"
}

@test "-n name asks only the members named" {
	run --separate-stderr gossip-query -d "$T/n1" -T 10 -n n2 -n n5 hello z
	assert_success
	[ "$(printf '%s\n' "$output" | sort)" = "$(printf 'n2\tn2:z\nn5\tn5:z')" ] || fail "$output"
	[[ $stderr == *"2 asked, 2 acked, 2 answered"* ]] || fail "$stderr"
}

@test "an answer's handler runs with SIGHUP ignored and SIGXFSZ at its default" {
	run --separate-stderr gossip-query -d "$T/n2" -T 10 -n n1 sigign
	assert_success
	# The answer as printed: "n1", a tab, then "SigIgn:\t" and the mask (its tab escaped).
	mask=$(printf '%s\n' "$output" | sed -n 's/^n1\t.*SigIgn:.*\([0-9a-f]\{16\}\)$/\1/p')
	[ -n "$mask" ] || fail "no answer: $output"
	[ $((0x$mask & 1)) = 1 ] || fail "SIGHUP (bit 0) not ignored in the handler: SigIgn $mask"
	[ $((0x$mask >> 24 & 1)) = 0 ] || fail "SIGXFSZ (bit 24) ignored in the handler: SigIgn $mask"
}

@test "a handler past the deadline: exit 1, the summary names who did not answer, the node goes on" {
	run --separate-stderr gossip-query -d "$T/n1" -T 2 slow now
	assert_failure 1
	[ "$(printf '%s\n' "$output" | sort)" = "$(printf 'n%s\tn%s:now\n' 1 1 2 2 3 3 4 4)" ] || fail "$output"
	[[ $stderr == *"5 asked, 5 acked, 4 answered"*"; no answer from n5" ]] || fail "$stderr"
	wait_for 5 grep -q "handler did not finish by the deadline: killed" "$T/n5.log"
	run gossip-node -d "$T/n5" status
	assert_success
	run --separate-stderr gossip-query -d "$T/n1" -T 10 -n n5 hello again
	assert_success
	[ "$output" = "$(printf 'n5\tn5:again')" ] || fail "$output"
}

@test "-R: each answer also goes through random members, which relay it once: the copies are duplicates" {
	run --separate-stderr gossip-query -j -d "$T/n1" -T 2 -R 2 -n n2 -n n5 slow r
	assert_failure 1
	[ "$(printf '%s\n' "$output" | jq -r 'select(.type == "answer") | .name + " " + .answer')" = "n2 n2:r" ] ||
		fail "$output"
	printf '%s\n' "$output" | jq -s -e 'map(select(.type == "summary")) | .[0] | .duplicates >= 1 and
		.refused == 0 and .missing == ["n5"]' >/dev/null || fail "no relayed copy: $output"
}

@test "an answer over the limit is cut at it by the member that answers" {
	run --separate-stderr gossip-query -d "$T/n1" -T 10 -l 10 -n n2 big
	assert_success
	[ "$output" = "$(printf 'n2\txxxxxxxxxx')" ] || fail "$output"
	wait_for 5 grep -q "query big: the answer was cut at the query's limit of 10 bytes" "$T/n2.log"
	run --separate-stderr gossip-query -d "$T/n1" -T 10 -l 100 -n n2 big
	assert_success
	[ "$output" = "$(printf 'n2\t%s' "$(head -c 100 /dev/zero | tr '\0' x)")" ] || fail "$output"
}

# respond SIGNER_DIR ID_HEX REPLY KIND ANSWER: one response datagram, signed by SIGNER_DIR's
# key, to REPLY (udp://host:port).
respond() {
	$PY - "$@" <<'PY'
import base64, cbor2, socket, sys
from nacl.signing import SigningKey
d, idhex, reply, kind, answer = sys.argv[1:6]
sk = SigningKey(base64.b64decode(open(d + "/key").read().strip()))
pk = bytes(sk.verify_key)
value = cbor2.dumps([bytes.fromhex(idhex), int(kind), answer.encode(), reply])
payload = cbor2.dumps({1: 6, 5: value})
prot = bytes([0xa1, 0x01, 0x27])
sig = sk.sign(cbor2.dumps(["Signature1", prot, b"", payload])).signature
msg = cbor2.dumps(cbor2.CBORTag(18, [prot, {4: pk}, payload, sig]))
host, port = reply[len("udp://"):].rsplit(":", 1)
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(msg, (host, int(port)))
PY
}

# The newest "slow" query in n1's store: its id (hex) and reply address, in ID and REPLY.
newest_query() {
	local text
	text=$(gossip-inspect -d "$T/n1" "$T/n1/store" 2>/dev/null) || return 1
	ID=$(printf '%s\n' "$text" | sed -n 's/^  query    "slow" (id \([0-9a-f]*\))$/\1/p' | tail -1)
	REPLY=$(printf '%s\n' "$text" | sed -n 's/^  reply    //p' | tail -1)
	[ -n "$ID" ] && [ -n "$REPLY" ] && [ "$ID" != "${LAST_ID:-}" ]
}

@test "forged, replayed, unasked and oversized responses are refused and counted, never printed" {
	LAST_ID=
	newest_query || true
	LAST_ID=$ID
	gossip-query -d "$T/n1" -j -T 6 -l 20 -n n5 slow >out 2>err &
	asker=$!
	wait_for 5 newest_query
	# An outsider's key (not in trusted), with the right id.
	respond "$T/mallory" "$ID" "$REPLY" 2 forged
	# A trusted member's answer to another query (another id: a replay from it).
	respond "$T/n5" "00112233445566778899aabbccddeeff" "$REPLY" 2 replayed
	# A trusted member that the query does not ask (-n n5).
	respond "$T/n3" "$ID" "$REPLY" 2 unasked
	# The member asked, over the limit of 20 bytes.
	respond "$T/n5" "$ID" "$REPLY" 2 "$(head -c 21 /dev/zero | tr '\0' y)"
	# A second ack from the member asked (it acked already): a duplicate, counted.
	respond "$T/n5" "$ID" "$REPLY" 1 ""
	# The member asked, within the limit: taken (and the asker has every answer now).
	respond "$T/n5" "$ID" "$REPLY" 2 good
	wait "$asker" || true
	[ "$(jq -r 'select(.type == "answer") | .name + " " + .answer' out)" = "n5 good" ] || fail "$(cat out err)"
	jq -s -e 'map(select(.type == "summary")) | .[0] | .refused == 4 and .answered == 1 and .duplicates == 1' out \
		>/dev/null || fail "$(cat out err)"
	run ! grep -E 'forged|replayed|unasked|yyyy' out
	grep -q "untrusted signer" err || fail "$(cat err)"
	grep -q "another query" err || fail "$(cat err)"
	grep -q "does not match the query's filters" err || fail "$(cat err)"
	grep -q "over the limit" err || fail "$(cat err)"
}

@test "bad usage: no name, a bad -t, a bad -T, -l or -R: exit 2 and one line; nothing stored" {
	count=$(gossip-inspect -j -d "$T/n1" "$T/n1/store" 2>/dev/null | grep -c _query)
	run --separate-stderr gossip-query -d "$T/n1"
	assert_failure 2
	assert_error gossip-query "want the query's name"
	run --separate-stderr gossip-query -d "$T/n1" -t role x
	assert_failure 2
	assert_error gossip-query "-t role: want tag=regex"
	run --separate-stderr gossip-query -d "$T/n1" -t 'role=(web' x
	assert_failure 2
	assert_error gossip-query "regular expression \"(web\""
	for t in 0 -1 abc 3601; do
		run --separate-stderr gossip-query -d "$T/n1" -T "$t" x
		assert_failure 2
		assert_error gossip-query "-T $t: want a timeout in seconds"
	done
	run --separate-stderr gossip-query -d "$T/n1" -l 60001 x
	assert_failure 2
	assert_error gossip-query "-l 60001: want the largest answer in bytes, 0 to 60000"
	run --separate-stderr gossip-query -d "$T/n1" -R 6 x
	assert_failure 2
	assert_error gossip-query "-R 6: want members to relay each answer, 0 to 5"
	run --separate-stderr gossip-query -d "$T/n1" -x ./h x
	assert_failure 2
	assert_error gossip-query "-x is answer's"
	run --separate-stderr gossip-query -d "$T/n1" answer -x 'query:=./h'
	assert_failure 2
	assert_error gossip-query "want a name after the colon"
	run --separate-stderr gossip-query -d "$T/nowhere" x
	assert_failure 2
	assert_error gossip-query "no node listens here"
	[ "$(gossip-inspect -j -d "$T/n1" "$T/n1/store" 2>/dev/null | grep -c _query)" = "$count" ] ||
		fail "a query was stored"
}
