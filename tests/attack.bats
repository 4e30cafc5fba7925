#!/usr/bin/env bats
# What an attacker with only public keys, or a signer restricted by prefix=, could do, and
# no longer can: shut a member out with forgeries under its key, pin a key or poison a
# watermark with a version from the future, keep a revoked signer's data alive, make
# stores disagree by equivocating. Every refusal is one line and leaves the store as it
# was.
load helper
load node

SEED=0303030303030303030303030303030303030303030303030303030303030303
I="$BATS_TEST_DIRNAME/interop.py"

setup() {
	base_setup
	BG=
	NODES=
	two_nodes
}

teardown() {
	# Every process a test started is gone, even when it failed.
	[ -z "$BG" ] || kill $BG 2>/dev/null || true
	[ -z "$BG" ] || wait $BG 2>/dev/null || true
	nodes_stop
}

# A Python-made message from SEED's key: py TYPE KEY VALUE VERSION [TIME]
py() {
	$PY "$I" make $SEED --type "$1" --key "$2" --value "$3" --version "$4" ${5:+--time "$5"}
}

# The number of items in an evidence file.
evidence_count() {
	$PY - "$1" <<'PY'
import cbor2, sys
n = 0
with open(sys.argv[1], "rb") as f:
    dec = cbor2.CBORDecoder(f)
    while f.peek(1):
        dec.decode(); n += 1
print(n)
PY
}

# The public key of NODE (its key.pub) in hex, as interop.py takes a kid.
kid_hex() { cut -d' ' -f1 "$T/$1.pub" | base64 -d | od -An -tx1 | tr -d ' \n'; }

# sendto PORT FILE: every message in FILE as a datagram of its own to 127.0.0.1:PORT,
# paced so that the socket buffer does not drop them.
sendto() {
	$PY - "$1" "$2" <<'PY'
import cbor2, io, socket, sys, time
data = open(sys.argv[2], "rb").read(); f = io.BytesIO(data); dec = cbor2.CBORDecoder(f)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); n = 0
while f.tell() < len(data):
    start = f.tell(); dec.decode(); s.sendto(data[start:f.tell()], ("127.0.0.1", int(sys.argv[1])))
    n += 1
    if n % 50 == 0:
        time.sleep(0.01)
PY
}

@test "a thousand forgeries under a member's key cost it nothing; the sender's address is noted" {
	trust a b
	set -- $(freeports 2)
	node_start a "$1" ""
	node_start b "$2" "$1"
	wait_for 20 sh -c "[ \"\$(gossip-peers -d $T/a -j list | jq -r 'select(.name == \"b\") | .state')\" = alive ]" ||
		fail "b never joined a: $(gossip-peers -d "$T/a" list)"
	before=$(gossip-merge -d a keys | tr '\n' ' ')
	# Forged: b's key as kid, someone else's signatures; some malformed under b's kid.
	$PY - "$(kid_hex b)" >forged <<'PY'
import cbor2, nacl.signing, os, sys, time
kid = bytes.fromhex(sys.argv[1]); now = int(time.time() * 1000)
sk = nacl.signing.SigningKey(os.urandom(32)); out = sys.stdout.buffer
for i in range(1000):
    payload = cbor2.dumps({1: 1, 2: now + i, 3: now, 4: "forged%d" % i, 5: "x"}, canonical=True)
    prot = cbor2.dumps({1: -8})
    sig = sk.sign(cbor2.dumps(["Signature1", prot, b"", payload])).signature
    if i % 10 == 9:
        sig = sig[:10]  # malformed: a short signature
    out.write(cbor2.dumps(cbor2.CBORTag(18, [prot, {4: kid}, payload, sig])))
PY
	# And replays of b's own valid messages, as anyone can make them.
	gossip-merge -d a export >replay
	for _ in 1 2 3 4 5; do cat replay; done >>forged
	sendto "$1" forged
	wait_for 10 grep -q "^[0-9]* udp://127.0.0.1:[0-9]* bad signature$" a/rejects ||
		fail "no line for the sender's address: $(cat a/rejects 2>/dev/null)"
	sleep 1  # ten of observe's ticks: each reads what DIR/rejects gained
	# Nothing is held against b, and b is picked with its full score.
	run ! grep -q " $(cut -d' ' -f1 b.pub) " a/rejects
	[ "$(gossip-peers -d a -j list | jq -r 'select(.name == "b") | .score')" = 100 ]
	baddr=$(gossip-peers -d a -j list | jq -r 'select(.name == "b") | .addrs[0]')
	for _ in $(seq 1 10); do gossip-peers -d a pick; done | grep -qx "$baddr"
	# Nothing stored changed.
	[ "$(gossip-merge -d a keys | tr '\n' ' ')" = "$before" ]
	[ ! -s a/evidence ]
}

@test "gossip-listen: a forgery is charged to its address, a proven refusal to its signer" {
	sed -i "s|^|prefix=app/ |" b/trusted
	$PY "$I" pub $SEED py >>b/trusted
	gossip-listen -d b --max-skew 5 -a got.addrs udp://127.0.0.1:0 >got 2>got.err & BG=$!
	for _ in $(seq 1 200); do [ -s got.addrs ] && break; sleep 0.05; done
	u=$(cat got.addrs)
	gossip-send -d a set app/k v >forged && flipbit forged -2
	gossip-send -d a "$u" <forged
	gossip-send -d a -t "$u" set other 1  # outside prefix=, validly signed
	soon=$(( $(date +%s) * 1000 + 60000 ))
	py 1 app/soon 1 "$soon" "$soon" | gossip-send -d a "$u"  # a minute ahead, --max-skew 5
	gossip-send -d a -t "$u" set app/ok 1
	for _ in $(seq 1 100); do [ -s got ] && break; sleep 0.05; done
	kill -USR1 $BG
	for _ in $(seq 1 100); do grep -q "received" got.err && break; sleep 0.05; done
	grep -q "accepted 1, duplicates 0; rejected: 0 malformed, 1 bad signature, 0 untrusted, 1 key not allowed, 0 not sealed, 0 wrong key, 0 too large, 1 from the future; most from udp://127.0.0.1:[0-9]* (1)$" got.err ||
		fail "$(cat got.err)"
	grep -q "from the future: signer py's time is" got.err
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = app/ok ]
	# Proven refusals are charged to their signers, the forgery to its address.
	[ "$(grep -c " $(cut -d' ' -f1 a.pub) key not allowed$" b/rejects)" = 1 ]
	[ "$(grep -c " $($PY "$I" pub $SEED | cut -d' ' -f1) from the future$" b/rejects)" = 1 ]
	grep -q "^[0-9]* udp://127.0.0.1:[0-9]* bad signature$" b/rejects
	[ "$(wc -l <b/rejects)" = 3 ]
	[ "$(evidence_count b/evidence)" = 2 ]
}

@test "version 2^64-1 from a restricted signer is refused; later writes by others still win" {
	$PY "$I" pub $SEED py | sed 's|^|prefix=app/ |' >>b/trusted
	gossip-send -d a set app/x first | gossip-merge -d b >/dev/null
	before=$(gossip-merge -d b digest)
	py 1 app/x pinned 18446744073709551615 >pin
	run --separate-stderr gossip-merge -d b pin
	assert_failure 1
	assert_error gossip-merge "pin: offset 0: message from the future: signer py's version 18446744073709551615"
	[ "$(gossip-merge -d b digest)" = "$before" ]
	# Its own signature proves it: kept, and charged to it (and to no one else).
	[ "$(grep -c " $($PY "$I" pub $SEED | cut -d' ' -f1) from the future$" b/rejects)" = 1 ]
	[ "$(wc -l <b/rejects)" = 1 ]
	# Anyone replaying it charges it no more.
	run gossip-merge -d b pin
	assert_failure 1
	[ "$(wc -l <b/rejects)" = 1 ]
	[ "$(evidence_count b/evidence)" = 1 ]
	# A time from the future likewise; --max-skew says how far is too far.
	soon=$(( $(date +%s) * 1000 + 60000 ))
	py 1 app/y soon "$soon" "$soon" >soon
	run --separate-stderr gossip-merge -d b --max-skew 10 soon
	assert_failure 1
	assert_error gossip-merge "message from the future: signer py's time is"
	gossip-merge -d b soon >/dev/null
	[ "$(gossip-merge -d b get app/y)" = soon ]
	# Others' later writes still win.
	gossip-send -d a set app/x second | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get app/x)" = second ]
	run gossip-merge -d b --max-skew 0 pin
	assert_failure 2
	run gossip-merge -d b --max-skew 5 keys
	assert_failure 2
}

@test "an old event with version 2^64-2 cannot move a watermark" {
	$PY "$I" pub $SEED py >>b/trusted
	old=$(( $(date +%s) * 1000 - 3 * 3600000 ))
	py 3 poison x 18446744073709551614 "$old" >poison
	before=$(gossip-merge -d b digest)
	run --separate-stderr gossip-merge -d b --max-skew 31536000 poison
	assert_failure 1
	assert_error gossip-merge "message from the future"
	[ "$(gossip-merge -d b digest)" = "$before" ]
	gossip-merge -d b compact >/dev/null
	run ! grep -q "$($PY "$I" pub $SEED | cut -d' ' -f1)" b/watermarks
	# The origin's next messages are stored.
	py 1 after yes "" | gossip-merge -d b >new
	[ -s new ]
	[ "$(gossip-merge -d b get after)" = yes ]
}

@test "a 100,000-message batch merges whole, even with a one-second skew" {
	seq 1 100000 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	gossip-merge -d b --max-skew 1 msgs >/dev/null
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 100000 ]
}

@test "the clock waits rather than let versions lead the wall clock by more than 600 s" {
	now=$(( $(date +%s%N) / 1000000 ))
	printf '%020d\n' $(( now + 600000 + 1500 )) >a/clock
	t0=$(date +%s%N)
	gossip-send -d a set k v >m
	elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ "$elapsed" -ge 1000 ] || fail "gossip-send did not wait ($elapsed ms)"
	gossip-merge -d b --max-skew 1 m >/dev/null
	[ "$(gossip-merge -d b get k)" = v ]
	# Far ahead (the wall clock stepped back): a clear error, no message.
	printf '%020d\n' $(( now + 3600000 )) >a/clock
	run --separate-stderr gossip-send -d a set k v2
	assert_failure 2
	assert_error gossip-send "ahead of the wall clock"
	[ -z "$output" ]
}

# equivocation: b and c trust each other and the signer py; x and y are two different
# messages py signed with the same key and version (k = one, k = two).
equivocation() {
	mknode c
	for n in b c; do $PY "$I" pub $SEED py >>$n/trusted; done
	trust b c
	trust c b
	py 1 k one 500 >x
	py 1 k two 500 >y
}

@test "an equivocating pair converges: the same state everywhere, kept as proof, charged once" {
	equivocation
	gossip-merge -d b x >/dev/null
	run --separate-stderr gossip-merge -d b y
	assert_failure 1
	assert_error gossip-merge "y: offset 0: equivocation by py: another message of version 500 for key \"k\" is stored"
	gossip-merge -d c y >/dev/null
	run --separate-stderr gossip-merge -d c x
	assert_failure 1
	assert_error gossip-merge "equivocation by py"
	[ "$(gossip-merge -d b get k)" = "$(gossip-merge -d c get k)" ]
	[ "$(gossip-merge -d b digest)" = "$(gossip-merge -d c digest)" ]
	# The winner is the lower BLAKE2b-128 hash of the message's bytes.
	want=$($PY - x y <<'PY'
import hashlib, sys
h = {hashlib.blake2b(open(f, "rb").read(), digest_size=16).digest(): f for f in sys.argv[1:]}
print({"x": "one", "y": "two"}[h[min(h)]])
PY
)
	[ "$(gossip-merge -d b get k)" = "$want" ]
	# In one stream, too.
	mknode d
	$PY "$I" pub $SEED py >>d/trusted
	run sh -c "cat x y | gossip-merge -d d"
	assert_failure 1
	[ "$(gossip-merge -d d digest)" = "$(gossip-merge -d b digest)" ]
	# The pair is in each evidence file, once; the signer charged once each.
	for n in b c d; do
		[ "$(grep -c " $($PY "$I" pub $SEED | cut -d' ' -f1) equivocation$" $n/rejects)" = 1 ]
		$PY - $n/evidence <<'PY'
import cbor2, sys
items = []
with open(sys.argv[1], "rb") as f:
    dec = cbor2.CBORDecoder(f)
    while f.peek(1):
        items.append(dec.decode())
assert len(items) == 1 and items[0][0] == "equivocation" and len(items[0]) == 3, items
PY
	done
	cmp b/evidence c/evidence
	# Both again: nothing more is charged.
	cat x y | gossip-merge -d b >/dev/null 2>&1 || true
	[ "$(wc -l <b/rejects)" = 1 ]
	# A sync between the two stores exchanges nothing.
	run --separate-stderr gossip-merge -v -d b sync "gossip-merge -d $T/c serve"
	assert_success
	[[ "$stderr" == *"stores equal"* ]]
}

@test "an equivocating pair held one message on each side: a sync exchanges them and both keep the same one" {
	equivocation
	gossip-merge -d b x >/dev/null
	gossip-merge -d c y >/dev/null
	[ "$(gossip-merge -d b digest)" != "$(gossip-merge -d c digest)" ]
	# The loser is refused on the side that holds the winner: a sync that found one.
	run --separate-stderr gossip-merge -d b sync "gossip-merge -d $T/c serve"
	[ "$status" -le 1 ]
	[ "$(gossip-merge -d b digest)" = "$(gossip-merge -d c digest)" ]
	[ "$(gossip-merge -d b get k)" = "$(gossip-merge -d c get k)" ]
	run --separate-stderr gossip-merge -v -d b sync "gossip-merge -d $T/c serve"
	assert_success
	[[ "$stderr" == *"stores equal"* ]]
}

@test "a signer removed from trusted: its state is hidden from queries and syncs, and compaction drops it" {
	mknode c
	trust b c
	gossip-send -d a set shared from-a | gossip-merge -d b >/dev/null
	gossip-send -d a set mine a | gossip-merge -d b >/dev/null
	gossip-send -d c set shared from-c | gossip-merge -d b >/dev/null
	gossip-send -d c set theirs c | gossip-merge -d b >/dev/null
	gossip-send -d c event boom | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get shared)" = from-c ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 4 ]  # a's shared is superseded by c's
	trusted=$(cat b/trusted)
	cline=$(cat c.pub)
	grep -vxF "$cline" b/trusted >t && mv t b/trusted
	[ "$(gossip-merge -d b get shared)" = from-a ]
	run gossip-merge -d b get theirs
	assert_failure 1
	[ "$(gossip-merge -d b keys | tr '\n' ' ')" = "mine shared " ]
	gossip-merge -d b dump | grep -q boom && fail "the revoked signer's value is still shown"
	[ "$(gossip-merge -d b export | gossip-inspect -d b -j | jq -r .origin | sort -u)" = "$(cut -d' ' -f1 a.pub)" ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 2 ]
	# A sync sends none of it, to a store that trusts c all the same.
	mknode e
	trust e b
	trust e c
	trust e a
	trust b e
	gossip-merge -d e sync "gossip-merge -d $T/b serve" >/dev/null
	[ "$(gossip-merge -d e digest)" = "$(gossip-merge -d b digest)" ]
	run gossip-merge -d e get theirs
	assert_failure 1
	# The line back: visible again.
	printf '%s\n' "$trusted" >b/trusted
	[ "$(gossip-merge -d b get theirs)" = c ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 4 ]
	# Removed again and compacted: gone from the store, for good.
	grep -vxF "$cline" b/trusted >t && mv t b/trusted
	gossip-merge -d b compact >/dev/null
	[ "$(gossip-inspect -d b -j b/store | jq -r .key | sort | tr '\n' ' ')" = "mine shared " ]
	printf '%s\n' "$trusted" >b/trusted
	run gossip-merge -d b get theirs
	assert_failure 1
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 2 ]
}

@test "a long-running gossip-merge re-reads trusted on SIGHUP" {
	mknode c
	gossip-send -d c set k1 1 >m1
	gossip-send -d c set k2 2 >m2
	gossip-send -d c set k3 3 >m3
	mkfifo in
	gossip-merge -d b <in >out 2>err & BG=$!
	exec 5>in  # bats keeps fd 3 for itself
	cat m1 >&5
	for _ in $(seq 1 100); do grep -q "untrusted signer" err && break; sleep 0.05; done
	grep -q "untrusted signer" err
	trust b c
	kill -HUP $BG
	cat m2 >&5
	for _ in $(seq 1 100); do [ -s out ] && break; sleep 0.05; done
	grep -q "reloaded: 3 trusted signers" err
	[ "$(gossip-inspect -d b -j out | jq -r .key)" = k2 ]
	grep -vxF "$(cat c.pub)" b/trusted >t && mv t b/trusted
	kill -HUP $BG
	cat m3 >&5
	for _ in $(seq 1 100); do [ "$(grep -c "untrusted signer" err)" = 2 ] && break; sleep 0.05; done
	[ "$(grep -c "untrusted signer" err)" = 2 ]
	exec 5>&-
	st=0
	wait $BG || st=$?
	BG=
	[ "$st" = 1 ]  # it refused something
}

# stored DIR: snapshot of DIR without the rejects log, which a refusal is meant to grow.
stored() {
	rm -rf "$T/.stored"
	cp -a "$1" "$T/.stored"
	rm -f "$T/.stored"/rejects*
	snapshot "$T/.stored"
}

# reloaded PID LOG PROG: SIGHUP to PID; wait until LOG has one more "PROG: reloaded" line.
reloaded() {
	local n
	n=$(grep -c "^$3: reloaded: " "$2" || true)
	kill -HUP "$1"
	wait_for 5 reloads_over "$2" "$3" "$n"
}

reloads_over() {
	[ "$(grep -c "^$2: reloaded: " "$1")" -gt "$3" ]
}

@test "a revoked signer after SIGHUP: its new messages, its replays, and a message already half sent are refused by listen and merge; nothing stored changes" {
	mknode c
	trust b c
	for i in 1 2 3 4; do gossip-send -d c set "c$i" "$i" >"m$i"; done
	mkfifo pipe
	gossip-listen -d b -a got.addrs udp://127.0.0.1:0 tcp://127.0.0.1:0 >pipe 2>got.err & BG=$!
	lpid=$!
	gossip-merge --verified -d b <pipe >merged 2>merge.err & BG="$BG $!"
	mpid=$!
	wait_for 10 test -s got.addrs
	udp=$(sed -n 1p got.addrs) tcp=$(sed -n 2p got.addrs)
	wait_for 5 eval '(( 0x$(awk "/^SigCgt:/ {print \$2}" /proc/$mpid/status) & 1 ))'
	gossip-send -d c "$udp" <m1
	wait_for 10 eval '[ "$(cbor_count merged)" = 1 ]'
	# m2 half sent on a stream before the revocation, the rest after.
	$PY - "$tcp" m2 <<'PY' &
import os, socket, sys, time
host, port = sys.argv[1][6:].rsplit(":", 1)
data = open(sys.argv[2], "rb").read()
s = socket.create_connection((host, int(port)))
s.sendall(data[:len(data) // 2])
while not os.path.exists("revoked"):
    time.sleep(0.05)
s.sendall(data[len(data) // 2:]); s.close()
PY
	BG="$BG $!"
	half=$!
	grep -vxF "$(cat c.pub)" b/trusted >t && mv t b/trusted
	reloaded "$lpid" got.err gossip-listen
	reloaded "$mpid" merge.err gossip-merge
	before=$(stored b)
	touch revoked
	wait "$half"
	wait_for 5 eval '[ "$(grep -c "untrusted signer" got.err)" = 1 ]'
	gossip-send -d c "$udp" <m3                 # new, by datagram
	gossip-send -d c "$tcp" <m4                 # new, by stream
	gossip-send -d c "$udp" <m1                 # a replay of what was taken before
	$PY -c 'import socket, sys; h, p = sys.argv[1][6:].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(open("m1", "rb").read(), (h, int(p)))' "$udp"
	wait_for 5 eval '[ "$(grep -c "untrusted signer" got.err)" = 3 ]'
	# The replays of m1 are duplicates to the listener: counted, never passed on again.
	kill -USR1 "$lpid"
	wait_for 5 grep -q "accepted 1, duplicates 2; rejected: 0 malformed, 0 bad signature, 3 untrusted," got.err
	[ "$(cbor_count merged)" = 1 ]
	# And merge itself, fed the revoked signer's messages directly, refuses them too.
	run --separate-stderr gossip-merge --verified -d b m3
	assert_failure 1
	[[ $stderr == *"untrusted signer"* ]] || fail "$stderr"
	[ "$(stored b)" = "$before" ] || fail "the store changed after the revocation"
	kill "$lpid"
	wait "$mpid" || true
}

@test "a flood sealed with the old key after rotation: counted, a few log lines a second, nothing stored; the new key still passes" {
	gossip-keygen -c >old
	gossip-keygen -c >new
	cp new b/keyring
	chmod 600 b/keyring
	cp -r a stale  # a trusted signer whose keyring is the old one
	cp old stale/keyring
	chmod 600 stale/keyring
	gossip-listen -d b -a got.addrs udp://127.0.0.1:0 >got 2>got.err & BG=$!
	lpid=$!
	wait_for 10 test -s got.addrs
	before=$(stored b)
	# 20 datagrams sealed with the old key (caught on a socket of our own), each sent 100
	# times.
	$PY - "$(cat got.addrs)" stale <<'PY'
import socket, subprocess, sys, time
host, port = sys.argv[1][6:].rsplit(":", 1)
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("127.0.0.1", 0))
cap = "udp://127.0.0.1:%d" % srv.getsockname()[1]
grams = []
for i in range(20):
    subprocess.run(["gossip-send", "-d", sys.argv[2], "-t", cap, "set", "old%d" % i, "x"], check=True)
    grams.append(srv.recv(65536))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); n = 0
while n < 2000:
    s.sendto(grams[n % 20], (host, int(port))); n += 1
    if n % 50 == 0:
        time.sleep(0.01)
PY
	wait_for 10 eval '[[ "$(kill -USR1 $lpid; sleep 0.2; grep received got.err | tail -1)" == *", 2000 wrong key,"* ]]' ||
		fail "$(cat got.err)"
	lines=$(grep -c "does not hold" got.err)
	[ "$lines" -le 100 ] || fail "$lines lines for 2000 datagrams"
	grep -q "more rejections not shown" got.err || fail "no summary line: $(cat got.err)"
	[ "$(cbor_count got)" = 0 ]
	[ "$(stored b)" = "$before" ] || fail "the store changed"
	cp new a/keyring
	chmod 600 a/keyring
	gossip-send -d a -t "$(cat got.addrs)" set fresh 1
	wait_for 5 eval '[ "$(cbor_count got)" = 1 ]'
}
