#!/usr/bin/env bats
# Operating a node: one node per directory (a lock), the stop, status and reload verbs
# with their exit codes, SIGHUP as reload, nothing outliving a node killed by kill -9, a
# node that ends when a process of its pipeline dies, a clean stop, a busy port, join
# failures in the log, old spellings refused, and -a (bind one address, announce another)
# between network namespaces.
load helper
load node
load netns

setup() {
	base_setup
	NODES= NS=
	set -- $(freeports 3)
	PORTS=("$@")
	for n in n1 n2; do gossip-keygen -d "$T/$n" -n "$n" >"$n.pub"; done
	for n in n1 n2; do cat n1.pub n2.pub >"$n/trusted"; done
}

teardown() {
	nodes_stop
	[ -z "$NS" ] || net_down "$NS"
}

# gone PGID: no process of the group runs.
gone() {
	[ -z "$(group_procs "$1")" ]
}

# stored NODE KEY VALUE: NODE's store holds KEY = VALUE.
stored() {
	[ "$(gossip-merge -d "$T/$1" get "$2" 2>/dev/null)" = "$3" ]
}

# elapsed_ms START: milliseconds since START (an $EPOCHREALTIME).
elapsed_ms() {
	echo $(((${EPOCHREALTIME//[!0-9]/} - ${1//[!0-9]/}) / 1000))
}

@test "a second node on the same directory: exit 2 at once, naming the pid and how to stop it" {
	node_start n1 "${PORTS[0]}" ""
	pid=$PGID_n1
	[ "$(cat n1/node.pid)" = "$pid" ]
	t0=$EPOCHREALTIME
	run --separate-stderr gossip-node -d "$T/n1" -l "127.0.0.1:${PORTS[1]}"
	[ "$status" = 2 ] || fail "exit $status: $stderr"
	assert_error gossip-node "$T/n1: a node is already running here (pid $pid); stop it with gossip-node -d $T/n1 stop"
	[ "$(elapsed_ms "$t0")" -lt 1500 ] || fail "took $(elapsed_ms "$t0") ms: want at once"
	[ "$(cat n1/node.pid)" = "$pid" ]
	run tcp_open "${PORTS[1]}"
	assert_failure
	run gossip-node -d "$T/n1" status
	assert_success
	assert_line "running, pid $pid"
}

@test "a lock held by a killed node's last processes: the next start waits for them, up to 2 s" {
	# What a node killed by kill -9 leaves for a moment: its lock held, its pid gone.
	sh -c 'exit 0' & dead=$!
	wait "$dead"
	echo "$dead" >n1/node.pid
	flock n1/node.lock sleep 1 & holder=$!
	wait_for 2 sh -c '! flock -n n1/node.lock true'
	node_start n1 "${PORTS[0]}" ""
	wait "$holder"
	run gossip-node -d "$T/n1" status
	assert_success
	# Held longer: it gives up after about 2 s, saying who holds it.
	echo "$dead" >n2/node.pid
	flock n2/node.lock sleep 10 & holder=$!
	wait_for 2 sh -c '! flock -n n2/node.lock true'
	t0=$EPOCHREALTIME
	run --separate-stderr gossip-node -d "$T/n2" -l "127.0.0.1:${PORTS[1]}"
	kill "$holder"
	[ "$status" = 2 ] || fail "exit $status: $stderr"
	assert_error gossip-node "$T/n2: a node is already running here (pid $dead)"
	ms=$(elapsed_ms "$t0")
	[ "$ms" -ge 1900 ] && [ "$ms" -lt 5000 ] || fail "gave up after $ms ms: want about 2 s"
}

@test "status, reload and stop: their output and LSB exit codes" {
	# Not running: status 3, reload 7, stop 0 (stopped already), each saying so.
	run --separate-stderr gossip-node -d "$T/n1" status
	[ "$status" = 3 ] && [ "$output" = "not running" ] || fail "$status: $output"
	run --separate-stderr gossip-node -d "$T/n1" -j status
	[ "$status" = 3 ] && [ "$output" = '{"running":false}' ] || fail "$status: $output"
	run --separate-stderr gossip-node -d "$T/n1" reload
	[ "$status" = 7 ] || fail "reload: exit $status"
	assert_error gossip-node "$T/n1: no node is running here; start one with gossip-node -d $T/n1"
	run --separate-stderr gossip-node -d "$T/n1" stop
	[ "$status" = 0 ] || fail "stop: exit $status"
	assert_error gossip-node "$T/n1: no node is running here"
	[ ! -e n1/node.pid ]

	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	pid=$PGID_n1
	wait_for 10 sh -c "[ \"\$(gossip-node -d $T/n1 -j status | jq .alive)\" = 2 ]"
	run --separate-stderr gossip-node -d "$T/n1" -j status
	assert_success
	jq -e --argjson pid "$pid" --arg port "${PORTS[0]}" '.running and .pid == $pid and .name == "n1" and
		.listening == ["udp://127.0.0.1:\($port)", "tcp://127.0.0.1:\($port)"] and .addrs == .listening and
		.alive == 2 and .members == 2' <<<"$output" || fail "$output"
	run --separate-stderr gossip-node -d "$T/n1" status
	assert_success
	assert_line "running, pid $pid"
	assert_line "name       n1"
	assert_line "listening  udp://127.0.0.1:${PORTS[0]} tcp://127.0.0.1:${PORTS[0]}"
	assert_line "members    2 alive of 2"

	# Reload: every process lives on, the programs that re-read their files say so, and
	# the node still works. SIGHUP to the main pid does the same.
	# The long-running ones (a sync round or a sleep of the node's loops may come and go).
	before=$(group_procs "$pid" | grep -E 'gossip-listen|gossip-merge --verified|observe|watch|tail' | sort)
	[ "$(wc -l <<<"$before")" -ge 5 ] || fail "want listen, merge, observe, watch and the watchdog: $before"
	run --separate-stderr gossip-node -d "$T/n1" reload
	[ "$status" = 0 ] && [ -z "$output$stderr" ] || fail "reload: $status: $output $stderr"
	wait_for 5 grep -q "gossip-listen: reloaded" n1.log
	kill -HUP "$pid"
	wait_for 5 eval '[ "$(grep -c "gossip-listen: reloaded" n1.log)" = 2 ]'
	after=$(group_procs "$pid" | sort)
	[ -z "$(comm -23 <(echo "$before") <(echo "$after"))" ] || fail "reload ended some: $before / $after"
	gossip-send -d "$T/n2" -t "udp://127.0.0.1:${PORTS[0]}" set after-reload yes
	wait_for 5 stored n1 after-reload yes
	wait_for 5 stored n2 after-reload yes

	# Stop: returns once every process has ended and the lock is free; n1 left.
	run --separate-stderr gossip-node -d "$T/n1" stop
	[ "$status" = 0 ] && [ -z "$output$stderr" ] || fail "stop: $status: $output $stderr"
	gone "$pid" || fail "still running after stop: $(group_procs "$pid")"
	flock -n n1/node.lock true
	wait "$pid" || fail "the node exited $?"
	PGID_n1=
	wait_for 5 sh -c "[ \"\$(gossip-node -d $T/n2 -j status | jq .alive)\" = 1 ]"
	[ "$(state_of n2 n1)" = left ]
	run gossip-node -d "$T/n1" status
	[ "$status" = 3 ]
}

@test "a question beside another (a shared hold of node.lock) is not a running node: status says so, leave leaves" {
	# gossip-node stop asks every 50 ms whether the node still runs while the stopping
	# node runs gossip-peers leave, which asks too. Asked with exclusive locks, one took
	# the other's for the node, and the leave was refused: the members saw n1 fail, not
	# leave (a local .ci/run's sanitizer pass, status, reload and stop above). Each now
	# asks with a shared lock, which only the node's exclusive one refuses.
	: >n1/node.lock
	flock -s n1/node.lock sleep 30 </dev/null >/dev/null 2>&1 3>&- & holder=$!
	wait_for 5 eval '! flock -n n1/node.lock true'
	run --separate-stderr gossip-node -d "$T/n1" status
	[ "$status" = 3 ] && [ "$output" = "not running" ] || fail "status: $status: $output $stderr"
	run --separate-stderr gossip-node -d "$T/n1" stop
	[ "$status" = 0 ] && [ "$stderr" = "gossip-node: $T/n1: no node is running here" ] || fail "stop: $status: $stderr"
	run --separate-stderr gossip-peers -d "$T/n1" leave
	kill "$holder"
	wait "$holder" || true
	[ "$status" = 0 ] || fail "leave: exit $status: $stderr"
	gossip-merge -d "$T/n1" -j dump | grep -q '"type":"del","key":"_member"' || fail "no leave stored: $(gossip-merge -d "$T/n1" -j dump)"
}

@test "kill -9 of the main process: every process of the node ends within a second; it restarts" {
	# Every kind of process running: a join loop (through a port where nothing answers),
	# anti-entropy, watch and a handler it started.
	node_start n1 "${PORTS[0]}" "${PORTS[2]}" -x "sleep 30"
	pid=$PGID_n1
	wait_for 5 grep -q "gossip-peers: tcp://127.0.0.1:${PORTS[2]}: " n1.log
	wait_for 5 eval '[ -n "$(group_procs "$pid" | grep " sleep 30")" ]'
	echo "# $(group_procs "$pid" | wc -l) processes" >&3
	kill -9 "$pid"
	t0=$EPOCHREALTIME
	wait_for 1.5 gone "$pid" || fail "left running: $(group_procs "$pid")"
	echo "# all ended $(elapsed_ms "$t0") ms after kill -9" >&3
	[ -z "$(dir_procs "$T/n1")" ] || fail "left running: $(dir_procs "$T/n1")"
	{ wait "$pid"; } 2>/dev/null || true   # no job notice in the log
	PGID_n1=
	# The same port and directory, at once.
	node_start n1 "${PORTS[0]}" ""
	run gossip-node -d "$T/n1" status
	assert_success
}

@test "a process of the node killed (kill -9): the node says which, ends with exit 1, nothing left running" {
	local what name pid victim st
	# Without traffic nothing else would notice the pipeline's: the others read or write
	# nothing; and nothing would notice watch's or query answer's at all.
	for what in 'gossip-listen' 'gossip-merge --verified' 'gossip-peers observe' \
		'gossip-peers watch' 'gossip-query answer'; do
		gossip-node -d "$T/n1" -l "127.0.0.1:${PORTS[0]}" -i "$HB" -s "$SYNC" \
			</dev/null >/dev/null 2>n1.log 3>&- &
		pid=$! PGID_n1=$! NODES=" n1"
		wait_for 10 test -s "$T/n1/listening"
		name=${what% *}
		victim=$(dir_procs "$T/n1" | awk -v n="$name" -v w="${what#* }" \
			'$2 == n && (w == n || index($0, " " w)) { print $1; exit }')
		[ -n "$victim" ] || fail "no $what: $(dir_procs "$T/n1")"
		kill -9 "$victim"
		wait_for 5 gone "$pid" || fail "$what killed: left running: $(group_procs "$pid")"
		st=0
		wait "$pid" 2>/dev/null || st=$?
		[ "$st" = 1 ] || fail "$what killed: exit $st: $(cat n1.log)"
		grep -qx "gossip-node: $what ended (exit status 137); stopping" n1.log || fail "$(cat n1.log)"
		run ! grep -E "Killed|Terminated|Broken pipe" n1.log
		PGID_n1= NODES=
	done
	# It starts again at once.
	node_start n1 "${PORTS[0]}" ""
	run gossip-node -d "$T/n1" status
	assert_success
}

@test "a process of the node killed as its port is bound: exit 1 with the line, or exit 2 without it, never a mix" {
	local what name pid victim st r
	victim_of() {  # the pid of $what among the node's processes, in victim
		victim=$(pgrep -f "^$name -d $T/n1 (.* )?${what#* }( |\$)" | head -1)
		[ -n "$victim" ]
	}
	rm -f nap && mkfifo nap && exec 9<>nap
	for what in 'gossip-peers watch' 'gossip-query answer' 'gossip-peers watch' 'gossip-query answer'; do
		rm -f "$T/n1/listening.new"
		gossip-node -d "$T/n1" -l "127.0.0.1:${PORTS[0]}" -i "$HB" -s "$SYNC" \
			</dev/null >/dev/null 2>n1.log 3>&- 9>&- &
		pid=$! PGID_n1=$! NODES=" n1"
		# Watch and query answer start before the port is bound: found within 10 ms
		# (pgrep), long before the bind.
		name=${what% *}
		r=$((SECONDS + 10))
		until victim_of || [ "$SECONDS" -ge "$r" ]; do read -r -t 0.01 -u 9 || :; done
		[ -n "$victim" ] || fail "no $what: $(dir_procs "$T/n1")"
		# Killed the moment the port is bound (gossip-listen writes DIR/listening.new),
		# before the node's next look at that file; or, when that moment was missed,
		# once the node runs (DIR/listening). Looked for every 0.2 ms, by a read that
		# times out on a FIFO nobody writes (no process started, and no busy loop taking
		# a core from the node it waits for).
		until [ -s "$T/n1/listening.new" ] || [ -e "$T/n1/listening" ] || [ "$SECONDS" -ge "$r" ]; do
			read -r -t 0.0002 -u 9 || :
		done
		[ "$SECONDS" -lt "$r" ] || fail "$what: the node did not bind in 10 s: $(cat n1.log)"
		kill -9 "$victim"
		wait_for 5 gone "$pid" || fail "$what killed: left running: $(group_procs "$pid")"
		st=0
		wait "$pid" 2>/dev/null || st=$?
		if grep -q "ended (exit status 137); stopping" n1.log; then
			[ "$st" = 1 ] || fail "$what killed: the line, and exit $st: $(cat n1.log)"
		else
			[ "$st" = 2 ] || fail "$what killed: no line, and exit $st: $(cat n1.log)"
		fi
		PGID_n1= NODES=
	done
	exec 9>&-
}

@test "a reload asked for during the start is done once everything runs, not lost" {
	local holder rl st
	gossip-keygen -d "$T/n3" -n n3 >n3.pub
	# The store's lock held: observe cannot store the announcement, so the node's start
	# waits after the bind (DIR/announce there, DIR/listening not yet) until it is let go.
	(exec 8>>n1/store.lock && flock 8 && touch held && exec sleep 60) & holder=$!
	wait_for 5 test -e held
	gossip-node -d "$T/n1" -l "127.0.0.1:${PORTS[0]}" -i "$HB" -s "$SYNC" \
		</dev/null >/dev/null 2>n1.log 3>&- &
	PGID_n1=$! NODES=" n1"
	wait_for 10 test -e n1/announce || { kill "$holder"; fail "no announcement: $(cat n1.log)"; }
	[ ! -e n1/listening ] || { kill "$holder"; fail "listening with the store locked"; }
	# n3 trusted from now on, and the node told to reload while it starts.
	cat n1.pub n2.pub n3.pub >n1/trusted
	# gossip-node reload waits for the start; a SIGHUP straight to the node is kept.
	gossip-node -d "$T/n1" reload >reload.out 2>&1 & rl=$!
	kill -HUP "$PGID_n1"
	sleep 0.5
	kill -0 "$rl" 2>/dev/null || fail "reload did not wait for the start: $(cat reload.out)"
	kill "$holder"
	st=0
	wait "$rl" || st=$?
	[ "$st" = 0 ] && [ ! -s reload.out ] || fail "reload: $st: $(cat reload.out)"
	wait_for 10 test -e n1/listening || fail "the start did not end: $(cat n1.log)"
	# gossip-listen read trusted (2 signers) before the reload: it re-reads it once all runs.
	wait_for 5 grep -q "gossip-listen: reloaded: 3 trusted signers" n1.log ||
		fail "the reload was lost: $(cat n1.log)"
	# The kept SIGHUP and the verb's: two reloads at most (two that come together may be
	# taken as one), never one for each SIGHUP of the start's own.
	sleep 0.5
	[ "$(grep -c "gossip-listen: reloaded" n1.log)" -le 2 ] || fail "$(cat n1.log)"
}

@test "a graceful stop (SIGTERM): nothing on stdout, no shell noise, the members hear the leave" {
	node_start n1 "${PORTS[0]}" ""
	gossip-node -d "$T/n2" -l "127.0.0.1:${PORTS[1]}" -p "127.0.0.1:${PORTS[0]}" -i "$HB" -s "$SYNC" \
		</dev/null >n2.out 2>n2.log 3>&- &
	pid=$! PGID_n2=$! NODES="$NODES n2"
	# Each knows the other alive: a node tells the members it knows that it leaves.
	wait_for 10 sh -c "[ \"\$(gossip-node -d $T/n1 -j status | jq .alive)\" = 2 ]"
	wait_for 10 sh -c "[ \"\$(gossip-node -d $T/n2 -j status | jq .alive)\" = 2 ]"
	kill -TERM "$pid"
	wait "$pid" || fail "exit $?: $(cat n2.log)"
	gone "$pid" || fail "left running: $(group_procs "$pid")"
	[ ! -s n2.out ] || fail "stdout: $(od -c n2.out | head)"
	run ! grep -E "Terminated|Killed|Hangup|Broken pipe" n2.log
	wait_for 10 eval '[ "$(state_of n1 n2)" = left ]' ||
		fail "n1 sees n2 $(state_of n1 n2): $(cat n2.log)"
}

@test "a port in use: exit 2 before saying 'listening', nothing left running" {
	node_start n1 "${PORTS[0]}" ""
	gossip-node -d "$T/n2" -l "127.0.0.1:${PORTS[0]}" </dev/null >n2.out 2>n2.log 3>&- &
	pid=$! PGID_n2=$! NODES="$NODES n2"
	status=0
	wait "$pid" || status=$?
	[ "$status" = 2 ] || fail "exit $status: $(cat n2.log)"
	grep -q "gossip-node: cannot listen on 127.0.0.1:${PORTS[0]}" n2.log || fail "$(cat n2.log)"
	grep -q "Address already in use" n2.log
	run ! grep -q "gossip-node: listening" n2.log
	gone "$pid" || fail "left running: $(group_procs "$pid")"
	[ -z "$(dir_procs "$T/n2")" ] || fail "left running: $(dir_procs "$T/n2")"
	[ ! -s n2.out ]
	flock -n n2/node.lock true
}

@test "old and bad spellings: exit 2, one line saying what to do, no state directory made" {
	for args in "-j 127.0.0.1:7946" "-l 127.0.0.1:${PORTS[0]} -j 127.0.0.1:7946" "-j" "-j stop" \
		"-p 10.0.0.1" "-p :7946" "-a 10.0.0.1" "-a 10.0.0.1:0" "-l 0.0.0.0:7946" "-l [::]:7946" \
		"start" "stop now" "-l 127.0.0.1:7946 stop" "-p 127.0.0.1:7946 status"; do
		# shellcheck disable=SC2086
		run --separate-stderr gossip-node -d "$T/fresh" $args
		[ "$status" = 2 ] || fail "$args: exit $status"
		[ "${#stderr_lines[@]}" = 1 ] && [[ "$stderr" == gossip-node:* ]] || fail "$args: $stderr"
		[ ! -e "$T/fresh" ] || fail "$args made the state directory"
	done
	run --separate-stderr gossip-node -d "$T/fresh" -j 127.0.0.1:7946
	assert_error gossip-node "-j is JSON output in the toolkit; join through a member with -p host:port"
	run --separate-stderr gossip-node -d "$T/fresh" -l 0.0.0.0:7946
	assert_error gossip-node "-l 0.0.0.0:7946: the others cannot reach a wildcard address; give this node's address with -a host:port"
}

@test "a join the peer refuses (it does not trust this node) is in the log, once" {
	cat n1.pub >n1/trusted   # n1 trusts only itself
	node_start n1 "${PORTS[0]}" ""
	node_start n2 "${PORTS[1]}" "${PORTS[0]}"
	# Refused again and again (every interval), logged once.
	wait_for 10 eval '[ "$(grep -c "serve: refused" n1.log)" -ge 3 ]'
	[ "$(grep -c "^gossip-peers: tcp://" n2.log)" = 1 ] || fail "$(cat n2.log)"
	grep -q "^gossip-peers: tcp://127.0.0.1:${PORTS[0]}: refused: this node is not in its trusted file" n2.log ||
		fail "$(cat n2.log)"
}

@test "-a: nodes bound to 0.0.0.0 in network namespaces announce their own addresses" {
	why=$(net_ok) || skip "$why"
	NS=go$$
	net_up "$NS" 2 || fail "cannot set up the namespaces"
	for i in 1 2; do
		ip netns exec "$NS-$i" gossip-node -d "$T/n$i" -l 0.0.0.0:7946 -a "10.222.0.$i:7946" \
			$([ "$i" = 1 ] || echo "-p 10.222.0.1:7946") -i "$HB" -s "$SYNC" \
			</dev/null >/dev/null 2>>"$T/n$i.log" 3>&- &
		eval "PGID_n$i=$!"
		NODES="$NODES n$i"
		wait_for 10 test -s "$T/n$i/listening" || fail "n$i did not start: $(cat "n$i.log")"
	done
	grep -qx "udp://0.0.0.0:7946" n1/listening
	for i in 1 2; do
		wait_for 10 sh -c "[ \"\$(gossip-node -d $T/n$i -j status | jq .alive)\" = 2 ]" ||
			fail "$(gossip-peers -d "$T/n$i" list)"
		gossip-node -d "$T/n$i" -j status |
			jq -e --arg a "10.222.0.$i:7946" '.addrs == ["udp://\($a)", "tcp://\($a)"]' ||
			fail "$(gossip-node -d "$T/n$i" -j status)"
	done
	gossip-peers -d "$T/n1" -j list | jq -e 'select(.name == "n2") | .addrs == ["udp://10.222.0.2:7946", "tcp://10.222.0.2:7946"]'
	gossip-send -d "$T/n1" set across yes | gossip-merge -d "$T/n1" | ip netns exec "$NS-1" gossip-send -d "$T/n1" -M
	wait_for 5 stored n2 across yes
}
