#!/usr/bin/env bats
# Attacks on anti-entropy, each run as the attacker would, each checking that it fails
# and that nothing stored changed: an outsider with only public keys (over TCP through
# gossip-listen -s, a unix socket and a command), a passive observer, a wrong cluster key,
# old clients and servers, peers that trickle or stall, an amplifying want, tables that
# lie or never decode, a client asking for table after table, and a peer taking every
# sync slot.
load helper

SEED=0404040404040404040404040404040404040404040404040404040404040404
P="$BATS_TEST_DIRNAME/syncpeer.py"

setup() {
	base_setup
	BG=
	mknode a
	mknode b
	for n in a b; do trust $n a; trust $n b; done
	# py: a trusted member that misbehaves (tests/syncpeer.py speaks the real handshake).
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>a/trusted
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	# mallory: a fresh key that nobody trusts; she trusts b, so her side would go on.
	mknode m
	trust m b
	gossip-send -d a set a-key a-value | gossip-merge -d a >/dev/null
	gossip-send -d b set secret-key hunter2-value | gossip-merge -d b >/dev/null
	gossip-send -d m set planted 1 | gossip-merge -d m >/dev/null
}

teardown() {
	for p in $BG; do kill "$p" 2>/dev/null || true; done
	for p in $BG; do wait "$p" 2>/dev/null || true; done
}

digest() { gossip-merge -d "$1" digest; }
ms() { echo $(($(date +%s%N) / 1000000)); }

# listen_sync NODE: gossip-listen for NODE with syncs handed to serve (-t SERVE_T, 10 by
# default) on a TCP port of its choosing, in $TCP.
listen_sync() {
	gossip-listen -d "$T/$1" -a "$T/$1.addrs" -s "exec gossip-merge -d '$T/$1' -t ${SERVE_T:-10} serve" \
		tcp://127.0.0.1:0 >/dev/null 2>"$T/$1.listen.err" &
	BG="$BG $!"
	for _ in $(seq 1 200); do [ -s "$T/$1.addrs" ] && break; sleep 0.05; done
	TCP=$(cat "$T/$1.addrs")
	[ -n "$TCP" ] || fail "gossip-listen did not start: $(cat "$T/$1.listen.err")"
}

# serve_on ADDRESS NODE: `gossip-merge serve` for NODE under socat at a TCP port or a
# unix socket.
serve_on() {
	socat "$1",fork EXEC:"gossip-merge -d $T/$2 serve" 2>/dev/null &
	BG="$BG $!"
}
freeport() { $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1', $1))" 2>/dev/null && return; sleep 0.05; done; }

# outsider PEER: mallory pulls and pushes through PEER; both refused, nothing moves.
outsider() {
	local bb mm
	bb=$(snapshot b) mm=$(digest m)
	for mode in --pull --push --push-pull; do
		run --separate-stderr gossip-merge -v -d m $mode sync "$1"
		assert_failure 2
		[[ $stderr == *"gossip-merge: $1: peer says: refused: the client's key $(cut -c1-8 m.pub) is not in the server's trusted"* ]] ||
			fail "$mode: $stderr"
		[[ $stderr == *"received 0 messages"* ]] || fail "$stderr"
		[ "$(digest m)" = "$mm" ]
		[ "$(snapshot b)" = "$bb" ]
	done
	run gossip-merge -d b get planted
	assert_failure 1
	run gossip-merge -d m get secret-key
	assert_failure 1
}

@test "an outsider with only public keys can neither pull nor push: TCP through gossip-listen -s" {
	listen_sync b
	outsider "$TCP"
	# serve's line goes to the listener's log, once for each try.
	[ "$(grep -c "gossip-merge: serve: refused: the client's key $(cut -c1-8 m.pub) is not in the server's trusted" b.listen.err)" = 3 ] ||
		fail "$(cat b.listen.err)"
	# A member still syncs through the same port.
	run gossip-merge -d a sync "$TCP"
	assert_success
	[ "$(gossip-merge -d a get secret-key)" = hunter2-value ]
}

@test "an outsider can neither pull nor push: a unix socket, and a command peer" {
	serve_on UNIX-LISTEN:$T/sock b
	for _ in $(seq 1 100); do [ -S sock ] && break; sleep 0.05; done
	outsider "unix:$T/sock"
	outsider "gossip-merge -d $T/b serve"
	# The server says why, on one line, and exits 2.
	run --separate-stderr sh -c "gossip-merge -d $T/m sync 'gossip-merge -d $T/b serve 2>$T/serve.err; echo \$? >$T/serve.status' >/dev/null"
	assert_failure 2
	[ "$(cat serve.status)" = 2 ]
	[ "$(cat serve.err)" = "gossip-merge: serve: refused: the client's key $(cut -c1-8 m.pub) is not in the server's trusted" ]
}

@test "a member will not sync with a server it does not trust, and shows it nothing" {
	# mallory serves; a does not trust her: a refuses before sending its identity.
	trust m a
	aa=$(snapshot a)
	run --separate-stderr gossip-merge -d a sync "tee $T/c2s | gossip-merge -d $T/m serve 2>/dev/null"
	assert_failure 2
	assert_error gossip-merge "refused: the server's key $(cut -c1-8 m.pub) is not in the client's trusted"
	[ "$(snapshot a)" = "$aa" ]
	run gossip-merge -d m get secret-key
	assert_failure 1
	# a's public key never crossed the wire in the clear.
	$PY -c 'import base64, sys
pk = base64.b64decode(open(sys.argv[1]).read().split()[0])
sys.exit(pk in open(sys.argv[2], "rb").read())' a.pub c2s
}

@test "a passive observer of a sync between members sees no state and no identity" {
	for i in $(seq 1 20); do echo "set b-key-$i b-value-$i"; done | gossip-send -d b batch | gossip-merge -d b >/dev/null
	gossip-send -d a set a-only-key a-only-value | gossip-merge -d a >/dev/null
	run gossip-merge -d a sync "tee $T/c2s | gossip-merge -d $T/b serve | tee $T/s2c"
	assert_success
	[ "$(gossip-merge -d a get b-key-7)" = b-value-7 ]
	[ "$(gossip-merge -d b get a-only-key)" = a-only-value ]
	[ "$(digest a)" = "$(digest b)" ]
	[ "$(stat -c %s s2c)" -gt 2000 ]   # the messages did cross
	$PY - a.pub b.pub c2s s2c <<'PY'
import base64, sys
a, b = (base64.b64decode(open(p).read().split()[0]) for p in sys.argv[1:3])
wire = open(sys.argv[3], "rb").read() + open(sys.argv[4], "rb").read()
for secret in (b"secret-key", b"hunter2-value", b"b-key-7", b"b-value-7", b"a-only-value", a, b):
    assert secret not in wire, secret
PY
}

@test "a member with another cluster key is refused; the keyring's old key still works" {
	gossip-keygen -c >k1
	gossip-keygen -c >k2
	install -m 600 k1 a/keyring
	install -m 600 k2 b/keyring
	aa=$(snapshot a) bb=$(snapshot b)
	run --separate-stderr gossip-merge -d a sync "gossip-merge -d $T/b serve 2>$T/serve.err"
	assert_failure 2
	assert_error gossip-merge "peer says: refused: the client's cluster key "
	[[ $stderr == *"is not in the server's keyring"* ]]
	[[ $(cat serve.err) == "gossip-merge: serve: refused: the client's cluster key "*" is not in the server's keyring" ]]
	[ "$(snapshot a)" = "$aa" ]
	[ "$(snapshot b)" = "$bb" ]
	# No keyring against a keyring, either way.
	rm a/keyring
	run --separate-stderr gossip-merge -d a sync "gossip-merge -d $T/b serve 2>/dev/null"
	assert_failure 2
	assert_error gossip-merge "the client names no cluster key"
	# Rotation: b holds the new key first and the old one second.
	install -m 600 k1 a/keyring
	cat k2 k1 >b/keyring
	run gossip-merge -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[ "$(gossip-merge -d a get secret-key)" = hunter2-value ]
}

@test "old clients (versions 1, 2 and 3) are refused by name; a version 2 server's refusal says to upgrade" {
	bb=$(snapshot b)
	run --separate-stderr bash -o pipefail -c "$PY -c 'import sys, cbor2; sys.stdout.buffer.write(cbor2.dumps([\"gossip-sync\", 1, \"push-pull\", bytes(16), 0]))' | gossip-merge -d b serve | $PY -c 'import sys, cbor2; print(cbor2.loads(sys.stdin.buffer.read()))'"
	assert_failure 2
	[[ $output == *"'error', 'refused: the client speaks sync protocol version 1, the server version 4: upgrade the older node'"* ]] || fail "$output"
	assert_error gossip-merge "serve: refused: the client speaks sync protocol version 1, the server version 4: upgrade the older node"
	[ "$(snapshot b)" = "$bb" ]
	# A version 2 client's first message, as it sends it.
	run --separate-stderr bash -o pipefail -c "$PY -c 'import sys, os, cbor2; sys.stdout.buffer.write(cbor2.dumps([\"gossip-sync\", 2, 1, b\"\", os.urandom(32)]))' | gossip-merge -d b serve | $PY -c 'import sys, cbor2; print(cbor2.loads(sys.stdin.buffer.read()))'"
	assert_failure 2
	[[ $output == *"'error', 'refused: the client speaks sync protocol version 2, the server version 4: upgrade the older node'"* ]] || fail "$output"
	assert_error gossip-merge "serve: refused: the client speaks sync protocol version 2, the server version 4: upgrade the older node"
	[ "$(snapshot b)" = "$bb" ]
	# A version 3 client's (ids salted per session): the same first message.
	run --separate-stderr bash -o pipefail -c "$PY -c 'import sys, os, cbor2; sys.stdout.buffer.write(cbor2.dumps([\"gossip-sync\", 3, 1, b\"\", os.urandom(32)]))' | gossip-merge -d b serve | $PY -c 'import sys, cbor2; print(cbor2.loads(sys.stdin.buffer.read()))'"
	assert_failure 2
	[[ $output == *"'error', 'refused: the client speaks sync protocol version 3, the server version 4: upgrade the older node'"* ]] || fail "$output"
	assert_error gossip-merge "serve: refused: the client speaks sync protocol version 3, the server version 4: upgrade the older node"
	[ "$(snapshot b)" = "$bb" ]
	# What a version 2 server answers a version 4 client (tests/syncpeer.py old plays it).
	aa=$(snapshot a)
	run --separate-stderr gossip-merge -d a sync "$PY $P old $SEED"
	assert_failure 2
	assert_error gossip-merge "peer says: refused: the client speaks sync protocol version 4, the server version 2 (authenticated and encrypted): upgrade the older node"
	[ "$(snapshot a)" = "$aa" ]
	# And what a version 1 server answered.
	run --separate-stderr gossip-merge -d a sync "cat >/dev/null & $PY -c 'import sys, cbor2; sys.stdout.buffer.write(cbor2.dumps([\"error\", \"peer speaks sync protocol version 4, this is 1\"]))'"
	assert_failure 2
	assert_error gossip-merge "peer says: peer speaks sync protocol version 4, this is 1: upgrade the older node"
	[ "$(snapshot a)" = "$aa" ]
}

@test "a client trickling a byte a second is cut off at serve -t 2" {
	bb=$(snapshot b)
	t0=$(ms)
	run --separate-stderr sh -c "(printf '\\205'; for c in k g o s s i p; do sleep 1; printf \$c || exit; done) 2>/dev/null | gossip-merge -d b -t 2 serve >/dev/null"
	took=$(($(ms) - t0))
	assert_failure 2
	assert_error gossip-merge "serve: peer: timed out after 2 s"
	# The writer stops at its first byte after serve has gone.
	[ "$took" -lt 4500 ] || fail "took $took ms"
	[ "$(snapshot b)" = "$bb" ]
	# The same through gossip-listen: serve ends at its limit, the connection is closed.
	SERVE_T=2 listen_sync b
	t0=$(ms)
	$PY - "${TCP#tcp://}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(b"\x85\x6bgossip-sync")
start = time.time()
try:
    while time.time() - start < 15:
        s.sendall(b"\x02")
        time.sleep(1)
        s.setblocking(False)
        try:
            if s.recv(100) == b"":
                break
        except BlockingIOError:
            pass
        s.setblocking(True)
except OSError:
    pass
print(int((time.time() - start) * 1000))
PY
	took=$(($(ms) - t0))
	[ "$took" -lt 6000 ] || fail "the listener held a trickle for $took ms"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a server that is silent, or trickles, is cut off at sync -t 2" {
	aa=$(snapshot a)
	port=$(freeport)
	# Accepts and says nothing.
	$PY -c "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $port)); s.listen(); c = s.accept(); time.sleep(30)" &
	BG="$BG $!"
	wait_port "$port" || true
	t0=$(ms)
	run --separate-stderr gossip-merge -d a -t 2 sync "tcp://127.0.0.1:$port"
	took=$(($(ms) - t0))
	assert_failure 2
	assert_error gossip-merge "peer: timed out after 2 s"
	[ "$took" -lt 3500 ] || fail "took $took ms"
	# Sends a byte a second (the start of a 24-byte string, never finished).
	t0=$(ms)
	run --separate-stderr gossip-merge -d a -t 2 sync "cat >/dev/null & while printf x; do sleep 1; done"
	took=$(($(ms) - t0))
	assert_failure 2
	assert_error gossip-merge "peer: timed out after 2 s"
	[ "$took" -lt 3500 ] || fail "took $took ms"
	[ "$(snapshot a)" = "$aa" ]
}

@test "an amplifying want (one id again and again, or more than a table can name) is refused; the reply stays small" {
	port=$(freeport)
	serve_on TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr b
	wait_port "$port"
	gossip-send -d b set second 2 | gossip-merge -d b >/dev/null
	bb=$(snapshot b)
	for repeat in 2 500000; do
		run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" want $SEED $repeat
		[[ $stderr == *'"last": ["error", "refused: the client wants'* ]] || fail "$stderr"
		received=$(echo "$stderr" | jq .received)
		[ "$received" -lt 1000 ] || fail "got $received bytes back: $stderr"
		[ "$(snapshot b)" = "$bb" ] || fail "$(diff <(echo "$bb") <(snapshot b))"
	done
	[[ $stderr == *"wants 500000 messages, more than the 24 cells sent could name"* ]] || fail "$stderr"
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" want $SEED 2
	[[ $stderr == *"wants one message twice"* ]] || fail "$stderr"
	# Ids it made up: nothing is held for them, nothing is sent.
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" want $SEED 20 invent
	[[ $stderr == *'"last": ["done"]'* ]] || fail "$stderr"
	received=$(echo "$stderr" | jq .received)
	[ "$received" -lt 100 ] || fail "got $received bytes back: $stderr"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a want too large to be one item (2^20 - 2 ids) is refused by name, not a broken pipe" {
	port=$(freeport)
	serve_on TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr b
	wait_port "$port"
	bb=$(snapshot b)
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" want $SEED 1048574 invent
	[[ $stderr == *'"last": ["error", "refused: an item is not the sync protocol (item has more than 1048576 data items)"]'* ]] ||
		fail "$stderr"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a client asking for table after table, or out of turn, is refused; what it gets stays bounded" {
	port=$(freeport)
	serve_on TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr b
	wait_port "$port"
	bb=$(snapshot b)
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 1000
	[[ $stderr == *'"last": ["error", "refused: the client asks for table 0/0 of size 15 again, or out of turn"]'* ]] || fail "$stderr"
	received=$(echo "$stderr" | jq .received)
	[ "$received" -lt 1300000 ] || fail "got $received bytes back: $stderr"
	[ "$(snapshot b)" = "$bb" ]
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 1 split
	[[ $stderr == *'"last": ["error", "refused: the client asks for table 4/0 of size 12 again, or out of turn"]'* ]] || fail "$stderr"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a server sends at most the tables an honest client asks for: 32.5 MB, then a refusal" {
	port=$(freeport)
	serve_on TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr b
	wait_port "$port"
	bb=$(snapshot b)
	# Every size of every part, one step at a time (before: 39 MB of tables): the second
	# size of the whole is not the one the rule gives.
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 1 sizes
	[[ $stderr == *'"last": ["error", "refused: the client asks for table 0/0 of size '*' again, or out of turn"]'* ]] || fail "$stderr"
	received=$(echo "$stderr" | jq .received)
	[ "$received" -lt 100000 ] || fail "got $received bytes back: $stderr"
	# The most an honest client asks: the whole at each size of the rule, each sixteenth
	# at 2^12, 2^14 and 2^15 cells a part; one table more is refused.
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 1 max
	[[ $stderr == *'"last": ["error", "refused: the client asks for table 4/15 of size 15 again, or out of turn"]'* ]] || fail "$stderr"
	[ "$(echo "$stderr" | jq .tables)" -eq 53 ] || fail "$stderr"
	received=$(echo "$stderr" | jq .received)
	[ "$received" -le 32500000 ] || fail "got $received bytes back: $stderr"
	[ "$received" -gt 31000000 ] || fail "got only $received bytes back: $stderr"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a server whose tables lie, or never decode, is refused in bounded bytes and time; nothing stored changes" {
	aa=$(snapshot a)
	run --separate-stderr gossip-merge -d a sync "$PY $P liar $SEED yours"
	assert_failure 2
	assert_error gossip-merge "refused: the server's table names an entry this store does not hold"
	[ "$(snapshot a)" = "$aa" ]
	run --separate-stderr gossip-merge -d a sync "$PY $P liar $SEED size"
	assert_failure 2
	assert_error gossip-merge "peer: not the sync protocol"
	run --separate-stderr gossip-merge -d a sync "$PY $P liar $SEED more"
	assert_failure 2
	assert_error gossip-merge "refused: the server sends a table that was not asked for"
	[ "$(snapshot a)" = "$aa" ]
	# Garbage at every size: the client asks five sizes of the whole (the last the
	# largest), then three of each sixteenth, then each sixteenth's ids (none: the liar
	# holds nothing, so the client's are pushed), and stops.
	t0=$(ms)
	run --separate-stderr gossip-merge -v -d a sync "$PY $P liar $SEED garbage"
	took=$(($(ms) - t0))
	assert_success
	[[ $stderr == *"sent 1 messages"* ]] || fail "$stderr"
	[[ $stderr == *'{"cells": 2656248}'* ]] || fail "$stderr"
	[[ $stderr =~ received\ 0\ messages,\ ([0-9]+)\ bytes ]] || fail "$stderr"
	[ "${BASH_REMATCH[1]}" -lt 33000000 ] # 2656248 cells of 12 bytes || fail "$stderr"
	[ "$took" -lt 25000 ] || fail "took $took ms"
	[ "$(snapshot a)" = "$aa" ]
}

@test "a sixteenth that does not decode at the largest size is listed: its ids are compared one by one" {
	# Fifteen sixteenths decode into an id each; the sixteenth lists one more; the server
	# sends all but one of the 16 wanted (it holds no message for one).
	run --separate-stderr gossip-merge -v -d a --pull sync "$PY $P liar $SEED partial"
	assert_success
	[[ $stderr == *"received 15 messages"* ]] || fail "$stderr"
	[ "$(gossip-merge -d a keys | grep -c '^part')" -eq 15 ] || fail "$(gossip-merge -d a keys)"
	# A list out of order is a lie, refused.
	aa=$(snapshot a)
	run --separate-stderr gossip-merge -d a sync "$PY $P liar $SEED unsorted"
	assert_failure 2
	assert_error gossip-merge "refused: the server's list of part 4/0 is not its ids in order (a list that lies)"
	[ "$(snapshot a)" = "$aa" ]
}

@test "a listing that never ends costs the client time up to its limit, not memory" {
	aa=$(snapshot a)
	# (Under AddressSanitizer, freed memory waits in a quarantine of 256 MB: kept small.)
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4 \
		gossip-merge -d a -t 4 --pull sync "$PY $P liar $SEED endless" >/dev/null 2>endless.err & pid=$!
	peak=0
	while kill -0 "$pid" 2>/dev/null; do
		# It may end between kill -0 and the read: then its /proc entry is gone.
		hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || break
		[ -z "$hwm" ] || [ "$hwm" -le "$peak" ] || peak=$hwm
		sleep 0.1
	done
	wait "$pid" && fail "the sync succeeded: $(cat endless.err)"
	grep -q "timed out after 4 s" endless.err || fail "$(cat endless.err)"
	# It keeps at most 250000 ids (2 MB); without that bound it grew by about 100 MB a second.
	[ "$peak" -lt 150000 ] || fail "peak RSS $peak kB"
	[ "$(snapshot a)" = "$aa" ]
}

@test "a server lists a sixteenth's ids only after its largest table, once each; the listing is its ids, 8 bytes each" {
	port=$(freeport)
	serve_on TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr b
	wait_port "$port"
	for i in $(seq 1 40); do echo "set k$i v$i"; done | gossip-send -d b batch | gossip-merge -d b >/dev/null
	bb=$(snapshot b)
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 0 ids
	[[ $stderr == *'"last": ["error", "refused: the client asks for the ids of part 4/3 again, or before its largest table"]'* ]] || fail "$stderr"
	# every message of b (its 41: 40 and the one of setup) listed once
	[ "$(echo "$stderr" | jq .ids)" -eq 41 ] || fail "$stderr"
	run --separate-stderr $PY "$P" --connect "127.0.0.1:$port" tables $SEED 0 early
	[[ $stderr == *'"last": ["error", "refused: the client asks for the ids of part 4/0 again, or before its largest table"]'* ]] || fail "$stderr"
	[ "$(echo "$stderr" | jq .ids)" -eq 0 ] || fail "$stderr"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a server whose sixteenth's table names an id outside that sixteenth is refused" {
	aa=$(snapshot a)
	run --separate-stderr gossip-merge -d a --pull sync "$PY $P liar $SEED outside"
	assert_failure 2
	assert_error gossip-merge "refused: the server's table 4/1 names an id outside its part (a table that lies)"
	[ "$(snapshot a)" = "$aa" ]
}

# trickle_syncs HOST COUNT...: for each pair, COUNT connections to $TCP from 127.0.0.HOST,
# each a sync request's first bytes, then a byte a second for 12 s (in the background).
trickle_syncs() {
	$PY - "${TCP#tcp://}" "$@" <<'PY' &
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
conns = []
for a, n in zip(sys.argv[2::2], sys.argv[3::2]):
    for _ in range(int(n)):
        s = socket.socket()
        s.bind(("127.0.0." + a, 0))
        s.connect((host, int(port)))
        s.sendall(b"\x85\x6bgossip-sync")
        conns.append(s)
for _ in range(12):
    time.sleep(1)
    for s in conns:
        try:
            s.sendall(b"\x02")
        except OSError:
            pass
PY
	BG="$BG $!"
}

@test "N trickling syncs from one address cannot stop a member's sync through gossip-listen -s" {
	SERVE_T=20 listen_sync b
	gossip-send -d a set from-a 1 | gossip-merge -d a >/dev/null
	# 20 connections from 127.0.0.2, each a sync request's first bytes, then a byte a second:
	# enough to take all 16 slots if one address could.
	trickle_syncs 2 20
	for _ in $(seq 1 100); do [ "$(grep -c 'busy' b.listen.err)" -ge 16 ] && break; sleep 0.1; done
	[ "$(grep -c 'refused: busy: 4 syncs from 127.0.0.2 are running' b.listen.err)" -eq 16 ] ||
		fail "$(cat b.listen.err)"
	t0=$(ms)
	run gossip-merge -d a -t 5 sync "$TCP"
	assert_success
	[ $(($(ms) - t0)) -lt 4000 ]
	[ "$(gossip-merge -d b get from-a)" = 1 ]
	[ "$(gossip-merge -d a get secret-key)" = hunter2-value ]
}

@test "syncs from addresses of no member: one each, four in all; an outsider on many addresses cannot stop a member's sync" {
	# b's table names a, at 127.0.0.1 (a member's sync comes from there), and at a scoped
	# and a non-canonical IPv6 address, and a host name (each once turned the strangers'
	# limits off).
	gossip-peers -d a announce -a tcp://127.0.0.1:7000 -a 'tcp://[fe80::1%lo]:7000' \
		-a 'tcp://[0:0::1]:7000' -a tcp://localhost:7000 | gossip-peers -d b observe
	[ "$(gossip-peers -d b -j list | jq -r .name)" = a ]
	SERVE_T=20 listen_sync b
	gossip-send -d a set from-a 1 | gossip-merge -d a >/dev/null
	# Two connections from each of 127.0.0.60-64, each a sync request's first bytes, then a
	# byte a second (before: four from each of four addresses took all 16 slots).
	trickle_syncs 60 2 61 2 62 2 63 2 64 2
	wait_for 10 eval '[ "$(grep -c "refused: busy" b.listen.err)" -ge 6 ]' || fail "$(cat b.listen.err)"
	run gossip-merge -d a -t 5 sync "$TCP"
	assert_success
	[ "$(grep -c "refused: busy: 1 syncs from 127.0.0.6[0-4], which is no member's address" b.listen.err)" = 4 ] ||
		fail "$(cat b.listen.err)"
	[ "$(grep -c "refused: busy: 4 syncs from addresses of no member are running" b.listen.err)" = 2 ] ||
		fail "$(cat b.listen.err)"
	[ "$(gossip-merge -d b get from-a)" = 1 ]
	[ "$(gossip-merge -d a get secret-key)" = hunter2-value ]
}

# flood_frames T LEN: a trusted client (py) that, after the first table, sends a partial
# item of half a MiB (as many data items), then sealed frames of LEN bytes each as fast as serve -d b -t T
# takes them, for up to 20 s; prints the ms serve ran and its exit status; serve's log in
# serve.err.
flood_frames() {
	$PY - "$BATS_TEST_DIRNAME" "$SEED" "$1" "$2" <<'PY'
import os, select, socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import cbor2, syncpeer as sp
seed, t, length = bytes.fromhex(sys.argv[2]), sys.argv[3], int(sys.argv[4])
a, b = socket.socketpair()
t0 = time.time()
srv = subprocess.Popen(["gossip-merge", "-d", "b", "-t", t, "serve"], stdin=b, stdout=b,
                       stderr=open("serve.err", "w"))
b.close()
s = sp.Session(sp.Wire(a.fileno(), a.fileno()), seed)
s.client()
s.send(["summary", "pull", bytes(16), 2**40, sp.epoch()])
s.item()
s.send(raw=b"\x9f" + b"\x00" * 2**19)
frame = lambda: cbor2.dumps(sp.nb.crypto_secretstream_xchacha20poly1305_push(s.tx, b"\x00" * length, None, sp.TAG_MESSAGE))
a.setblocking(False)
buf = b""
while time.time() - t0 < 20 and srv.poll() is None:
    if len(buf) < 65536:
        buf += b"".join(frame() for _ in range(200))
    try:
        buf = buf[a.send(buf):]
    except BlockingIOError:
        select.select([], [a], [], 0.1)
    except OSError:
        break
    try:
        while a.recv(65536):
            pass
    except (BlockingIOError, OSError):
        pass
srv.wait()
print(int((time.time() - t0) * 1000), srv.returncode)
PY
}

@test "a trusted client that sends frames faster than serve takes them meets the deadline (-t 2); an empty frame is refused" {
	bb=$(snapshot b)
	# One byte a frame: each frame asks for a scan of the unfinished item (half a MiB).
	read -r took status < <(flood_frames 2 1)
	[ "$status" = 2 ] || fail "exit $status: $(cat serve.err)"
	grep -q "timed out" serve.err || fail "$(cat serve.err)"
	# Twice the limit and more: it ran 44 s and more before, at full CPU.
	[ "$took" -lt 6000 ] || fail "serve -t 2 ran $took ms: $(cat serve.err)"
	[ "$(snapshot b)" = "$bb" ]
	read -r took status < <(flood_frames 2 0)
	[ "$status" = 2 ] || fail "exit $status: $(cat serve.err)"
	grep -q "not the sync protocol\|a sealed frame" serve.err || fail "$(cat serve.err)"
	[ "$took" -lt 2000 ] || fail "an empty frame was taken ($took ms): $(cat serve.err)"
	[ "$(snapshot b)" = "$bb" ]
}

@test "a trusted client's item that is not the protocol (a short root, a mode that is a number, a 9-byte id) is refused to it too, not only in serve's log" {
	bb=$(snapshot b)
	$PY - "$BATS_TEST_DIRNAME" "$SEED" >got <<'PY'
import socket, subprocess, sys
sys.path.insert(0, sys.argv[1])
import syncpeer as sp
seed, E = bytes.fromhex(sys.argv[2]), sp.epoch()
for name, items in [("root15", [["summary", "pull", bytes(15), 0, E]]),
                    ("mode", [["summary", 7, bytes(16), 0, E]]),
                    ("want", "W")]:
    a, b = socket.socketpair()
    srv = subprocess.Popen(["gossip-merge", "-d", "b", "-t", "5", "serve"], stdin=b, stdout=b,
                           stderr=open("serve.%s.err" % name, "w"))
    b.close()
    s = sp.Session(sp.Wire(a.fileno(), a.fileno()), seed)
    s.client()
    if items == "W":
        s.send(["summary", "pull", bytes(16), 5, E])
        s.item()
        s.send(["msgs", 0], ["want", [bytes(9)]])
    else:
        s.send(*items)
    last = None
    try:
        while True:
            last = s.item()[0]
    except BaseException:
        pass
    srv.wait()
    print(name, srv.returncode, last)
PY
	for c in root15 mode want; do
		line=$(grep "^$c " got)
		[[ $line == "$c 2 ['error', 'refused: not the sync protocol"* ]] || fail "$line: $(cat "serve.$c.err")"
		[ "$(grep -c . "serve.$c.err")" = 1 ] || fail "$(cat "serve.$c.err")"
	done
	[ "$(snapshot b)" = "$bb" ]
}
