#!/usr/bin/env bats
# gossip-node end to end: ten real nodes on loopback. Rumor reaches every store, kill -9
# is detected by all, a restarted node and a late joiner catch up, forgeries reach no
# store, a graceful stop leaves, and bad usage changes nothing. (Operating one node:
# tests/ops.bats.)
load helper
load node

setup() {
	base_setup
	NODES=
	set -- $(freeports 12)
	PORTS=("$@")
	# Eleven identities (n11 joins late) and a stranger; the members trust each other.
	node_ids 11
	gossip-keygen -d "$T/mallory" -n mallory >/dev/null
}

teardown() {
	[ -z "${HOLDER:-}" ] || kill "$HOLDER" 2>/dev/null || true
	[ -z "${BG:-}" ] || kill $BG 2>/dev/null || true
	[ -z "${KILL9:-}" ] || kill -9 $KILL9 2>/dev/null || true
	nodes_stop
}

# cluster N: nodes n1..nN, n2 on joining n1; wait until everyone sees N alive.
cluster() {
	node_start n1 "${PORTS[0]}" ""
	for i in $(seq 2 "$1"); do node_spawn "n$i" "${PORTS[$((i - 1))]}" "${PORTS[0]}"; done
	node_listens $NODES
	wait_for 30 all_alive "$1" ||
		fail "not all alive: $(for n in $NODES; do echo "== $n"; gossip-peers -d $T/$n list; done)"
}

# publish NODE KEY VALUE: sign as NODE and send it to NODE's own port, as the README
# publishes: the node stores it and passes it on as rumor from the root of its trees.
publish() {
	local i=${1#n}
	gossip-send -d "$T/$1" -t "udp://127.0.0.1:${PORTS[$((i - 1))]}" set "$2" "$3"
}

# publish_batch NODE: sign each "set KEY VALUE" line of stdin as NODE, all in one process
# (gossip-send batch), and send them to NODE's own port, as publish does one.
publish_batch() {
	local i=${1#n}
	gossip-send -d "$T/$1" -t "udp://127.0.0.1:${PORTS[$((i - 1))]}" batch
}

# holds NODE PREFIX WANT: NODE's keys that begin with PREFIX, as sorted "KEY VALUE" lines,
# are WANT's lines (from one dump, not a process a key; the values are plain text).
holds() {
	gossip-merge -d "$T/$1" -j dump 2>/dev/null |
		sed -n "s/.*\"key\":\"\($2[^\"]*\)\",\"value\":\"\([^\"]*\)\".*/\1 \2/p" | sort >"held.$1"
	cmp -s "$3" "held.$1"
}

# publish_pipe NODE KEY VALUE: sign at NODE, store there with gossip-merge and pass it to
# FANOUT members at random (gossip-send -M): a message that comes to the node off its
# trees, by any program.
publish_pipe() {
	gossip-send -d "$T/$1" set "$2" "$3" | gossip-merge -d "$T/$1" | gossip-send -d "$T/$1" -k "$FANOUT" -M
}

# everyone_has KEY VALUE [NODES...]: every (given) node's store holds KEY = VALUE.
everyone_has() {
	local k=$1 v=$2 n
	shift 2
	for n in ${*:-$NODES}; do
		[ "$(gossip-merge -d "$T/$n" get "$k" 2>/dev/null)" = "$v" ] || return 1
	done
}

# converged [NODES...]: every (given) store has the same Merkle digest.
converged() {
	local n
	for n in ${*:-$NODES}; do gossip-merge -d "$T/$n" digest; done | sort -u >digests
	[ "$(wc -l <digests)" = 1 ]
}

ms() { echo $(($(date +%s%N) / 1000000)); }

@test "ten nodes: a value published at any node reaches every store" {
	cluster 10
	for from in n1 n7 n10; do
		t0=$(ms)
		publish "$from" "greeting-$from" "hello from $from"
		wait_for 10 everyone_has "greeting-$from" "hello from $from" ||
			fail "not everywhere: $(for n in $NODES; do echo "$n: $(gossip-merge -d $T/$n get greeting-$from)"; done)"
		echo "# from $from: every store in $(($(ms) - t0)) ms" >&3
	done
	# Stored by a pipeline instead and passed to a few members at random, off the trees
	# (those below the origin hear of it from the summaries in pings and acks).
	publish_pipe n4 via-pipe yes
	wait_for 10 everyone_has via-pipe yes
	wait_for 10 converged
}

@test "kill -9: marked dead by every other node within the bound; restarted, it catches up" {
	cluster 10
	t0=$(ms)
	node_kill n5
	# Probes (gossip-node's SWIM): someone pings n5 within an interval or so, it is suspect
	# 0.6 intervals later and dead after 0.8 * log10(11) intervals with a confirmation:
	# under a second at 0.2 s (detect_time 10 is the worst case, 2.8 s); the limit leaves
	# room for a loaded machine.
	wait_for 10 all_see dead n5 ||
		fail "$(for n in $NODES; do echo "$n: $(state_of $n n5)"; done)"
	echo "# dead at all nine others in $(($(ms) - t0)) ms" >&3
	NODES=$(printf '%s\n' $NODES | grep -vx n5 | tr '\n' ' ')
	# Published while it was down: it gets them from anti-entropy once back.
	for j in 1 2 3 4; do
		for i in $(seq "$j" 4 20); do echo "set while-down-$i $i"; done | publish_batch "n$j"
	done
	for i in $(seq 1 20); do echo "while-down-$i $i"; done | sort >want
	for n in $NODES; do wait_for 10 holds "$n" while-down- want; done
	node_start n5 "${PORTS[4]}" "${PORTS[0]}"
	wait_for 15 holds n5 while-down- want || fail "n5 holds: $(cat held.n5)"
	wait_for 15 all_see alive n5
	wait_for 10 converged
}

@test "a paused node is suspected, refutes the claim when it resumes, and is never failed" {
	# -S 40: a suspicion timeout of 40 * log10(7) * 0.2 s, about 7 s, from when probes find
	# it silent and claim it suspect: long enough to refute in.
	for i in $(seq 1 6); do
		node_start "n$i" "${PORTS[$((i - 1))]}" "$([ "$i" = 1 ] || echo "${PORTS[0]}")" -S 40
	done
	wait_for 30 all_alive 6 || fail "not all alive"
	node_kill n3 STOP
	wait_for 10 all_see suspect n3 ||
		fail "$(for n in $NODES; do echo "$n: $(state_of $n n3)"; done)"
	node_kill n3 CONT
	wait_for 10 all_see alive n3 ||
		fail "$(for n in $NODES; do echo "$n: $(state_of $n n3)"; done)"
	grep -q "refuting a claim that this node is down" n3.log
	# Suspected, then alive again by refutation, never failed (each node's log has its
	# membership events).
	for n in n1 n2 n4 n5 n6; do
		grep -q " member-suspect n3 " "$n.log" || fail "$n did not suspect n3: $(cat "$n.log")"
		! grep -q " member-failed n3 " "$n.log" || fail "$n failed n3: $(cat "$n.log")"
	done
}

@test "a node joining late receives the whole state" {
	cluster 10
	for j in $(seq 1 10); do
		for i in $(seq "$j" 10 50); do echo "set k$i v$i"; done | publish_batch "n$j"
	done
	for i in $(seq 1 50); do echo "k$i v$i"; done | sort >want
	wait_for 10 converged
	holds n1 k want || fail "n1 holds: $(cat held.n1)"
	node_start n11 "${PORTS[10]}" "${PORTS[2]}"
	wait_for 20 converged || fail "$(for n in $NODES; do echo "$n $(gossip-merge -d $T/$n digest)"; done)"
	holds n11 k want || fail "n11 holds: $(cat held.n11)"
	wait_for 15 all_alive 11
}

@test "a forged message (an untrusted signer) sent by UDP reaches no store" {
	cluster 10
	for i in 1 4 8; do
		gossip-send -d "$T/mallory" -t "udp://127.0.0.1:${PORTS[$((i - 1))]}" set evil "from mallory"
	done
	# A signature broken in transit too: a real member's message, one bit flipped.
	gossip-send -d "$T/n2" set tampered no >good
	cp good bad
	flipbit bad 60
	/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(open(sys.argv[1], "rb").read(), ("127.0.0.1", int(sys.argv[2])))' bad "${PORTS[5]}"
	# Sent after them: once every store has it, each node has judged the forgeries that
	# reached it (a datagram socket keeps order), and a forgery that got into any store
	# would be found there below.
	publish n3 marker after
	wait_for 10 everyone_has marker after
	for n in $NODES; do
		run gossip-merge -d "$T/$n" get evil
		assert_failure 1
		run gossip-merge -d "$T/$n" get tampered
		assert_failure 1
	done
	grep -q "untrusted signer" n1.log
	grep -q "bad signature\|malformed" n6.log
}

@test "SIGTERM: the node leaves (seen as left, not failed) and no process stays behind" {
	cluster 4
	pg=$PGID_n3
	node_kill n3 TERM
	NODES=" n1 n2 n4"
	wait_for 10 all_see left n3
	# As long as failure detection could take, had the leave not been heard: still left.
	sleep "$(detect_time 4)"
	all_see left n3
	[ -z "$(group_procs "$pg")" ] || fail "left running: $(group_procs "$pg")"
	grep -q "member-leave n3 left" n1.log || fail "$(cat n1.log)"
	run ! grep -q "member-failed n3" n1.log
}

@test "a graceful stop tells the members before its processes end: left everywhere while the store is locked" {
	cluster 4
	pg=$PGID_n3
	# The store's lock held: the node cannot store its leave, nor end, until it is let go
	# (a long compaction, a slow disk). The members must hear the leave all the same, and
	# at once: none of its processes answers a ping once the stop began.
	# A write to the store just before the lock is taken: observe looks at it 50 ms on,
	# the lock held by then, and must not wait for it (pings unanswered, the leave unseen).
	gossip-send -d "$T/n3" set before-lock v | gossip-merge -d "$T/n3" >/dev/null
	(exec 8>>"$T/n3/store.lock" && flock 8 && touch "$T/held" && exec sleep 60) 3>&- &
	HOLDER=$!
	wait_for 5 test -e "$T/held"
	kill -TERM "$pg"
	NODES=" n1 n2 n4"
	wait_for 10 all_see left n3 || fail "not left everywhere"
	# As long as failure detection could take, had the leave not been heard: still left,
	# and the node still ending (its leave waits for the lock, five seconds at most).
	sleep "$(detect_time 4)"
	all_see left n3 || fail "not left everywhere after the detection time"
	[ -n "$(group_procs "$pg")" ] || fail "the node ended with its store locked"
	kill "$HOLDER"
	wait "$HOLDER" 2>/dev/null || true
	HOLDER=
	wait_for 10 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	eval "PGID_n3="
	for n in n1 n2 n4; do
		grep -q "member-leave n3 left" $n.log || fail "$n: $(cat $n.log)"
		run ! grep -q "member-failed n3" $n.log
	done
	# Stored once the lock was let go: this node's own record is its leave.
	read -r id _ <"$T/n3/key.pub"
	run gossip-merge -d "$T/n3" -o "$id" get _member
	assert_failure 1
	# Nor is the leave refuted (a suspicion refuted before the stop, on a busy machine, is
	# SWIM at work: the sanitizers' pass saw one as the cluster started).
	if grep -q "not leaving\|not stored" n3.log || sed -n '/leaving the cluster/,$p' n3.log | grep -q refuting; then
		fail "$(cat n3.log)"
	fi
	grep -q "gossip-peers: leaving the cluster (.*/n3/leave is there): the leave sent to 3 members" n3.log ||
		fail "$(cat n3.log)"
}

@test "a stop during the join: the join's attempt ends, and the leave goes at once" {
	node_start n1 "${PORTS[0]}" ""
	# A second seed that takes the connection and never answers: n2's join syncs with n1
	# (which learns of n2), then waits on this one, up to its 10 s limit.
	"$PY" - "${PORTS[11]}" "$T/accepted" <<'PY' 3>&- &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
c, _ = s.accept()
open(sys.argv[2], "w").close()
time.sleep(60)
PY
	HOLDER=$!
	wait_for 5 eval "ss -ltn | grep -q ':${PORTS[11]} '"
	node_start n2 "${PORTS[1]}" "${PORTS[0]}" -p "127.0.0.1:${PORTS[11]}"
	wait_for 10 sees 2 alive n1
	# The join's attempt is on the second seed now: once, a stop then left the old way,
	# after every process had ended.
	wait_for 10 test -e "$T/accepted"
	pg=$PGID_n2
	kill -TERM "$pg"
	wait_for 10 eval '[ "$(state_of n1 n2)" = left ]'
	grep -q "leaving the cluster (.*/n2/leave is there): the leave sent to 1 members" n2.log || fail "$(cat n2.log)"
	wait_for 10 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	eval "PGID_n2="
	run ! grep -q "member-failed n2" n1.log
}

@test "a TERM to the node's whole process group: seen as left, not failed, and nothing stays behind" {
	cluster 4
	pg=$PGID_n3
	# Every process gets it at once (systemd's KillMode=control-group, kill -- -PGID):
	# observe, told to stop, waits a moment for the node to ask for the leave, and sends
	# it before it ends.
	kill -TERM -- "-$pg"
	NODES=" n1 n2 n4"
	wait_for 10 all_see left n3
	sleep "$(detect_time 4)"
	all_see left n3
	wait_for 10 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	eval "PGID_n3="
	for n in n1 n2 n4; do
		run ! grep -q "member-failed n3" $n.log
	done
	grep -q "gossip-peers: leaving the cluster (.*/n3/leave is there)" n3.log || fail "$(cat n3.log)"
}

@test "a leave file made by hand: the node leaves, then ends itself, saying why; the members see it left; a directory there is none" {
	cluster 3
	pg=$PGID_n3
	: >"$T/n3/leave"
	NODES=" n1 n2"
	wait_for 10 all_see left n3
	# Not a member any more, and nothing stopped it: it ends within ten intervals (five
	# seconds at least), and says why.
	wait_for 15 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	eval "PGID_n3="
	grep -q "gossip-peers: left the cluster [0-9.]* s ago, and nothing stopped this node: ending" n3.log ||
		fail "$(cat n3.log)"
	grep -q "gossip-node: gossip-peers observe ended (exit status 0); stopping" n3.log || fail "$(cat n3.log)"
	[ ! -e "$T/n3/leave" ] && [ ! -e "$T/n3/listening" ] || fail "$(ls "$T/n3")"
	all_see left n3
	for n in n1 n2; do
		run ! grep -q "member-failed n3" $n.log
	done
	# Something other than a regular file there is no leave.
	node_start n3 "${PORTS[2]}" "${PORTS[0]}"
	NODES=" n1 n2 n3"
	wait_for 10 all_alive 3 || fail "$(nodes_diag)"
	mkdir "$T/n3/leave"
	sleep "$(intervals 5)"
	all_alive 3 || fail "$(nodes_diag)"
	# Not because the start was still under way: a file in its place is taken.
	rmdir "$T/n3/leave"
	: >"$T/n3/leave"
	NODES=" n1 n2"
	wait_for 10 all_see left n3 || fail "$(nodes_diag)"
}

# lost_term: a stand-in for gossip-query on PATH that starts a process (not one of the
# toolkit's programs) which takes the first TERM for nothing ($T/seen made) and ends at
# the next, as a process whose TERM came while the shell that forked it still held its
# trap; $T/armed once its trap is set (wait for it: a TERM before would just end it).
lost_term() {
	stand_in lost-term <<'SH'
#!/bin/sh
trap 'if [ -e "$SEEN" ]; then exit 0; fi; : >"$SEEN"' TERM
trap ': >"$SEEN.cont"' CONT
: >"$SEEN.armed"
while :; do sleep 0.05; done
SH
	export SEEN="$T/seen"
	rm -f "$T/seen.armed"
}
# stand_in NAME <SCRIPT: the script as fake/NAME, started in the node's group by a
# stand-in for gossip-query on PATH.
stand_in() {
	mkdir -p fake
	cat >"fake/$1"
	printf '#!/bin/sh\n"${0%%/*}/%s" &\nwhile :; do sleep 0.05; done\n' "$1" >fake/gossip-query
	chmod +x "fake/$1" fake/gossip-query
	export PATH="$T/fake:$PATH"
}

@test "a process of the node that missed the stop's TERM (one that came between a fork and its exec) is sent it again: the stop ends, nothing stays behind" {
	lost_term
	node_start n1 "${PORTS[0]}"
	pg=$PGID_n1
	wait_for 10 test -e seen.armed
	run timeout 50 gossip-node -d "$T/n1" stop
	assert_success
	[ -e seen ] || fail "the stand-in never had a TERM"
	# Not stopped, it is sent no CONT: one to a process whose stop was asked for and not
	# yet taken (a debugger's attach, an ASan build's leak check at its exit) undoes it,
	# and what asked waits for ever (the node's processes then ended only by the KILL).
	[ ! -e seen.cont ] || fail "a running process was sent a CONT"
	wait_for 5 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
}

@test "the TERM is sent again by the watchdog (the main process killed by -9) and by the stop verb (the main process and its watchdog killed): nothing stays behind" {
	lost_term
	node_start n1 "${PORTS[0]}"
	pg=$PGID_n1
	wait_for 10 test -e seen.armed
	kill -9 "$pg"
	wait_for 10 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	[ -e seen ] || fail "the stand-in never had a TERM"
	rm seen seen.armed
	node_start n1 "${PORTS[1]}"
	pg=$PGID_n1
	wait_for 10 test -e seen.armed
	# The watchdog: the shell whose child waits (tail --pid) for the main process.
	wait_for 10 pgrep -g "$pg" -f "tail -s 0.2 --pid=$pg"
	tail=$(pgrep -g "$pg" -f "tail -s 0.2 --pid=$pg")
	dog=$(ps -o ppid= -p "$tail")
	kill -9 "$pg" $dog
	run timeout 50 gossip-node -d "$T/n1" stop
	assert_success
	[ -e seen ] || fail "the stand-in never had a TERM"
	# Not stopped, it is sent no CONT: one to a process whose stop was asked for and not
	# yet taken (a debugger's attach, an ASan build's leak check at its exit) undoes it,
	# and what asked waits for ever (the node's processes then ended only by the KILL).
	[ ! -e seen.cont ] || fail "a running process was sent a CONT"
	wait_for 5 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
}

@test "the main process killed by -9 during its own stop (a TERM to it, or to its whole group): its watchdog, ended last, ends the rest" {
	# A process of the node that takes TERMs (each counted) until released.
	stand_in slow-term <<'SH'
#!/bin/sh
trap 'echo >>"$TERMS"; if [ -e "$RELEASE" ]; then exit 0; fi' TERM
: >"$TERMS.armed"
while :; do sleep 0.05; done
SH
	export TERMS="$T/terms" RELEASE="$T/release"
	for to in main group; do
		rm -f terms terms.armed release
		# (The script's own variables are not taken from the environment.)
		spare=1 spare_kids=1 watchdog=1 node_start n1 "${PORTS[0]}"
		pg=$PGID_n1
		wait_for 10 test -e terms.armed
		KILL9=$(pgrep -f slow-term -s "$pg")  # it takes TERMs: ended by teardown whatever happens
		[ -n "$KILL9" ] || fail "no stand-in"
		if [ $to = main ]; then kill -TERM "$pg"; else kill -TERM -- "-$pg"; fi
		# The stop's loop sends its TERMs; then the main process is killed.
		wait_for 10 eval '[ -s terms ] && [ "$(wc -l <terms)" -ge 2 ]'
		kill -9 "$pg"
		wait_for 5 eval '[ -z "$(ps -o stat= -p "$pg" | grep -v Z)" ]'
		terms=$(wc -l <terms)
		wait_for 5 eval '[ "$(wc -l <terms)" -ge $((terms + 3)) ]' ||
			fail "TERM to the $to: no TERM after the main process was killed (the watchdog was ended)"
		: >release
		wait_for 10 eval '[ -z "$(group_procs "$pg")" ]' || fail "TERM to the $to: left running: $(group_procs "$pg")"
		wait "$pg" 2>/dev/null || true
	done
}

@test "a node started with SIGTERM ignored (by its parent) takes it all the same: the stop verb stops it, and it leaves" {
	# (No trap of a shell takes a signal ignored when it started: the node runs itself
	# again with the default.)
	bash -c 'trap "" TERM; exec "$@"' _ gossip-node -d "$T/n1" -n n1 -l "127.0.0.1:${PORTS[0]}" -i "$HB" \
		</dev/null >/dev/null 2>>"$T/n1.log" 3>&- &
	PGID_n1=$!
	NODES=" n1"
	node_listens n1
	mask=$(awk '$1 == "SigIgn:" {print $2}' "/proc/$PGID_n1/status")
	(( (0x$mask >> 14 & 1) == 0 )) || fail "SIGTERM still ignored by the node: $mask"
	pg=$PGID_n1
	run timeout 30 gossip-node -d "$T/n1" stop
	assert_success
	eval "PGID_n1="
	wait_for 5 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
	grep -q "leaving the cluster" n1.log || fail "$(cat n1.log)"
}

@test "the watchdog killed by itself (kill -9): a stop still ends at once (its tail, orphaned, takes the TERM)" {
	node_start n1 "${PORTS[0]}"
	pg=$PGID_n1
	wait_for 10 pgrep -g "$pg" -f "tail -s 0.2 --pid=$pg"
	tail=$(pgrep -g "$pg" -f "tail -s 0.2 --pid=$pg")
	dog=$(ps -o ppid= -p "$tail" | tr -d ' ')
	kill -9 "$dog"
	wait_for 5 eval '[ "$(ps -o ppid= -p "$tail" | tr -d " ")" != "$dog" ]'
	start=$SECONDS
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	# It would be the KILL at 30 s, had the tail ignored the TERM.
	[ $((SECONDS - start)) -lt 15 ] || fail "the stop took $((SECONDS - start)) s"
	wait_for 5 eval '[ -z "$(group_procs "$pg")" ]' || fail "left running: $(group_procs "$pg")"
}

@test "a stop ends a query's handler (it runs in a group of its own) with the node; and a stale pid in DIR/node.pid is no process the stop verb signals" {
	node_start n1 "${PORTS[0]}" "" -x "query:slow=exec sleep 60"
	gossip-query -d "$T/n1" -T 30 slow >/dev/null 2>&1 & BG=$!
	wait_for 10 eval 'handler=$(pgrep -f "^sleep 60$" -s "$PGID_n1"); [ -n "$handler" ]'
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	wait_for 5 eval '! kill -0 "$handler" 2>/dev/null' || fail "the handler outlived the node"
	# A process that is not the node, its pid where the node's was, while a process left
	# of the node (it has the lock open as fd 9, as the node's have) holds the lock: the
	# verb ends that one, not the other.
	sleep 300 & victim=$!
	(exec 9>>n1/node.lock && flock 9 && exec sleep 300) & holder=$!
	BG="$BG $victim $holder"
	echo "$victim" >n1/node.pid
	wait_for 5 eval '! flock -n -s n1/node.lock true'
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	kill -0 "$victim" || fail "the stop verb ended a process that was not the node's"
	! kill -0 "$holder" 2>/dev/null || fail "what held the lock is left"
}

@test "a node that is a shell's job (it leads its group, not a session) ends its query handlers when it stops, and no other job of the shell" {
	set -m
	node_start n1 "${PORTS[0]}" "" -x "query:slow=exec sleep 60"
	sleep 300 & other=$!
	set +m
	BG=$other
	[ "$(ps -o sid= -p "$PGID_n1" | tr -d ' ')" != "$PGID_n1" ] || skip "the node leads a session"
	gossip-query -d "$T/n1" -T 30 slow >/dev/null 2>&1 & BG="$BG $!"
	handler_of() {
		handler=
		for p in $(pgrep -f '^sleep 60$'); do [ "/proc/$p/fd/9" -ef n1/node.lock ] && handler=$p; done
		[ -n "$handler" ]
	}
	wait_for 10 handler_of
	BG="$BG $handler"
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	wait_for 5 eval '! kill -0 "$handler" 2>/dev/null' || fail "the handler outlived the node"
	kill -0 "$other" || fail "the stop ended another job of the shell"
}

@test "a process whose name holds a newline (anyone's) does not break a stop, with pgrep and without (/proc read)" {
	cp "$(command -v sleep)" "$T/$(printf 'x\ny')"
	"$T/$(printf 'x\ny')" 120 & BG=$!
	# A pgrep that takes no -r and says so by exit status 1, as busybox's does (procps
	# before 3.3.16 exits 2): the node reads /proc itself.
	mkdir old
	printf '#!/bin/sh\necho "pgrep: invalid option -- r" >&2\nexit 1\n' >old/pgrep
	chmod +x old/pgrep
	for path in "$PATH" "$T/old:$PATH"; do
		PATH=$path node_start n1 "${PORTS[0]}"
		pg=$PGID_n1
		PATH=$path run timeout 60 gossip-node -d "$T/n1" stop
		assert_success
		[ -z "$(group_procs "$pg")" ] || fail "left running: $(group_procs "$pg")"
		kill -0 "$BG" || fail "the stop ended a process that was not the node's"
	done
}

@test "a stop continues a stopped process of the node (^Z, SIGSTOP), so that it takes its TERM" {
	lost_term
	node_start n1 "${PORTS[0]}"
	wait_for 10 test -e seen.armed
	kill -STOP "$(pgrep -f lost-term -s "$PGID_n1" | head -1)"
	# The main process stopped too: the verb continues it.
	kill -STOP "$PGID_n1"
	wait_for 5 eval '[ "$(ps -o stat= -p "$PGID_n1" | cut -c1)" = T ]'
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	[ -e seen ] || fail "the stopped stand-in never took a TERM (killed at the end instead)"
	[ -e seen.cont ] || fail "the stopped stand-in was sent no CONT"
}

@test "a stop ends a handler's children that closed the lock" {
	node_start n1 "${PORTS[0]}" "" -x "query:kids=sh -c 'exec 9>&-; exec sleep 60' & wait"
	gossip-query -d "$T/n1" -T 30 kids >/dev/null 2>&1 & BG=$!
	wait_for 10 eval 'kid=$(pgrep -f "^sleep 60$" -s "$PGID_n1"); [ -n "$kid" ]'
	[ ! "/proc/$kid/fd/9" -ef n1/node.lock ] || fail "the handler's child holds the lock"
	run timeout 60 gossip-node -d "$T/n1" stop
	assert_success
	wait_for 5 eval '! kill -0 "$kid" 2>/dev/null' || fail "the handler's child outlived the node"
}

@test "a restart just after a kill -9, in the old node's session (a shell's job), is not taken by its watchdog for one of the old node's processes" {
	set -m
	node_start n1 "${PORTS[0]}" "" -x "query:hold=trap 'echo >>\"$T/terms\"' TERM; while [ ! -e \"$T/release\" ]; do sleep 0.05; done"
	set +m
	[ "$(ps -o sid= -p "$PGID_n1" | tr -d ' ')" != "$PGID_n1" ] || skip "the node leads a session"
	gossip-query -d "$T/n1" -T 30 hold >/dev/null 2>&1 & BG=$!
	wait_for 10 pgrep -f "$T/release"
	KILL9=$(pgrep -f "$T/release")  # it takes TERMs: ended by teardown whatever happens
	kill -9 "$PGID_n1"
	# The old node's handler holds the lock, taking (and counting) the watchdog's TERMs.
	wait_for 10 test -s terms
	set -m
	node_spawn n1 "${PORTS[0]}"
	set +m
	restart=$PGID_n1
	# The restart waits for the lock (2 s at most); one more round of the watchdog's
	# after it has the lock file open, then the handler lets go.
	wait_for 10 eval '[ -n "$(ls -l /proc/$restart/fd 2>/dev/null | grep -F "$T/n1/node.lock")" ]'
	terms=$(wc -l <terms)
	wait_for 10 eval '[ "$(wc -l <terms)" -gt "$terms" ]'
	: >release
	node_listens n1 || fail "the restart did not start: $(cat n1.log)"
	kill -0 "$restart" || fail "the restart was killed"
}

@test "bad usage: exit 2, one line saying what to do, no state directory made" {
	# The numbers' bounds exactly (the checks are the shell's, not awk's): 0.001 to 60 for
	# -i, below 1 for -J, above 0 for -s and -S, whatever the digits after the point.
	for args in "-l 7946" "-l 127.0.0.1:99999" "-l 127.0.0.1:x" "-i 0" "-i abc" "-i 500" "-k 0" \
		"-i 60.0000001" "-i 0.0009999" "-i 1.2.3" "-i ." "-J 1.5" "-J 1.0000000" "-J 1.00000001" "-J x" \
		"-s -1" "-s 0.000" "-S 0" "-S 0.0000000" "-s 99999999999999999999x" "-p 10.0.0.1" "-B lazy" "extra"; do
		# Under a timeout: were one taken, the node would run, and the test fail, not hang.
		# shellcheck disable=SC2086
		run --separate-stderr timeout 10 gossip-node -d "$T/fresh" $args
		[ "$status" = 2 ] || fail "$args: exit $status"
		[ -n "$stderr" ] && [ "$(printf '%s\n' "$stderr" | wc -l)" -le 2 ] || fail "$args: $stderr"
		[[ "$stderr" == gossip-node:* || "$stderr" == usage:* ]] || fail "$args: $stderr"
		[ ! -e "$T/fresh" ] || fail "$args made the state directory"
	done
	# The bounds themselves pass the checks (and the verb after them is what is refused).
	for args in "-i 60" "-i 60.000000" "-i 0.001" "-J 0" "-J 0.9999999" "-S 0.0000001"; do
		# shellcheck disable=SC2086
		run --separate-stderr gossip-node -d "$T/fresh" $args stop
		[ "$stderr" = "gossip-node: ${args%% *} is for running a node, not for stop" ] || fail "$args: $stderr"
	done
	run gossip-node --help
	assert_success
	assert_output --partial "usage: gossip-node"
}

@test "a state directory and tags with quotes and spaces work (sync on the port too)" {
	d="$T/it's a \"dir\""
	gossip-keygen -d "$d" -n odd >odd.pub
	gossip-keygen -d client -n client >client.pub
	cat odd.pub client.pub >"$d/trusted"
	gossip-node -d "$d" -l "127.0.0.1:${PORTS[0]}" -i 0.2 -t "note=it's\"fine\"" \
		</dev/null >/dev/null 2>odd.log 3>&- &
	PGID_odd=$! NODES=" odd"
	wait_for 10 test -s "$d/listening"
	wait_for 5 sh -c "gossip-peers -d \"\$1\" -j list | jq -e '.tags.note == \"it'\\''s\\\"fine\\\"\"' >/dev/null" sh "$d"
	cp odd.pub client/trusted
	run gossip-merge -d client sync "tcp://127.0.0.1:${PORTS[0]}"
	assert_success
	gossip-merge -d client get _member >/dev/null
	# A tag gossip-peers refuses: exit 2 with its line, before anything runs.
	run --separate-stderr gossip-node -d "$T/n2" -l "127.0.0.1:${PORTS[1]}" -t "no space=a b"
	[ "$status" = 2 ]
	[[ "$stderr" == "gossip-peers: -t no space=a b: want key=value"* ]]
	[ -z "$(dir_procs "$T/n2")" ] || fail "left running: $(dir_procs "$T/n2")"
}
