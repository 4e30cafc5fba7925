#!/usr/bin/env bats
# DIR/store.idx (gossip(7), THE STORE): an image of a large store's index, written by a
# writer, read by whoever opens the store instead of the whole store. A cache: whatever
# happens to it (older or newer than the store, torn, damaged, deleted, two writers at
# once), every query answers as it would from the store alone, and nothing stored changes.
load helper

# The base: b holds 8000 messages of a (1.2 MB, over the 1 MB below which no image is
# written), merged by one writer, which left the image at its end.
setup_file() {
	local t=$BATS_FILE_TMPDIR
	gossip-keygen -d "$t/a" -n a >"$t/a.pub"
	gossip-keygen -d "$t/b" -n b >"$t/b.pub"
	cat "$t/a.pub" >>"$t/b/trusted"
	seq 1 8000 | sed 's/.*/set key& value&/' | gossip-send -d "$t/a" batch >"$t/batch1"
	seq 8001 16000 | sed 's/.*/set key& value&/' | gossip-send -d "$t/a" batch >"$t/batch2"
	seq 16001 24000 | sed 's/.*/set key& value&/' | gossip-send -d "$t/a" batch >"$t/batch3"
	seq 1 50 | sed 's/.*/set late& value&/' | gossip-send -d "$t/a" batch >"$t/late"
	gossip-merge -d "$t/b" "$t/batch1" >/dev/null
}

setup() {
	base_setup
	cp -a "$BATS_FILE_TMPDIR"/. "$T"/
	# A copy has new inodes, which no image matches: the copy's writer makes it again.
	rm -f b/store.idx
	gossip-merge -d b </dev/null >/dev/null
	[ -s b/store.idx ] || fail "a writer of a 1.2 MB store left no image"
}

# truth DIR: what DIR's store answers read alone: digest, keys and dump of a copy without
# the image (queries write none), each to DIR.truth.*
truth() {
	rm -rf "$1.ref"
	cp -a "$1" "$1.ref"
	rm -f "$1.ref/store.idx"
	gossip-merge -d "$1.ref" digest >"$1.truth.digest" 2>/dev/null
	gossip-merge -d "$1.ref" keys >"$1.truth.keys" 2>/dev/null || true
	gossip-merge -d "$1.ref" dump >"$1.truth.dump" 2>/dev/null || true
	[ ! -e "$1.ref/store.idx" ] || fail "a query wrote an image"
}

# same DIR: DIR answers digest, keys and dump as its store read alone does.
same() {
	truth "$1"
	[ "$(gossip-merge -d "$1" digest 2>/dev/null)" = "$(cat "$1.truth.digest")" ] || fail "$1: digest differs from the store's"
	cmp -s <(gossip-merge -d "$1" keys 2>/dev/null) "$1.truth.keys" || fail "$1: keys differ from the store's"
	cmp -s <(gossip-merge -d "$1" dump 2>/dev/null) "$1.truth.dump" || fail "$1: dump differs from the store's"
}

# uses_image DIR: whether opening DIR takes its index from the image: with one byte of an
# early message flipped in place (and flipped back after), a digest reads nothing of the
# store the image covers, so it reports no damage; read from the store, it does.
uses_image() {
	flipbit "$1/store" 1000
	gossip-merge -d "$1" digest >/dev/null 2>"$1.err"
	flipbit "$1/store" 1000
	[ ! -s "$1.err" ]
}

@test "a writer leaves an image; queries answer from it as from the store, and write none" {
	uses_image b || fail "the image was not used: $(cat b.err)"
	# A writer that finds it whole leaves it as it is (a new image is a new inode).
	ino=$(stat -c %i b/store.idx)
	gossip-merge -d b </dev/null
	gossip-merge -d b late >/dev/null
	[ "$(stat -c %i b/store.idx)" = "$ino" ] || fail "the image was written again for nothing"
	same b
	[ "$(gossip-merge -d b get key1)" = value1 ]
	[ "$(gossip-merge -d b get key8000)" = value8000 ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 8050 ]
	# Read from the store, the flipped byte is damage, reported on opening: the control.
	mv b/store.idx idx.saved
	run ! uses_image b
	grep -q 'damaged: skipped' b.err || fail "no damage reported without the image: $(cat b.err)"
	mv idx.saved b/store.idx
	# check reads the whole store, image or not.
	flipbit b/store 1000
	run --separate-stderr gossip-merge -d b check
	assert_failure
	[[ $stderr == *"damaged: skipped"* ]] || fail "check did not read the store: $stderr"
	flipbit b/store 1000
}

@test "a message changed on disk under the image is never served, and a writer that meets it reads the store again" {
	truth b
	flipbit b/store 1000
	# key1's message holds offset 1000? Whichever it is, the dump leaves it out with one
	# line, and holds every other message.
	run --separate-stderr gossip-merge -d b dump
	assert_success
	[[ $stderr == *"changed on disk since it was verified"* ]] || fail "no line for the changed message: $stderr"
	[ "$(printf '%s\n' "$output" | wc -l)" = 7999 ] || fail "want 7999 messages, got $(printf '%s\n' "$output" | wc -l)"
	# A compaction reads every message: it meets the change, reads the store again (which
	# quarantines it) and compacts on the next try; the image that follows has 7999.
	gossip-merge -d b compact 2>/dev/null || gossip-merge -d b compact 2>/dev/null
	ls b/quarantine/store-* >/dev/null || fail "nothing quarantined"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 7999 ]
	uses_image b || fail "no image of the compacted store"
	same b
}

@test "an image older than the store: what was appended since is read from the store" {
	cp b/store.idx idx.before
	gossip-merge -d b late >/dev/null
	# 50 messages are less than the megabyte worth a new image: the old one stays.
	cmp -s b/store.idx idx.before || fail "the image was rewritten for 50 messages"
	[ "$(gossip-merge -d b get late50)" = value50 ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 8050 ]
	uses_image b || fail "the older image was not used"
	same b
	# Another megabyte: the writer that stored it leaves a new image at its end.
	gossip-merge -d b batch2 >/dev/null
	cmp -s b/store.idx idx.before && fail "no new image after a megabyte more"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 16050 ]
	same b
}

@test "an image newer than the store (cut back in place, replaced, other bytes): not used, and replaced" {
	cp b/store store.old
	gossip-merge -d b batch2 >/dev/null
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 16000 ]
	cp b/store.idx idx.new
	# The same file, cut back to what it held before: shorter than the image says.
	cat store.old >b/store
	run gossip-merge -d b get key8001
	assert_failure 1
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 8000 ]
	same b
	# Another file in its place (another inode).
	cp idx.new b/store.idx
	cp store.old store.other
	mv store.other b/store
	run gossip-merge -d b get key8001
	assert_failure 1
	same b
	# The same file and length, with other bytes just before where the image ends: its
	# hash of them refuses it, and the change is damage, found and reported.
	gossip-merge -d b batch2 >/dev/null
	cp b/store.idx idx.new
	flipbit b/store -100
	run --separate-stderr gossip-merge -d b digest
	[[ $stderr == *"damaged: skipped"* ]] || fail "the change under the image's end was not read: $stderr"
	same b
	# A writer replaces the image with one of what the store holds.
	gossip-merge -d b </dev/null 2>/dev/null
	cmp -s b/store.idx idx.new && fail "the refused image was kept"
	uses_image b || fail "the new image is not used"
	same b
}

@test "a torn, damaged, foreign or deleted image is not used, changes no answer, and a writer replaces it" {
	size=$(stat -c %s b/store.idx)
	cp b/store.idx idx.good
	# Torn: half of it.
	head -c $((size / 2)) idx.good >b/store.idx
	run ! uses_image b
	same b
	# One byte changed in its middle, then at its start (the header).
	cp idx.good b/store.idx
	flipbit b/store.idx $((size / 2))
	run ! uses_image b
	same b
	cp idx.good b/store.idx
	flipbit b/store.idx 3
	run ! uses_image b
	same b
	# Garbage of the right length.
	head -c "$size" /dev/urandom >b/store.idx
	run ! uses_image b
	same b
	# Another store's image (another inode), and a leftover half-written one beside it.
	cp -a b c
	gossip-merge -d c </dev/null 2>/dev/null
	cp c/store.idx b/store.idx
	head -c 1000 /dev/urandom >b/store.idx.new
	run ! uses_image b
	same b
	# A writer replaces it.
	gossip-merge -d b </dev/null 2>/dev/null
	uses_image b || fail "no image after a writer"
	same b
	# Deleted: the store is read, and a writer writes it again.
	rm b/store.idx
	same b
	gossip-merge -d b </dev/null 2>/dev/null
	[ -s b/store.idx ] || fail "a writer did not write the image again"
	uses_image b || fail "the new image is not used"
}

@test "two writers at once: every message stored, and the image left is of the store" {
	gossip-merge -d b batch2 >/dev/null & p1=$!
	gossip-merge -d b batch3 >/dev/null & p2=$!
	wait $p1 || fail "a writer failed"
	wait $p2 || fail "a writer failed"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 24000 ]
	uses_image b || fail "no image of the store"
	same b
	[ ! -e b/store.idx.new ] || fail "a half-written image left behind"
}

@test "bad input to a store with an image: exit 2, one line, nothing stored or imaged changes" {
	gossip-merge -d b late >/dev/null  # an image older than the store, which a writer would read
	before=$(snapshot b)
	run --separate-stderr gossip-merge -d b -o nobody get key1
	assert_failure 2
	assert_error gossip-merge "-o nobody: not a public key"
	printf 'not cbor' >junk
	run --separate-stderr gossip-merge -d b junk
	assert_failure 2
	assert_error gossip-merge "junk: offset 0: truncated item"
	[ "$(snapshot b)" = "$before" ] || fail "a refused input changed the store or its image"
	same b
}
