#!/usr/bin/env bats
# gossip-merge: merge rules, the durable store, concurrency, crashes, queries, compaction.
load helper

SEED=0303030303030303030303030303030303030303030303030303030303030303
I="$BATS_TEST_DIRNAME/interop.py"

setup() {
	base_setup
	two_nodes
	$PY "$I" pub $SEED py >>b/trusted
}

teardown() {
	# Every background process a test started is gone, even when it failed.
	[ -z "${BG:-}" ] || kill -9 $BG 2>/dev/null || true
}

# A Python-made message from SEED's key: py TYPE KEY VALUE VERSION [TIME]
py() {
	$PY "$I" make $SEED --type "$1" --key "$2" --value "$3" --version "$4" ${5:+--time "$5"}
}

keyset() { gossip-merge -d "$1" -j dump | jq -r '[.type, .key, (.value // "-"), .version] | @tsv' | sort; }

@test "merge prints exactly the messages that changed the state, once each" {
	gossip-send -d a set color blue >m1
	gossip-send -d a set color red >m2
	gossip-send -d a event ping >m3
	cat m1 m2 m1 m3 m3 m2 | gossip-merge -d b >new
	gossip-inspect -d b -j new | jq -r '[.key, .value] | @tsv' >got
	printf 'color\tblue\ncolor\tred\nping\t\n' >want
	diff want got
	# Again: nothing is new.
	cat m1 m2 m3 | gossip-merge -d b >again
	[ ! -s again ]
}

@test "probes and claims are news: checked, passed on, never stored" {
	py 1 kept yes 5 >in
	$PY "$I" probe $SEED 4 0102030405060708 >>in
	$PY "$I" probe $SEED 5 0102030405060708 >>in
	$PY "$I" make $SEED --key _suspect --value x --version 6 >>in
	gossip-merge -d b <in >out
	gossip-inspect -d b -j <out | jq -r '[.type, (.key // "-"), .value] | @tsv' >got
	printf '%s\n' "set	kept	yes" "ping	-	AQIDBAUGBwg=" "ack	-	AQIDBAUGBwg=" "set	_suspect	x" >want
	diff want got
	[ "$(gossip-merge -d b keys)" = kept ]
	# A probe from an unknown signer goes nowhere; a bad nonce is malformed.
	$PY "$I" probe 0404040404040404040404040404040404040404040404040404040404040404 4 0102030405060708 >odd
	$PY "$I" probe $SEED 5 01020304 >>odd
	st=0
	gossip-merge -d b <odd >out 2>err || st=$?
	[ "$st" = 1 ]  # nothing new
	[ ! -s out ]
	grep -q "untrusted signer" err
	grep -q "8-byte nonce" err
	[ "$(wc -l <err)" = 2 ]
	[ "$(gossip-merge -d b keys)" = kept ]
}

@test "the highest version wins, whatever the order; a delete beats older sets" {
	py 1 k v3 300 >s3; py 1 k v1 100 >s1; py 2 k - 200 >d2; py 1 k v5 500 >s5
	cat s3 s1 d2 | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get k)" = v3 ]
	cat s5 | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get k)" = v5 ]
	py 2 k - 600 | gossip-merge -d b >/dev/null
	run gossip-merge -d b get k
	assert_failure 1
	# An older set arriving late does not resurrect the key.
	cat s5 s3 s1 | gossip-merge -d b >late
	[ ! -s late ]
	run gossip-merge -d b get k
	assert_failure 1
}

@test "a replay after the tombstone is collected stays dead (watermark)" {
	old=$(( $(date +%s) * 1000 - 3 * 86400000 ))
	py 1 gone v1 100 "$old" >set
	py 2 gone - 200 "$old" >del
	py 1 live v 150 "$old" >other
	cat set | gossip-merge -d b >/dev/null
	cat del | gossip-merge -d b >/dev/null
	run gossip-merge -d b compact
	assert_success
	[ -s b/watermarks ]
	# The tombstone is gone from the store (its version kept in the watermark record)...
	[ "$(gossip-inspect -d b -j b/store | jq -s 'map(select(.watermarks | not)) | length')" = 0 ]
	[ "$(gossip-inspect -d b -j b/store | jq -s 'map(select(.watermarks)) | .[0].watermarks | length')" = 1 ]
	# ...and neither the old set nor the delete comes back.
	cat set del | gossip-merge -d b >replay
	[ ! -s replay ]
	run gossip-merge -d b get gone
	assert_failure 1
	# Anything of that origin at or below the watermark is stale (gossip(7)).
	cat other | gossip-merge -d b >late
	[ ! -s late ]
}

@test "events are delivered once per origin and version, and expire" {
	gossip-send -d a event deploy v1 >e1
	gossip-send -d a event deploy v2 >e2
	cat e1 e2 e1 e2 | gossip-merge -d b | gossip-inspect -d b -j | jq -r .value >got
	printf 'v1\nv2\n' | diff - got
	old=$(( $(date +%s) * 1000 - 2 * 3600000 ))
	$PY "$I" make $SEED --type 3 --key oldevent --value x --time "$old" | gossip-merge -d b >stale
	[ ! -s stale ]
}

@test "rejected messages cost one line each and the stream goes on" {
	mknode c
	gossip-send -d a set k1 v1 >good1
	gossip-send -d c set k2 v2 >stranger
	gossip-send -d a set k3 v3 >good3
	cp good3 bad; size=$(stat -c %s bad)
	flipbit bad -3
	gossip-send -d a set k4 v4 >good4
	cat good1 stranger bad good4 >in
	run --separate-stderr sh -c 'gossip-merge -d b in >out'
	assert_failure 1
	[ "${#stderr_lines[@]}" = 2 ]
	[[ ${stderr_lines[0]} == "gossip-merge: in: offset $(stat -c %s good1): untrusted signer $(cut -c1-8 c.pub)"* ]]
	[[ ${stderr_lines[1]} == "gossip-merge: in: offset "*": bad signature"* ]]
	[ "$(gossip-inspect -d b -j out | jq -r .key | tr '\n' ' ')" = "k1 k4 " ]
}

@test "a key outside the signer's prefix= is rejected by merge" {
	sed -i "1s|^|prefix=app/ |" b/trusted
	gossip-send -d a set app/ok 1 >ok
	gossip-send -d a set other 1 >no
	run --separate-stderr sh -c 'cat ok no | gossip-merge -d b >out'
	assert_failure 1
	assert_error gossip-merge "may not write this key"
	[ "$(gossip-inspect -d b -j out | jq -r .key)" = app/ok ]
}

@test "malformed input: exit 2 with the offset; what came before is stored" {
	gossip-send -d a set k v >good
	{ cat good; printf '\xff\xff'; } >junk
	before=$(snapshot b)
	run --separate-stderr sh -c 'gossip-merge -d b junk >out'
	assert_failure 2
	assert_error gossip-merge "junk: offset $(stat -c %s good): not well-formed CBOR"
	[ "$(gossip-merge -d b get k)" = v ]
	# A truncated message stores nothing.
	mknode n
	head -c 100 good >cut
	before=$(snapshot n)
	run --separate-stderr gossip-merge -d n cut
	assert_failure 2
	assert_error gossip-merge "cut: offset 0: truncated item"
	run gossip-merge -d n get k
	assert_failure 1
	# An item too large for a message is refused the same way.
	$PY "$I" big 70000 >big
	run --separate-stderr gossip-merge -d n big
	assert_failure 2
	assert_error gossip-merge "item is larger than 65536 bytes"
}

@test "a long-lived filter prints each new message at once" {
	gossip-send -d a set first 1 >m1
	gossip-send -d a set second 2 >m2
	mkfifo in
	gossip-merge -d b <in >out & BG=$!
	exec 5>in  # bats keeps fd 3 for itself
	cat m1 >&5
	wait_for 10 test -s out
	[ "$(gossip-inspect -d b -j out | jq -r .key)" = first ]
	cat m2 >&5
	wait_for 10 eval '[ "$(stat -c %s out)" -gt "$(stat -c %s m1)" ]'
	[ "$(gossip-inspect -d b -j out | jq -r .key | tail -1)" = second ]
	exec 5>&-
	wait $BG
}

@test "the store is a CBOR sequence gossip-inspect reads; export likewise" {
	printf 'set a 1\nset b 2\nset a 3\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	run gossip-inspect -d b -j b/store
	assert_success
	assert_equal "${#lines[@]}" 3
	gossip-merge -d b export >exp
	[ "$(gossip-inspect -d b -j exp | jq -r '.key + "=" + .value' | sort | tr '\n' ' ')" = "a=3 b=2 " ]
}

@test "queries: get with several origins, -o, -a, keys, dump, and exit 1 when nothing matches" {
	trust b b
	gossip-send -d a set shared from-a | gossip-merge -d b >/dev/null
	gossip-send -d b set shared from-b | gossip-merge -d b >/dev/null
	gossip-send -d a set app/x 1 | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get shared)" = from-b ]  # the newest write
	# -o: what that origin wrote, even when a newer write of the key superseded it.
	[ "$(gossip-merge -d b -o a get shared)" = from-a ]
	[ "$(gossip-merge -d b -o "$(cut -d' ' -f1 a.pub)" get shared)" = from-a ]
	run gossip-merge -d b -a get shared
	assert_success
	assert_line --index 0 --regexp '^a	[0-9]+	set	superseded	from-a$'
	assert_line --index 1 --regexp '^b	[0-9]+	set	wins	from-b$'
	gossip-merge -d b -j get shared | jq -e '.value == "from-b" and .name == "b"'
	[ "$(gossip-merge -d b keys | tr '\n' ' ')" = "app/x shared " ]
	[ "$(gossip-merge -d b keys app/)" = app/x ]
	run gossip-merge -d b keys nothing/
	assert_failure 1
	run gossip-merge -d b get missing
	assert_failure 1
	[ -z "$output" ]
	run --separate-stderr gossip-merge -d b -o nobody get shared
	assert_failure 2
	assert_error gossip-merge "-o nobody: not a public key, nor a name in trusted"
	run gossip-merge -d b dump
	assert_success
	assert_equal "${#lines[@]}" 2  # a's superseded row of shared is not state
	mknode empty
	run gossip-merge -d empty dump
	assert_failure 1
	run gossip-merge -d empty keys
	assert_failure 1
	run gossip-merge -d empty get k
	assert_failure 1
}

@test "binary values come back byte for byte" {
	head -c 3000 /dev/urandom >blob
	gossip-send -d a -f blob set blob | gossip-merge -d b >/dev/null
	gossip-merge -d b get blob >back
	cmp blob back
}

@test "any permutation or duplication of the same messages gives one digest" {
	{
		for i in $(seq 1 60); do echo "set k$((i % 25)) v$i"; done
		for i in $(seq 1 10); do echo "del k$((i * 2))"; echo "event e$i x"; done
	} | gossip-send -d a batch >all
	gossip-inspect -d a -j all >/dev/null
	$PY - all <<'PY' >/dev/null
import cbor2, random, sys
items = []
with open(sys.argv[1], "rb") as f:
    dec = cbor2.CBORDecoder(f)
    while f.peek(1):
        start = f.tell(); dec.decode(); end = f.tell()
        f.seek(start); items.append(f.read(end - start))
for n in range(5):
    perm = items + random.sample(items, len(items) // 2)
    random.shuffle(perm)
    open("perm%d" % n, "wb").write(b"".join(perm))
PY
	for n in 0 1 2 3 4; do
		mkdir "s$n"
		cp b/trusted "s$n/"
		# Fed in three pieces, as gossip delivers.
		split -n 3 "perm$n" "piece$n."
		cat "perm$n" | gossip-merge -d "s$n" >/dev/null
		gossip-merge -d "s$n" digest
	done >digests
	[ "$(sort -u digests | wc -l)" = 1 ]
	[ "$(cut -d' ' -f2 digests | head -1)" = 35 ]  # 25 keys (10 deleted) and 10 events
}

@test "8 concurrent writers of 500 messages each lose nothing" {
	for w in 1 2 3 4 5 6 7 8; do
		for c in 0 1 2 3 4 5 6 7 8 9; do
			seq $((c * 50 + 1)) $((c * 50 + 50)) | sed "s/.*/set w$w.k& &/" |
				gossip-send -d a batch >"w$w.$c"
		done
	done
	pids=
	for w in 1 2 3 4 5 6 7 8; do
		# Each writer merges in ten pieces, so the eight writers' appends interleave.
		(for c in 0 1 2 3 4 5 6 7 8 9; do gossip-merge -d b "w$w.$c" || exit 1; done >/dev/null) &
		pids="$pids $!"
	done
	BG=$pids
	for p in $pids; do wait "$p"; done
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 4000 ]
	[ "$(gossip-merge -d b keys | wc -l)" = 4000 ]
	[ "$(gossip-inspect -d b -j b/store | jq -s length)" = 4000 ]
}

@test "heartbeats are news, not state: passed on once, newest only, never stored" {
	gossip-send -d a set color blue | gossip-merge -d b >/dev/null
	before=$(gossip-merge -d b digest)
	gossip-peers -d a beat >hb1
	gossip-peers -d a beat >hb2
	cat hb1 hb2 hb1 hb2 | gossip-merge -d b >out
	cat hb1 hb2 >want
	cmp want out
	cat hb2 hb1 | gossip-merge -d b >newest   # older than one already passed: not again
	cmp hb2 newest
	# Not in the store: digest, keys and the file are as before.
	[ "$(gossip-merge -d b digest)" = "$before" ]
	run gossip-merge -d b keys _hb
	assert_failure 1
	# Checked like any message: a broken signature, a del of _hb.
	gossip-peers -d a beat >bad
	flipbit bad $(($(stat -c %s bad) - 10))   # in the signature
	run --separate-stderr gossip-merge -d b bad
	assert_failure 1
	[[ "$stderr" == *"bad: offset 0:"* ]]
	gossip-send -d a del _hb >del
	run --separate-stderr gossip-merge -d b del
	assert_failure 1
	[[ "$stderr" == *"_hb must be a set"* ]]
	[ "$(gossip-merge -d b digest)" = "$before" ]
	# One in the store file (an older gossip-merge stored them) is not state either, and
	# compaction drops it.
	cat hb2 >>b/store
	grep -q _hb b/store
	[ "$(gossip-merge -d b digest)" = "$before" ]
	run gossip-merge -d b keys _hb
	assert_failure 1
	gossip-merge -d b compact
	! grep -q _hb b/store || fail "compaction kept the heartbeat"
	[ "$(gossip-merge -d b digest)" = "$before" ]
}

@test "--lazy: the same messages printed and stored; only with merging" {
	for i in 1 2 3; do gossip-send -d a set "k$i" "$i"; done >m
	gossip-merge --lazy -d b m >out
	cmp m out
	[ "$(gossip-merge -d b get k3)" = 3 ]
	gossip-merge --lazy -d b m >again
	[ ! -s again ]
	run gossip-merge --lazy -d b get k1
	assert_failure 2
}

@test "a long-running merge --verified judges the message after SIGHUP by the new trusted; a revocation changes nothing stored" {
	mknode x
	for i in 1 2 3 4; do gossip-send -d x set "k$i" "$i" >"m$i"; done
	mkfifo in
	gossip-merge --verified -d b <in >out 2>err & BG=$!
	exec 5>in  # bats keeps fd 3 for itself
	cat m1 >&5
	wait_for 5 grep -q "offset 0: untrusted signer" err
	trust b x
	kill -HUP $BG
	# Idle, it reloads at once: the line comes before any message does.
	wait_for 5 grep -q "^gossip-merge: reloaded: 4 trusted signers$" err
	cat m2 >&5
	cat m1 >&5  # the one refused before: taken now
	wait_for 5 eval '[ "$(cbor_count out)" = 2 ]'
	[ "$(gossip-inspect -d b -j out | jq -r .key | tr '\n' ' ')" = "k2 k1 " ]
	# Revoked: its new messages are refused, a re-send of a stored one is a duplicate.
	grep -vxF "$(cat x.pub)" b/trusted >t && mv t b/trusted
	before=$(snapshot b)
	kill -HUP $BG
	wait_for 5 grep -q "^gossip-merge: reloaded: 3 trusted signers$" err
	cat m3 m2 m4 >&5
	wait_for 5 eval '[ "$(grep -c "untrusted signer" err)" = 3 ]'
	exec 5>&-
	st=0
	wait $BG || st=$?
	BG=
	[ "$st" = 1 ]  # it refused something
	[ "$(cbor_count out)" = 2 ]
	[ "$(snapshot b)" = "$before" ] || fail "the store changed after the revocation: $(diff <(echo "$before") <(snapshot b))"
}

@test "merge: a trusted that does not load on SIGHUP keeps the old one, with a warning" {
	mkfifo in
	gossip-merge -d b <in >out 2>err & BG=$!
	exec 5>in
	# Once its handler is in place (SigCgt, a hex mask: SIGHUP is the lowest bit).
	wait_for 5 eval '(( 0x$(awk "/^SigCgt:/ {print \$2}" /proc/$BG/status) & 1 ))'
	echo "garbage line" >>b/trusted
	kill -HUP $BG
	wait_for 5 grep -q "^gossip-merge: reload: trusted: .*; keeping the old one$" err
	gossip-send -d a set still trusted >&5
	wait_for 5 eval '[ "$(cbor_count out)" = 1 ]'
	exec 5>&-
	wait $BG
	BG=
}

@test "merge: SIGHUP while blocked writing to a full pipe does not end it; nothing is lost" {
	seq 1 2000 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	mkfifo o
	gossip-merge -d b <msgs >o 2>err & BG=$!
	exec 6<o
	wait_for 10 grep -q pipe_write /proc/$BG/wchan
	kill -HUP $BG
	gossip-inspect -d b -j <&6 | jq -r .key >keys
	exec 6<&-
	wait $BG || fail "merge failed: $(cat err)"
	BG=
	grep -q "^gossip-merge: reloaded: " err
	[ "$(wc -l <keys)" = 2000 ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 2000 ]
}
