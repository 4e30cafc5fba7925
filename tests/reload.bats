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

# count_lines TEXT FILE: how many lines of FILE hold TEXT (0 when there is no FILE).
count_lines() {
	grep -c -- "$1" "$2" 2>/dev/null || true
}

more_lines() {
	[ "$(count_lines "$1" "$2")" -gt "$3" ]
}

# hup PID LOG PROG: SIGHUP to PID; return once LOG has one more "PROG: reloaded" line.
hup() {
	local n
	n=$(count_lines "^$3: reloaded: " "$2")
	kill -HUP "$1"
	wait_for 5 more_lines "^$3: reloaded: " "$2" "$n"
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
