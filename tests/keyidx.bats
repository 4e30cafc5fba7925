#!/usr/bin/env bats
# DIR/store.keys, the key index (gossip(7), THE KEY INDEX): `get KEY` reads that key's rows
# where the index says they are, verifies each, and answers exactly as a whole read of
# the store would. Whatever the index is (missing, torn, garbage, older or newer than the
# store, another store's, planted), a query answers the same and writes nothing; a writer
# makes it whole again. The proof that a query used the index: damage elsewhere in the
# store, which a whole read reports, goes unmet.
load helper

setup() {
	base_setup
	two_nodes
	mknode c
	trust b c
	{
		seq 1 200 | sed 's/.*/set k& v&/'
		echo "set shared from-a"
		echo "set _x a-x"
		echo "set gone here"
		echo "del gone"
	} | gossip-send -d a batch >msgs
	printf 'set shared from-c\nset _x c-x\nset k7 c7\n' | gossip-send -d c batch >>msgs
	gossip-merge -d b msgs >/dev/null
	offsets b/store >offs
	mapfile -t OFF <offs
	KEYS="k1 k7 k100 k200 shared _x gone nosuch"
}

# answers DIR: what get, get -j and get --all say (and exit with) for each of $KEYS.
answers() {
	local k
	for k in $KEYS; do
		echo "== $k: $(gossip-merge -d "$1" get "$k" 2>/dev/null; echo " rc $?")"
		gossip-merge -j -d "$1" get "$k" 2>/dev/null || echo "rc $?"
		gossip-merge -a -d "$1" get "$k" 2>/dev/null || echo "rc $?"
	done
}

# ref DIR: a copy of DIR without its index, answered by whole reads ($T/ref).
ref() {
	rm -rf "$T/ref" && cp -a "$1" "$T/ref" && rm -f "$T/ref/store.keys"
}

# same DIR: DIR answers every key as its copy without the index does.
same() {
	ref "$1"
	answers "$T/ref" >want
	answers "$1" >got
	diff want got || fail "$1 answers unlike a whole read"
}

# index_end DIR: how far DIR/store.keys says it indexes DIR/store (from its meta record,
# read by mdb_dump from a copy, since LMDB's tools make a lock file beside what they read).
index_end() {
	cp "$1/store.keys" "$T/dump.keys" || return 1
	mdb_dump -n -s meta "$T/dump.keys" | $PY -c 'import sys
lines = [l.strip() for l in sys.stdin if l.startswith(" ")]
v = bytes.fromhex(lines[1]); assert v[:4] == b"GKI1", v
print(int.from_bytes(v[12:20], "big"))'
	rm -f "$T/dump.keys" "$T/dump.keys-lock"
}

# current DIR: its index is a file that indexes its whole store.
current() {
	[ -f "$1/store.keys" ] || fail "$1 has no index"
	[ "$(index_end "$1")" = "$(stat -c %s "$1/store")" ] || fail "$1's index ends at $(index_end "$1"), its store at $(stat -c %s "$1/store")"
}

# unmet DIR KEY: get KEY answers with nothing on stderr while DIR/store has damage in
# k150's row, which a whole read reports: the answer came through the index.
unmet() {
	run --separate-stderr gossip-merge -d "$1" get "$2"
	[ -z "$stderr" ] || fail "get $2 met the damage: $stderr"
}

@test "get answers through the index as a whole read does (sets, a del, two origins, _ keys, a missing key) and writes nothing" {
	current b
	same b
	before=$(snapshot b)
	flipbit b/store $((OFF[149] + 60))
	for k in k1 k7 shared _x gone; do unmet b $k; done
	run --separate-stderr gossip-merge -d b get k7
	assert_output c7
	run --separate-stderr gossip-merge -d b get nosuch
	assert_failure 1
	# The whole read meets the damage.
	ref b
	run --separate-stderr gossip-merge -d ref get k1
	assert_error gossip-merge "is damaged: skipped"
	flipbit b/store $((OFF[149] + 60))
	[ "$(snapshot b)" = "$before" ] || fail "a query wrote to b"
}

@test "an index older than the store: the query reads the rest of the store; a writer brings it up to date" {
	cp b/store.keys old.keys
	printf 'set k1 new1\nset k300 v300\ndel k2\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	current b
	cp old.keys b/store.keys
	[ "$(index_end b)" -lt "$(stat -c %s b/store)" ] || fail "not older"
	KEYS="k1 k2 k3 k300"
	same b
	[ "$(gossip-merge -d b get k1)" = new1 ]
	before=$(snapshot b)
	answers b >/dev/null
	[ "$(snapshot b)" = "$before" ] || fail "a query wrote to b"
	gossip-merge -d b </dev/null >/dev/null
	current b
	same b
}

@test "an index newer than the store (the store put back from a copy): read whole; a writer makes it again" {
	cp b/store store.copy
	printf 'set k1 new1\nset k300 v300\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	current b
	cat store.copy >b/store  # the same file, shorter than the index says
	[ "$(index_end b)" -gt "$(stat -c %s b/store)" ] || fail "not newer"
	KEYS="k1 k300 k5"
	same b
	[ "$(gossip-merge -d b get k1)" = v1 ]
	run gossip-merge -d b get k300
	assert_failure 1
	gossip-merge -d b </dev/null >/dev/null
	current b
	same b
}

@test "the store rewritten in place with other bytes before the index's end: the index is not used" {
	# The rows the index names are still there, but a newer row of k1 now lies before
	# the index's end, where the index cannot know it: the hash of the bytes before the
	# end tells the index is not of this file.
	printf 'set k1 new\n' | gossip-send -d a batch >newer
	{ head -c "${OFF[5]}" b/store; cat newer; tail -c +$((OFF[5] + 1)) b/store; } >mixed
	cat mixed >b/store  # the same file (inode), longer
	[ "$(index_end b)" -lt "$(stat -c %s b/store)" ] || fail "not longer"
	KEYS="k1 k3 k100"
	same b
	[ "$(gossip-merge -d b get k1)" = new ]
}

@test "a torn, garbage, foreign, shared-writable, deleted or non-file index: queries answer as a whole read, silently; a writer makes it again" {
	ref b
	answers ref >want
	mknode d
	trust d a
	echo "set k1 other" | gossip-send -d a batch | gossip-merge -d d >/dev/null
	for how in torn garbage foreign writable deleted dir link; do
		rm -rf b/store.keys
		case $how in
		torn) gossip-merge -d b </dev/null >/dev/null && truncate -s 8192 b/store.keys ;;
		garbage) head -c 65536 /dev/urandom >b/store.keys ;;
		foreign) cp d/store.keys b/store.keys ;;
		writable) gossip-merge -d b </dev/null >/dev/null && chmod g+w b/store.keys ;;
		deleted) ;;
		dir) mkdir b/store.keys ;;
		link) ln -s "$T/d/store.keys" b/store.keys ;;
		esac
		before=$(snapshot b)
		for k in $KEYS; do
			run --separate-stderr gossip-merge -d b get "$k"
			[ -z "$stderr" ] || fail "$how: get $k: $stderr"
		done
		answers b >got
		diff want got || fail "$how: answers differ"
		[ "$(snapshot b)" = "$before" ] || fail "$how: a query wrote to b"
		run --separate-stderr gossip-merge -d b </dev/null
		assert_success
		[ -z "$stderr" ] || fail "$how: the writer said: $stderr"
		[ ! -L b/store.keys ] || fail "$how: still a link"
		[ "$(stat -c %a b/store.keys 2>/dev/null)" = 600 ] || fail "$how: not a private file"
		current b
		answers b >got
		diff want got || fail "$how: answers differ after the writer"
	done
	[ "$(gossip-merge -d d get k1)" = other ] || fail "d's own index was changed through the link"
}

@test "a row the index names that is damaged: the store is read whole, the older row answers, and a writer heals the index" {
	printf 'set k9 newer\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	[ "$(gossip-merge -d b get k9)" = newer ]
	size=$(stat -c %s b/store)
	flipbit b/store -20  # inside the newer row, the store's last
	ref b
	answers ref >want
	run --separate-stderr gossip-merge -d b get k9
	assert_success
	assert_output v9
	assert_error gossip-merge "is damaged: skipped"
	KEYS="k9 k1"
	answers b >got
	answers ref >want
	diff want got || fail "answers differ"
	gossip-merge -d b </dev/null >/dev/null 2>&1
	current b
	unmet b k9
	assert_output v9
}

@test "an index that points a key at another key's row, or into a row: the answers stay those of a whole read" {
	command -v mdb_load >/dev/null || skip "mdb_load (lmdb-utils) is not installed"
	ref b
	KEYS="k1 k2 k3"
	answers ref >want
	cp b/store.keys x.keys
	mdb_dump -n -a x.keys >dump
	# Each rows entry's offsets: k1's value swapped for k2's, k3's moved into its row.
	$PY - dump "${OFF[0]}" "${OFF[1]}" "${OFF[2]}" <<'PY' >dump.new
import sys
lines = open(sys.argv[1]).read().split("\n")
o1, o2, o3 = (int(x) for x in sys.argv[2:5])
h = lambda v: " " + v.to_bytes(8, "big").hex()
out = []
for l in lines:
    if l == h(o1): l = h(o2)
    elif l == h(o3): l = h(o3 + 7)
    out.append(l)
print("\n".join(out), end="")
PY
	! cmp -s dump dump.new || fail "nothing changed in the dump"
	rm -f y.keys
	mdb_load -n -f dump.new y.keys
	cp y.keys b/store.keys
	answers b >got
	diff want got || fail "a planted index changed an answer"
	# An index that leaves k1 out, in a file another user could have written (group
	# write): never read. (Written by this user alone, it would be believed, as an edited
	# trusted would: gossip(7).)
	$PY - dump "${OFF[0]}" <<'PY' >dump.omit
import sys
lines = open(sys.argv[1]).read().split("\n")
v = " " + int(sys.argv[2]).to_bytes(8, "big").hex()
i = lines.index(v)
print("\n".join(lines[:i - 1] + lines[i + 1:]), end="")
PY
	rm -f z.keys
	mdb_load -n -f dump.omit z.keys
	cp z.keys b/store.keys
	chmod 660 b/store.keys
	[ "$(gossip-merge -d b get k1)" = v1 ] || fail "a group-writable index was read"
	chmod 600 b/store.keys
	if [ "$(id -u)" = 0 ]; then  # another user's file, however private: never read
		chown 65534 b/store.keys
		[ "$(gossip-merge -d b get k1)" = v1 ] || fail "another user's index was read"
		chown 0 b/store.keys
	fi
	run gossip-merge -d b get k1
	assert_failure 1
}

@test "writers at once keep the index whole; a compaction makes it again for the new file" {
	for i in 1 2 3 4; do
		seq 1 300 | sed "s/.*/set p$i-& v&/" | gossip-send -d a batch >part$i
		seq 1 50 | sed "s/.*/set k& w$i-&/" | gossip-send -d a batch >>part$i
	done
	for i in 1 2 3 4; do gossip-merge -d b part$i >/dev/null & done
	wait
	current b
	KEYS="k1 k50 k51 p1-1 p2-300 p3-7 p4-150"
	same b
	gossip-merge -d b compact >/dev/null
	current b
	same b
	printf 'set k51 after\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	current b
	[ "$(gossip-merge -d b get k51)" = after ]
}

@test "a store with no index (made by an older version) is indexed by its next writer; queries before that read it whole" {
	rm b/store.keys
	same b
	[ ! -e b/store.keys ] || fail "a query made the index"
	gossip-merge -d b </dev/null >/dev/null
	current b
	same b
}

@test "a merge records the summary (custody); digest answers from it, the store unread, as a whole read does" {
	[ -f b/store.root ] || fail "the merge recorded no summary"
	run --separate-stderr gossip-merge -v -d b digest
	assert_success
	[[ $stderr == *"from the kept summary"* ]] || fail "$stderr"
	ref b
	rm -f ref/store.root
	run --separate-stderr gossip-merge -v -d ref digest
	[[ $stderr == *"made from the store"* ]] || fail "$stderr"
	[ "$(gossip-merge -d b digest)" = "$output" ] || fail "the kept summary differs from a whole read"
	before=$(snapshot ref)
	gossip-merge -d ref digest >/dev/null
	[ "$(snapshot ref)" = "$before" ] || fail "a digest wrote to ref"
	# A new batch, in another process: recorded again, and still a whole read's.
	printf 'set k1 again\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	ref b
	rm -f ref/store.root
	[ "$(gossip-merge -d b digest)" = "$(gossip-merge -d ref digest)" ] || fail "differs after a batch"
}

@test "a change in place outside the lock between one merge's batches: the merge reads the store whole again, and records only what that read found" {
	rm -f b/store.root
	mkfifo in
	gossip-merge -d b <in >/dev/null 2>merge.err &
	MERGE=$!
	exec 5>in
	printf 'set first 1\n' | gossip-send -d a batch >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get first 2>/dev/null)" = 1 ]'
	flipbit b/store $((OFF[20] + 60))  # no lock: another program's write
	printf 'set second 2\n' | gossip-send -d a batch >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get second 2>/dev/null)" = 2 ]'
	exec 5>&-
	wait "$MERGE"
	grep -q "b/store was changed by a write no writer recorded .*: reading it whole again" merge.err || fail "$(cat merge.err)"
	grep -q "b/store is damaged: skipped" merge.err || fail "the damage was not found: $(cat merge.err)"
	[ "$(grep -c 'reading it whole again' merge.err)" = 1 ] || fail "read again more than once: $(cat merge.err)"
	run --separate-stderr gossip-merge -v -d b digest
	[[ $stderr == *"from the kept summary"* ]] || fail "$stderr"
	ref b
	rm -f ref/store.root
	[ "$output" = "$(gossip-merge -d ref digest 2>/dev/null)" ] || fail "the record is not a whole read's"
}

@test "a trusted reloaded during a merge: the summary it records is under the new trusted, and a whole read's" {
	printf 'set K from-a-older\n' | gossip-send -d a batch >older
	printf 'set K from-c-newer\n' | gossip-send -d c batch >newer
	printf 'set other 1\n' | gossip-send -d a batch >one
	printf 'set other2 2\n' | gossip-send -d a batch >two
	mkfifo in
	gossip-merge -d b <in >/dev/null 2>merge.err &
	MERGE=$!
	exec 5>in
	cat newer one >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get other 2>/dev/null)" = 1 ]'
	grep -vxF "$(cat c.pub)" b/trusted >t && mv t b/trusted
	kill -HUP "$MERGE"
	wait_for 10 grep -q "reloaded" merge.err
	cat two older >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get other2 2>/dev/null)" = 2 ]'
	exec 5>&-
	wait "$MERGE" || true
	for how in without-c with-c; do
		[ "$how" = with-c ] && cat c.pub >>b/trusted
		ref b
		rm -f ref/store.root
		[ "$(gossip-merge -d b digest 2>/dev/null)" = "$(gossip-merge -d ref digest 2>/dev/null)" ] ||
			fail "$how: the kept summary differs from a whole read"
	done
}

@test "damaged pages in the index (LMDB would fault or abort on them): queries answer as a whole read; a writer makes it again" {
	ref b
	answers ref >want
	for off in 10 11 12 13 16 17; do
		# Each page's header (lower and upper bounds, the first node), past the two meta pages.
		cp b/store.keys good.keys
		$PY - b/store.keys "$off" <<'PY'
import sys
p, o = sys.argv[1], int(sys.argv[2])
b = bytearray(open("good.keys", "rb").read())
for pg in range(2, len(b) // 4096):
    b[pg * 4096 + o] ^= 0x45
open(p, "r+b").write(b)
PY
		for k in $KEYS; do
			run --separate-stderr gossip-merge -d b get "$k"
			[ "$status" -le 1 ] || fail "offset $off: get $k ended with $status: $stderr"
		done
		answers b >got
		diff want got || fail "offset $off: answers differ"
		printf 'set w%s x\n' "$off" | gossip-send -d a batch | gossip-merge -d b >/dev/null 2>err ||
			fail "offset $off: the writer failed: $(cat err)"
		current b
		answers b >got
		diff want got || fail "offset $off: answers differ after the writer"
	done
}

@test "a long-running merge that missed a store put back under the lock (taken in by another's whole read): no summary from it, and no row taken out of the index" {
	printf 'set K aa\n' | gossip-send -d a batch >m1
	printf 'set K bb\n' | gossip-send -d c batch >m2
	printf 'set K cc\n' | gossip-send -d a batch >m3
	cp b/store store.copy
	rm -f b/store.root
	mkfifo in
	gossip-merge -d b <in >/dev/null 2>merge.err &
	MERGE=$!
	exec 5>in
	cat m1 >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get K 2>/dev/null)" = aa ]'
	# Put back from a copy, under the lock but by no gossip program; then a one-shot
	# merge reads the store whole (and takes the change in); then the long-running one
	# writes again, from an index that never saw the put-back.
	flock b/store.lock sh -c 'cat store.copy >b/store'
	gossip-merge -d b m2 >/dev/null
	cat m3 >&5
	wait_for 10 eval '[ "$(gossip-merge -d b get K 2>/dev/null)" = cc ]'
	exec 5>&-
	wait "$MERGE" || true
	ref b
	rm -f ref/store.root
	[ "$(gossip-merge -d b digest 2>/dev/null)" = "$(gossip-merge -d ref digest 2>/dev/null)" ] ||
		fail "the kept summary differs from a whole read: $(gossip-merge -v -d b digest 2>&1)"
	KEYS="K k1 k7"
	answers ref >want
	answers b >got
	diff want got || fail "answers differ"
	[ "$(gossip-merge -o c -d b get K)" = bb ] || fail "c's row was taken out of the index"
}
