#!/usr/bin/env bats
# gossip-keygen: identities, their files and modes, and refusals.
load helper

@test "keygen makes key (0600) and key.pub, and prints the trusted line" {
	run --separate-stderr gossip-keygen -d n1 -n alpha
	assert_success
	assert_output --regexp '^[A-Za-z0-9+/]{43}= alpha$'
	[ "$(stat -c %a n1/key)" = 600 ]
	[ "$(stat -c %a n1)" = 700 ]
	[ "$(cat n1/key.pub)" = "$output" ]
	[ -z "$stderr" ]
}

@test "keygen uses GOSSIP_DIR, and the host name when no name is given" {
	GOSSIP_DIR="$T/env" run gossip-keygen
	assert_success
	assert_output --regexp " $(hostname)\$"
	[ -f env/key ]
}

@test "keygen refuses to overwrite a key without -f, and changes nothing" {
	mknode n1
	before=$(snapshot n1)
	run --separate-stderr gossip-keygen -d n1 -n other
	assert_failure 2
	assert_error gossip-keygen "exists: use -f"
	[ -z "$output" ]
	[ "$(snapshot n1)" = "$before" ]
}

@test "keygen -f replaces the identity" {
	mknode n1
	old=$(cat n1.pub)
	run gossip-keygen -f -d n1 -n n1
	assert_success
	[ "$output" != "$old" ]
	[ "$(cat n1/key.pub)" = "$output" ]
}

@test "keygen -y prints the public line of an existing key and remakes key.pub" {
	mknode n1
	rm n1/key.pub
	run gossip-keygen -y -d n1
	assert_success
	[ "${output%% *}" = "$(cut -d' ' -f1 n1.pub)" ]
	[ -f n1/key.pub ]
}

@test "keygen refuses a name with a space" {
	run --separate-stderr gossip-keygen -d n1 -n "a b"
	assert_failure 2
	assert_error gossip-keygen "must be 1 to 63 printable characters"
	[ ! -e n1/key ]
}

@test "keygen reports a state dir it cannot create" {
	touch file
	run --separate-stderr gossip-keygen -d file/sub
	assert_failure 2
	assert_error gossip-keygen "cannot create file/sub"
}

@test "keygen: --help, --version, bad and repeated options" {
	run gossip-keygen --help
	assert_success
	assert_line --index 0 "usage: gossip-keygen [-f] [-d dir] [-n name]"
	run gossip-keygen --version
	assert_success
	assert_output --regexp '^gossip-keygen \(gossip\) [0-9.]+$'
	run --separate-stderr gossip-keygen --bogus
	assert_failure 2
	run --separate-stderr gossip-keygen -n a -n b
	assert_failure 2
	assert_error gossip-keygen "option -n given twice"
	run --separate-stderr gossip-keygen extra
	assert_failure 2
}
