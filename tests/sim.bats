#!/usr/bin/env bats
# gossip-sim against the theory it claims to reproduce, with tolerances derived from the
# runs: a mean of R runs with sample standard deviation sd is within 3 standard errors
# (3*sd/sqrt(R)) of its expectation but for 0.3% of seeds; a share p of R runs within
# 3*sqrt(p(1-p)/R). Where a law holds only up to an O(1) or a finite-N term, that
# allowance is added and named. Every run is seeded, so the figures repeat exactly. Then
# determinism, bad input, JSON and the plot.
load helper

# sim ARGS...: the summary line of a one-configuration JSON run, in $S.
sim() {
	S=$(gossip-sim -j "$@" | jq -c 'select(.summary)')
	[ -n "$S" ] || fail "no summary from gossip-sim $*"
}

# within WHAT GOT WANT TOL: |GOT - WANT| <= TOL, reported either way.
within() {
	echo "# $1: got $2, theory $3, tolerance $4" >&3
	awk -v g="$2" -v w="$3" -v t="$4" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= t) }' ||
		fail "$1: got $2, want $3 +- $4"
}

# se3: three standard errors of the mean of field $1 in $S.
se3() { jq -r --arg f "$1" '3 * .[$f].sd / (.[$f].n | sqrt)' <<<"$S"; }
get() { jq -r "$1" <<<"$S"; }

@test "push epidemic: rounds until all know is log2 N + ln N + O(1) (Frieze and Grimmett; Pittel 1987)" {
	# Every informed member pushes every round, no loss of interest (anti-entropy push).
	# Pittel: S_N = log2 N + ln N + O(1); the mean-field recursion puts the O(1) between 0.9
	# and 1.5 for N up to 10^12, so the allowance is the band [0, 2] (centre 1, +-1).
	for nr in 1000:200 10000:50 100000:10; do
		n=${nr%:*} r=${nr#*:}
		sim -m anti-entropy -M push -n "$n" -r "$r"
		law=$(awk -v n="$n" 'BEGIN { print log(n) / log(2) + log(n) + 1 }')
		within "push N=$n rounds (law + 1)" "$(get .t_all.mean)" "$law" "$(awk -v s="$(se3 t_all)" 'BEGIN { print 1 + s }')"
	done
}

@test "push-pull: rounds until all know is log3 N + O(log log N) (Karp et al. 2000)" {
	# The O(log log N) of the pull phase is log2 ln N (the uninformed share squares each
	# round); allowance 1 round for the O(1) left.
	for nr in 1000:200 10000:50 100000:10; do
		n=${nr%:*} r=${nr#*:}
		sim -m anti-entropy -M push-pull -n "$n" -r "$r"
		law=$(awk -v n="$n" 'BEGIN { print log(n) / log(3) + log(log(n)) / log(2) }')
		within "push-pull N=$n rounds" "$(get .t_all.mean)" "$law" "$(awk -v s="$(se3 t_all)" 'BEGIN { print 1 + s }')"
	done
}

@test "rumor mongering, push, feedback, coin: residue s = exp(-(k+1)(1-s)) (Demers et al. 1987)" {
	# The closed form solves the differential equations, in which contacts happen one at a
	# time (-A); allowance 0.001 for N = 10^5 being finite.
	for k in 1 2 3; do
		sim -m rumor -M push -c -A -n 100000 -k "$k" -r 10
		s=$(awk -v k="$k" 'BEGIN { s = 0.5; for (i = 0; i < 500; i++) s = exp(-(k + 1) * (1 - s)); print s }')
		within "residue k=$k" "$(get .residue.mean)" "$s" "$(awk -v e="$(se3 residue)" 'BEGIN { print e + 0.001 }')"
	done
}

@test "rumor mongering at n=1000 reproduces Demers et al.'s Tables 1 and 2 (residue, traffic)" {
	# The papers' figures are means of their own runs, rounded: allowance 0.005 on the
	# residue, 0.05 on the traffic, beside our 3 standard errors.
	while read -r rule k s m; do
		opts=
		[ "$rule" = feedback-counter ] || opts="-b -c"
		sim -m rumor -M push $opts -n 1000 -k "$k" -r 300
		within "$rule k=$k residue" "$(get .residue.mean)" "$s" "$(awk -v e="$(se3 residue)" 'BEGIN { print e + 0.005 }')"
		within "$rule k=$k traffic" "$(get .msgs.mean)" "$m" "$(awk -v e="$(se3 msgs)" 'BEGIN { print e + 0.05 }')"
	done <<'EOF'
feedback-counter 1 0.176 1.74
feedback-counter 2 0.037 3.30
feedback-counter 3 0.011 4.53
feedback-counter 5 0.0012 6.68
blind-coin 2 0.205 1.59
blind-coin 3 0.060 2.82
blind-coin 5 0.008 4.95
EOF
}

@test "infect-and-die with fanout ln N + c reaches all with chance exp(-exp(-c)) (Kermarrec et al. 2003)" {
	# Fixed fanout k, so c = k - ln N; allowance 0.03 for N = 1000 being finite (the law
	# is for N to infinity).
	for k in 6 7 8 9; do
		sim -m infect-and-die -n 1000 -k "$k" -r 1000
		read -r p tol < <(awk -v k="$k" 'BEGIN { c = k - log(1000); p = exp(-exp(-c)); print p, 3 * sqrt(p * (1 - p) / 1000) + 0.03 }')
		within "infect-and-die k=$k P(all)" "$(get .p_all)" "$p" "$tol"
	done
}

@test "the node model: the library's trees (gossip_peers_rumor) and the simulator's own agree" {
	# With 2% of the datagrams lost, so that some runs miss a member; both settings of the
	# second tree.
	for second in always doubt; do
		sim -m node -n 40 -r 3000 -p 0.02 --second-tree $second
		lib=$S
		[ "$(get .pick)" = library ]
		[ "$(get .second_tree)" = $second ]
		sim -m node -n 40 -r 3000 -p 0.02 --own-pick --second-tree $second
		[ "$(get .pick)" = own ]
		p1=$(jq -r .p_rumor_all <<<"$lib") p2=$(get .p_rumor_all)
		# Two shares of 3000 runs: the difference has sd sqrt(2p(1-p)/3000).
		within "$second: share reached by rumor alone, own vs library" "$p2" "$p1" \
			"$(awk -v p="$p1" 'BEGIN { print 3 * sqrt(2 * p * (1 - p) / 3000) + 0.002 }')"
		eval "p_$second=\$p1"
	done
	# A lost datagram cuts a subtree off the first tree; the eager second tree mostly
	# reaches it, the lazy one does not (repair, which the model leaves out, would).
	awk -v a="$p_always" -v d="$p_doubt" 'BEGIN { exit !(a > d + 0.1) }' ||
		fail "2% loss: rumor alone reached all in $p_always (always) and $p_doubt (doubt) of the runs"
	# Theory without loss: the trees reach every member, each sending 2(n-1)/n on average
	# with both trees, (n-1)/n with the first alone (the default, as gossip-node's).
	for pick in "" --own-pick; do
		sim -m node -n 40 -r 300 $pick --second-tree always
		[ "$(get .p_rumor_all)" = 1 ] || fail "node $pick: rumor alone did not always reach all: $S"
		within "node $pick msgs/node" "$(get .msgs.mean)" 1.95 0.1
		sim -m node -n 40 -r 300 $pick
		[ "$(get .second_tree)" = doubt ]
		[ "$(get .p_rumor_all)" = 1 ] || fail "node $pick, lazy: rumor alone did not always reach all: $S"
		within "node $pick lazy msgs/node" "$(get .msgs.mean)" 0.975 0.05
	done
}

@test "swim: the suspicion timeout is gossip_suspicion_ms at the node's defaults" {
	# 0.8 * log10(21) * 1250 ms at 20 members; dead no sooner, and within a tick (100 ms)
	# and a few messages after.
	gossip-sim -j -m swim -n 20 -r 20 | jq -c 'select(.summary | not)' >runs
	[ "$(wc -l <runs)" = 20 ]
	susp=$(awk 'BEGIN { printf "%d", 0.8 * log(21) / log(10) * 1250 }')
	while read -r gap; do
		awk -v g="$gap" -v s="$susp" 'BEGIN { exit !(g >= s - 1 && g <= s + 150) }' ||
			fail "suspect to dead took $gap ms, want $susp to $((susp + 150))"
	done < <(jq -r '.first_dead - .first_suspect' runs)
	jq -e 'select(.t_all == null)' runs && fail "a run did not end with every member holding the crashed one dead"
	true
}

@test "a seed repeats a run byte for byte; another seed does not" {
	for m in "-m rumor -n 5000 -k 2" "-m node -n 50" "-m swim -n 30 -p 0.05" "-m infect-and-die -n 2000 -k 8"; do
		gossip-sim -j -r 3 --seed 7 $m >a
		gossip-sim -j -r 3 --seed 7 $m >b
		cmp a b || fail "$m: two runs with seed 7 differ"
		gossip-sim -j -r 3 --seed 8 $m >c
		! cmp -s a c || fail "$m: seeds 7 and 8 gave the same runs"
	done
	gossip-sim -r 3 --seed 7 -m rumor -k 1,2 >a
	gossip-sim -r 3 --seed 7 -m rumor -k 1,2 >b
	cmp a b
}

@test "times are seconds: the same runs as the old ms options gave, number for number" {
	# Recorded with the ms options before they became seconds (commit 0ac6bb8), e.g.
	# (the node rows recorded again when the node's rumor became the trees, issue 20; they
	# are the eager trees', --second-tree always, since the lazy one became the default)
	#   -m node -n 30 -r 4 --seed 5 -p 0.05 -l 2.5 -L 0.7 --sync-ms 15 -s 0.5 --cpus 2 --cpu-ms 0.3
	# A value in seconds becomes the very number of ms its old spelling gave (0.00003 s is
	# 0.03 ms, not 0.030000000000000002), so every figure repeats.
	f='select(.summary) | [.latency_ms, .jitter_ms, .cpu_ms, .p_rumor_all, .t_all.mean, .t_all.median, .t_ave.mean, .msgs.mean]'
	w='select(.summary) | [.latency_ms, .jitter_ms, .p_all, .t_all.mean, .first_suspect.mean, .first_dead.mean, .msgs_per_s.mean]'
	while IFS='|' read -r args filter want; do
		got=$(gossip-sim -j $args | jq -c "${!filter}")
		[ "$got" = "$want" ] || fail "gossip-sim $args: got $got, recorded $want"
	done <<'EOF'
-m node -n 30 -r 4 --seed 5 -p 0.05 --latency-mean 0.0025 --latency-sd 0.0007 --sync-time 0.015 -s 0.5 --cpus 2 --cpu-time 0.0003 --second-tree always|f|[2.5,0.7,0.3,1,7.90911,7.29575,4.8099,1.90833]
-m node -n 40 -r 50 --latency-mean 0.00035 --sync-time 0.25 --cpu-time 0.0011 --second-tree always|f|[0.35,0.175,1.1,1,43.0915,43.0892,21.6367,1.9155]
-m node -n 40 -r 50 --latency-mean 3.5e-4 --sync-time 25e-2 --cpu-time .0011 --second-tree always|f|[0.35,0.175,1.1,1,43.0915,43.0892,21.6367,1.9155]
-m swim -n 15 -r 2 --seed 3 -p 0.05 --latency-mean 0.0012 --latency-sd 0.00003|w|[1.2,0.03,1,3668.63,2377.98,3666.8,5.4472]
EOF
}

@test "-t: whole rounds for the round models, seconds (fractions too) for the timed ones" {
	sim -m rumor -n 100 -r 1 -t 3
	[ "$(get '.share | length')" = 4 ] || fail "-t 3 did not stop a round model after 3 rounds: $S"
	sim -m swim -n 10 -r 1 -t 2.5
	jq -e '.duration_s.mean >= 2.5 and .duration_s.mean < 2.6' <<<"$S" >/dev/null ||
		fail "-t 2.5 did not run swim for 2.5 s: $S"
	sim -m node -n 10 -r 1 -t 0.5 -s 0.05
	[ "$(get .t_all.n)" = 1 ] || fail "-t 0.5 -s 0.05: the node model did not inform all: $S"
}

@test "the old ms spellings: exit 2 and one line giving the new one, the value in seconds" {
	while IFS='|' read -r args text; do
		run --separate-stderr gossip-sim -m node $args
		[ "$status" = 2 ] || fail "gossip-sim $args: exit $status, want 2"
		assert_error gossip-sim "$text"
		[ -z "$output" ] || fail "gossip-sim $args wrote to stdout: $output"
	done <<'EOF'
-l 0.5|-l 0.5: latencies are in seconds now: --latency-mean 0.0005
-l 1|-l 1: latencies are in seconds now: --latency-mean 0.001
--latency 2.5|--latency 2.5: latencies are in seconds now: --latency-mean 0.0025
--latency=2.5|--latency 2.5: latencies are in seconds now: --latency-mean 0.0025
-L 0.2|-L 0.2: latencies are in seconds now: --latency-sd 0.0002
--jitter 1|--jitter 1: latencies are in seconds now: --latency-sd 0.001
--jit 1|--jitter 1: latencies are in seconds now: --latency-sd 0.001
--sync-ms 10|--sync-ms 10: times are in seconds now: --sync-time 0.01
--cpu-ms 1.5|--cpu-ms 1.5: times are in seconds now: --cpu-time 0.0015
-l x|-l x: latencies are in seconds now: --latency-mean SECONDS
--cpu-ms -1|--cpu-ms -1: times are in seconds now: --cpu-time SECONDS
EOF
	# Abbreviations that once meant an ms option now match two options: refused.
	for args in "--sync 10" "--cpu 1" "--lat 1"; do
		run --separate-stderr gossip-sim -m node $args
		[ "$status" = 2 ] || fail "gossip-sim $args: exit $status, want 2"
		[[ $stderr == *ambiguous* ]] || fail "gossip-sim $args: $stderr"
		[ -z "$output" ] || fail "gossip-sim $args wrote to stdout: $output"
	done
}

@test "JSON lines: one per run, a summary per configuration, all valid" {
	run --separate-stderr gossip-sim -j -m rumor -n 100,200 -k 1,2 -r 3
	assert_success
	[ "${#lines[@]}" = 16 ]
	printf '%s\n' "${lines[@]}" | jq -e . >/dev/null
	[ "$(printf '%s\n' "${lines[@]}" | jq -c 'select(.summary)' | wc -l)" = 4 ]
	printf '%s\n' "${lines[@]}" | jq -s -e 'map(select(.run)) | length == 12 and all((.share | length > 1) and .share[0] == 1 / .n)' >/dev/null
	printf '%s\n' "${lines[@]}" | jq -e 'select(.summary) | .residue.mean >= 0 and .t_last.n == 3' >/dev/null
	gossip-sim -j -m swim -n 10 -r 2 | jq -e 'select(.summary) | .first_dead.mean > 0' >/dev/null
	gossip-sim -j -m node -n 10 -r 2 | jq -e 'select(.summary) | (.share | length) == 201' >/dev/null
}

@test "the text output: a header and a row per configuration" {
	run gossip-sim -m infect-and-die -n 100 -k 3,4 -r 5
	assert_success
	assert_line --index 0 --partial '# infect-and-die'
	[ "${#lines[@]}" = 4 ]
	run gossip-sim -v -m rumor -n 100 -r 2
	assert_line --partial 'run 2'
	assert_line --partial 'informed share: 0:0.01'
}

@test "--plot makes a PNG and an SVG with several configurations in one picture" {
	command -v gnuplot >/dev/null || fail "gnuplot is not installed: run ./bootstrap"
	gossip-sim -m rumor -n 1000 -k 1,2,3 -r 5 --plot r.png >/dev/null
	[ "$(head -c 8 r.png | xxd -p)" = 89504e470d0a1a0a ]
	gossip-sim -m node -n 40 -r 5 --plot n.svg >/dev/null
	grep -q '<svg' n.svg
	grep -q 'n=40' n.svg
}

@test "--plot without gnuplot: exit 2 and one line" {
	sim=$(command -v gossip-sim)
	run --separate-stderr env PATH=/nonexistent "$sim" -m rumor -r 1 --plot x.png
	assert_failure 2
	assert_error gossip-sim "gnuplot is not installed"
	[ ! -e x.png ]
}

@test "bad input: exit 2 and one line naming the option" {
	while IFS='|' read -r args text; do
		run --separate-stderr gossip-sim $args
		[ "$status" = 2 ] || fail "gossip-sim $args: exit $status, want 2"
		assert_error gossip-sim "$text"
		[ -z "$output" ] || fail "gossip-sim $args wrote to stdout: $output"
	done <<'EOF'
-n 1|-n 1: want members, 2 to 1000000
-n 2000000|-n 2000000: want members
-n abc|-n abc: want members
-n 10,,20|want members
-n 10,|want members
-k 0|-k 0: want a whole number, 1 to 255
-m node --second-tree lazy|--second-tree lazy: want always or doubt, as gossip-node -B takes
-m rumor --second-tree always|--second-tree: the node model's
-k 1.5|-k 1.5: want a whole number
-p 1|-p 1: want a chance of loss
-p -0.1|-p -0.1: want a chance of loss
-r 0|-r 0: want runs
-m gossip|-m gossip: want anti-entropy, rumor, infect-and-die, node or swim
-M sideways|-M sideways: want push, pull or push-pull
--seed -1|--seed -1: want a whole number
--seed x|--seed x: want a whole number
--plot out.pdf|--plot out.pdf: want a file name ending in .png or .svg
-m anti-entropy -k 2|-k: anti-entropy has no k
-m node -b|loss of interest is the rumor model's
-m swim -M push|-M: only anti-entropy and rumor have a mode
-m node -A|-A: contacts one by one are for the round models
-t 0|-t 0: want a limit
-t -1|-t -1: want a limit
-m rumor -t 2.5|-t 2.5: the round models count rounds: want a whole number, 1 to 1000000
-m infect-and-die -t 0.5|-t 0.5: the round models count rounds
-m rumor --latency-mean 0.005|--latency-mean, --latency-sd: latency is for the timed models
-m anti-entropy --latency-sd 0.001|--latency-mean, --latency-sd: latency is for the timed models
-m node --latency-mean 0.001 --latency-sd 0.002|--latency-sd 0.002: at most the mean latency (--latency-mean 0.001)
-m swim --latency-sd 0.002|--latency-sd 0.002: at most the mean latency (--latency-mean 0.001)
-m node --latency-mean -0.001|--latency-mean -0.001: want seconds, 0 to 1000
-m node --latency-mean 2000|--latency-mean 2000: want seconds, 0 to 1000
-m node --latency-mean 1ms|--latency-mean 1ms: want seconds, 0 to 1000
-m node --latency-sd x|--latency-sd x: want seconds, 0 to 1000
-m node --sync-time -1|--sync-time -1: want seconds, 0 to 1000
-m node --sync-time inf|--sync-time inf: want seconds, 0 to 1000
-m node --cpu-time nan|--cpu-time nan: want seconds, 0 to 1000
-m node --cpu-time 0x1p-3|--cpu-time 0x1p-3: want seconds, 0 to 1000
-m rumor --cpu-time 0.001|--cpus, --cpu-time: the node model's
-m swim --cpus 2|--cpus, --cpu-time: the node model's
-m node -s 0|-s 0: want a positive number of seconds
-m swim -n 3000|-n 3000: the swim model takes at most 2000 members
-m node -i 0|-i 0: want a positive number of seconds
-m node -J 1|-J 1: want a fraction from 0 to below 1
-n 10 -n 20|option -n given twice
EOF
	run --separate-stderr gossip-sim -x
	assert_failure 2
	[[ $stderr == *usage:* ]]
	run --separate-stderr gossip-sim extra
	assert_failure 2
}

@test "--help and --version" {
	run gossip-sim --help
	assert_success
	assert_line --index 0 --partial 'usage: gossip-sim'
	run gossip-sim --version
	assert_success
	assert_output --partial 'gossip-sim (gossip)'
}
