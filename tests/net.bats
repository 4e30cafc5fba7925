#!/usr/bin/env bats
# gossip-listen and gossip-send over UDP, TCP and unix sockets (loopback only): round
# trips, port 0, IPv6, inetd mode, order, fanout, encryption and key rotation, refusals,
# floods and unreachable peers.
load helper

I="$BATS_TEST_DIRNAME/interop.py"

setup() {
	base_setup
	BG=
	two_nodes
}

teardown() {
	# Every listener a test started is stopped, even when the test failed.
	[ -z "$BG" ] || kill $BG 2>/dev/null || true
	[ -z "$BG" ] || wait $BG 2>/dev/null || true
}

# A port free for both UDP and TCP on 127.0.0.1.
freeport() {
	$PY - <<'PY'
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
PY
}

# listen NODE OUT ADDRESS...: start gossip-listen for NODE, its messages into OUT, its
# log into OUT.err, and wait until it is listening (its bound addresses in OUT.addrs).
listen() {
	local node=$1 out=$2
	shift 2
	rm -f "$out.addrs"  # an earlier listener's would pass for this one's
	gossip-listen -d "$node" -a "$out.addrs" "$@" >"$out" 2>"$out.err" &
	BG="$BG $!"
	eval "${out//[^a-zA-Z0-9]/_}_pid=$!"
	wait_for 10 test -s "$out.addrs" || fail "gossip-listen did not start: $(cat "$out.err")"
}

# has_msgs FILE N: FILE holds N whole messages, or more.
has_msgs() {
	[ "$(cbor_count "$1")" -ge "$2" ]
}

# wait_msgs FILE N: until FILE holds N whole messages (30 s at most: 10000 take a while
# under load).
wait_msgs() {
	wait_for 30 has_msgs "$1" "$2" || fail "$1 holds $(cbor_count "$1") messages, want $2"
}


# stats PID FILE: SIGUSR1 to the listener PID, which logs to FILE; wait for the counters
# line it logs and print it.
stats() {
	local n
	n=$(count_lines received "$2")
	kill -USR1 "$1"
	wait_for 5 more_lines received "$2" "$n" || return 1
	grep received "$2" | tail -1
}

@test "UDP, TCP and unix socket round trips; port 0 says which port" {
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0 "unix:$T/sock"
	grep -q '^udp://127.0.0.1:[1-9][0-9]*$' got.addrs
	grep -q "^gossip-listen: listening on $(sed -n 2p got.addrs)\$" got.err
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set k1 v1
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set k2 v2
	gossip-send -d a -t "unix:$T/sock" set k3 v3
	wait_msgs got 3
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort | tr '\n' ' ')" = "k1 k2 k3 " ]
}

@test "IPv6 loopback" {
	listen b got "udp://[::1]:0" "tcp://[::1]:0"
	grep -q '^udp://\[::1\]:[0-9]*$' got.addrs
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set v6 udp
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set v6 tcp
	wait_msgs got 2
}

@test "inetd mode: one connection on stdin under tcpserver, the peer named in the log" {
	port=$(freeport)
	tcpserver -q 127.0.0.1 "$port" sh -c "gossip-listen -d $T/b - >>$T/got 2>>$T/got.err" & BG=$!
	wait_for 5 tcp_open "$port"
	gossip-send -d a -t "tcp://127.0.0.1:$port" set via tcpserver
	mknode c
	gossip-send -d c -t "tcp://127.0.0.1:$port" set stranger 1 || true
	wait_msgs got 1
	wait_for 5 grep -q untrusted got.err
	grep -q "^gossip-listen: 127.0.0.1:[0-9]*: offset 0: untrusted signer" got.err
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = via ]
}

@test "inetd mode under socat, with systemd's variables absent" {
	port=$(freeport)
	socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork SYSTEM:"gossip-listen -d $T/b - >>$T/got" & BG=$!
	wait_for 5 tcp_open "$port"
	printf 'set x 1\nset y 2\n' | gossip-send -d a -t "tcp://127.0.0.1:$port" batch
	wait_msgs got 2
}

@test "10000 messages over TCP arrive complete and in order" {
	listen b got tcp://127.0.0.1:0
	seq 1 10000 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	gossip-send -d a "$(cat got.addrs)" <msgs
	wait_msgs got 10000
	gossip-inspect -d b -j got | jq -r .value >order
	seq 1 10000 | diff - order
}

@test "UDP packs whole messages into datagrams of at most --mtu bytes; a large one goes by TCP" {
	port=$(freeport)
	listen b got "udp://127.0.0.1:$port" "tcp://127.0.0.1:$port"
	seq 1 50 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	gossip-send -d a -m 600 "udp://127.0.0.1:$port" <msgs
	head -c 3000 /dev/urandom >blob
	gossip-send -d a -f blob -t "udp://127.0.0.1:$port" set blob
	wait_msgs got 51
	stats "$got_pid" got.err >/dev/null
	# 50 messages of about 140 bytes in 600-byte datagrams: 4 to a datagram.
	grep -q "received 13 datagrams, 1 streams" got.err
}

@test "fanout: each message goes to K of the peers, chosen at random" {
	for n in 1 2 3 4 5; do
		mkdir "p$n"
		cp b/trusted "p$n/"
		listen "p$n" "got$n" udp://127.0.0.1:0
	done
	cat got?.addrs >peers
	seq 1 60 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	gossip-send -d a -k 2 -p peers <msgs
	total() {
		local n t=0
		for n in 1 2 3 4 5; do t=$((t + $(cbor_count "got$n"))); done
		echo "$t"
	}
	wait_for 5 eval '[ "$(total)" -ge 120 ]'
	[ "$(total)" = 120 ]
	# Every message reached exactly two peers.
	for n in 1 2 3 4 5; do gossip-inspect -d b -j "got$n"; done | jq -r .key | sort | uniq -c |
		awk '$1 != 2 { bad = 1 } END { exit bad }'
	# And the peers each got some: random, not always the same two.
	for n in 1 2 3 4 5; do [ "$(cbor_count "got$n")" -gt 0 ]; done
}

@test "untrusted signers and bad signatures are dropped and counted" {
	listen b got udp://127.0.0.1:0
	mknode c
	gossip-send -d c -t "$(cat got.addrs)" set evil 1
	gossip-send -d a set k v >m
	flipbit m -2
	gossip-send -d a "$(cat got.addrs)" <m || true
	gossip-send -d a -t "$(cat got.addrs)" set good 1
	wait_msgs got 1
	stats "$got_pid" got.err >/dev/null
	grep -q "accepted 1, duplicates 0; rejected: 0 malformed, 1 bad signature, 1 untrusted" got.err
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = good ]
}

@test "a forgery ends its datagram and its stream: one signature check for 200 copies in a datagram, none for the same bytes again; the stream is closed" {
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0
	udp=$(sed -n 1p got.addrs) tcp=$(sed -n 2p got.addrs)
	gossip-send -d a set k v >m
	flipbit m -2
	gossip-send -d a set after 1 >after
	# 200 copies of one forgery under a's (trusted) kid, then a valid message: one datagram.
	for _ in $(seq 1 200); do cat m; done >forged
	cat after >>forged
	$PY -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
d = open("forged", "rb").read()
for _ in range(3):
    s.sendto(d, ("127.0.0.1", int(sys.argv[1])))' "${udp##*:}"
	gossip-send -d a -t "$udp" set good 1
	wait_msgs got 1
	line=$(stats "$got_pid" got.err)
	[[ $line == *"received 4 datagrams"* && $line == *"; rejected: 0 malformed, 3 bad signature, 0 untrusted"* ]] ||
		fail "want 3 datagrams of forgeries rejected once each: $line"
	# On a stream: the forgery closes it; what follows is not taken.
	cat m after | gossip-send "$tcp"
	gossip-send -d a -t "$udp" set good2 1
	wait_msgs got 2
	line=$(stats "$got_pid" got.err)
	[[ $line == *"4 bad signature"* ]] || fail "$line"
	[ "$(gossip-inspect -d b -j got | jq -r .key | paste -sd' ')" = "good good2" ]
}

@test "a stream item that does not open (a key this node does not hold) closes the stream: what follows is not taken" {
	# Each such item costs a try of every key: a stream that sends one is closed, as a
	# forger's is.
	gossip-keygen -c >b/keyring
	gossip-keygen -c >other
	cp b/keyring a/keyring
	chmod 600 a/keyring b/keyring
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0
	udp=$(sed -n 1p got.addrs) tcp=$(sed -n 2p got.addrs)
	gossip-send -d a set k v >m1
	gossip-send -d a set after 1 >m2
	$PY - "$tcp" b/keyring other m1 m2 <<'PY'
import base64, cbor2, os, socket, sys
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt as enc
def seal(keyfile, p):  # as gossip-keyring(5) says
    k = base64.b64decode(open(keyfile).read().split()[0])
    n = os.urandom(24)
    return cbor2.dumps(n + enc(p, b"gossip seal v1", n, k))
host, port = sys.argv[1][len("tcp://"):].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(seal(sys.argv[3], open(sys.argv[4], "rb").read()) + seal(sys.argv[2], open(sys.argv[5], "rb").read()))
s.shutdown(socket.SHUT_WR)
s.recv(1)
PY
	gossip-send -d a -t "$udp" set good 1
	wait_msgs got 1
	[[ "$(stats "$got_pid" got.err)" == *", 1 wrong key,"* ]] || fail "$(cat got.err)"
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort | paste -sd' ')" = "good" ] || fail "$(gossip-inspect -d b got)"
}

@test "a flood of garbage and half-open connections does not stop valid traffic" {
	listen b got -c 16 -t 2 udp://127.0.0.1:0 tcp://127.0.0.1:0
	u=$(sed -n 1p got.addrs) t=$(sed -n 2p got.addrs)
	$PY - "${u#udp://}" "${t#tcp://}" <<'PY' &
import os, socket, sys, time
uh, up = sys.argv[1].rsplit(":", 1); th, tp = sys.argv[2].rsplit(":", 1)
idle = [socket.create_connection((th, int(tp))) for _ in range(40)]  # more than -c 16
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.time() + 2
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
open("flooding", "w").close()
i = 0
while time.time() < end:
    i += 1
    size = 65000 if i % 100 == 0 else 1 + os.urandom(1)[0] * 4  # now and then an oversize one
    s.sendto(os.urandom(size), (uh, int(up)))
open("flooded", "w").close()
time.sleep(3)
PY
	flood=$!
	BG="$BG $flood"
	wait_for 5 test -e flooding   # the idle connections are open, the datagrams start
	for i in $(seq 1 20); do
		gossip-send -d a -t "$u" set udp$i $i
		gossip-send -d a -t "$t" set tcp$i $i
	done
	# Every TCP message arrives; UDP is lossy by nature under a flood, but passes.
	wait_for 10 eval '[ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^tcp)" = 20 ]'
	[ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^tcp)" = 20 ]
	[ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^udp)" -ge 15 ]
	# The flood is over, every datagram sent: what it still holds, idle connections, no
	# longer matters (the TCP messages got through them), so it need not run out its time.
	wait_for 10 test -e flooded
	kill $flood 2>/dev/null || true  # (ended already, on a slow machine: its 3 s are over)
	wait $flood || true
	stats "$got_pid" got.err >/dev/null
	grep -q "more rejections not shown" got.err
	# Still alive and well.
	kill -0 $got_pid
}

@test "an unreachable peer costs one line; the others still get the message" {
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0
	dead=$(freeport)
	run --separate-stderr gossip-send -d a -t "tcp://127.0.0.1:$dead" -t "$(sed -n 2p got.addrs)" -t "$(sed -n 1p got.addrs)" set k v
	assert_failure 1
	assert_error gossip-send "tcp://127.0.0.1:$dead: cannot connect to tcp://127.0.0.1:$dead: Connection refused"
	wait_msgs got 1
	# The copy on the other socket arrives, is counted as a duplicate, and is not printed.
	wait_for 5 eval '[[ "$(stats "$got_pid" got.err)" == *"accepted 1, duplicates 1;"* ]]'
	[ "$(cbor_count got)" = 1 ]
}

@test "encryption: the right key opens, a wrong key and plaintext are dropped and counted" {
	gossip-keygen -c >key1
	gossip-keygen -c >key2
	for n in a b; do
		cp key1 $n/keyring
		chmod 600 $n/keyring
	done
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set sealed udp
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set sealed tcp
	wait_msgs got 2
	mknode w
	trust b w
	cp key2 w/keyring
	chmod 600 w/keyring
	hup "$got_pid" got.err gossip-listen   # b now trusts w too
	gossip-send -d w -t "$(sed -n 1p got.addrs)" set wrongkey 1
	mknode p
	trust b p
	hup "$got_pid" got.err gossip-listen
	gossip-send -d p -t "$(sed -n 1p got.addrs)" set plaintext 1
	# Both datagrams reach the listener, and are counted when it drops them.
	wait_for 5 eval '[[ "$(stats "$got_pid" got.err)" == *"1 not sealed, 1 wrong key"* ]]'
	grep -q "accepted 2, .* 1 not sealed, 1 wrong key" got.err
	[ "$(cbor_count got)" = 2 ]
	# On the wire nothing is in the clear: the message holds the value, the datagram that
	# carries it does not.
	gossip-send -d a set secret-key secret-value >plain
	grep -q secret-value plain
	$PY - <<'PY' &
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); s.settimeout(10)
open("wire.port.tmp", "w").write(str(s.getsockname()[1]))
__import__("os").rename("wire.port.tmp", "wire.port")
open("wire", "wb").write(s.recv(65536))
PY
	catcher=$!
	BG="$BG $catcher"
	wait_for 5 test -s wire.port
	gossip-send -d a -t "udp://127.0.0.1:$(cat wire.port)" set secret-key secret-value
	wait "$catcher"
	[ -s wire ]
	! grep -q secret-value wire || fail "the value crossed the wire in the clear"
}

@test "a keyring open to others is refused" {
	gossip-keygen -c >b/keyring
	chmod 644 b/keyring
	run --separate-stderr gossip-listen -d b udp://127.0.0.1:0
	assert_failure 2
	assert_error gossip-listen "keyring: b/keyring is open to group or others (mode 0644): run chmod 600"
}

@test "three nodes rotate the cluster key with no message lost" {
	gossip-keygen -c >old
	gossip-keygen -c >new
	mknode c
	for n in a b c; do : >$n/trusted; for m in a b c; do trust $n $m; done; done
	for n in a b c; do cp old $n/keyring; chmod 600 $n/keyring; listen $n got$n udp://127.0.0.1:0; done
	sent=0
	round() {  # every node sends one message to every other; all must arrive
		for n in a b c; do for m in a b c; do
			[ $n = $m ] && continue
			gossip-send -d $n -t "$(cat got$m.addrs)" set "r$1-$n-$m" x
		done; done
		sent=$((sent + 2))
		for m in a b c; do wait_msgs "got$m" "$sent"; done
	}
	hup_all() { for n in a b c; do eval "hup \$got${n}_pid got$n.err gossip-listen"; done; }
	round 0
	for n in a b c; do cat new >>$n/keyring; done; hup_all  # 1. add the new key everywhere
	round 1
	for n in a b c; do cat new old >$n/keyring; hup_all; round "2$n"; done   # 2. make it first, node by node
	for n in a b c; do cp new $n/keyring; done; hup_all      # 3. remove the old key
	round 3
	for m in a b c; do
		! grep -q "wrong key\|not sealed" "got$m.err" || fail "$(cat got$m.err)"
	done
}

@test "gossip-listen: usage errors and bad addresses" {
	run --separate-stderr gossip-listen -d b
	assert_failure 2
	run --separate-stderr gossip-listen -d b http://127.0.0.1:80
	assert_failure 2
	assert_error gossip-listen "want udp://HOST:PORT, tcp://HOST:PORT or unix:/PATH"
	run --separate-stderr gossip-listen -d b udp://127.0.0.1
	assert_failure 2
	run gossip-listen --help
	assert_success
}

@test "one signature check per unique message: listen checks, merge --verified does not again" {
	listen b got udp://127.0.0.1:0
	gossip-send -d a set k v >good
	cp good forged
	flipbit forged -2
	# Fed from a file, merge checks signatures; told the input is verified, it does not.
	run --separate-stderr gossip-merge -d b forged
	assert_failure 1
	assert_error gossip-merge "bad signature"
	mknode n
	trust n a
	run gossip-merge --verified -d n forged
	assert_success
	# So the node pipeline is safe only behind gossip-listen, which refuses the forgery.
	gossip-send -d a "$(cat got.addrs)" <forged || true
	gossip-send -d a "$(cat got.addrs)" <good
	wait_msgs got 1
	gossip-merge --verified -d b got >/dev/null
	[ "$(gossip-merge -d b get k)" = v ]
	# --verified still checks trust.
	mknode c
	run --separate-stderr sh -c "gossip-send -d c set x 1 | gossip-merge --verified -d b"
	assert_failure 1
	assert_error gossip-merge "untrusted signer"
	run --separate-stderr gossip-merge --verified -d b keys
	assert_failure 2
}

@test "-s: syncs and messages share one TCP port; the sync goes to the command, unread" {
	gossip-send -d b set on-b 1 | gossip-merge -d b >/dev/null
	gossip-send -d a set on-a 1 | gossip-merge -d a >/dev/null
	cat b.pub >>a/trusted
	listen b got -s "exec gossip-merge -d '$T/b' serve" udp://127.0.0.1:0 tcp://127.0.0.1:0
	tcp=$(sed -n 2p got.addrs)
	run gossip-merge -d a sync "$tcp"
	assert_success
	[ "$(gossip-merge -d b get on-a)" = 1 ]
	[ "$(gossip-merge -d a get on-b)" = 1 ]
	# Streams of messages on the same port still go to standard output, and datagrams.
	gossip-send -d a -t "$tcp" set streamed yes
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set datagram yes
	wait_msgs got 2
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort | tr '\n' ' ')" = "datagram streamed " ]
	# Half a sync request that never completes is, after a second, an ordinary bad stream.
	printf '\x85\x6bgoss' | socat -t 3 - "TCP:${tcp#tcp://}"
	wait_for 5 grep -q "offset 0" got.err
	# The listener is still serving.
	gossip-send -d a set later 1 | gossip-merge -d a >/dev/null
	run gossip-merge -d a sync "$tcp"
	assert_success
	[ "$(gossip-merge -d b get later)" = 1 ]
}

@test "-s in inetd mode: a sync on stdin becomes the command, messages are merged" {
	port=$(freeport)
	gossip-send -d a set on-a 1 | gossip-merge -d a >/dev/null
	cat b.pub >>a/trusted
	tcpserver -q 127.0.0.1 "$port" sh -c "gossip-listen -d $T/b -s 'exec gossip-merge -d $T/b serve' - 2>>$T/got.err | gossip-merge --verified -d $T/b >/dev/null" & BG=$!
	wait_for 5 tcp_open "$port"
	run gossip-merge -d a sync "tcp://127.0.0.1:$port"
	assert_success
	[ "$(gossip-merge -d b get on-a)" = 1 ]
	gossip-send -d a -t "tcp://127.0.0.1:$port" set streamed yes
	wait_for 5 quiet gossip-merge -d b get streamed
	[ "$(gossip-merge -d b get streamed)" = yes ]
	# Half a sync request, then silence: after a second an ordinary bad stream, not a
	# process spinning on it.
	printf '\x85\x6bgoss' | socat -t 3 - "TCP:127.0.0.1:$port"
	wait_for 5 grep -q "offset 0" got.err
	gone() { ! pgrep -f "^gossip-listen -d $T/b -s" >/dev/null; }
	wait_for 2 gone
	run pgrep -f "^gossip-listen -d $T/b -s"
	assert_failure
}

# busy_case KIND ADDRESS TEXT: a second gossip-listen on ADDRESS (held by the first, on
# got) is one error line holding TEXT, exit 2, no -a file, no "listening" line; the
# first one still receives.
busy_case() {
	local addr=$2 text=$3
	run --separate-stderr timeout 10 gossip-listen -d b -a second.addrs "$addr"
	assert_failure 2
	assert_error gossip-listen "$text"
	[ ! -e second.addrs ] || fail "the -a file was written: $(cat second.addrs)"
	[[ $stderr != *"listening on"* ]] || fail "it said it listens: $stderr"
	gossip-send -d a -t "$addr" set "after-$1" x
	wait_msgs got 1
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = "after-$1" ]
}

@test "exclusive ports: a UDP port in use is one error, exit 2; the first listener still receives" {
	listen b got udp://127.0.0.1:0
	busy_case udp "$(cat got.addrs)" "$(cat got.addrs): cannot listen: Address already in use: another process"
}

@test "exclusive ports: a TCP port in use is one error, exit 2; the first listener still receives" {
	listen b got tcp://127.0.0.1:0
	busy_case tcp "$(cat got.addrs)" "$(cat got.addrs): cannot listen: Address already in use: another process"
}

@test "exclusive ports: a live unix socket is one error, exit 2, and stays; the first listener still receives" {
	listen b got "unix:$T/sock"
	busy_case unix "unix:$T/sock" "unix:$T/sock: in use: a process accepts connections on this socket"
	[ -S sock ]
}

@test "exclusive ports: one busy address of several: nothing is announced, no socket kept" {
	listen b got udp://127.0.0.1:0
	run --separate-stderr gossip-listen -d b -a second.addrs tcp://127.0.0.1:0 "$(cat got.addrs)"
	assert_failure 2
	assert_error gossip-listen "Address already in use"
	[ ! -e second.addrs ]
}

@test "exclusive ports: a stale unix socket file (nobody accepts) is removed and reused" {
	$PY -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/sock"
	[ -S sock ]
	listen b got "unix:$T/sock"
	gossip-send -d a -t "unix:$T/sock" set stale reused
	wait_msgs got 1
	# A file that is not a socket is not removed.
	echo keep >plainfile
	run --separate-stderr gossip-listen -d b "unix:$T/plainfile"
	assert_failure 2
	assert_error gossip-listen "cannot listen: Address already in use"
	[ "$(cat plainfile)" = keep ]
}

@test "a datagram sealed with a key this node does not hold says so, with or without a keyring" {
	gossip-keygen -c >a/keyring
	chmod 600 a/keyring
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set k udp
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set k tcp
	want="sealed with a cluster key this node does not hold (see gossip-keyring(5))"
	wait_for 5 eval '[ "$(count_lines "offset 0: $want" got.err)" = 2 ]'
	gossip-keygen -c >b/keyring
	chmod 600 b/keyring
	hup "$got_pid" got.err gossip-listen
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set k udp
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set k tcp
	wait_for 5 eval '[ "$(count_lines "offset 0: $want" got.err)" = 4 ]'
	run ! grep -q "COSE_Sign1" got.err
	[[ "$(stats "$got_pid" got.err)" == *"0 malformed, "*", 4 wrong key,"* ]] || fail "$(cat got.err)"
	[ "$(cbor_count got)" = 0 ]
}

@test "an idle gossip-listen reloads on SIGHUP at once; the next datagram meets the new trusted" {
	listen b got udp://127.0.0.1:0
	mknode c
	gossip-send -d c -t "$(cat got.addrs)" set k1 refused
	wait_for 5 grep -q "untrusted signer" got.err
	trust b c
	hup "$got_pid" got.err gossip-listen
	grep -q "^gossip-listen: reloaded: 3 trusted signers, 0 cluster keys$" got.err
	gossip-send -d c -t "$(cat got.addrs)" set k2 taken
	wait_msgs got 1
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = k2 ]
	# A bad file keeps the old one, with a warning.
	echo "not a key line" >>b/trusted
	kill -HUP "$got_pid"
	wait_for 5 grep -q "reload: trusted: .*keeping the old one" got.err
	gossip-send -d c -t "$(cat got.addrs)" set k3 still
	wait_msgs got 2
}

@test "the sync command gossip-listen spawns runs with SIGHUP ignored, SIGPIPE and SIGXFSZ at their defaults" {
	# The command ends when the connection does (at teardown), not at a timer.
	listen b got -s 'grep SigIgn /proc/self/status >'"$T"'/sigign; exec cat >/dev/null' tcp://127.0.0.1:0
	$PY - "$(cat got.addrs)" <<'PY' &
import socket, sys, time
host, port = sys.argv[1][6:].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
# A sync request: an array of five whose first element is "gossip-sync".
s.sendall(bytes([0x85, 0x6b]) + b"gossip-sync" + bytes([1, 2, 3, 4]))
time.sleep(30)  # until teardown
PY
	BG="$BG $!"
	wait_for 5 test -s sigign
	# SigIgn is a hex mask; SIGHUP is signal 1, the lowest bit.
	mask=$(awk '{print $2}' sigign)
	(( 0x$mask & 1 )) || fail "SIGHUP is not ignored in the sync command: $mask"
	# SIGPIPE is 13 (bit 12), SIGXFSZ 25 (bit 24): the programs ignore them, not the command.
	(( (0x$mask >> 12 & 1) == 0 )) || fail "SIGPIPE is ignored in the sync command: $mask"
	(( (0x$mask >> 24 & 1) == 0 )) || fail "SIGXFSZ is ignored in the sync command: $mask"
}

# ---- attacks on exclusive ports and the unix socket path ----

@test "exclusive ports: 0.0.0.0 and 127.0.0.1 of one port exclude each other both ways (UDP, TCP), [::1] too; the first still receives" {
	port=$(freeport)
	for kind in udp tcp; do
		for pair in "0.0.0.0 127.0.0.1" "127.0.0.1 0.0.0.0" "127.0.0.1 127.0.0.1"; do
			set -- $pair
			BG=
			listen b got "$kind://$1:$port"
			run --separate-stderr timeout 10 gossip-listen -d b -a second.addrs "$kind://$2:$port"
			assert_failure 2
			assert_error gossip-listen "$kind://$2:$port: cannot listen: Address already in use: another process"
			[ ! -e second.addrs ]
			gossip-send -d a -t "$kind://127.0.0.1:$port" set "$kind-$1-$2" x
			wait_msgs got 1
			kill $BG
			wait $BG || true
		done
	done
	BG=
	listen b got "udp://[::1]:$port"
	run --separate-stderr timeout 10 gossip-listen -d b "udp://[::1]:$port"
	assert_failure 2
	assert_error gossip-listen "udp://[::1]:$port: cannot listen: Address already in use: another process"
	gossip-send -d a -t "udp://[::1]:$port" set v6 x
	wait_msgs got 1
}

@test "exclusive ports: IPv4 and IPv6 (IPV6_V6ONLY) are separate port spaces: a listener on [::1] takes nothing sent to 127.0.0.1" {
	port=$(freeport)
	listen b got4 "udp://127.0.0.1:$port"
	listen b got6 "udp://[::1]:$port"
	gossip-send -d a -t "udp://127.0.0.1:$port" set to v4
	gossip-send -d a -t "udp://[::1]:$port" set to v6
	wait_msgs got4 1
	wait_msgs got6 1
	[ "$(gossip-inspect -d b -j got4 | jq -r .value)" = v4 ]
	[ "$(gossip-inspect -d b -j got6 | jq -r .value)" = v6 ]
}

@test "unix socket path: a symlink (to a stale socket or a live one), a directory, a file: refused, one line, nothing removed" {
	$PY -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/stale"
	listen b got "unix:$T/live"
	ln -s "$T/stale" to-stale
	ln -s "$T/live" to-live
	mkdir adir
	echo keep >afile
	for p in to-stale to-live adir afile; do
		before=$(stat -c '%n %F %i' stale live to-stale to-live adir afile)
		run --separate-stderr gossip-listen -d b -a second.addrs "unix:$T/$p"
		assert_failure 2
		assert_error gossip-listen "unix:$T/$p: cannot listen: Address already in use: the path is taken by something that is not a stale socket"
		[ ! -e second.addrs ]
		[ "$(stat -c '%n %F %i' stale live to-stale to-live adir afile)" = "$before" ] ||
			fail "$p: something changed"
	done
	[ -S stale ] && [ -S live ] && [ -L to-stale ] && [ -L to-live ] && [ -d adir ]
	[ "$(cat afile)" = keep ]
	gossip-send -d a -t "unix:$T/live" set still live
	wait_msgs got 1
}

@test "unix socket path: what is swapped in while the stale socket is probed is not removed" {
	# The race won for the attacker: right after gossip-listen finds the socket stale,
	# a file is renamed over the path (a shim around connect does it, every time).
	cat >shim.c <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
int connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	int (*real)(int, const struct sockaddr *, socklen_t) =
		(int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "connect");
	int r = real(fd, sa, len), e = errno;
	const char *swap = getenv("SWAP_IN");
	if (sa->sa_family == AF_UNIX && swap)
		rename(swap, ((const struct sockaddr_un *)sa)->sun_path);
	errno = e;
	return r;
}
C
	${CC:-cc} -shared -fPIC -o shim.so shim.c -ldl || fail "cannot build the shim"
	$PY -c 'import socket, sys; s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/sock"
	echo precious >victim
	# (Under the sanitizers the shim is preloaded before their runtime: allowed here.)
	run --separate-stderr timeout 10 env SWAP_IN="$T/victim" LD_PRELOAD="$T/shim.so" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" gossip-listen -d b "unix:$T/sock"
	assert_failure 2
	assert_error gossip-listen "unix:$T/sock: cannot listen: Address already in use"
	[ "$(cat sock)" = precious ] || fail "the file swapped in was removed"
}
