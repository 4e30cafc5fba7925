#!/usr/bin/env bats
# The store under crashes and compaction: kill -9 at random points never loses a message
# that was printed, a torn tail is recovered, compaction keeps exactly the state.
load helper

# The sanitizers' options for a process killed at a random moment: without a leak check
# at exit, which a kill that lands in it cuts short ("Unable to get registers from
# thread", a report of nothing). The same programs run to their end elsewhere.
NOLEAKS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
SEED=0303030303030303030303030303030303030303030303030303030303030303

setup() {
	base_setup
	two_nodes
}

teardown() {
	[ -z "${BG:-}" ] || kill -9 $BG 2>/dev/null || true
	if [ -n "${MNT:-}" ]; then umount "$MNT" 2>/dev/null || true; fi
}

# store_tmpfs SIZE: store b copied onto a tmpfs of SIZE at t ($MNT, unmounted by teardown),
# or skip the test (mounting needs root).
store_tmpfs() {
	mkdir t
	mount -t tmpfs -o size="$1" tmpfs t 2>/dev/null ||
		skip "mount -t tmpfs is not permitted here (run as root to test a full disk)"
	MNT=$T/t
	cp -r b t/
}

# The keys of the complete messages in FILE (a killed writer may leave a torn last one).
printed_keys() {
	$PY - "$1" <<'PY'
import cbor2, sys
data = open(sys.argv[1], "rb").read()
import io
f = io.BytesIO(data)
dec = cbor2.CBORDecoder(f)
while f.tell() < len(data):
    try:
        item = dec.decode()
    except Exception:
        break
    print(cbor2.loads(item.value[2])[4])
PY
}

@test "kill -9 at random points: the store opens and holds every message printed" {
	seq 1 20000 | sed 's/.*/set key& value&/' | gossip-send -d a batch >big
	for round in $(seq 1 8); do
		ASAN_OPTIONS=$NOLEAKS gossip-merge -d b big >"out$round" 2>/dev/null & BG=$!
		# A random moment: somewhere in the first second of the merge.
		sleep "0.$(printf '%03d' $((RANDOM % 1000)))"
		kill -9 $BG 2>/dev/null || true
		wait $BG 2>/dev/null || true
		BG=
		run gossip-merge -d b digest
		assert_success
		# Exit 1 is an empty store (killed before the first message was stored); 2 fails.
		gossip-merge -d b keys >stored || [ $? = 1 ]
		printed_keys "out$round" | sort >printed
		# Everything printed is stored.
		[ -z "$(comm -23 printed <(sort stored))" ] || fail "round $round lost printed messages"
	done
	gossip-merge -d b big >/dev/null
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 20000 ]
}

@test "a torn tail is cut when a writer opens the store, with one warning; a query leaves it" {
	printf 'set a 1\nset b 2\n' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	size=$(stat -c %s b/store)
	gossip-send -d a set c 3 | head -c 50 >>b/store
	before=$(snapshot b)
	# A query answers from the whole messages and writes nothing.
	run --separate-stderr gossip-merge -d b keys
	assert_success
	assert_output $'a\nb'
	[ -z "$stderr" ] || fail "a query warned: $stderr"
	[ "$(snapshot b)" = "$before" ] || fail "a query changed b"
	# A writer cuts it, with one line.
	run --separate-stderr gossip-merge -d b compact
	assert_success
	assert_error gossip-merge "cut a torn tail of 50 bytes at offset $size"
	[ "$(stat -c %s b/store)" = "$size" ]
	[ ! -e b/quarantine ] || fail "a torn tail is not damage to keep"
	[ "$(gossip-merge -d b keys | tr '\n' ' ')" = "a b " ]
	# And the next message goes on cleanly after it.
	gossip-send -d a set c 3 | gossip-merge -d b >/dev/null
	gossip-inspect -d b b/store >/dev/null
}

@test "compact keeps exactly the state, and runs by itself when waste grows" {
	for i in $(seq 1 30); do echo "set k v$i"; done | gossip-send -d a batch >m
	gossip-merge -d b m >/dev/null
	before=$(gossip-merge -d b digest)
	run gossip-merge -d b compact
	assert_success
	assert_output --regexp "^compacted .*: [0-9]+ bytes, now [0-9]+$"
	[ "$(gossip-merge -d b digest)" = "$before" ]
	[ "$(gossip-inspect -d b -j b/store | jq -s length)" = 1 ]
	# Overwrite one key many times: the store stays small without being asked.
	seq 1 12000 | sed 's/.*/set hot &/' | gossip-send -d a batch | gossip-merge -d b >/dev/null
	[ "$(stat -c %s b/store)" -lt $((2 * 1024 * 1024)) ]
	[ "$(gossip-merge -d b get hot)" = 12000 ]
}

@test "a process that holds an old index sees another's compaction" {
	printf 'set a 1\nset a 2\nset b 1\n' | gossip-send -d a batch >m
	mkfifo in
	gossip-merge -d b <in >out & BG=$!
	exec 5>in
	cat m >&5
	wait_for 10 eval '[ "$(gossip-inspect -d b -j out | jq -s length)" = 3 ]'
	gossip-merge -d b compact >/dev/null
	gossip-send -d a set c 1 >&5
	gossip-send -d a set a 3 >&5
	exec 5>&-
	wait $BG
	BG=
	[ "$(gossip-merge -d b get a)" = 3 ]
	[ "$(gossip-merge -d b keys | tr '\n' ' ')" = "a b c " ]
	[ "$(gossip-merge -d b digest | cut -d" " -f2)" = 3 ]
	[ "$(gossip-inspect -d b -j b/store | jq -s length)" = 4 ]  # a=2 waits for the next compaction
}

@test "a store dir that cannot be used is one clear error" {
	touch notadir
	run --separate-stderr gossip-merge -d notadir/x keys
	assert_failure 2
	assert_error gossip-merge "cannot open notadir/x: Not a directory"
	echo "junk" >b/trusted
	run --separate-stderr gossip-merge -d b keys
	assert_failure 2
	assert_error gossip-merge "trusted: b/trusted line 1: no public key"
}

@test "an automatic compaction with no room for store.new: one warning, nothing lost, tried again later" {
	store_tmpfs 8m
	pad=$(printf '%0150d' 0)
	for r in 0 1 2 3; do
		seq 1 3000 | sed "s/.*/set key& value-&-$r-$pad/" | gossip-send -d a batch >"r$r"
	done
	gossip-merge -d t/b r0 r1 >/dev/null
	# Room for the next batch, not for store.new (the live messages).
	avail=$(( $(stat -f -c '%a*%S' t) ))
	head -c $((avail - $(stat -c %s r2) - 64 * 1024)) /dev/zero >t/filler || true
	run --separate-stderr bash -c 'gossip-merge -d t/b r2 >/dev/null'
	assert_success
	assert_error gossip-merge "nothing stored is lost, and compaction is tried again later"
	[[ $stderr == *"No space left on device"* ]] || fail "$stderr"
	[ ! -e t/b/store.new ] || fail "store.new left behind"
	[ "$(gossip-merge -d t/b get key7)" = "value-7-2-$pad" ]
	[ "$(gossip-merge -d t/b digest | cut -d' ' -f2)" = 3000 ]
	# With room again, the next batch compacts.
	rm t/filler
	before=$(stat -c %s t/b/store)
	gossip-merge -d t/b r3 >/dev/null 2>err || fail "$(cat err; ls -l t/b; df t)"
	[ ! -s err ] || fail "$(cat err)"
	[ "$(stat -c %s t/b/store)" -lt "$before" ] || fail "not compacted"
	[ "$(gossip-merge -d t/b get key3000)" = "value-3000-3-$pad" ]
}

@test "a full disk under a node's merge (--lazy): it runs on, loses nothing stored, stores again once there is room" {
	store_tmpfs 2m
	pad=$(printf '%0150d' 0)
	for r in 0 1 2; do
		seq 1 2000 | sed "s/.*/set r$r-key& value-&-$pad/" | gossip-send -d a batch >"r$r"
	done
	seq 1 20 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >small
	mkfifo in
	gossip-merge --lazy -d t/b <in >out 2>err & BG=$!
	exec 4>in
	cat r0 >&4
	wait_for 10 eval '[ "$(cbor_count out)" = 2000 ]'
	before=$(gossip-merge -d t/b digest)
	head -c $(( $(stat -f -c '%a*%S' t) )) /dev/zero >t/filler 2>/dev/null || true
	read_by() { awk '$1 == "rchar:" { print $2 }' "/proc/$1/io"; }
	size=$(stat -c %s t/b/store) read0=$(read_by "$BG")
	cat r1 >&4
	wait_for 10 grep -q "No space left on device; not stored, tried again with what comes next" err
	kill -0 "$BG" || fail "the merge ended: $(cat err)"
	# The next batches find no room before anything is indexed: the merge does not read
	# the store again for them (what it reads is counted by the kernel, /proc/PID/io,
	# from before the first failing batch to the first stored after the disk has room).
	for i in 1 2 3; do cat small >&4; done
	[ "$(grep -c 'not stored' err)" = 1 ] || fail "$(cat err)"
	[ "$(gossip-merge -d t/b digest)" = "$before" ] || fail "what was stored changed"
	[ "$(cbor_count out)" = 2000 ] || fail "printed what it did not store"
	rm t/filler
	cat r2 >&4
	wait_for 10 eval '[ "$(cbor_count out)" = 4000 ]'
	read1=$(read_by "$BG")
	extra=$((read1 - read0 - $(stat -c %s r1) - 3 * $(stat -c %s small) - $(stat -c %s r2)))
	[ "$extra" -lt $((size / 4)) ] ||
		fail "4 batches on a full disk read $extra bytes besides their input (the store is $size): the store again"
	grep -q "store: written again" err || fail "$(cat err)"
	[ "$(gossip-merge -d t/b get r2-key2000)" = "value-2000-$pad" ]
	[ "$(gossip-merge -d t/b get r0-key1)" = "value-1-$pad" ]
	exec 4>&-
	wait "$BG" || fail "exit $?: $(cat err)"
}

@test "a batch with newer versions of keys before older ones, on a disk with room for the newer only: stored (room is counted as the batch writes)" {
	store_tmpfs 8m
	pad=$(printf '%0150d' 0) long=$(printf '%01500d' 0)
	seq 1 1000 | sed "s/.*/set other& value-&-$pad/" | gossip-send -d a batch >r0
	# The older versions are the longer: counting the longest of each key fails too.
	seq 1 1000 | sed "s/.*/set ckey& value-&-0-$long/" | gossip-send -d a batch >c0
	seq 1 1000 | sed "s/.*/set ckey& value-&-1-$pad/" | gossip-send -d a batch >c1
	gossip-merge -d t/b r0 >/dev/null
	cat c1 c0 >rev
	# Room for c1 (what is written: c0 is older) and the index's growth, not for c0.
	avail=$(( $(stat -f -c '%a*%S' t) ))
	head -c $((avail - $(stat -c %s c1) - 400 * 1024)) /dev/zero >t/filler || true
	[ $(( $(stat -f -c '%a*%S' t) )) -lt $(( $(stat -c %s c0) )) ] || fail "the disk has room for c0"
	run --separate-stderr bash -c 'gossip-merge -d t/b rev >/dev/null'
	assert_success
	[ "$(gossip-merge -d t/b get ckey20)" = "value-20-1-$pad" ]
	[ "$(gossip-merge -d t/b get other7)" = "value-7-$pad" ]
	[ "$(gossip-merge -d t/b digest | cut -d' ' -f2)" = 2000 ]
}

@test "a batch with no room on ext4: the room a failed try took is given back (compaction, other files still fit)" {
	command -v mkfs.ext4 >/dev/null || skip "no mkfs.ext4"
	truncate -s 24M img
	mkfs.ext4 -q -F -m 0 img 2>/dev/null || skip "mkfs.ext4 failed"
	mkdir t
	mount -o loop img t 2>/dev/null || skip "cannot mount a loop device here (run as root)"
	MNT=$T/t
	cp -r b t/
	pad=$(printf '%0150d' 0)
	for v in 0 1; do
		seq 1 3000 | sed "s/.*/set ckey& value-&-$v-$pad/" | gossip-send -d a batch >"c$v"
	done
	seq 1 7000 | sed "s/.*/set new& value-&-$pad/" | gossip-send -d a batch >huge
	gossip-merge -d t/b c0 >/dev/null
	gossip-merge -d t/b c1 >/dev/null
	# Room for half of the big batch; then the batch, which does not fit.
	avail=$(( $(stat -f -c '%a*%S' t) ))
	head -c $((avail - $(stat -c %s huge) / 2)) /dev/zero >t/filler 2>/dev/null || true
	sync
	blocks=$(stat -c %b t/b/store) free=$(( $(stat -f -c '%a*%S' t) ))
	run --separate-stderr bash -c 'gossip-merge -d t/b huge >/dev/null'
	assert_failure 2
	assert_error gossip-merge "store: cannot write t/b/store: No space left on device"
	# The failed try moved the file's times; the summary kept for it (DIR/store.root)
	# follows: a digest does not read the store.
	run --separate-stderr gossip-merge -v -d t/b digest
	[[ $stderr == *"from the kept summary"* ]] || fail "$stderr"
	mkdir ref && cp t/b/store t/b/trusted ref/
	[ "$output" = "$(gossip-merge -d ref digest)" ] || fail "kept $output, a whole read $(gossip-merge -d ref digest)"
	sync
	[ "$(stat -c %b t/b/store)" -le $((blocks + 8)) ] ||
		fail "the store holds $(stat -c %b t/b/store) blocks after the failed batch, $blocks before"
	[ $(( $(stat -f -c '%a*%S' t) )) -ge $((free - 64 * 1024)) ] || fail "free space went from $free to $(( $(stat -f -c '%a*%S' t) ))"
	[ "$(gossip-merge -d t/b get ckey20)" = "value-20-1-$pad" ]
	run --separate-stderr gossip-merge -d t/b compact
	assert_success
	[ "$(gossip-merge -d t/b get ckey20)" = "value-20-1-$pad" ]
}

@test "a file size limit (ulimit -f): a batch past it fails with one line, changes nothing stored; a node's merge (--lazy) runs on without reading the store again" {
	pad=$(printf '%0150d' 0)
	for r in 0 1; do
		seq 1 2000 | sed "s/.*/set r$r-key& value-&-$pad/" | gossip-send -d a batch >"r$r"
	done
	seq 1 20 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >small
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	gossip-merge -d b r0 >/dev/null
	size=$(stat -c %s b/store)
	# Room for half of r1 below the limit (bash counts it in KiB).
	kib=$(( (size + $(stat -c %s r1) / 2) / 1024 ))
	snap=$(snapshot b)
	run --separate-stderr bash -c "ulimit -S -f $kib; gossip-merge -d b r1 >/dev/null"
	assert_failure 2
	assert_error gossip-merge "store: cannot write b/store: File too large (the file size limit, ulimit -f, is $((kib * 1024)) bytes; the store is $size, the batch $(stat -c %s r1))"
	[ "$(snapshot b)" = "$snap" ] || fail "the failed batch changed the store's files"
	# Compaction's store.new past the limit: one line (no signal kills it), nothing left.
	run --separate-stderr bash -c "ulimit -S -f $((size / 2048)); gossip-merge -d b compact"
	assert_failure 2
	assert_error gossip-merge "store: cannot write b/store.new: File too large"
	[ ! -e b/store.new ] || fail "store.new left behind"
	[ "$(snapshot b)" = "$snap" ] || fail "the failed compaction changed the store's files"
	# The node's merge stores what comes as it comes, in batches: those past the limit fail.
	mkfifo in
	(ulimit -S -f "$kib"; exec gossip-merge --lazy -d b <in >out 2>err) & BG=$!
	exec 4>in
	read_by() { awk '$1 == "rchar:" { print $2 }' "/proc/$1/io"; }
	# What it reads from here on, once it has read the store (at its start).
	wait_for 10 eval '[ "$(read_by "$BG")" -ge "$size" ]'
	read0=$(read_by "$BG")
	cat r1 >&4
	wait_for 10 grep -q "File too large (the file size limit, ulimit -f, is $((kib * 1024)) bytes; the store is [0-9]*, the batch [0-9]*); not stored, tried again with what comes next" err
	kill -0 "$BG" || fail "the merge ended: $(cat err)"
	stored=$(cbor_count out)
	[ "$stored" -lt 2000 ] || fail "all of r1 was stored"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = $((2000 + stored)) ] || fail "stored what it did not print"
	# The limit raised, the next batch is stored; what the merge read was its input only.
	prlimit --pid "$BG" --fsize=unlimited
	cat small >&4
	wait_for 10 eval '[ "$(cbor_count out)" = $((stored + 20)) ]'
	extra=$(( $(read_by "$BG") - read0 - $(stat -c %s r1) - $(stat -c %s small) ))
	[ "$extra" -lt $((size / 4)) ] || fail "the merge read $extra bytes besides its input (the store is $size)"
	[ "$(grep -c 'store: written again' err)" = 1 ] || fail "$(cat err)"
	# No room at all. Two rivals (one key and version, two values): the second makes the
	# merge store the first on the way, which fails too; the merge runs on (it ended,
	# exit 2). Then duplicates alone, which write nothing, are no "written again": the
	# next failure is no new line (the rate limit holds).
	for v in A B; do $PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --type 1 --key q --value "$v" --version 7; done >xy
	gossip-send -d a set z 1 >z
	prlimit --pid "$BG" --fsize="$(stat -c %s b/store):"
	cat xy >&4
	wait_for 10 eval '[ "$(grep -c "not stored, tried again with what comes next" err)" = 2 ]'
	kill -0 "$BG" || fail "the merge ended: $(cat err)"
	cat small >&4
	wait_for 10 eval '[ "$(read_by "$BG")" -ge $((read0 + $(stat -c %s r1) + 2 * $(stat -c %s small) + $(stat -c %s xy))) ]'
	cat z >&4
	wait_for 10 eval '[ "$(read_by "$BG")" -ge $((read0 + $(stat -c %s r1) + 2 * $(stat -c %s small) + $(stat -c %s xy) + $(stat -c %s z))) ]'
	prlimit --pid "$BG" --fsize=unlimited
	cat xy >&4
	wait_for 10 eval '[ "$(grep -c "store: written again" err)" = 2 ]'
	exec 4>&-
	code=0
	wait "$BG" || code=$?
	[ "$code" = 1 ] || fail "exit $code (1: the equivocation): $(cat err)"
	[ "$(grep -c "not stored, tried again with what comes next" err)" = 2 ] || fail "$(cat err)"
	[ "$(grep -c "store: written again" err)" = 2 ] || fail "$(cat err)"
	[ "$(gossip-merge -d b get s-key20)" = "value-20-$pad" ]
	[ "$(gossip-merge -d b get r0-key2000)" = "value-2000-$pad" ]
	[[ "$(gossip-merge -d b get q)" == [AB] ]] || fail "q: $(gossip-merge -d b get q)"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = $((2021 + stored)) ]
}

@test "a heartbeat passed on between two failed batches is no \"written again\" (the rate limit holds)" {
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	pad=$(printf '%0150d' 0)
	seq 1 20 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >s1
	seq 21 40 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >s2
	seq 41 45 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >s3
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --type 1 --key _hb --value '' >hb
	gossip-merge -d b s1 >/dev/null
	size=$(stat -c %s b/store)
	mkfifo in
	(ulimit -S -f $(((size + 1023) / 1024)); exec gossip-merge --lazy -d b <in >out 2>err) & BG=$!
	exec 4>in
	read_by() { awk '$1 == "rchar:" { print $2 }' "/proc/$1/io"; }
	wait_for 10 eval '[ "$(read_by "$BG")" -ge "$size" ]'
	read0=$(read_by "$BG")
	prlimit --pid "$BG" --fsize="$size:"
	cat s2 >&4
	wait_for 10 eval '[ "$(grep -c "not stored, tried again" err)" = 1 ]'
	cat hb >&4
	wait_for 10 test -s out  # the heartbeat, passed on (not stored)
	cat s3 >&4
	wait_for 10 eval '[ "$(read_by "$BG")" -ge $((read0 + $(stat -c %s s2) + $(stat -c %s hb) + $(stat -c %s s3))) ]'
	exec 4>&-
	wait "$BG" || true
	[ "$(grep -c 'store: written again' err)" = 0 ] || fail "written again while nothing was stored: $(cat err)"
	[ "$(grep -c 'not stored, tried again' err)" = 1 ] || fail "$(cat err)"
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 20 ]
}

@test "a heartbeat whose flush failed is not passed on, and the same beat sent again is (it was not remembered)" {
	$PY "$BATS_TEST_DIRNAME/interop.py" pub $SEED py >>b/trusted
	pad=$(printf '%0150d' 0)
	seq 1 20 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >s1
	seq 21 40 | sed "s/.*/set s-key& value-&-$pad/" | gossip-send -d a batch >s2
	$PY "$BATS_TEST_DIRNAME/interop.py" make $SEED --type 1 --key _hb --value '' >hb
	cat s2 hb >s2hb
	gossip-merge -d b s1 >/dev/null
	size=$(stat -c %s b/store) before=$(gossip-merge -d b digest)
	mkfifo in
	(ulimit -S -f $(((size + 1023) / 1024)); exec gossip-merge --lazy -d b <in >out 2>err) & BG=$!
	exec 4>in
	read_by() { awk '$1 == "rchar:" { print $2 }' "/proc/$1/io"; }
	wait_for 10 eval '[ "$(read_by "$BG")" -ge "$size" ]'
	prlimit --pid "$BG" --fsize="$size:"
	# One write: the beat is read with the batch, whose flush (before the beat) fails.
	cat s2hb >&4
	wait_for 10 grep -q "not stored, tried again" err
	[ ! -s out ] || fail "passed on what was not stored, or a beat after a batch that failed"
	cat hb >&4
	wait_for 10 test -s out
	[ "$(cbor_count out)" = 1 ] || fail "$(cbor_count out) messages passed on"
	cmp out hb || fail "passed on something else than the beat"
	exec 4>&-
	wait "$BG" || true
	[ "$(gossip-merge -d b digest)" = "$before" ] || fail "what was stored changed"
}

@test "a node's merge (--lazy) whose sync fails (an I/O error): its line says the batch was written and passed on, not that it was not stored; its events are logged" {
	# fdatasync fails (EIO) while the file FAIL_SYNC is there: a disk's error, which a
	# machine could not give on demand.
	cat >shim.c <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
int fdatasync(int fd)
{
	const char *f = getenv("FAIL_SYNC");
	if (f && access(f, F_OK) == 0) {
		errno = EIO;
		return -1;
	}
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	return real(fd);
}
C
	${CC:-cc} -shared -fPIC -o shim.so shim.c -ldl || fail "cannot build the shim"
	for b in 1 2 3 4; do
		seq $((b * 10)) $((b * 10 + 4)) | sed 's/.*/set k& v&/' | gossip-send -d a batch >s$b
	done
	gossip-send -d a event boom now >>s1
	mkfifo in
	: >failsync
	# (Under the sanitizers the shim is preloaded before their runtime: allowed here.)
	(FAIL_SYNC=$T/failsync LD_PRELOAD=$T/shim.so ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		exec gossip-merge --lazy -d b <in >out 2>err) & BG=$!
	exec 4>in
	passed() { [ "$(stat -c %s out)" = "$(cat "$@" | wc -c)" ]; }
	cat s1 >&4
	wait_for 10 passed s1 || fail "not passed on: $(cat err)"
	wait_for 10 grep -q "may be lost in a crash" err
	# Its event is logged (the handlers hear of it) as its messages were passed on.
	wait_for 10 grep -qa boom b/events || fail "the event of a batch whose sync failed is not in b/events"
	cat s2 >&4
	wait_for 10 passed s1 s2 || fail "not passed on: $(cat err)"
	# Then no room for the next (a file size limit): not stored, said at once (another
	# kind of trouble), not passed on.
	size=$(stat -c %s b/store)
	prlimit --pid "$BG" --fsize="$size:"
	cat s3 >&4
	wait_for 10 grep -q "not stored, tried again" err || fail "$(cat err)"
	prlimit --pid "$BG" --fsize=unlimited:
	rm failsync
	cat s4 >&4
	wait_for 10 grep -q "store: written again" err || fail "$(cat err)"
	exec 4>&-
	wait "$BG"
	BG=
	passed s1 s2 s4 || fail "passed on: $(stat -c %s out) bytes"
	# A line for each kind of trouble (the second batch's within the minute), one when it
	# ended.
	[ "$(wc -l <err)" = 3 ] || fail "$(cat err)"
	grep -qx "gossip-merge: store: cannot sync b/store to disk: Input/output error; the batch was written and passed on, but may be lost in a crash (anti-entropy brings it back)" err ||
		fail "$(cat err)"
	grep -qx "gossip-merge: store: written again (1 batches were not stored, 2 batches written but not known to be on disk; anti-entropy brings them back)" err ||
		fail "$(cat err)"
	# Written they were: the store holds the three batches, not the one refused.
	for k in 10 24 44; do
		[ "$(gossip-merge -d b get k$k)" = "v$k" ] || fail "k$k"
	done
	run gossip-merge -d b get k30
	assert_failure 1
}

@test "kill -9 at random points of compaction: every key keeps its newest value, check is clean" {
	pad=$(printf 'x%.0s' $(seq 1 3000))
	# round R: 300 keys written 3 times each (two versions of each superseded), 3 kB values.
	round() {
		for v in 1 2 3; do seq 1 300 | sed "s/.*/set k& r$1.$v.$pad/"; done |
			gossip-send -d a batch | gossip-merge -d b >/dev/null
	}
	round 0
	# How long one compaction takes here, to kill the next ones at random points of it.
	t0=${EPOCHREALTIME/./}
	gossip-merge -d b compact >/dev/null
	dur=$(( ${EPOCHREALTIME/./} - t0 ))
	killed=0
	for r in $(seq 1 10); do
		round $r
		ASAN_OPTIONS=$NOLEAKS gossip-merge -d b compact >out 2>&1 & BG=$!
		us=$((RANDOM * dur / 32768))
		sleep "$((us / 1000000)).$(printf '%06d' $((us % 1000000)))"
		kill -9 $BG 2>/dev/null || true
		wait $BG 2>/dev/null || true
		BG=
		[ -s out ] || killed=$((killed + 1))
		run --separate-stderr gossip-merge -d b check
		assert_success
		assert_output --regexp "^b/store: [0-9]+ messages verified, 0 damaged regions \(0 bytes\)$"
		run gossip-merge -d b -j dump
		assert_success
		[ "$(jq -r '.key + " " + (.value | split(".") | .[0:2] | join("."))' <<<"$output" | sort)" = \
		  "$(seq 1 300 | sed "s/.*/k& r$r.3/" | sort)" ] || fail "round $r: a key lost its newest value"
		[ "$(gossip-merge -d b get k150 | cut -d. -f1-2)" = "r$r.3" ] || fail "round $r: get k150"
	done
	echo "# $killed of 10 compactions killed before they finished (one takes ${dur} us)" >&3
	# A store.new a killed compaction left is never read as the store: the next one
	# starts it afresh, and takes it away.
	gossip-merge -d b compact >/dev/null
	[ ! -e b/store.new ] || fail "store.new left by a finished compaction"
	[ "$(gossip-inspect -d b -j b/store | jq -s length)" = 300 ]
}
