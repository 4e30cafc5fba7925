#!/usr/bin/env bats
# Damage to DIR/store is contained: only a torn tail is ever cut; a damaged record
# anywhere else is skipped, kept in DIR/quarantine and reported once, with its offset;
# every intact record before and after it stays; queries never write to DIR.
load helper
load node

setup() {
	base_setup
	two_nodes
	seq 1 100 | sed 's/.*/set k& v&/' | gossip-send -d a batch >msgs
	gossip-merge -d b msgs >/dev/null
	offsets b/store >offs
	mapfile -t OFF <offs
}

teardown() {
	nodes_stop
	if [ -n "${MNT:-}" ]; then umount "$MNT" 2>/dev/null || true; fi
}

# patch FILE OFFSET HEX: write the bytes HEX at OFFSET (in place); insert FILE OFFSET HEX
# puts them in between instead.
patch() {
	$PY -c 'import sys
p, o, x = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
b = bytearray(open(p, "rb").read()); b[o:o + len(x)] = x; open(p, "wb").write(b)' "$@"
}
insert() {
	$PY -c 'import sys
p, o, x = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
b = bytearray(open(p, "rb").read()); b[o:o] = x; open(p, "wb").write(b)' "$@"
}

# want_keys DIR SKIP...: DIR holds exactly k1..k100 but the numbers SKIP, each with its value.
want_keys() {
	local d=$1 i
	shift
	for i in $(seq 1 100); do [[ " $* " == *" $i "* ]] || echo "k$i"; done | sort >want
	gossip-merge -d "$d" keys 2>/dev/null | sort >got
	diff want got || fail "$d does not hold exactly the keys wanted"
	for i in 1 50 100; do
		[[ " $* " == *" $i "* ]] && continue
		[ "$(gossip-merge -d "$d" get "k$i" 2>/dev/null)" = "v$i" ] || fail "k$i lost its value"
	done
}

@test "one flipped byte in the 10th record: the other 99 stay, one line with the offset, quarantined once" {
	flipbit b/store $((OFF[9] + 60))
	before=$(snapshot b)
	for q in keys digest dump; do
		run --separate-stderr gossip-merge -d b $q
		assert_success
		assert_error gossip-merge "b/store is damaged: skipped $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]} (not copied: read-only)"
	done
	# get reads one key's rows through DIR/store.keys: another key's answer does not meet
	# the damage; the damaged key's does, and then the store is read whole and reported.
	run --separate-stderr gossip-merge -d b get k11
	assert_success
	assert_output v11
	[ -z "$stderr" ] || fail "$stderr"
	run --separate-stderr gossip-merge -d b get k10
	assert_failure 1
	assert_error gossip-merge "b/store is damaged: skipped $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]} (not copied: read-only)"
	run --separate-stderr gossip-merge -d b export
	assert_success
	[ "$(snapshot b)" = "$before" ] || fail "a query wrote to b"
	[ "$(gossip-merge -d b digest 2>/dev/null | cut -d' ' -f2)" = 99 ]
	want_keys b 10
	run gossip-merge -d b get k10
	assert_failure 1
	# A writer keeps the bytes in quarantine and says so, once; nothing is cut.
	tail -c +$((OFF[9] + 1)) b/store | head -c $((OFF[10] - OFF[9])) >bad
	run --separate-stderr gossip-merge -d b compact
	assert_success
	assert_error gossip-merge "skipped $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]} (copied to quarantine)"
	q=(b/quarantine/store-*-"${OFF[9]}")
	[ -f "${q[0]}" ] || fail "no quarantine file"
	cmp "${q[0]}" bad || fail "quarantine holds other bytes"
	# Compaction wrote the 99 intact messages; the damage is gone from the store.
	want_keys b 10
	[ "$(cbor_count b/store)" = 99 ]
	run --separate-stderr gossip-merge -d b keys
	[ -z "$stderr" ] || fail "reported twice: $stderr"
	# And the lost one comes back from anyone who has it.
	gossip-merge -d b msgs >/dev/null
	want_keys b
}

@test "a writer that is not compacting quarantines in place, appends after the damage, and reports once" {
	flipbit b/store $((OFF[9] + 60))
	cp b/store damaged
	run --separate-stderr gossip-merge -d b </dev/null
	assert_error gossip-merge "skipped $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]} (copied to quarantine)"
	q=(b/quarantine/store-*-"${OFF[9]}")
	cmp "${q[0]}" <(tail -c +$((OFF[9] + 1)) damaged | head -c $((OFF[10] - OFF[9]))) || fail "quarantine holds other bytes"
	gossip-send -d a set new 1 | gossip-merge -d b >/dev/null 2>err
	[ ! -s err ] || fail "reported twice: $(cat err)"
	cmp -n "$(stat -c %s damaged)" damaged b/store || fail "a writer changed what was stored"
	run --separate-stderr gossip-merge -d b keys
	[ -z "$stderr" ] || fail "a known damage reported again: $stderr"
	[ "$(gossip-merge -d b get new)" = 1 ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 100 ]
}

@test "a zeroed run across three records: exactly those three are lost" {
	patch b/store $((OFF[9] + 20)) "$(head -c $((OFF[12] - OFF[9] - 40)) /dev/zero | xxd -p | tr -d '\n')"
	run --separate-stderr gossip-merge -d b digest
	assert_success
	assert_output --regexp " 97$"
	assert_error gossip-merge "skipped $((OFF[12] - OFF[9])) bytes at offset ${OFF[9]}"
	want_keys b 10 11 12
}

@test "garbage inserted between two records: all 100 stay" {
	insert b/store "${OFF[9]}" "$(head -c 300 /dev/urandom | xxd -p | tr -d '\n')"
	run --separate-stderr gossip-merge -d b digest
	assert_success
	assert_output --regexp " 100$"
	assert_error gossip-merge "skipped 300 bytes at offset ${OFF[9]}"
	want_keys b
}

@test "a damaged last record is damage, not a torn tail: it is kept, not cut" {
	flipbit b/store -10
	size=$(stat -c %s b/store)
	run --separate-stderr gossip-merge -d b </dev/null
	assert_error gossip-merge "skipped $((size - OFF[99])) bytes at offset ${OFF[99]} (copied to quarantine)"
	[ "$(stat -c %s b/store)" = "$size" ] || fail "damage was cut"
	want_keys b 100
	gossip-send -d a set new 1 | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get new)" = 1 ]
}

@test "a store truncated mid-record loses only that record (a torn tail, cut by a writer)" {
	truncate -s $((OFF[99] + 30)) b/store
	run --separate-stderr gossip-merge -d b keys
	assert_success
	[ -z "$stderr" ] || fail "a query reported a torn tail: $stderr"
	run --separate-stderr gossip-merge -d b </dev/null
	assert_error gossip-merge "cut a torn tail of 30 bytes at offset ${OFF[99]}"
	[ "$(stat -c %s b/store)" = "${OFF[99]}" ]
	want_keys b 100
	# A crash may leave zeros after the prefix: still a torn tail.
	truncate -s $((OFF[98] + 30)) b/store
	truncate -s $((OFF[98] + 4096)) b/store
	run --separate-stderr gossip-merge -d b </dev/null
	assert_error gossip-merge "cut a torn tail of $((4096)) bytes at offset ${OFF[98]}"
	want_keys b 99 100
}

@test "a deleted store is an empty one; a deleted or damaged store.sum costs only time" {
	rm b/store.sum
	run --separate-stderr gossip-merge -d b digest
	assert_success
	[ -z "$stderr" ]
	want_keys b
	head -c 4000 /dev/urandom >b/store.sum
	want_keys b
	# It vouches only for the bytes it hashed: damage is found still.
	flipbit b/store $((OFF[4] + 70))
	run --separate-stderr gossip-merge -d b digest
	assert_output --regexp " 99$"
	assert_error gossip-merge "at offset ${OFF[4]}"
	rm b/store
	run --separate-stderr gossip-merge -d b keys
	assert_failure 1
	[ -z "$stderr" ]
	[ ! -e b/store ] || fail "a query made a store"
}

@test "a read-only store answers every query: no lock file, or a read-only mount" {
	# A copy without store.lock (a backup).
	mkdir c
	cp b/store b/trusted c/
	chmod -R a-w c
	before=$(snapshot c)
	for q in keys digest dump "get k7"; do
		run --separate-stderr gossip-merge -d c $q
		assert_success
		[ -z "$stderr" ] || fail "$q: $stderr"
	done
	gossip-merge -d c export | cmp - <(gossip-merge -d b export) || fail "export differs"
	[ "$(snapshot c)" = "$before" ] || fail "a query wrote to c"
	[ "$(gossip-merge -d c get k7)" = v7 ]
	[ "$(gossip-merge -d c digest)" = "$(gossip-merge -d b digest)" ]
	# A read-only bind mount of a live store, with damage in it (reported, not kept).
	mkdir m
	if ! mount --bind b m 2>/dev/null; then
		skip "mount --bind is not permitted here (run as root to test a read-only mount)"
	fi
	MNT=$T/m
	mount -o remount,ro,bind m || skip "a read-only remount is not permitted here"
	flipbit b/store $((OFF[2] + 50))
	for q in keys digest dump "get k7" "get k3"; do
		run --separate-stderr gossip-merge -d m $q
		[ "$q" = "get k3" ] && assert_failure 1 || assert_success
		[ "$q" = "get k7" ] && { [ -z "$stderr" ] || fail "$stderr"; continue; }
		assert_error gossip-merge "at offset ${OFF[2]} (not copied: read-only)"
	done
	gossip-merge -d m export >/dev/null 2>&1 || fail "export failed"
	[ "$(gossip-merge -d m digest 2>/dev/null | cut -d' ' -f2)" = 99 ]
}

@test "a damaged record is never served to a peer, and the damaged store heals from one" {
	trust a a
	trust a b
	trust b b
	gossip-merge -d a msgs >/dev/null
	mknode c
	for n in a b; do trust c $n; trust $n c; done
	trust c c
	flipbit b/store $((OFF[9] + 80))
	# c, empty, pulls from the damaged b: 99 messages, none refused, nobody charged.
	run --separate-stderr gossip-merge -v -d c --pull sync "gossip-merge -d $T/b serve 2>/dev/null"
	assert_success
	[[ $stderr == *"received 99 messages"* ]] || fail "$stderr"
	[[ $stderr != *"signature"* ]] || fail "a bad signature reached c: $stderr"
	[ ! -s c/rejects ] || fail "c charged someone: $(cat c/rejects)"
	want_keys c 10
	# b heals from a, which holds the lost record.
	run --separate-stderr gossip-merge -v -d b sync "gossip-merge -d $T/a serve"
	assert_success
	[[ $stderr == *"1 new"* ]] || fail "$stderr"
	want_keys b
	[ "$(gossip-merge -d b digest 2>/dev/null)" = "$(gossip-merge -d a digest)" ]
	[ ! -s a/rejects ] && [ ! -s b/rejects ] || fail "someone was charged"
}

@test "check verifies everything and lists the damage (exit 1); --repair rewrites the store without it" {
	run gossip-merge -d b check
	assert_success
	assert_output "b/store: 100 messages verified, 0 damaged regions (0 bytes)"
	flipbit b/store $((OFF[9] + 60))
	flipbit b/store $((OFF[49] + 100))
	printf 'xx' >>b/store
	size=$(stat -c %s b/store)
	before=$(snapshot b)
	run --separate-stderr gossip-merge -d b check
	assert_failure 1
	assert_output "b/store: damaged: $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]}
b/store: damaged: $((OFF[50] - OFF[49])) bytes at offset ${OFF[49]}
b/store: torn tail: 2 bytes at offset $((size - 2))
b/store: 98 messages verified, 3 damaged regions ($((OFF[10] - OFF[9] + OFF[50] - OFF[49] + 2)) bytes)"
	[ "$(snapshot b)" = "$before" ] || fail "check without --repair wrote to b"
	run gossip-merge -d b --repair check
	assert_failure 1
	assert_line --regexp "^b/store: repaired: $((size - 2)) bytes, now [0-9]+; the damage is kept in b/quarantine$"
	[ "$(ls b/quarantine | wc -l)" = 2 ]
	[ "$(cbor_count b/store)" = 98 ]
	want_keys b 10 50
	run gossip-merge -d b check
	assert_success
	assert_output "b/store: 98 messages verified, 0 damaged regions (0 bytes)"
	# Usage: --repair only with check, check takes no argument.
	before=$(snapshot b)
	for bad in "--repair keys" "check x" "--max-skew 5 check"; do
		run --separate-stderr gossip-merge -d b $bad
		assert_failure 2
		[[ ${stderr_lines[0]} == usage:* ]] || fail "$bad: $stderr"
	done
	[ "$(snapshot b)" = "$before" ]
}

@test "check finds a bad signature that store.sum would vouch for (its hash is checked against the bytes)" {
	# A record replaced by another validly framed message with a bad signature.
	flipbit b/store $((OFF[20] - 1))
	run gossip-merge -d b check
	assert_failure 1
	assert_line "b/store: damaged: $((OFF[20] - OFF[19])) bytes at offset ${OFF[19]}"
}

@test "a store that is a FIFO, a device or a directory: one line and exit 2 at once, no reader waits on it" {
	mv b/store store.real
	for kind in fifo null dir; do
		case $kind in
		fifo) mkfifo b/store ;;
		null) ln -s /dev/null b/store ;;
		dir) mkdir b/store ;;
		esac
		for q in "get k1" keys digest dump check; do
			run --separate-stderr timeout 10 gossip-merge -d b $q
			assert_failure 2
			assert_error gossip-merge "b/store"
		done
		rm -rf b/store
	done
	mv store.real b/store
	# DIR/store.sum a FIFO (a cache of signature checks): read past, never waited on.
	rm -f b/store.sum
	mkfifo b/store.sum
	run timeout 10 gossip-merge -d b get k1
	assert_success
	gossip-send -d a set k101 v101 | timeout 10 gossip-merge -d b >/dev/null
	rm b/store.sum
	gossip-send -d a del k101 | gossip-merge -d b >/dev/null
	want_keys b
}

@test "a damaged watermarks file is one clear error that says how to recover; nothing changes" {
	k=$(cut -d' ' -f1 a.pub)
	for bad in "-1" "99999999999999999999999" "12x" "" "+5"; do
		printf '%s %s\n' "$k" "$bad" >b/watermarks
		before=$(snapshot b)
		for q in digest "compact"; do
			run --separate-stderr gossip-merge -d b $q
			assert_failure 2
			assert_error gossip-merge "b/watermarks line 1: want \"ORIGIN VERSION\""
			[[ $stderr == *"restore the file from a backup"* ]] || fail "$stderr"
		done
		[ "$(snapshot b)" = "$before" ] || fail "'$bad': b changed"
	done
	# A digit's bit flipped (1 to 9): ahead of the clock, which no watermark ever is (it
	# made every new message of its origin stale, silently, for good once compacted).
	# The line is left out, with a warning; a's new message is stored.
	printf '%s 9796663963622\n' "$k" >b/watermarks
	run --separate-stderr gossip-merge -d b digest
	assert_success
	assert_error gossip-merge "b/watermarks line 1: a watermark ahead of the clock"
	gossip-send -d a set fresh v1 | gossip-merge -d b >/dev/null 2>&1
	[ "$(gossip-merge -d b get fresh 2>/dev/null)" = v1 ] || fail "a new message was taken for stale"
	gossip-send -d a del fresh | gossip-merge -d b >/dev/null 2>&1
	printf '%s 5\n' "$k" >b/watermarks
	want_keys b
}

SEED=0303030303030303030303030303030303030303030303030303030303030303
I="$BATS_TEST_DIRNAME/interop.py"
# A Python-made message from SEED's key: py TYPE KEY VALUE VERSION [TIME]
py() {
	$PY "$I" make $SEED --type "$1" --key "$2" --value "$3" --version "$4" ${5:+--time "$5"}
}

@test "losing DIR/watermarks never lets a collected delete come back: the store holds them" {
	old=$(( $(date +%s) * 1000 - 3 * 86400000 ))
	py 1 gone v1 100 "$old" >set
	py 2 gone - 200 "$old" >del
	mknode c
	trust b c
	trust c b
	for d in b c; do $PY "$I" pub $SEED py >>$d/trusted; done
	gossip-merge -d c set >/dev/null  # c is stale: it never saw the delete
	gossip-merge -d b set >/dev/null
	gossip-merge -d b del >/dev/null
	gossip-merge -d b compact >/dev/null
	# The first item of the compacted store is its watermark record, with the key's
	# floor (the delete was its newest write; gossip(7), THE STORE).
	$PY - b/store "$($PY "$I" pub $SEED | cut -d' ' -f1)" "$old" <<'PY' || fail "no watermark record"
import base64, cbor2, hashlib, io, sys
d = open(sys.argv[1], "rb").read(); item = cbor2.CBORDecoder(io.BytesIO(d)).decode()
name, wms, floors, check = item
assert name == "gossip watermarks", item
pk = base64.b64decode(sys.argv[2])
assert wms == [[pk, 200]], wms
kid = hashlib.blake2b(b"r" + b"gone", digest_size=16).digest()
assert floors == [[kid, 200, pk, int(sys.argv[3])]], floors
body = cbor2.dumps(item)[1:-17]
assert hashlib.blake2b(body, digest_size=16).digest() == check
PY
	rm b/watermarks
	run --separate-stderr gossip-merge -d b --pull sync "gossip-merge -d $T/c serve"
	assert_success
	assert_error gossip-merge "b/watermarks was missing; made again from b/store"
	[ -s b/watermarks ] || fail "watermarks not made again"
	run gossip-merge -d b get gone
	assert_failure 1
	# A plain merge of the old set is stale too, and every other key is kept.
	run gossip-merge -d b set
	assert_success
	assert_output ""
	want_keys b
	# A query on a copy without DIR/watermarks reads the record and writes nothing.
	rm b/watermarks
	before=$(snapshot b)
	run gossip-merge -d b get gone
	assert_failure 1
	[ "$(snapshot b)" = "$before" ] || fail "a query wrote"
}

@test "a damaged watermark record is damage like any other: quarantined, the messages kept" {
	old=$(( $(date +%s) * 1000 - 3 * 86400000 ))
	$PY "$I" pub $SEED py >>b/trusted
	py 1 gone v1 100 "$old" >set
	py 2 gone - 200 "$old" >del
	gossip-merge -d b set >/dev/null
	gossip-merge -d b del >/dev/null
	gossip-merge -d b compact >/dev/null
	[ "$(head -c 19 b/store | tail -c 17)" = "gossip watermarks" ] || fail "no watermark record"
	flipbit b/store 30
	run --separate-stderr gossip-merge -d b check
	assert_failure 1
	[[ $output == *"damaged: "*" bytes at offset 0"* ]] || fail "$output"
	want_keys b
	# DIR/watermarks (its cache) still holds the watermark.
	gossip-merge -d b set >out
	[ ! -s out ] || fail "a replay under the watermark was stored"
}

# quiet FILE: FILE's size and modification time stay the same for a second.
quiet() {
	local before
	before=$(stat -c '%s %y' "$1")
	sleep 1
	[ "$(stat -c '%s %y' "$1")" = "$before" ]
}

# converged NODES...: every given store has the same Merkle digest.
converged() {
	local n
	for n in "$@"; do gossip-merge -d "$T/$n" digest 2>/dev/null; done | sort -u >digests
	[ "$(wc -l <digests)" = 1 ]
}

@test "a running node whose store was damaged heals from its neighbours, and says so once" {
	set -- $(freeports 3)
	for n in n1 n2 n3; do gossip-keygen -d "$T/$n" -n $n >$n.pub; done
	for n in n1 n2 n3; do cat a.pub n1.pub n2.pub n3.pub >$n/trusted; done
	for n in n1 n2 n3; do gossip-merge -d $n msgs >/dev/null; done
	node_start n1 $1 ""
	node_spawn n2 $2 $1
	node_spawn n3 $3 $1
	node_listens n2 n3
	wait_for 20 converged n1 n2 n3
	# n3's store quiet for a second first, so that its observe has looked at the last
	# append: this test is of a change in place alone (one between an append and that
	# look, which ends custody too, is entropy.bats').
	wait_for 20 quiet n3/store
	want=$(gossip-merge -d n1 digest)
	# One flipped byte in the middle of the 10th record of n3's store.
	flipbit n3/store $((OFF[9] + 80))
	# Its observe sees the store changed in place and reads it afresh, finding the damage;
	# its next anti-entropy rounds (every $SYNC s) or a repair fetch the record.
	wait_for $((10 * SYNC)) eval '[ "$(gossip-merge -d n3 get k10 2>/dev/null)" = v10 ]'
	wait_for $((10 * SYNC)) eval '[ "$(gossip-merge -d n3 digest 2>/dev/null)" = "$want" ]'
	[ "$(gossip-merge -d n3 keys k 2>/dev/null | sort)" = "$(seq 1 100 | sed 's/^/k/' | sort)" ] ||
		fail "n3 lost keys"
	[ -e "n3/quarantine/store-$(stat -c %i n3/store)-${OFF[9]}" ] || fail "not quarantined: $(ls n3/quarantine)"
	# Reported once, with its offset, by the process of n3 that found it first (each logs
	# to n3.log); later rounds do not report it again.
	sleep $((2 * SYNC))
	[ "$(grep -c "n3/store is damaged" n3.log)" = 1 ] || fail "not reported once: $(cat n3.log)"
	[ -z "$(grep "n3/store is damaged" n3.log | grep -v "skipped $((OFF[10] - OFF[9])) bytes at offset ${OFF[9]} ")" ] ||
		fail "the report is wrong: $(cat n3.log)"
	for n in n1 n2 n3; do [ ! -s $n/rejects ] || fail "$n charged someone: $(cat $n/rejects)"; done
}
