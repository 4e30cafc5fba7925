#!/usr/bin/env bats
# Anti-entropy: gossip-merge sync and serve, in each mode, through a command, TCP and a
# unix socket; equal stores in one small exchange; bad, stopping and stalling peers.
load helper

SEED=0404040404040404040404040404040404040404040404040404040404040404
I="$BATS_TEST_DIRNAME/interop.py"
P="$BATS_TEST_DIRNAME/syncpeer.py"

setup() {
	base_setup
	mknode a
	mknode b
	for n in a b; do trust $n a; trust $n b; done
	$PY "$I" pub $SEED py >>a/trusted
}

teardown() {
	[ -z "${BG:-}" ] || kill $BG 2>/dev/null || true
}

digest() { gossip-merge -d "$1" digest; }

# Random divergent stores: a shared history, then each side's own writes, overwrites
# and deletes, in random order.
diverge() {
	seq 1 300 | sed 's/.*/set shared& v&/' | gossip-send -d a batch >shared
	gossip-merge -d a shared >/dev/null
	gossip-merge -d b shared >/dev/null
	for n in a b; do
		for i in $(seq 1 200); do
			case $((RANDOM % 4)) in
			0) echo "set shared$((RANDOM % 300 + 1)) $n-$i" ;;
			1) echo "del shared$((RANDOM % 300 + 1))" ;;
			2) echo "event ev$n$i" ;;
			*) echo "set own$n$i $i" ;;
			esac
		done | gossip-send -d $n batch | gossip-merge -d $n >/dev/null
	done
	# The expected union, merged into a third store.
	mkdir u
	cp a/trusted u/
	gossip-merge -d a export | gossip-merge -d u >/dev/null
	gossip-merge -d b export | gossip-merge -d u >/dev/null
}

@test "a command peer runs with the signals as a new process has them: none ignored (SIGPIPE and SIGXFSZ, which the programs ignore; SIGINT, a shell's background job's), none blocked" {
	# gossip-merge started as a non-interactive shell's background job is (SIGINT and
	# SIGQUIT ignored), and by a parent that left signals blocked (exec keeps both).
	run --separate-stderr "$PY" -c '
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGUSR1})
os.execvp(sys.argv[1], sys.argv[1:])' gossip-merge -d a sync "grep -E '^Sig(Ign|Blk):' /proc/self/status >'$T/sigign'; exec gossip-merge -d '$T/b' serve"
	assert_success
	mask=$(awk '$1 == "SigIgn:" {print $2}' sigign)
	[ -n "$mask" ] || fail "no mask"
	(( (0x$mask >> 12 & 1) == 0 )) || fail "SIGPIPE (bit 12) is ignored in the command: $mask"
	(( (0x$mask >> 24 & 1) == 0 )) || fail "SIGXFSZ (bit 24) is ignored in the command: $mask"
	(( (0x$mask >> 1 & 1) == 0 )) || fail "SIGINT (bit 1) is ignored in the command: $mask"
	blocked=$(awk '$1 == "SigBlk:" {print $2}' sigign)
	(( 0x$blocked == 0 )) || fail "signals blocked in the command: $blocked"
}

@test "push-pull: both stores end with the union" {
	diverge
	[ "$(digest a)" != "$(digest b)" ]
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[[ $stderr == *"stores differed; sent "* ]]
	[ "$(digest a)" = "$(digest u)" ]
	[ "$(digest b)" = "$(digest u)" ]
}

# moved SYNC_STDERR: "sent N messages ... received M messages" of a sync's -v line.
moved() { sed -n 's/.*; sent \([0-9]*\) messages, [0-9]* bytes; received \([0-9]*\) messages.*/\1 \2/p' <<<"$1"; }

@test "a client in another hour of the ids (GOSSIP_SYNC_HOUR_MS) is served: the server makes that hour's table; the same messages move as in one hour" {
	diverge
	for n in a b; do cp -r $n $n.1 && cp -r $n $n.2; done
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	same=$(moved "$stderr")
	[ -n "$same" ] && [ "${same% *}" -gt 0 ] && [ "${same#* }" -gt 0 ] || fail "$stderr"
	# The client's hour is a second long: its hour number is not the server's. Had the
	# server keyed its ids by its own hour, every message would differ and move.
	run --separate-stderr env GOSSIP_SYNC_HOUR_MS=1000 gossip-merge -v -d a.1 sync "gossip-merge -d $T/b.1 serve"
	assert_success
	[ "$(moved "$stderr")" = "$same" ] || fail "$stderr (in one hour: $same)"
	[ "$(digest a.1)" = "$(digest u)" ] && [ "$(digest b.1)" = "$(digest u)" ]
	# And the other way round: a server in short hours, a client in the hour.
	run --separate-stderr gossip-merge -v -d a.2 sync "env GOSSIP_SYNC_HOUR_MS=1000 gossip-merge -d $T/b.2 serve"
	assert_success
	[ "$(moved "$stderr")" = "$same" ] || fail "$stderr (in one hour: $same)"
	[ "$(digest a.2)" = "$(digest u)" ] && [ "$(digest b.2)" = "$(digest u)" ]
}

@test "push moves state to the peer only; pull to us only" {
	diverge
	cp -r a a0
	cp -r b b0
	gossip-merge -d a --push sync "gossip-merge -d $T/b serve" >/dev/null
	[ "$(digest a)" = "$(digest a0)" ]
	[ "$(digest b)" = "$(digest u)" ]
	rm -rf a b
	mv a0 a
	mv b0 b
	gossip-merge -d a --pull sync "gossip-merge -d $T/b serve" >/dev/null
	[ "$(digest a)" = "$(digest u)" ]
	run gossip-merge -d b digest
	[ "$output" != "$(digest u)" ]
}

@test "sync prints the messages that were new here, ready to forward" {
	gossip-send -d b set from-b 1 | gossip-merge -d b >/dev/null
	gossip-merge -d a sync "gossip-merge -d $T/b serve" >new
	[ "$(gossip-inspect -d a -j new | jq -r .key)" = from-b ]
}

@test "equal stores agree in two round trips of under 500 bytes (handshake included), whatever their size" {
	# One message each, then 2000: the bytes do not grow with the store. The handshake
	# (keys, identities, signatures) is about 380 of them; the summary and its answer
	# under 90, as before authentication.
	gossip-send -d a set k0 0 >m
	for size in 1 2000; do
		[ "$size" = 1 ] || seq 1 2000 | sed 's/.*/set k& &/' | gossip-send -d a batch >m
		gossip-merge -d a m >/dev/null
		gossip-merge -d b m >/dev/null
		run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
		assert_success
		# (Each merge kept its summary, so the stores are found equal by it.)
		[[ $stderr =~ stores\ equal(\ \([^\)]*\))?\;\ sent\ 0\ messages,\ ([0-9]+)\ bytes\;\ received\ 0\ messages,\ ([0-9]+)\ bytes ]]
		total[$size]=$((BASH_REMATCH[2] + BASH_REMATCH[3]))
		[ "${total[$size]}" -lt 500 ] || fail "$stderr"
	done
	[ $((total[2000] - total[1])) -le 4 ] || fail "1 message: ${total[1]} bytes, 2000: ${total[2000]}"
}

@test "when a few messages differ, the bytes grow with them, not with the store" {
	seq 1 5000 | sed 's/.*/set k& &/' | gossip-send -d a batch >m
	gossip-merge -d a m >/dev/null
	gossip-merge -d b m >/dev/null
	gossip-send -d a set extra 1 | gossip-merge -d a >/dev/null
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[[ $stderr =~ sent\ 1\ messages,\ ([0-9]+)\ bytes\;\ received\ 0\ messages,\ ([0-9]+)\ bytes ]]
	total=$((BASH_REMATCH[1] + BASH_REMATCH[2]))
	# The handshake and summary (under 500), a table of 24 cells (288), one id, the message.
	[ "$total" -lt 1500 ] || fail "one message cost $total bytes: $stderr"
	[ "$(gossip-merge -d b get extra)" = 1 ]
}

@test "stores of one size that differ everywhere, and newer versions of the same keys, reconcile (larger tables asked for)" {
	# Equal counts: the first table is the smallest, and does not decode 600 differences;
	# the next sizes are asked for until one does.
	seq 1 300 | sed 's/.*/set a& &/' | gossip-send -d a batch | gossip-merge -d a >/dev/null
	seq 1 300 | sed 's/.*/set b& &/' | gossip-send -d b batch | gossip-merge -d b >/dev/null
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[[ $stderr == *"sent 300 messages"*"received 300 messages"* ]] || fail "$stderr"
	[ "$(digest a)" = "$(digest b)" ]
	[ "$(gossip-merge -d a get b77)" = 77 ]
	[ "$(gossip-merge -d b get a77)" = 77 ]
	# b writes new versions of 50 keys: 100 ids differ, the count not at all.
	for i in $(seq 1 50); do echo "set a$i new$i"; done | gossip-send -d b batch | gossip-merge -d b >/dev/null
	run --separate-stderr gossip-merge -v -d a sync "gossip-merge -d $T/b serve"
	assert_success
	[ "$(digest a)" = "$(digest b)" ]
	[ "$(gossip-merge -d a get a7)" = new7 ]
}

@test "a store of 100000 messages syncs to an empty one: the whole table does not decode, its sixteen parts do" {
	# Signed here: the sync checks every signature, the store's making need not.
	seq 1 100000 | sed 's/.*/set k& &/' | gossip-send -d b batch | gossip-merge --verified -d b >/dev/null
	run --separate-stderr gossip-merge -v -d a -t 300 --pull sync "gossip-merge -d $T/b -t 300 serve"
	assert_success
	[[ $stderr == *"received 100000 messages"* ]] || fail "$stderr"
	[ "$(digest a)" = "$(digest b)" ]
	[ "$(gossip-merge -d a get k99999)" = 99999 ]
}

@test "a pull wants at most GOSSIP_SYNC_WANT_MAX ids a sync; the next sync wants the rest" {
	for i in $(seq 1 7); do echo "set k$i v$i"; done | gossip-send -d b batch | gossip-merge -d b >/dev/null
	got= left=
	for round in 1 2 3 4; do
		run --separate-stderr env GOSSIP_SYNC_WANT_MAX=3 gossip-merge -v -d a --pull sync "gossip-merge -d $T/b serve"
		assert_success
		got="$got $(echo "$stderr" | sed -n 's/.*received \([0-9]*\) messages.*/\1/p')"
		left="$left $(echo "$stderr" | sed -n 's/.*: \([0-9]*\) more messages to pull than one sync wants: sync again$/\1/p')"
	done
	[ "$got" = " 3 3 1 0" ] || fail "received after each sync:$got"
	[ "$left" = " 4 1  " ] || fail "said left after each sync:$left"
	[ "$(digest a)" = "$(digest b)" ]
}

@test "sync over TCP (inetd-style serve under socat) and a unix socket" {
	gossip-send -d b set over tcp | gossip-merge -d b >/dev/null
	port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	socat TCP-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork EXEC:"gossip-merge -d $T/b serve" & BG=$!
	wait_for 5 tcp_open "$port"
	gossip-merge -d a sync tcp://127.0.0.1:$port >/dev/null
	[ "$(gossip-merge -d a get over)" = tcp ]
	kill $BG; wait $BG 2>/dev/null || true
	socat UNIX-LISTEN:$T/sock,fork EXEC:"gossip-merge -d $T/b serve" & BG=$!
	wait_for 5 test -S sock
	gossip-send -d b set over unix | gossip-merge -d b >/dev/null
	gossip-merge -d a sync unix:$T/sock >/dev/null
	[ "$(gossip-merge -d a get over)" = unix ]
}

@test "a peer that sends garbage: exit 2, the store unchanged" {
	gossip-send -d a set k v | gossip-merge -d a >/dev/null
	before=$(snapshot a)
	# The peer reads what it is sent (through fd 3: sh gives a command in the background
	# /dev/null as its stdin) and answers garbage; without a reader, the request could
	# meet a closed socket first (cannot send: Broken pipe).
	run --separate-stderr gossip-merge -d a sync "exec 3<&0; cat <&3 >/dev/null 3<&- & printf '\\203\\001\\002\\003'"
	assert_failure 2
	assert_error gossip-merge "peer: not the sync protocol"
	[ "$(snapshot a)" = "$before" ]
	# A head that declares more than an item may hold (a string of 1,159,324,849 bytes):
	# refused at once, not when the peer's silence reaches the time limit (30 s).
	t0=$(date +%s)
	run --separate-stderr gossip-merge -d a sync "exec 3<&0; cat <&3 >/dev/null 3<&- & printf '\\132\\105\\031\\334\\261'"
	assert_failure 2
	assert_error gossip-merge "peer: offset 0: item is larger than"
	[ $(($(date +%s) - t0)) -lt 10 ] || fail "refused only after $(($(date +%s) - t0)) s"
	[ "$(snapshot a)" = "$before" ]
	# Random bytes may also be a well-formed start that the peer never finishes (while
	# it keeps its end open): -t bounds that case.
	for i in 1 2 3 4 5; do
		head -c 300 /dev/urandom >rnd
		run --separate-stderr gossip-merge -d a -t 3 sync "exec 3<&0; cat <&3 >/dev/null 3<&- & cat $T/rnd"
		assert_failure 2
		assert_error gossip-merge "peer: "
		[ "$(snapshot a)" = "$before" ]
	done
}

@test "a peer that stalls times out with a clear error" {
	gossip-send -d a set k v | gossip-merge -d a >/dev/null
	before=$(snapshot a)
	# exec: the SIGTERM gossip-merge sends its peer at the timeout reaches sleep itself, not
	# only a shell that would leave it behind, holding the test's output open for 20 s.
	run --separate-stderr gossip-merge -d a -t 1 sync "exec sleep 20"
	assert_failure 2
	assert_error gossip-merge "peer: timed out after 1 s"
	[ "$(snapshot a)" = "$before" ]
}

@test "a peer that stops mid-way: the whole messages it sent are kept" {
	run --separate-stderr gossip-merge -d a sync "$PY $P fakepeer $SEED 5 2"
	assert_failure 2
	assert_error gossip-merge "peer: closed the connection after 2 of 5 messages"
	[ "$(gossip-merge -d a keys | tr '\n' ' ')" = "fake0 fake1 " ]
}

@test "serve refuses a client that is not speaking the protocol, and changes nothing" {
	gossip-send -d b set k v | gossip-merge -d b >/dev/null
	before=$(snapshot b)
	run --separate-stderr sh -c "printf '\\203\\001\\002\\003' | gossip-merge -d b serve"
	assert_failure 2
	assert_error gossip-merge "serve: peer: not the sync protocol"
	[ "$(snapshot b)" = "$before" ]
}

@test "a message the peer sends from an untrusted signer is rejected with a line" {
	mknode c
	trust b c
	gossip-send -d c set sneaky 1 | gossip-merge -d b >/dev/null
	run --separate-stderr sh -c "gossip-merge -d a sync 'gossip-merge -d $T/b serve' >/dev/null"
	assert_failure 1
	assert_error gossip-merge "untrusted signer $(cut -c1-8 c.pub)"
	run gossip-merge -d a get sneaky
	assert_failure 1
}

@test "a peer that trusts more signers than this store: ten refusal lines at each end, then one with the count" {
	mknode c
	mknode d
	trust b c
	trust a d
	seq 1 40 | sed 's/^/set c/; s/$/ v/' | gossip-send -d c batch | gossip-merge -d b >/dev/null
	seq 1 30 | sed 's/^/set d/; s/$/ v/' | gossip-send -d d batch | gossip-merge -d a >/dev/null
	# b offers its 40 messages of c, whom a does not trust; a pushes its 30 of d, whom b
	# does not trust.
	before_a=$(digest a) before_b=$(digest b)
	run --separate-stderr sh -c "gossip-merge -d a sync 'gossip-merge -d $T/b serve 2>$T/serve.err' >/dev/null"
	assert_failure 1
	[ "$(printf '%s\n' "$stderr" | grep -c "peer: offset [0-9]*: untrusted signer $(cut -c1-8 c.pub)")" = 10 ] ||
		fail "$stderr"
	[ "$(printf '%s\n' "$stderr" | wc -l)" = 11 ] || fail "$stderr"
	[ "$(printf '%s\n' "$stderr" | tail -n 1)" = \
		"gossip-merge: peer: 30 more messages refused, not said one by one (the first 10 were, above)" ] || fail "$stderr"
	[ "$(grep -c "peer: offset [0-9]*: untrusted signer $(cut -c1-8 d.pub)" serve.err)" = 10 ] || fail "$(cat serve.err)"
	[ "$(wc -l <serve.err)" = 11 ] || fail "$(cat serve.err)"
	grep -qx "gossip-merge: peer: 20 more messages refused, not said one by one (the first 10 were, above)" serve.err ||
		fail "$(cat serve.err)"
	[ "$(digest a)" = "$before_a" ] || fail "a's store changed"
	[ "$(digest b)" = "$before_b" ] || fail "b's store changed"
	run gossip-merge -d a get c1
	assert_failure 1
	run gossip-merge -d b get d1
	assert_failure 1
}

@test "a second implementation of the session (tests/syncpeer.py, from gossip(7)) pulls, with and without a cluster key" {
	gossip-send -d b set interop yes | gossip-merge -d b >/dev/null
	$PY "$I" pub $SEED py >>b/trusted
	run --separate-stderr socat EXEC:"$PY $P pull $SEED --out $T/pulled" EXEC:"gossip-merge -d $T/b serve"
	[[ $stderr == *'"last": ["done"]'* ]] || fail "$stderr"
	[ "$(gossip-inspect -d b -j pulled | jq -r 'select(.key == "interop") | .value')" = yes ]
	gossip-keygen -c >k
	install -m 600 k b/keyring
	rm pulled
	run --separate-stderr socat EXEC:"$PY $P pull $SEED --keyring $T/k --out $T/pulled" EXEC:"gossip-merge -d $T/b serve"
	[[ $stderr == *'"last": ["done"]'* ]] || fail "$stderr"
	[ "$(gossip-inspect -d b -j pulled | jq -r 'select(.key == "interop") | .value')" = yes ]
}

@test "the fuzz seeds of the session and sync harnesses speak this version (4: tables of hourly ids)" {
	run $PY - "$BATS_TEST_DIRNAME/fuzz/corpus" <<'PY'
import cbor2, glob, io, os, sys
bad, found = [], {"version": 0, "table": 0}
for f in sorted(glob.glob(sys.argv[1] + "/session/*") + glob.glob(sys.argv[1] + "/sync/*")):
    data = open(f, "rb").read()
    s = io.BytesIO(data[1:])  # the first byte picks the library's role
    while s.tell() < len(data) - 1:
        try:
            item = cbor2.load(s)
        except Exception:
            break  # sealed frames follow the handshake
        if isinstance(item, list) and item and item[0] == "gossip-sync":
            found["version"] += 1
            if item[1] != 4:
                bad.append("%s: version %s" % (os.path.basename(f), item[1]))
        if isinstance(item, list) and item and item[0] in ("l1", "l2", "leaves"):
            bad.append("%s: a version 2 item %s" % (os.path.basename(f), item[0]))
        found["table"] += isinstance(item, list) and bool(item) and item[0] == "table"
print(bad, found)
sys.exit(1 if bad or not found["version"] or not found["table"] else 0)
PY
	assert_success
}
