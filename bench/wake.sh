#!/usr/bin/env bash
# What a wake-up costs on this machine: two processes pass a byte back
# and forth through pipes for 3 s, on two CPUs, on one, and to a CPU
# kept from idling; printed as the round trip in microseconds, with the
# CPU time the hypervisor stole meanwhile.  A durable submission hands
# its write to a pool thread and its answers back to the event loop: on
# a virtual machine whose idle CPUs halt (no guest halt-polling), waking
# a thread on the other CPU waits for the host to run that CPU again.
# That is a floor under the submissions' latency which nginx cannot
# lower; read bench/submit.sh's figures beside it.
set -euo pipefail

. "$(dirname "$0")/lib/steal.bash"

roundtrip() {
    local a=$1 b=$2 from
    from=$(steal_mark)
    perl -e '
        use Time::HiRes qw(time);
        pipe(my $r1, my $w1) or die; pipe(my $r2, my $w2) or die;
        my ($a, $b) = @ARGV;
        my $pid = fork // die;
        if ($pid == 0) {
            system("taskset -p -c $b $$ >/dev/null") == 0 or exit 1;
            while (sysread($r1, my $c, 1)) { last if $c eq "q"; syswrite($w2, "x") }
            exit 0;
        }
        system("taskset -p -c $a $$ >/dev/null") == 0 or die;
        select(undef, undef, undef, 0.2);
        my ($n, $end) = (0, time + 3);
        while (time < $end) { syswrite($w1, "x"); sysread($r2, my $c, 1); $n++ }
        syswrite($w1, "q"); waitpid($pid, 0);
        printf "%.1f", 3e6 / $n;
    ' "$a" "$b" 2>/dev/null | tr -d '\n'
    echo " us, steal $(steal_since "$from")%"
}

if [ "$(nproc)" -lt 2 ]; then
    echo "wake-up round trip: one CPU, nothing to measure"
    exit 0
fi

echo "wake-up round trip through a pipe:"
echo "  one CPU to the other       $(roundtrip 0 1)"
echo "  both on one CPU            $(roundtrip 0 0)"
# the other CPU kept from halting by a loop that yields to anything else
taskset -c 1 chrt --idle 0 sh -c 'while :; do :; done' &
spinner=$!
trap 'kill "$spinner"' EXIT
echo "  to a CPU that never idles  $(roundtrip 0 1)"
