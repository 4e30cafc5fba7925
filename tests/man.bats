#!/usr/bin/env bats
# The man pages: they lint clean, each program's --help is its SYNOPSIS, and every
# command in an EXAMPLES section runs (so the documentation cannot lie).
load helper

MAN="${GOSSIP_SRCDIR:-$BATS_TEST_DIRNAME/..}/man"

@test "every man page lints clean with mandoc" {
	command -v mandoc >/dev/null || fail "mandoc is not installed: run ./bootstrap"
	for page in "$MAN"/*.[157]; do
		run mandoc -T lint -W warning "$page"
		assert_success
	done
}

@test "each program's --help prints its man page SYNOPSIS" {
	for prog in gossip-keygen gossip-send gossip-inspect gossip-merge gossip-listen gossip-peers gossip-node gossip-sim gossip-query gossip-order; do
		synopsis=$(mandoc -T ascii "$MAN/$prog.1" | col -b |
			sed -n '/^SYNOPSIS/,/^DESCRIPTION/p' | sed '1d;$d' | tr -s ' \t\n' '   ')
		# Each line of --help, "usage: " and its indent taken off and its spaces squeezed,
		# is a run of words in the SYNOPSIS (one awk, not three processes a line).
		run awk -v syn=" $synopsis " '{ sub(/^usage: /, ""); sub(/^ */, ""); gsub(/  +/, " ")
			if (!index(syn, " " $0 " ")) { print "'"$prog"': \047" $0 "\047 is not in the SYNOPSIS: " syn; bad = 1 } }
			END { exit bad }' < <("$prog" --help)
		[ "$status" = 0 ] || fail "$output"
	done
}

@test "every EXAMPLES command in the man pages runs" {
	for page in "$MAN"/*.[157]; do
		sed -n '/^\.Sh EXAMPLES/,/^\.Sh /p' "$page" | sed -n 's/^\$ //p' |
			sed 's/\\e/\\/g' >"cmds"
		[ -s cmds ] || continue
		mkdir -p "run.$(basename "$page")"
		(cd "run.$(basename "$page")" && bash -e -o pipefail ../cmds >out 2>&1) ||
			fail "$(basename "$page"): an example failed: $(cat "run.$(basename "$page")/out")"
	done
}
