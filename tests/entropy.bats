#!/usr/bin/env bats
# Anti-entropy as the node runs it: gossip-peers observe -e (gossip-node -s), every
# interval a push-pull sync with a member picked at random, in a child process that syncs
# with the observer's own store (no whole read of it, no process started), one at a time;
# what it stores is counted, and goes on as rumor. At the other end gossip-listen -H hands
# the sync to the member's observe -H (DIR/serve.sock), which serves it the same way.
# Summaries are off (GOSSIP_SUMMARY), so no repair runs: only anti-entropy can move a
# value stored in one store only.
load helper
load node

setup() {
	base_setup
	NODES=
	HB=0.2 JITTER=0.1 FANOUT=1 SYNC=3600
	export GOSSIP_SUMMARY=off
	node_ids 4  # n4 never runs: a trusted signer that is no member
	read -ra PORTS <<<"$(freeports 3)"
}

teardown() {
	nodes_stop
}

has() {  # has KEY NODES...: each node stores KEY
	local n key=$1
	shift
	for n in "$@"; do gossip-merge -d "$T/$n" get "$key" >/dev/null 2>&1 || return 1; done
}

counter() {  # counter NODE FILE NAME: a counter of DIR/stats/FILE (0 when none)
	awk -v k="$3" '$1 == k { s += $2 } END { print s + 0 }' "$T/$1/stats/$2" 2>/dev/null || echo 0
}

# only_in NODE SIGNER KEY VALUE: SIGNER's set of KEY, stored in NODE's store and sent nowhere
# (a running node passes on only the member records it finds in its store).
only_in() {
	gossip-send -d "$T/$2" set "$3" "$4" | gossip-merge -d "$T/$1" >/dev/null
}

syncs_at_least() { [ "$(counter "$1" observe syncs_done)" -ge "$2" ]; }
failed_at_least() { [ "$(counter "$1" observe syncs_failed)" -ge "$2" ]; }
served_at_least() { [ "$(counter "$1" observe serves_done)" -ge "$2" ]; }
serve_failed_at_least() { [ "$(counter "$1" observe serves_failed)" -ge "$2" ]; }

observe_pid() {  # observe_pid NODE: the pid of NODE's gossip-peers observe
	dir_procs "$T/$1" | awk '/gossip-peers .* observe$/ { print $1; exit }'
}

stopped() { [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = T ]; }

# stop_unlocked NODE PID: SIGSTOP NODE's observe (PID) at a moment it holds no lock but
# its own counters' (/proc/locks). Stopped while it holds the store's (taken each time it
# looks for what is new), it would hold up every writer of the node, gossip-merge serve too.
stop_unlocked() {
	local i own
	own=$(stat -c %i "$T/$1/stats/.observe.lock") || return 1
	for i in $(seq 200); do
		kill -STOP "$2"
		wait_for 2 stopped "$2" || return 1
		awk -v p="$2" -v own=":$own" '{
			for (i = 1; i < NF; i++) if ($i == p && substr($(i + 1), length($(i + 1)) - length(own) + 1) != own) f = 1
		} END { exit !f }' /proc/locks || return 0
		kill -CONT "$2"
		sleep 0.01
	done
	return 1
}

merge_served() { [ "$(counter "$1" merge.others serves_done)" -ge 1 ]; }  # by gossip-merge serve
fds() { ls "/proc/$1/fd" | wc -l; }
fds_at_most() { [ "$(fds "$1")" -le "$2" ]; }

# cluster: n1 and n3 without anti-entropy (an hour), n2 with it every 0.3 s.
cluster() {
	node_start n1 "${PORTS[0]}" ""
	node_start n3 "${PORTS[2]}" "${PORTS[0]}"
	node_start n2 "${PORTS[1]}" "${PORTS[0]}" -s 0.3
	wait_for 20 all_alive 3 || fail "not all alive: $(nodes_diag)"
}

@test "anti-entropy: a value in one store only reaches a node by its sync, is counted there, and goes on as rumor" {
	cluster
	only_in n1 n4 only-in-n1 v1
	wait_for 15 has only-in-n1 n2 n3 || fail "not everywhere: $(cat "$T"/n*.log)"
	[ "$(gossip-merge -d "$T/n2" get only-in-n1)" = v1 ]
	# n2 brought it (n1 and n3 run no anti-entropy), stored it as gossip-merge sync would
	# (counted in merge.others), and passed it on: its origin, n4, is no member, so the
	# rumor went to 2 members at random (gossip-peers(1), Rumor).
	# (observe writes its counters once a second at most.)
	wait_for 5 syncs_at_least n2 1 || fail "n2 ran no sync: $(cat "$T/n2/stats/observe")"
	[ "$(counter n2 merge.others stored)" -ge 1 ] || fail "$(cat "$T/n2/stats/"*)"
	[ "$(counter n2 rumor forwarded)" -ge 1 ] || fail "nothing passed on: $(cat "$T/n2/stats/"*)"
	for n in n1 n3; do
		[ "$(counter $n observe syncs_done)" = 0 ] || fail "$n ran a sync"
	done
	# The syncs' other end: served by the members' observe (handed over by gossip-listen
	# -H), never by gossip-merge serve.
	wait_for 5 served_at_least n1 1 || fail "$(cat "$T/n1/stats/"*)"
	[ "$(counter n1 merge.others serves_done)" = 0 ] || fail "gossip-merge served: $(cat "$T/n1/stats/"*)"
	[[ "$(stat -c %A "$T/n1/serve.sock")" == s??????--- ]] || fail "serve.sock: $(stat -c %A "$T/n1/serve.sock")"
	# gossip-node status counts the syncs.
	run gossip-node -j -d "$T/n2" status
	assert_success
	echo "$output" | jq -e '.syncs.done >= 1' >/dev/null || fail "$output"
	# A failed sync (the members gone) is counted, not logged at every round: now and
	# then anti-entropy picks a member believed down on purpose.
	node_kill n1
	node_kill n3
	wait_for 15 failed_at_least n2 2
	! grep -q "anti-entropy" "$T/n2.log" || fail "$(cat "$T/n2.log")"
}

@test "anti-entropy across the hours of the ids (GOSSIP_SYNC_HOUR_MS=700): each value in one store only reaches the others, both ways, as the kept tables change hour" {
	export GOSSIP_SYNC_HOUR_MS=700
	cluster
	# One value at a time, each after the last arrived: the syncs that bring them fall in
	# hours that the observers' kept tables (made again at each new hour) and their
	# children see at different moments.
	for i in 1 2 3 4 5 6; do
		only_in n1 n4 "hour$i" "v$i"
		wait_for 15 has "hour$i" n2 n3 || fail "hour$i: not everywhere: $(nodes_diag)"
	done
	# n2 pushes too: a value in n2's store only reaches n1, whose observe serves n2's syncs.
	only_in n2 n4 from-n2 w
	wait_for 15 has from-n2 n1 || fail "from-n2 did not reach n1: $(cat "$T/n2/stats/"*)"
	[ "$(gossip-merge -d "$T/n1" get hour6)" = v6 ] && [ "$(gossip-merge -d "$T/n1" get from-n2)" = w ]
	# Seven values in 3 s or more: hours went by.
	wait_for 15 syncs_at_least n2 8 || fail "$(cat "$T/n2/stats/observe")"
	[ "$(counter n2 observe syncs_failed)" = 0 ] || fail "failed syncs: $(cat "$T/n2/stats/observe") $(cat "$T/n2.log")"
}

@test "a node's sync children add what they store to DIR/store.keys in place: observe made it anew once, no sync makes it whole again" {
	# Stores of more rows than a bulk merge's changes wait for (4096): the observer makes
	# the index anew at its first look (gossip_store_forks_writers), its children write
	# what they store in place.
	seq 1 5000 | awk '{ print "set bulk" $1 " v" }' | gossip-send -d "$T/n4" batch >"$T/bulk"
	for n in n1 n2 n3; do gossip-merge -d "$T/$n" "$T/bulk" >/dev/null; done
	cluster
	only_in n1 n4 first v0
	wait_for 15 has first n2 || fail "$(nodes_diag)"
	wait_for 5 test -s "$T/n2/store.keys"
	# A second name for the file as it is (outside the directory): a whole write makes a
	# new file (store.keys.new, renamed over), which this name would then not be.
	ln "$T/n2/store.keys" "$T/keys-before"
	for i in 1 2 3 4; do
		only_in n1 n4 "k$i" "v$i"
		wait_for 15 has "k$i" n2 || fail "k$i: $(nodes_diag)"
	done
	[ "$T/n2/store.keys" -ef "$T/keys-before" ] || fail "store.keys was made anew"
	[ "$(gossip-merge -d "$T/n2" get k4)" = v4 ]
	run mdb_stat -n "$T/n2/store.keys"
	assert_success
}

# digest_true NODE: NODE's digest is answered from its kept summary (DIR/store.root,
# the store unread), and is what a whole read of a copy of its store makes.
digest_true() {
	local err kept whole
	err=$(gossip-merge -v -d "$T/$1" digest 2>&1 >/dev/null) && [[ $err == *"from the kept summary"* ]] || return 1
	kept=$(gossip-merge -d "$T/$1" digest) || return 1
	whole=$(whole_digest "$1") || return 1
	# Unchanged while it was copied: else try again.
	[ "$kept" = "$(gossip-merge -d "$T/$1" digest)" ] || return 1
	[ "$kept" = "$whole" ] || fail "$1's kept summary $kept, a whole read $whole"
}

# whole_digest NODE: the digest of a copy of NODE's store, read whole.
whole_digest() {
	rm -rf "$T/ref" && mkdir "$T/ref" && cp "$T/$1/store" "$T/$1/trusted" "$T/ref/" &&
		{ [ ! -f "$T/$1/watermarks" ] || cp "$T/$1/watermarks" "$T/ref/"; } && gossip-merge -d "$T/ref" digest
}

@test "a node keeps its summary (DIR/store.root) as its pipeline, its sync children and other merges write: digest answers without reading the store, as a whole read does; after a write outside the lock, its writers read the store whole again" {
	cluster
	only_in n1 n4 k1 v1  # a merge of its own into n1; n2's sync child brings it
	wait_for 15 has k1 n2 n3 || fail "not everywhere: $(nodes_diag)"
	gossip-send -d "$T/n4" -t "udp://127.0.0.1:${PORTS[2]}" set k2 v2  # n3's pipeline
	wait_for 15 has k2 n1 n2 n3 || fail "not everywhere: $(nodes_diag)"
	for n in n1 n2 n3; do
		wait_for 10 digest_true $n || fail "$n: $(gossip-merge -v -d "$T/$n" digest 2>&1)"
	done
	# Their own writes keep every writer's custody: none read the store again.
	! grep -h "reading it whole again" "$T"/n[123].log || fail "a node read its store again"
	# Bytes appended to n3's store outside the lock (another program's): the node's
	# writers read the store whole again at their next lock, and record what they read.
	printf 'not a message' >>"$T/n3/store"
	gossip-send -d "$T/n4" -t "udp://127.0.0.1:${PORTS[2]}" set k3 v3
	wait_for 15 has k3 n3 || fail "$(nodes_diag)"
	wait_for 10 digest_true n3 || fail "$(gossip-merge -v -d "$T/n3" digest 2>&1)"
	grep -q "n3/store was changed by a write no writer recorded" "$T/n3.log" || fail "$(cat "$T/n3.log")"
	grep -q "n3/store: cut a torn tail of 13 bytes" "$T/n3.log" || fail "$(cat "$T/n3.log")"
	# And from then on they keep custody again: one more write, no read again. (A sync
	# child forked before observe read the store again carries on out of custody, and
	# what it stores before that read is a write no writer recorded, which makes
	# observe read it once more: two more syncs served first.)
	local again
	wait_for 15 served_at_least n3 "$(($(counter n3 observe serves_done) + 2))" || fail "$(nodes_diag)"
	wait_for 10 digest_true n3 || fail "$(gossip-merge -v -d "$T/n3" digest 2>&1)"
	again=$(grep -c "reading it whole again" "$T/n3.log")
	only_in n3 n4 k4 v4
	gossip-send -d "$T/n4" -t "udp://127.0.0.1:${PORTS[2]}" set k5 v5
	wait_for 15 has k5 n3 || fail "$(nodes_diag)"
	wait_for 10 digest_true n3 || fail "$(gossip-merge -v -d "$T/n3" digest 2>&1)"
	[ "$(grep -c "reading it whole again" "$T/n3.log")" = "$again" ] || fail "$(cat "$T/n3.log")"
}

# in_store NODE FILE: how many times FILE's bytes (one message) are in NODE's store.
in_store() {
	/usr/bin/python3 -c 'import sys
print(open(sys.argv[1], "rb").read().count(open(sys.argv[2], "rb").read()))' "$T/$1/store" "$2"
}

@test "outside the lock, a message changed in place and then one appended, between two looks of the node: it reads its store whole again, and anti-entropy brings the damaged message back" {
	cluster
	gossip-send -d "$T/n4" set k1 v1 >"$T/k1.msg"
	gossip-merge -d "$T/n1" <"$T/k1.msg" >/dev/null
	wait_for 15 has k1 n2 n3 || fail "not everywhere: $(nodes_diag)"
	[ "$(in_store n2 "$T/k1.msg")" = 1 ] || fail "k1's message is not in n2's store as sent"
	gossip-send -d "$T/n4" set k9 v9 >"$T/k9.msg"
	# One program, no lock: a byte of k1's message in n2's store changed, and k9 appended
	# at once after (the file grew, as an append under the lock makes it grow).
	/usr/bin/python3 -c 'import sys
p = sys.argv[1]
data = open(p, "rb").read()
at = data.index(open(sys.argv[2], "rb").read()) + 20
with open(p, "r+b") as f:
    f.seek(at); f.write(bytes([data[at] ^ 1])); f.seek(0, 2); f.write(open(sys.argv[3], "rb").read())
    f.seek(0); sys.exit(f.read().count(open(sys.argv[2], "rb").read()) != 0)' \
		"$T/n2/store" "$T/k1.msg" "$T/k9.msg" || fail "k1's message not changed"
	# n2's syncs run from its own index: only once it has read the store again do they
	# see that k1 is missing, and bring it back from n1 or n3.
	wait_for 20 eval '[ "$(in_store n2 "$T/k1.msg")" = 1 ]' || fail "k1 never came back: $(nodes_diag)"
	[ "$(gossip-merge -d "$T/n2" get k1)" = v1 ] || fail "n2 has no k1"
	[ "$(gossip-merge -d "$T/n2" get k9)" = v9 ] || fail "n2 lost k9"
	grep -q "n2/store was changed by a write no writer recorded" "$T/n2.log" || fail "$(cat "$T/n2.log")"
	grep -q "n2/store is damaged" "$T/n2.log" || fail "$(cat "$T/n2.log")"
}

@test "anti-entropy takes only what the trusted file allows now: a revoked signer's value is not brought, nothing else changes" {
	cluster
	# n2 stops trusting n4: each sync reads the file as gossip-merge would, no reload
	# needed (observe itself still trusts n4 until one).
	grep -v ' n4$' "$T/n2/trusted" >"$T/n2/trusted.new"
	[ "$(wc -l <"$T/n2/trusted.new")" = 3 ] || fail "$(cat "$T/n2/trusted.new")"
	mv "$T/n2/trusted.new" "$T/n2/trusted"
	only_in n1 n4 revoked v1
	only_in n1 n1 fine v2
	wait_for 15 has fine n2 || fail "fine never reached n2: $(cat "$T/n2.log")"
	before=$(gossip-merge -d "$T/n2" -j digest)
	wait_for 15 syncs_at_least n2 "$(($(counter n2 observe syncs_done) + 3))"
	[ "$(gossip-merge -d "$T/n2" -j digest)" = "$before" ] || fail "n2's store changed"
	# Not in the file at all (a revoked signer's messages are hidden from get and digest,
	# so those could not tell).
	! gossip-inspect -j "$T/n2/store" 2>/dev/null | grep -q "\"origin\":\"$(cut -d' ' -f1 "$T/n4.pub")\"" ||
		fail "n2 took a revoked signer's value by anti-entropy"
}

@test "observe -e, gossip-node -s: a bad interval is a usage error, one line, exit 2" {
	mknode a
	for e in 0 0.0009 x 86401 -1; do
		run --separate-stderr gossip-peers -d a -e "$e" observe </dev/null
		assert_failure 2
		assert_error gossip-peers "-e $e: want seconds, 0.001 to 86400"
	done
	for s in 0.0009 86401 86400.000001; do
		run --separate-stderr timeout 10 gossip-node -d "$T/fresh" -s "$s"
		assert_failure 2
		assert_error gossip-node "-s $s: want the anti-entropy interval in seconds, 0.001 to 86400"
		[ ! -e "$T/fresh" ] || fail "-s $s made the state directory"
	done
	for s in 0.001 86400; do
		run --separate-stderr gossip-node -d "$T/fresh" -s "$s" stop
		[ "$stderr" = "gossip-node: -s is for running a node, not for stop" ] || fail "-s $s: $stderr"
	done
}

@test "serve.sock: what is not a whole hand-off from this user is dropped; nothing stored changes, no descriptor is kept, syncs are still served" {
	gossip-keygen -d client -n client >client.pub
	cat client.pub >>"$T/n1/trusted"
	cat "$T/n1.pub" >client/trusted
	node_start n1 "${PORTS[0]}" ""
	gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}" >/dev/null
	wait_for 5 served_at_least n1 1
	pid=$(observe_pid n1)
	[ -n "$pid" ] || fail "no observe: $(dir_procs "$T/n1")"
	before=$(gossip-merge -d "$T/n1" -j digest)
	fd0=$(fds "$pid")
	# Another user may not hand anything (the socket is this user's, mode 0600).
	run setpriv --reuid=nobody --regid=nogroup --clear-groups $PY -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"x\0", sys.argv[1])' "$T/n1/serve.sock"
	assert_failure
	# This user's junk: no descriptors, one, a file for the socket, a socket for the pipe,
	# three, an unended or doubled name; two hundred rounds.
	$PY - "$T/n1/serve.sock" <<'PY'
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(path)
r, w = os.pipe()
a, b = socket.socketpair()
f = os.open("/dev/null", os.O_RDONLY)
cases = [(b"", []), (b"x\0", []), (b"x\0", [a.fileno()]), (b"x\0", [f, w]),
         (b"x\0", [a.fileno(), a.fileno()]), (b"x\0", [a.fileno(), w, r]), (b"x", [a.fileno(), w]),
         (b"x\0y\0", [a.fileno(), w])]
c, e = socket.socketpair()
cases.append((b"x\0", [c.fileno(), e.fileno()]))  # whole, but no one answers the 'T'
for _ in range(200):
    for data, fds in cases:
        if fds:
            socket.send_fds(s, [data], fds)
        else:
            s.send(data)
PY
	# A whole hand-off (taken: 'T', given: 'G') whose connection speaks no sync: its serve
	# fails, and the done pair's end closes when it is over.
	run timeout 20 $PY - "$T/n1/serve.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(sys.argv[1])
a, b = socket.socketpair()
d, e = socket.socketpair()
socket.send_fds(s, [b"junk peer\0"], [a.fileno(), e.fileno()])
a.close(); e.close()
assert d.recv(1) == b"T"
d.send(b"G")
b.sendall(b"\xff" * 64)
while d.recv(1):
    pass
print("over")
PY
	assert_success
	assert_output over
	wait_for 5 serve_failed_at_least n1 1
	# Still running, nothing kept, nothing stored, and a real sync is served.
	kill -0 "$pid"
	wait_for 5 fds_at_most "$pid" "$fd0" || fail "observe holds $(fds "$pid") descriptors, $fd0 before"
	[ "$(gossip-merge -d "$T/n1" -j digest)" = "$before" ] || fail "n1's store changed"
	served=$(counter n1 observe serves_done)
	gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}" >/dev/null
	wait_for 5 served_at_least n1 $((served + 1))
}

@test "a sync through the port from a signer n1 does not trust is refused by observe's serve; nothing stored changes" {
	node_start n1 "${PORTS[0]}" ""
	gossip-keygen -d outsider -n outsider >outsider.pub
	cat "$T/n1.pub" >outsider/trusted
	gossip-send -d outsider set planted x | gossip-merge -d outsider >/dev/null
	before=$(gossip-merge -d "$T/n1" -j digest)
	run --separate-stderr gossip-merge -d outsider -t 10 sync "tcp://127.0.0.1:${PORTS[0]}"
	assert_failure
	[[ "$stderr" == *refused* ]] || fail "$stderr"
	wait_for 5 serve_failed_at_least n1 1
	[ "$(gossip-merge -d "$T/n1" -j digest)" = "$before" ] || fail "n1's store changed"
	[ "$(counter n1 merge.others serves_failed)" = 0 ] || fail "gossip-merge served it"
}

@test "serve.sock taken by a file: observe says so, gossip-merge serve takes the syncs, the file stays" {
	mkdir -p "$T/n1"
	echo keep >"$T/n1/serve.sock"
	gossip-keygen -d client -n client >client.pub
	cat client.pub >>"$T/n1/trusted"
	cat "$T/n1.pub" >client/trusted
	node_start n1 "${PORTS[0]}" ""
	grep -q "serve.sock: exists and is not a socket: remove it; the syncs go to gossip-listen's command" "$T/n1.log" ||
		fail "$(cat "$T/n1.log")"
	gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}" >/dev/null
	wait_for 5 merge_served n1
	[ "$(cat "$T/n1/serve.sock")" = keep ]
}

@test "gossip-listen -H: without a server there, the command serves; -H needs -s; observe -H is observe's" {
	two_nodes
	cat a.pub >>a/trusted
	cat b.pub >>a/trusted
	cat b.pub >>b/trusted
	read -ra P <<<"$(freeports 1)"
	gossip-listen -d b -H "$T/nobody.sock" -s "exec gossip-merge -d '$T/b' serve" "tcp://127.0.0.1:${P[0]}" \
		>/dev/null 2>listen.log &
	listener=$!
	gossip-send -d a set k v | gossip-merge -d a >/dev/null
	wait_for 10 gossip-merge -d a -t 10 sync "tcp://127.0.0.1:${P[0]}"
	kill "$listener"
	wait "$listener" || true
	[ "$(gossip-merge -d b get k)" = v ]
	run --separate-stderr gossip-listen -d b -H "$T/x.sock" "tcp://127.0.0.1:${P[0]}"
	assert_failure 2
	assert_error gossip-listen "-H needs -s: the command serves the syncs no server takes"
	run --separate-stderr gossip-listen -d b -H "" -s true "tcp://127.0.0.1:${P[0]}"
	assert_failure 2
	assert_error gossip-listen "-H: want the path of gossip-peers observe -H's socket"
	run --separate-stderr gossip-peers -d b -H "" observe
	assert_failure 2
	assert_error gossip-peers "-H: want a path for the socket gossip-listen -H hands syncs to"
	run --separate-stderr gossip-peers -d b -H "$T/x.sock" list
	assert_failure 2
}

@test "observe stopped: a sync through the port is served by gossip-merge serve within its limit; resumed, observe drops what waited, and serves again" {
	gossip-keygen -d client -n client >client.pub
	cat client.pub >>"$T/n1/trusted"
	cat "$T/n1.pub" >client/trusted
	node_start n1 "${PORTS[0]}" ""
	pid=$(observe_pid n1)
	[ -n "$pid" ] || fail "no observe: $(dir_procs "$T/n1")"
	stop_unlocked n1 "$pid" || fail "observe always holds a lock: $(cat /proc/locks)"
	gossip-send -d client set while-stopped 1 | gossip-merge -d client >/dev/null
	run --separate-stderr gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}"
	kill -CONT "$pid"
	[ "$status" = 0 ] || fail "the sync failed ($status): $stderr"
	wait_for 5 merge_served n1
	[ "$(gossip-merge -d "$T/n1" get while-stopped)" = 1 ]
	# The hand-off that waited is dropped (the sender served it itself), not served twice.
	served=$(counter n1 observe serves_done)
	gossip-send -d client set after 2 | gossip-merge -d client >/dev/null
	gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}" >/dev/null
	wait_for 5 served_at_least n1 $((served + 1))
	[ "$(counter n1 observe serves_failed)" = 0 ] || fail "$(cat "$T/n1/stats/observe")"
	[ "$(gossip-merge -d "$T/n1" get after)" = 2 ]
}

@test "a second observe on a serve.sock in use leaves it alone: it says so, and the node still serves there" {
	gossip-keygen -d client -n client >client.pub
	cat client.pub >>"$T/n1/trusted"
	cat "$T/n1.pub" >client/trusted
	node_start n1 "${PORTS[0]}" ""
	ino=$(stat -c %i "$T/n1/serve.sock")
	run --separate-stderr timeout 3 gossip-peers -d "$T/n2" -H "$T/n1/serve.sock" observe </dev/null
	[[ "$stderr" == *"serve.sock: another process serves there (a second observe on the same directory?); the syncs go to gossip-listen's command"* ]] ||
		fail "$stderr"
	[ "$(stat -c %i "$T/n1/serve.sock")" = "$ino" ] || fail "replaced or removed"
	gossip-merge -d client -t 10 sync "tcp://127.0.0.1:${PORTS[0]}" >/dev/null
	wait_for 5 served_at_least n1 1
}
