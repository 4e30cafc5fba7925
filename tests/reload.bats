#!/usr/bin/env bats
# Reloading on SIGHUP at the program level: the cluster key rotates, following
# gossip-keyring(5), under a running listener and a running sender, with no message lost.
load helper

setup() {
	base_setup
	BG=
	two_nodes
}

teardown() {
	# Every process a test started is stopped, even when it failed.
	exec 5>&- 2>/dev/null || true
	[ -z "$BG" ] || kill $BG 2>/dev/null || true
	[ -z "$BG" ] || wait $BG 2>/dev/null || true
}


has_msgs() {
	[ "$(cbor_count "$1")" -ge "$2" ]
}

# send_one N: one more message through the running sender; wait until the listener has
# printed N in all.
send_one() {
	gossip-send -d a set "r$1" "$1" >&5
	wait_for 10 has_msgs got "$1" || fail "message $1 was lost: $(cat got.err send.err)"
}

# sender_on_fifo: a gossip-send from a to the listener in got.addrs (logging to
# send.err), reading the FIFO `in`, written on fd 5; returns once its connection or socket
# is open (the first message is through), with its pid in SPID.
sender_on_fifo() {
	mkfifo in
	gossip-send -d a -t "$(cat got.addrs)" <in 2>send.err & BG="$BG $!"
	SPID=$!
	exec 5>in
	wait_for 5 handler_in "$SPID"
	gossip-send -d a set first 0 >&5
	wait_for 10 has_msgs got 1
}

@test "key rotation with a running listener and sender: no message lost; the removed key is refused" {
	gossip-keygen -c >old
	gossip-keygen -c >new
	for n in a b; do cp old $n/keyring; chmod 600 $n/keyring; done
	gossip-listen -d b -a got.addrs udp://127.0.0.1:0 >got 2>got.err & BG=$!
	lpid=$!
	wait_for 10 test -s got.addrs
	mkfifo in
	gossip-send -d a "$(cat got.addrs)" <in 2>send.err & BG="$BG $!"
	spid=$!
	exec 5>in  # bats keeps fd 3 for itself
	send_one 1
	# 1. The new key as a second line everywhere, and SIGHUP to both.
	for n in a b; do cat new >>$n/keyring; done
	hup "$lpid" got.err gossip-listen
	hup "$spid" send.err gossip-send
	grep -q "^gossip-send: reloaded: 2 cluster keys$" send.err
	send_one 2
	# 2. The new key first everywhere.
	for n in a b; do cat new old >$n/keyring; done
	hup "$lpid" got.err gossip-listen
	hup "$spid" send.err gossip-send
	send_one 3
	# A keyring that does not load keeps the old one in force, with a warning.
	chmod 644 a/keyring
	kill -HUP "$spid"
	wait_for 5 grep -q "^gossip-send: reload: keyring: .* is open to group or others .*; keeping the old one$" send.err
	chmod 600 a/keyring
	send_one 4
	# 3. The old key removed everywhere: the sender seals with the new key only now,
	# or the listener would refuse what follows.
	for n in a b; do cp new $n/keyring; done
	hup "$lpid" got.err gossip-listen
	hup "$spid" send.err gossip-send
	grep -q "^gossip-listen: reloaded: 2 trusted signers, 1 cluster keys$" got.err
	send_one 5
	send_one 6
	[ "$(gossip-inspect -d b -j got | jq -r .key | tr '\n' ' ')" = "r1 r2 r3 r4 r5 r6 " ]
	run ! grep -q "wrong key\|not sealed\|does not hold" got.err
	# A datagram sealed with the removed key (by a trusted signer) is refused, and says why.
	cp -r a stale
	cp old stale/keyring
	gossip-send -d stale -t "$(cat got.addrs)" set stale 1
	wait_for 5 grep -q "offset 0: sealed with a cluster key this node does not hold (see gossip-keyring(5))$" got.err
	[ "$(cbor_count got)" = 6 ]
	exec 5>&-
	wait_for 5 eval "! kill -0 $spid 2>/dev/null"
}

# ---- attacks on reloading: storms, bad files, revocation ----

# handler_in PID: PID catches SIGHUP (SigCgt is a hex mask; SIGHUP is the lowest bit).
handler_in() {
	(( 0x$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status") & 1 ))
}

# fds PID: how many file descriptors PID holds.
fds() {
	ls "/proc/$1/fd" | wc -l
}

# storm PID N: N SIGHUPs to PID, a few milliseconds apart (hundreds while messages flow).
storm() {
	local i
	for ((i = 0; i < $2; i++)); do
		kill -HUP "$1" 2>/dev/null || return 1
		sleep 0.002
	done
}

# trickle FILE: FILE on stdout in small pieces, a few milliseconds apart, so that a storm
# meets the reader in every state (waiting, mid-item, between items).
trickle() {
	$PY - "$1" <<'PY'
import os, sys, time
data = open(sys.argv[1], "rb").read()
for i in range(0, len(data), 777):
    os.write(1, data[i:i + 777]); time.sleep(0.002)
PY
}

@test "a SIGHUP storm against a flowing gossip-merge --verified: nothing lost or doubled, no exit, no fd leak" {
	seq 1 800 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	mkfifo in
	gossip-merge --verified -d b <in >out 2>err & BG=$!
	mpid=$!
	exec 5>in
	wait_for 5 handler_in "$mpid"
	before=$(fds "$mpid")
	storm "$mpid" 400 & BG="$BG $!"
	hpid=$!
	trickle msgs >&5
	wait_for 30 has_msgs out 800
	wait "$hpid" || fail "the storm ended early: gossip-merge is gone: $(cat err)"
	kill -0 "$mpid" || fail "gossip-merge ended: $(cat err)"
	[ "$(fds "$mpid")" = "$before" ] || fail "fds: $before before, $(fds "$mpid") after"
	[ "$(count_lines "^gossip-merge: reloaded: " err)" -gt 10 ] || fail "no reloads: $(cat err)"
	exec 5>&-
	wait "$mpid" || fail "gossip-merge failed: $(cat err)"
	BG=
	run ! grep -v "^gossip-merge: reloaded: 2 trusted signers$" err
	[ "$(cbor_count out)" = 800 ]
	[ "$(gossip-inspect -d b -j out | jq -r .key | sort -u | wc -l)" = 800 ]
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 800 ]
}

@test "a SIGHUP storm against gossip-listen taking a stream and datagrams: nothing lost or doubled, no fd leak" {
	gossip-keygen -c >k
	for n in a b; do cp k $n/keyring; chmod 600 $n/keyring; done
	gossip-listen -d b -a got.addrs tcp://127.0.0.1:0 "unix:$T/sock" >got 2>got.err & BG=$!
	lpid=$!
	wait_for 10 test -s got.addrs
	before=$(fds "$lpid")
	seq 1 600 | sed 's/.*/set s& &/' >lines
	storm "$lpid" 400 & BG="$BG $!"
	hpid=$!
	gossip-send -d a -t "$(sed -n 1p got.addrs)" batch <lines || fail "send over tcp failed"
	seq 1 300 | sed 's/.*/set u& &/' | gossip-send -d a -t "unix:$T/sock" batch ||
		fail "send over unix failed"
	wait_for 30 has_msgs got 900
	wait "$hpid" || fail "gossip-listen is gone: $(cat got.err)"
	kill -0 "$lpid" || fail "gossip-listen ended: $(cat got.err)"
	wait_for 5 eval '[ "$(fds "$lpid")" = "$before" ]'
	[ "$(cbor_count got)" = 900 ]
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort -u | wc -l)" = 900 ]
	run ! grep -v "^gossip-listen: \(listening on\|reloaded: 2 trusted signers, 1 cluster keys$\)" got.err
}

@test "a SIGHUP storm against gossip-send forwarding to fixed destinations: nothing lost or doubled" {
	gossip-listen -d b -a got.addrs tcp://127.0.0.1:0 >got 2>got.err & BG=$!
	wait_for 10 test -s got.addrs
	seq 1 600 | sed 's/.*/set f& &/' | gossip-send -d a batch >msgs
	sender_on_fifo
	spid=$SPID
	before=$(fds "$spid")
	storm "$spid" 400 & BG="$BG $!"
	hpid=$!
	trickle msgs >&5
	wait_for 30 has_msgs got 601
	wait "$hpid" || fail "gossip-send is gone: $(cat send.err)"
	[ "$(fds "$spid")" = "$before" ] || fail "fds: $before before, $(fds "$spid") after"
	exec 5>&-
	wait "$spid" || fail "gossip-send failed: $(cat send.err)"
	run ! grep -v "^gossip-send: reloaded: 0 cluster keys$" send.err
	[ "$(cbor_count got)" = 601 ]
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort -u | wc -l)" = 601 ]
}

# bad_file KIND PATH GOOD: put a file at PATH that does not load, of KIND: a FIFO with no
# writer, a symlink to /dev/zero or to a FIFO, a directory, an enormous file, GOOD with its
# first line cut short, garbage, GOOD open to others.
bad_file() {
	rm -rf "$2"
	case $1 in
	fifo) mkfifo -m 600 "$2" ;;
	fifo-link) rm -f "$T/fifo"; mkfifo -m 600 "$T/fifo"; ln -s "$T/fifo" "$2" ;;
	zero) ln -s /dev/zero "$2" ;;
	dir) mkdir -m 700 "$2" ;;
	big) head -c $((17 << 20)) /dev/zero | tr '\0' A >"$2"; chmod 600 "$2" ;;
	cut) head -1 "$3" | head -c 20 >"$2"; chmod 600 "$2" ;;
	garbage) printf 'x\001\377\000 \n\t\\' >"$2"; chmod 600 "$2" ;;
	open) cp "$3" "$2"; chmod 644 "$2" ;;
	esac
}

# reload_refused PID LOG PROG FILE: after SIGHUP, exactly one more "PROG: reload: FILE:
# ...; keeping the old one" line in LOG, soon: the program did not block on the file.
reload_refused() {
	local n
	n=$(count_lines "^$3: reload: " "$2")
	kill -HUP "$1"
	wait_for 5 more_lines "^$3: reload: " "$2" "$n"
	[ "$(count_lines "^$3: reload: " "$2")" = $((n + 1)) ] || fail "more than one line: $(cat "$2")"
	grep "^$3: reload: " "$2" | tail -1 | grep -q "^$3: reload: $4: .*; keeping the old one$" ||
		fail "not the line wanted: $(cat "$2")"
}

@test "gossip-listen: a trusted or keyring that does not load on SIGHUP (FIFO, /dev/zero, directory, huge, cut, garbage, open to others) keeps the old ones; it never blocks" {
	gossip-keygen -c >k
	for n in a b; do cp k $n/keyring; chmod 600 $n/keyring; done
	cp b/trusted good.trusted
	gossip-listen -d b -a got.addrs udp://127.0.0.1:0 >got 2>got.err & BG=$!
	lpid=$!
	wait_for 10 test -s got.addrs
	before=$(fds "$lpid")
	i=0
	for kind in fifo fifo-link zero dir big cut garbage; do
		bad_file "$kind" b/trusted good.trusted
		reload_refused "$lpid" got.err gossip-listen trusted
		i=$((i + 1))
		gossip-send -d a -t "$(cat got.addrs)" set "t$kind" x
		wait_for 10 has_msgs got "$i" || fail "$kind: the old trusted is not in force: $(cat got.err)"
		[ "$(fds "$lpid")" = "$before" ] || fail "$kind: fds: $before before, $(fds "$lpid") after"
	done
	cp good.trusted b/trusted
	for kind in fifo fifo-link zero dir big cut garbage open; do
		bad_file "$kind" b/keyring k
		reload_refused "$lpid" got.err gossip-listen keyring
		i=$((i + 1))
		gossip-send -d a -t "$(cat got.addrs)" set "k$kind" x
		wait_for 10 has_msgs got "$i" || fail "$kind: the old keyring is not in force: $(cat got.err)"
		[ "$(fds "$lpid")" = "$before" ] || fail "$kind: fds: $before before, $(fds "$lpid") after"
	done
	[ "$(cbor_count got)" = 15 ]
	run ! grep -q "wrong key\|untrusted" got.err
}

@test "gossip-merge: a trusted that does not load on SIGHUP (FIFO, /dev/zero, directory, huge, cut, garbage) keeps the old one; it never blocks" {
	mknode x
	trust b x
	cp b/trusted good.trusted
	mkfifo in
	gossip-merge --verified -d b <in >out 2>err & BG=$!
	mpid=$!
	exec 5>in
	wait_for 5 handler_in "$mpid"
	before=$(fds "$mpid")
	i=0
	for kind in fifo fifo-link zero dir big cut garbage; do
		bad_file "$kind" b/trusted good.trusted
		reload_refused "$mpid" err gossip-merge trusted
		i=$((i + 1))
		gossip-send -d x set "t$kind" x >&5
		wait_for 10 has_msgs out "$i" || fail "$kind: the old trusted is not in force: $(cat err)"
		[ "$(fds "$mpid")" = "$before" ] || fail "$kind: fds: $before before, $(fds "$mpid") after"
	done
	exec 5>&-
	wait "$mpid" || fail "gossip-merge failed: $(cat err)"
	BG=
	cp good.trusted b/trusted
	[ "$(gossip-merge -d b digest | cut -d' ' -f2)" = 7 ]
}

@test "gossip-send: a keyring that does not load on SIGHUP keeps the old one; it never blocks" {
	gossip-keygen -c >k
	for n in a b; do cp k $n/keyring; chmod 600 $n/keyring; done
	gossip-listen -d b -a got.addrs udp://127.0.0.1:0 >got 2>got.err & BG=$!
	wait_for 10 test -s got.addrs
	sender_on_fifo
	spid=$SPID
	before=$(fds "$spid")
	i=1
	for kind in fifo fifo-link zero dir big cut garbage open; do
		bad_file "$kind" a/keyring k
		reload_refused "$spid" send.err gossip-send keyring
		i=$((i + 1))
		gossip-send -d a set "k$kind" x >&5
		wait_for 10 has_msgs got "$i" || fail "$kind: the old keyring is not in force: $(cat got.err send.err)"
		[ "$(fds "$spid")" = "$before" ] ||
			fail "$kind: fds: $before before, $(fds "$spid") after"
	done
	exec 5>&-
	wait "$spid" || fail "gossip-send failed: $(cat send.err)"
	run ! grep -q "wrong key" got.err
}

@test "gossip-send -f: a pipe from a command is read; a FIFO nobody writes to is one error, exit 2" {
	gossip-send -d a -f <(printf 'from a pipe') set k >out
	[ "$(gossip-inspect -d a -j out | jq -r .value)" = "from a pipe" ]
	mkfifo nobody
	before=$(snapshot a)
	run --separate-stderr timeout 5 gossip-send -d a -f nobody set k
	assert_failure 2
	assert_error gossip-send "value: nobody is a FIFO that nobody writes to: put a regular file there"
	[ "$(snapshot a)" = "$before" ]
}

@test "gossip-send: a SIGHUP while it waits for a TCP connection to complete does not fail the send" {
	# A listener whose accept queue is full: the kernel drops the SYN, and the connection
	# completes only when the SYN is sent again, after the listener has made room.
	$PY - <<'PY' &
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
fill = socket.create_connection(s.getsockname())  # the one place in the queue
open("port.tmp", "w").write(str(s.getsockname()[1])); __import__("os").rename("port.tmp", "port")
time.sleep(1.5)
got = b""
s.accept()  # the filler
c, _ = s.accept()
c.settimeout(10)
while True:
    b = c.recv(65536)
    if not b:
        break
    got += b
open("got", "wb").write(got)
PY
	BG=$!
	wait_for 5 test -s port
	gossip-send -d a -t "tcp://127.0.0.1:$(cat port)" set k v 2>send.err & BG="$BG $!"
	spid=$!
	wait_for 5 handler_in "$spid"
	wait_for 5 grep -q poll "/proc/$spid/wchan"  # connecting
	for i in 1 2 3 4 5; do kill -HUP "$spid" 2>/dev/null || break; sleep 0.1; done
	wait "$spid" || fail "gossip-send failed: $(cat send.err)"
	[ ! -s send.err ] || fail "$(cat send.err)"
	wait_for 10 test -e got
	[ "$(gossip-inspect -d a -j got | jq -r .key)" = k ]
}
