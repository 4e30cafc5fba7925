#!/usr/bin/env bats
# files.bats: the small files in DIR never take a node down. DIR/events and DIR/rejects
# rotate at a size (GOSSIP_LOG_MAX for tests) and a reader follows them across it; a full
# disk under the clock, the peer table, events and rejects is one warning line, and the
# program goes on; a damaged key, key.pub, trusted, keyring, clock or peer table is one
# clear error that says how to recover, and nothing in DIR/store changes.
load helper

setup() {
	base_setup
	mknode n1
	cat n1.pub >n1/trusted
	PIDS=''
}

teardown() {
	local p
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $PIDS; do wait "$p" 2>/dev/null || true; done
	[ -z "${MNT:-}" ] || umount "$MNT" 2>/dev/null || true
}

# lines FILE N: FILE has at least N lines.
lines() {
	[ "$(wc -l <"$1")" -ge "$2" ]
}

@test "DIR/events rotates at GOSSIP_LOG_MAX; watch follows it: every event once, in order" {
	export GOSSIP_LOG_MAX=2048
	mkfifo feed
	gossip-peers -d n1 observe <feed 2>observe.err & PIDS="$PIDS $!"
	exec 5>feed
	gossip-peers -d n1 -j watch >watched 2>watch.err & PIDS="$PIDS $!"
	wait_for 5 grep -qE "nanosleep|poll" "/proc/$!/wchan"
	# Batches of 8 (under half a file): watch reads between them, as a node's watch does
	# (it reads as the log is written).
	local i total=0
	for batch in $(seq 1 20); do
		for i in $(seq 1 8); do
			gossip-peers -d n1 announce -a udp://127.0.0.1:9 -t "n=$((batch * 100 + i))" >&5
		done
		total=$((total + 8))
		wait_for 10 lines watched "$total" || fail "batch $batch: watch printed $(wc -l <watched) of $total"
	done
	exec 5>&-
	[ -e n1/events.1 ] || fail "no n1/events.1"
	[ "$(stat -c %s n1/events)" -le 2048 ] || fail "n1/events is $(stat -c %s n1/events) bytes"
	[ "$(stat -c %s n1/events.1)" -le 2048 ] || fail "n1/events.1 is $(stat -c %s n1/events.1) bytes"
	# Each announce once: the first a join, then one update per tag, none twice or missing.
	[ "$(wc -l <watched)" = "$total" ] || fail "watch printed $(wc -l <watched) events, not $total"
	jq -r .tags watched >tags
	for batch in $(seq 1 20); do for i in $(seq 1 8); do echo "n=$((batch * 100 + i))"; done; done >want
	diff want tags || fail "watch did not print each event once, in order"
	[ "$(jq -r .event watched | sort | uniq -c | tr -s ' ')" = "$(printf ' 1 member-join\n %d member-update' $((total - 1)))" ]
	[ ! -s watch.err ] || fail "watch warned: $(cat watch.err)"
	# -A reads events.1 and then events, and stops at the end like any pass.
	gossip-peers -d n1 -j -A watch >all & PIDS="$PIDS $!"
	local n=$(( $(cbor_count n1/events.1) + $(cbor_count n1/events) ))
	wait_for 5 lines all "$n"
	jq -r .tags all >alltags
	[ "$(tail -n "$n" tags)" = "$(cat alltags)" ] || fail "watch -A: not events.1 then events"
}

# small_tmpfs: a 1 MiB tmpfs at $T/mnt ($MNT), or skip the test (mounting needs root).
small_tmpfs() {
	MNT=$T/mnt
	mkdir -p "$MNT"
	mount -t tmpfs -o size=1m tmpfs "$MNT" 2>/dev/null || { MNT=''; skip "cannot mount a tmpfs (needs root)"; }
}

# fill: no block left on $MNT.
fill() {
	dd if=/dev/zero of="$MNT/fill" bs=4k 2>/dev/null || true
	run dd if=/dev/zero of="$MNT/more" bs=4k count=1
	assert_failure
}

@test "a full disk under DIR/events and DIR/peers: one line each, observe goes on, the old table stays" {
	small_tmpfs
	gossip-keygen -d "$MNT/n1" -n n1 >/dev/null
	gossip-keygen -d "$MNT/n1" -y >"$MNT/n1/trusted"
	mkfifo feed
	gossip-peers -d "$MNT/n1" observe <feed 2>observe.err & OBS=$!
	PIDS="$PIDS $OBS"
	exec 5>feed
	gossip-peers -d "$MNT/n1" announce -a udp://127.0.0.1:9 -t n=0 >&5
	wait_for 5 eval 'gossip-peers -d "$MNT/n1" -j list 2>/dev/null | jq -e ".tags.n == \"0\"" >/dev/null'
	cp "$MNT/n1/peers" peers.before
	rm "$MNT/n1/events"
	fill
	local i
	for i in 1 2 3 4 5; do gossip-peers -d "$MNT/n1" announce -a udp://127.0.0.1:9 -t "n=$i" >&5 ||
		fail "announce $i: the clock file is kept in place on a full disk"; done
	wait_for 5 grep -q "events: .*n1/events: No space left on device; events are lost" observe.err
	wait_for 5 grep -q "n1/peers.*No space left on device; the table in .*n1/peers is kept as it was" observe.err
	sleep 2  # two more saves (one a second) and five events: no more lines
	kill -0 "$OBS" || fail "observe stopped: $(cat observe.err)"
	[ "$(grep -c events: observe.err)" = 1 ] || fail "not one line for events: $(cat observe.err)"
	[ "$(grep -c 'n1/peers' observe.err)" = 1 ] || fail "not one line for the table: $(cat observe.err)"
	[ "$(wc -l <observe.err)" = 2 ] || fail "more than the two lines: $(cat observe.err)"
	cmp peers.before "$MNT/n1/peers" || fail "the table was changed on a full disk"
	[ -z "$(ls "$MNT/n1" | grep tmp)" ] || fail "left behind: $(ls "$MNT/n1")"
	[ ! -s "$MNT/n1/events" ] || fail "a torn event was left"
	# Room again: both are written at the next change, and say so.
	rm "$MNT/fill"
	gossip-peers -d "$MNT/n1" announce -a udp://127.0.0.1:9 -t n=6 >&5
	wait_for 5 grep -q "events: .*n1/events is written again (5 events were lost)" observe.err
	wait_for 5 grep -q "n1/peers is saved again" observe.err
	gossip-peers -d "$MNT/n1" -j list | jq -e '.tags.n == "6"'
	exec 5>&-
	wait "$OBS" || fail "observe failed at the end: $(cat observe.err)"
}

@test "a full disk under a new DIR/clock: one line, exit 2, no short clock left; an old clock goes on" {
	small_tmpfs
	gossip-keygen -d "$MNT/a" -n a >/dev/null
	gossip-keygen -d "$MNT/b" -n b >/dev/null
	gossip-send -d "$MNT/b" set k 1 >/dev/null
	fill
	run --separate-stderr gossip-send -d "$MNT/a" set k v
	assert_failure 2
	assert_error gossip-send "clock: cannot write: No space left on device"
	[ ! -s "$MNT/a/clock" ] || fail "a clock was left: $(od -c "$MNT/a/clock")"
	# The clock is rewritten in place: a node with one goes on signing.
	gossip-send -d "$MNT/b" set k 2 >msg || fail "b could not sign on a full disk"
	[ "$(gossip-inspect -j msg | jq -r .value)" = 2 ]
	# And with room, a first message at the time of the wall clock.
	rm "$MNT/fill"
	gossip-send -d "$MNT/a" set k v >/dev/null
	[ "$(stat -c %s "$MNT/a/clock")" -ge 21 ]
}

# damage FILE HOW: flip (one bit in the middle, in a letter or digit that stays one in a
# text file), trunc (to half), zero (as many zero
# bytes), garbage (a line of text), delete, dir (a directory in its place), mode (open to
# others: 0644); and for a base64 line: nob64 (its middle byte one that is no base64),
# short and long (a character fewer, four more: the wrong length).
damage() {
	case $2 in
	mode) chmod 644 "$1" ;;
	nob64) $PY -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] = ord("*"); open(p, "wb").write(b)' "$1" ;;
	short) $PY -c 'import sys
p = sys.argv[1]; b = open(p, "rb").read(); open(p, "wb").write(b[:20] + b[21:])' "$1" ;;
	long) sed -i 's/^/AAAA/' "$1" ;;
	many) for _ in 1 2 3 4 5 6 7 8; do gossip-keygen -c; done >>"$1" ;;  # nine keys
	flip) $PY -c 'import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read()); o = len(b) // 2
# In a line of text, the first letter or digit from the middle on that stays one: base64
# stays base64 (a different key), and so the damage is the one meant.
while all(32 <= c < 127 or c == 10 for c in b) and o < len(b) - 1 and not (chr(b[o]).isalnum() and chr(b[o] ^ 1).isalnum()):
    o += 1
b[o] ^= 1; open(p, "wb").write(b)' "$1" ;;
	trunc) truncate -s "$(( $(stat -c %s "$1") / 2 ))" "$1" ;;
	zero) head -c "$(stat -c %s "$1")" /dev/zero | dd of="$1" conv=notrunc status=none ;;
	garbage) echo 'hello, not what you expect' >"$1" ;;
	delete) rm "$1" ;;
	dir) rm "$1" && mkdir "$1" ;;
	esac
}

@test "a damaged small file: exit 2 and one line naming it and the fix, or a silent recovery; the store never changes" {
	gossip-send -d n1 set k v | gossip-merge -d n1 >/dev/null
	gossip-peers -d n1 announce -a udp://127.0.0.1:9 | gossip-peers -d n1 observe
	gossip-keygen -c >n1/keyring
	chmod 600 n1/keyring
	[ -s n1/clock ] && [ -s n1/peers ] && [ -s n1/store ]
	cp -a n1 clean
	local D=$T/n1
	# FILE HOW | EXIT PROGRAM ARGS... | the line (empty: nothing on stderr)
	while IFS='|' read -r what cmd want; do
		[ -n "$what" ] || continue
		read -r file how <<<"$what"
		read -r code prog args <<<"$cmd"
		want=${want# }
		rm -rf n1 && cp -a clean n1
		damage "n1/$file" "$how"
		before=$(sha256sum <n1/store)
		run --separate-stderr $prog -d "$D" $args </dev/null
		[ "$status" = "$code" ] || fail "$file $how: $prog $args: exit $status, not $code: $stderr"
		if [ -n "$want" ]; then
			assert_error "$prog" "${want//DIR/$D}"
		else
			[ -z "$stderr" ] || fail "$file $how: $prog $args: said $stderr"
		fi
		[ "$(sha256sum <n1/store)" = "$before" ] || fail "$file $how: $prog $args changed the store"
	done <<'TABLE'
key flip      | 2 gossip-send set k2 v | DIR/key does not match DIR/key.pub (which DIR/trusted names): the key is damaged; put back a copy, or make a new identity
key trunc     | 2 gossip-send set k2 v | DIR/key does not hold a key (base64 of a 32-byte seed)
key zero      | 2 gossip-send set k2 v | DIR/key does not hold a key (base64 of a 32-byte seed)
key garbage   | 2 gossip-send set k2 v | DIR/key does not hold a key (base64 of a 32-byte seed)
key delete    | 2 gossip-send set k2 v | no key in DIR: make one with gossip-keygen -d DIR
key dir       | 2 gossip-send set k2 v | DIR/key is not a regular file
key.pub flip  | 2 gossip-send set k2 v | DIR/key.pub does not match DIR/key (which DIR/trusted names): key.pub is damaged; recreate it with gossip-keygen -y -d DIR >DIR/key.pub
key.pub trunc | 2 gossip-send set k2 v | DIR/key.pub does not hold a public key line (KEY NAME)
key.pub zero  | 2 gossip-send set k2 v | DIR/key.pub does not hold a public key line (KEY NAME)
key.pub garbage | 2 gossip-send set k2 v | DIR/key.pub does not hold a public key line (KEY NAME)
key.pub delete | 0 gossip-send set k2 v |
key.pub dir   | 2 gossip-send set k2 v | cannot read DIR/key.pub: Is a directory
clock flip    | 2 gossip-send set k2 v | DIR/clock is damaged (not a version and its check): the versions this node sent may lead the wall clock by 600 s, so remove it, then wait 600 s
clock trunc   | 2 gossip-send set k2 v | DIR/clock is damaged (not a version and its check)
clock zero    | 2 gossip-send set k2 v | DIR/clock is damaged (not a version and its check)
clock garbage | 2 gossip-send set k2 v | DIR/clock is damaged (not a version and its check)
clock delete  | 0 gossip-send set k2 v |
clock dir     | 2 gossip-send set k2 v | DIR/clock is damaged (not a version and its check)
peers trunc   | 2 gossip-peers list | DIR/peers is not a peer table (gossip-peers observe writes it): remove it, and gossip-peers observe (a running node) makes it again from the store
peers zero    | 2 gossip-peers list | DIR/peers is not a peer table
peers garbage | 2 gossip-peers list | DIR/peers is not a peer table
peers dir     | 2 gossip-peers list | DIR/peers is not a peer table
peers delete  | 1 gossip-peers list |
trusted trunc | 2 gossip-merge get k | DIR/trusted line 1: no public key (44 characters of base64, as gossip-keygen prints it)
trusted garbage | 2 gossip-merge get k | DIR/trusted line 1: no public key
trusted dir   | 2 gossip-merge get k | cannot read DIR/trusted: Is a directory
keyring nob64 | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key (base64 of 32 bytes, as gossip-keygen -c prints): the keyring is damaged; put back a copy of the cluster's keyring from another node (mode 0600)
keyring nob64 | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key (base64 of 32 bytes, as gossip-keygen -c prints): the keyring is damaged; put back a copy
keyring nob64 | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key (base64 of 32 bytes, as gossip-keygen -c prints): the keyring is damaged; put back a copy
keyring nob64 | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key (base64 of 32 bytes, as gossip-keygen -c prints): the keyring is damaged; put back a copy
keyring short | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key
keyring short | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key
keyring short | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key
keyring short | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key
keyring many  | 2 gossip-listen - | keyring: DIR/keyring holds more than 8 keys: a rotation needs two at a time (see gossip-keyring(5)); remove the retired ones
keyring many  | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring holds more than 8 keys
keyring many  | 2 gossip-peers -p observe | keyring: DIR/keyring holds more than 8 keys
keyring many  | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring holds more than 8 keys
keyring long  | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key
keyring long  | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key
keyring long  | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key
keyring long  | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key
keyring trunc | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key
keyring trunc | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key
keyring trunc | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key
keyring trunc | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key
keyring zero  | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key
keyring zero  | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key
keyring zero  | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key
keyring zero  | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key
keyring garbage | 2 gossip-listen - | keyring: DIR/keyring line 1: not a key
keyring garbage | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring line 1: not a key
keyring garbage | 2 gossip-peers -p observe | keyring: DIR/keyring line 1: not a key
keyring garbage | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring line 1: not a key
keyring dir   | 2 gossip-listen - | keyring: DIR/keyring is not a regular file: put back a copy of the cluster's keyring from another node (mode 0600)
keyring dir   | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring is not a regular file: put back a copy
keyring dir   | 2 gossip-peers -p observe | keyring: DIR/keyring is not a regular file: put back a copy
keyring dir   | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring is not a regular file: put back a copy
keyring mode  | 2 gossip-listen - | keyring: DIR/keyring is open to group or others (mode 0644): run chmod 600 DIR/keyring
keyring mode  | 2 gossip-send -t udp://127.0.0.1:9 set k2 v | keyring: DIR/keyring is open to group or others (mode 0644): run chmod 600 DIR/keyring
keyring mode  | 2 gossip-peers -p observe | keyring: DIR/keyring is open to group or others (mode 0644): run chmod 600 DIR/keyring
keyring mode  | 2 gossip-merge sync tcp://127.0.0.1:9 | keyring: DIR/keyring is open to group or others (mode 0644): run chmod 600 DIR/keyring
keyring delete | 0 gossip-send -t udp://127.0.0.1:9 set k2 v |
TABLE
}

@test "a damaged keyring at a reload: one warning, the old keyring stays in force (listen and send)" {
	gossip-send -d n1 set k v | gossip-merge -d n1 >/dev/null
	gossip-keygen -c >n1/keyring
	chmod 600 n1/keyring
	cp n1/keyring keyring.good
	cp -a n1 s  # the sender: the same identity and keys, its own keyring file
	gossip-listen -d n1 -a addrs udp://127.0.0.1:0 >got 2>listen.err & PIDS="$PIDS $!"
	local L=$!
	wait_for 10 test -s addrs || fail "gossip-listen did not start: $(cat listen.err)"
	mkfifo feed
	gossip-send -d s -t "$(cat addrs)" <feed 2>send.err & PIDS="$PIDS $!"
	local S=$!
	exec 5>feed
	gossip-send -d s set k0 v >&5
	wait_for 10 eval '[ "$(cbor_count got)" -ge 1 ]' || fail "nothing arrived: $(cat listen.err send.err)"
	before=$(sha256sum <n1/store)
	local i=0 how
	for how in nob64 short long trunc zero garbage dir mode; do
		i=$((i + 1))
		rm -rf n1/keyring s/keyring
		cp keyring.good n1/keyring
		cp keyring.good s/keyring
		chmod 600 n1/keyring s/keyring
		damage n1/keyring "$how"
		damage s/keyring "$how"
		kill -HUP "$L" "$S"
		wait_for 5 eval '[ "$(grep -c "reload: keyring: " listen.err)" -ge $i ]' ||
			fail "$how: gossip-listen did not warn: $(cat listen.err)"
		wait_for 5 eval '[ "$(grep -c "reload: keyring: " send.err)" -ge $i ]' ||
			fail "$how: gossip-send did not warn: $(cat send.err)"
		[ "$(grep -c "keyring" listen.err)" = "$i" ] || fail "$how: not one line: $(cat listen.err)"
		[ "$(grep -c "keyring" send.err)" = "$i" ] || fail "$how: not one line: $(cat send.err)"
		tail -1 listen.err | grep -q "^gossip-listen: reload: keyring: n1/keyring .*; keeping the old one$" ||
			fail "$how: $(tail -1 listen.err)"
		tail -1 send.err | grep -q "^gossip-send: reload: keyring: s/keyring .*; keeping the old one$" ||
			fail "$how: $(tail -1 send.err)"
		# Sealed with the old key, opened with the old key.
		gossip-send -d s set "k$i" v >&5
		wait_for 10 eval '[ "$(cbor_count got)" -ge $((i + 1)) ]' ||
			fail "$how: the old keyring is not in force: $(cat listen.err send.err)"
	done
	grep -q "reloaded" listen.err send.err && fail "a damaged keyring was taken: $(cat listen.err send.err)"
	kill -USR1 "$L"
	wait_for 5 grep -q "accepted $((i + 1)), " listen.err || fail "$(cat listen.err)"
	grep -q "0 not sealed, 0 wrong key" listen.err || fail "refused some: $(grep accepted listen.err)"
	exec 5>&-
	[ "$(sha256sum <n1/store)" = "$before" ] || fail "the store changed"
}

# keyflip FILE LINE: one bit changed in the key on line LINE of FILE, so that it is still
# base64 (another key): a damage that still parses.
keyflip() {
	$PY -c 'import sys
p, n = sys.argv[1], int(sys.argv[2]) - 1
lines = open(p).read().split("\n"); k = bytearray(lines[n].encode()); o = 20
while not (chr(k[o]).isalnum() and chr(k[o] ^ 1).isalnum()):
    o += 1
k[o] ^= 1; lines[n] = k.decode(); open(p, "w").write("\n".join(lines))' "$1" "$2"
}

@test "a changed byte in DIR/trusted that still reads as a key: that signer is refused (untrusted), the node goes on, the store is kept" {
	mknode n2
	trust n1 n2
	cat n1.pub n2.pub >n2/trusted
	gossip-send -d n2 set k2 v2 | gossip-merge -d n1 >/dev/null
	gossip-send -d n1 set k1 v1 | gossip-merge -d n1 >/dev/null
	cp n1/trusted trusted.good
	gossip-listen -d n1 -a addrs udp://127.0.0.1:0 >got 2>listen.err & PIDS="$PIDS $!"
	local L=$!
	wait_for 10 test -s addrs || fail "gossip-listen did not start: $(cat listen.err)"
	gossip-send -d n2 -t "$(cat addrs)" set k3 v3
	wait_for 10 eval '[ "$(cbor_count got)" -ge 1 ]' || fail "n2's message did not arrive: $(cat listen.err)"
	before=$(sha256sum <n1/store)
	keyflip n1/trusted 2
	cmp -s trusted.good n1/trusted && fail "trusted is not changed"
	# It still reads: nothing says it is damaged.
	run --separate-stderr gossip-merge -d n1 get k1
	assert_success
	[ "$output" = v1 ] && [ -z "$stderr" ] || fail "get k1: $output $stderr"
	kill -HUP "$L"
	wait_for 5 grep -q "reloaded: 2 trusted signers" listen.err || fail "$(cat listen.err)"
	# n2 is refused, as untrusted; n1 is not; the listener goes on.
	gossip-send -d n2 -t "$(cat addrs)" set k4 v4
	gossip-send -d n1 -t "$(cat addrs)" set k5 v5
	wait_for 10 eval '[ "$(cbor_count got)" -ge 2 ]' || fail "n1's message did not arrive: $(cat listen.err)"
	wait_for 5 grep -q "untrusted signer $(head -c 8 n2.pub): its key is not in trusted" listen.err ||
		fail "no line for n2: $(cat listen.err)"
	kill -USR1 "$L"
	wait_for 5 grep -q "accepted 2, .*1 untrusted" listen.err || fail "counters: $(cat listen.err)"
	kill -0 "$L" || fail "gossip-listen stopped"
	[ "$(gossip-inspect -j got | jq -r .key | tr '\n' ' ')" = "k3 k5 " ] || fail "got $(gossip-inspect -j got)"
	# gossip-merge refuses n2's messages alike, and hides what n2 wrote (as a revocation
	# does); the store is not changed.
	gossip-send -d n2 set k6 v6 >n2.msg
	run --separate-stderr gossip-merge -v -d n1 n2.msg
	assert_failure 1
	[[ "$stderr" == *"untrusted signer $(head -c 8 n2.pub): its key is not in trusted"* ]] || fail "$stderr"
	run gossip-merge -d n1 get k2
	assert_failure 1
	[ "$(sha256sum <n1/store)" = "$before" ] || fail "the store changed"
	# The line put back: n2's messages count again, and what it wrote is all there.
	cp trusted.good n1/trusted
	[ "$(gossip-merge -d n1 get k2)" = v2 ] || fail "k2 did not come back"
	gossip-merge -d n1 n2.msg >/dev/null
	[ "$(gossip-merge -d n1 get k6)" = v6 ] || fail "k6 not taken with the line put back"
}
