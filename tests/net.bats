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
	gossip-listen -d "$node" -a "$out.addrs" "$@" >"$out" 2>"$out.err" &
	BG="$BG $!"
	eval "${out//[^a-zA-Z0-9]/_}_pid=$!"
	for _ in $(seq 1 200); do [ -s "$out.addrs" ] && return 0; sleep 0.05; done
	fail "gossip-listen did not start: $(cat "$out.err")"
}

# The number of whole messages in FILE.
count() {
	$PY - "$1" <<'PY'
import cbor2, io, sys
data = open(sys.argv[1], "rb").read()
f = io.BytesIO(data); dec = cbor2.CBORDecoder(f); n = 0
while f.tell() < len(data):
    try:
        dec.decode(); n += 1
    except Exception:
        break
print(n)
PY
}

# wait_for FILE N: until FILE holds N whole messages (10 s at most).
wait_for() {
	for _ in $(seq 1 200); do [ "$(count "$1")" -ge "$2" ] && return 0; sleep 0.05; done
	fail "$1 holds $(count "$1") messages, want $2"
}

@test "UDP, TCP and unix socket round trips; port 0 says which port" {
	listen b got udp://127.0.0.1:0 tcp://127.0.0.1:0 "unix:$T/sock"
	grep -q '^udp://127.0.0.1:[1-9][0-9]*$' got.addrs
	grep -q "^gossip-listen: listening on $(sed -n 2p got.addrs)\$" got.err
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set k1 v1
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set k2 v2
	gossip-send -d a -t "unix:$T/sock" set k3 v3
	wait_for got 3
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort | tr '\n' ' ')" = "k1 k2 k3 " ]
}

@test "IPv6 loopback" {
	listen b got "udp://[::1]:0" "tcp://[::1]:0"
	grep -q '^udp://\[::1\]:[0-9]*$' got.addrs
	gossip-send -d a -t "$(sed -n 1p got.addrs)" set v6 udp
	gossip-send -d a -t "$(sed -n 2p got.addrs)" set v6 tcp
	wait_for got 2
}

@test "inetd mode: one connection on stdin under tcpserver, the peer named in the log" {
	port=$(freeport)
	tcpserver -q 127.0.0.1 "$port" sh -c "gossip-listen -d $T/b - >>$T/got 2>>$T/got.err" & BG=$!
	for _ in $(seq 1 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.05; done
	gossip-send -d a -t "tcp://127.0.0.1:$port" set via tcpserver
	mknode c
	gossip-send -d c -t "tcp://127.0.0.1:$port" set stranger 1 || true
	wait_for got 1
	for _ in $(seq 1 100); do grep -q untrusted got.err 2>/dev/null && break; sleep 0.05; done
	grep -q "^gossip-listen: 127.0.0.1:[0-9]*: offset 0: untrusted signer" got.err
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = via ]
}

@test "inetd mode under socat, with systemd's variables absent" {
	port=$(freeport)
	socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork SYSTEM:"gossip-listen -d $T/b - >>$T/got" & BG=$!
	for _ in $(seq 1 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.05; done
	printf 'set x 1\nset y 2\n' | gossip-send -d a -t "tcp://127.0.0.1:$port" batch
	wait_for got 2
}

@test "10000 messages over TCP arrive complete and in order" {
	listen b got tcp://127.0.0.1:0
	seq 1 10000 | sed 's/.*/set k& &/' | gossip-send -d a batch >msgs
	gossip-send -d a "$(cat got.addrs)" <msgs
	wait_for got 10000
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
	wait_for got 51
	kill -USR1 $got_pid
	for _ in $(seq 1 100); do grep -q "received" got.err && break; sleep 0.05; done
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
	total=0
	for n in 1 2 3 4 5; do c=$(count "got$n"); total=$((total + c)); done
	for _ in $(seq 1 100); do
		total=0; for n in 1 2 3 4 5; do total=$((total + $(count "got$n"))); done
		[ "$total" -ge 120 ] && break; sleep 0.05
	done
	[ "$total" = 120 ]
	# Every message reached exactly two peers.
	for n in 1 2 3 4 5; do gossip-inspect -d b -j "got$n"; done | jq -r .key | sort | uniq -c |
		awk '$1 != 2 { bad = 1 } END { exit bad }'
	# And the peers each got some: random, not always the same two.
	for n in 1 2 3 4 5; do [ "$(count "got$n")" -gt 0 ]; done
}

@test "untrusted signers and bad signatures are dropped and counted" {
	listen b got udp://127.0.0.1:0
	mknode c
	gossip-send -d c -t "$(cat got.addrs)" set evil 1
	gossip-send -d a set k v >m
	flipbit m -2
	gossip-send -d a "$(cat got.addrs)" <m || true
	gossip-send -d a -t "$(cat got.addrs)" set good 1
	wait_for got 1
	kill -USR1 $got_pid
	for _ in $(seq 1 100); do grep -q "received" got.err && break; sleep 0.05; done
	grep -q "accepted 1, duplicates 0; rejected: 0 malformed, 1 bad signature, 1 untrusted" got.err
	[ "$(gossip-inspect -d b -j got | jq -r .key)" = good ]
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
i = 0
while time.time() < end:
    i += 1
    size = 65000 if i % 100 == 0 else 1 + os.urandom(1)[0] * 4  # now and then an oversize one
    s.sendto(os.urandom(size), (uh, int(up)))
time.sleep(3)
PY
	flood=$!
	BG="$BG $flood"
	sleep 0.2
	for i in $(seq 1 20); do
		gossip-send -d a -t "$u" set udp$i $i
		gossip-send -d a -t "$t" set tcp$i $i
	done
	# Every TCP message arrives; UDP is lossy by nature under a flood, but passes.
	for _ in $(seq 1 200); do [ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^tcp)" = 20 ] && break; sleep 0.05; done
	[ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^tcp)" = 20 ]
	[ "$(gossip-inspect -d b -j got | jq -r .key | grep -c ^udp)" -ge 15 ]
	wait $flood || true
	kill -USR1 $got_pid
	for _ in $(seq 1 100); do grep -q "received" got.err && break; sleep 0.05; done
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
	wait_for got 1
	sleep 0.2
	[ "$(count got)" = 1 ]  # a duplicate arrived on the other socket and was not printed
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
	wait_for got 2
	mknode w
	trust b w
	cp key2 w/keyring
	chmod 600 w/keyring
	kill -HUP $got_pid   # b now trusts w too
	sleep 0.2
	gossip-send -d w -t "$(sed -n 1p got.addrs)" set wrongkey 1
	mknode p
	trust b p
	kill -HUP $got_pid
	sleep 0.2
	gossip-send -d p -t "$(sed -n 1p got.addrs)" set plaintext 1
	sleep 0.3
	kill -USR1 $got_pid
	for _ in $(seq 1 100); do grep -q "received" got.err && break; sleep 0.05; done
	grep -q "accepted 2, .* 1 not sealed, 1 wrong key" got.err
	[ "$(count got)" = 2 ]
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
	for _ in $(seq 1 100); do [ -s wire.port ] && break; sleep 0.05; done
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
		for m in a b c; do wait_for "got$m" "$sent"; done
	}
	hup() { for n in a b c; do eval "kill -HUP \$got${n}_pid"; done; sleep 0.3; }
	round 0
	for n in a b c; do cat new >>$n/keyring; done; hup      # 1. add the new key everywhere
	round 1
	for n in a b c; do cat new old >$n/keyring; hup; round "2$n"; done   # 2. make it first, node by node
	for n in a b c; do cp new $n/keyring; done; hup          # 3. remove the old key
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
	wait_for got 1
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
	wait_for got 2
	[ "$(gossip-inspect -d b -j got | jq -r .key | sort | tr '\n' ' ')" = "datagram streamed " ]
	# Half a sync request that never completes is, after a second, an ordinary bad stream.
	printf '\x85\x6bgoss' | socat -t 3 - "TCP:${tcp#tcp://}"
	for _ in $(seq 1 60); do grep -q "stream ended inside an item\|offset 0" got.err && break; sleep 0.05; done
	grep -q "offset 0" got.err
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
	for _ in $(seq 1 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break; sleep 0.05; done
	run gossip-merge -d a sync "tcp://127.0.0.1:$port"
	assert_success
	[ "$(gossip-merge -d b get on-a)" = 1 ]
	gossip-send -d a -t "tcp://127.0.0.1:$port" set streamed yes
	for _ in $(seq 1 100); do gossip-merge -d b get streamed >/dev/null 2>&1 && break; sleep 0.05; done
	[ "$(gossip-merge -d b get streamed)" = yes ]
	# Half a sync request, then silence: after a second an ordinary bad stream, not a
	# process spinning on it.
	printf '\x85\x6bgoss' | socat -t 3 - "TCP:127.0.0.1:$port"
	for _ in $(seq 1 60); do grep -q "offset 0" got.err 2>/dev/null && break; sleep 0.05; done
	grep -q "offset 0" got.err
	for _ in $(seq 1 40); do pgrep -f "^gossip-listen -d $T/b -s" >/dev/null || break; sleep 0.05; done
	run pgrep -f "^gossip-listen -d $T/b -s"
	assert_failure
}
