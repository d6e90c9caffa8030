# Sourced by the benchmarks: the share of the CPUs that the hypervisor
# gave to others ("steal") over a stretch of time.  On a shared virtual
# machine that, more than the build, moves p99 from one run to the next.
#
#   from=$(steal_mark); ...; steal_since "$from"    prints whole percent

# the stolen ticks so far and the time, in nanoseconds
steal_mark() {
    echo "$(awk '/^cpu / { print $9; exit }' /proc/stat) $(date +%s%N)"
}

steal_since() {
    echo "$1 $(steal_mark) $(nproc) $(getconf CLK_TCK)" | awk '{
        printf "%.0f\n", ($3 - $1) * 1e11 / $6 / $5 / ($4 - $2)
    }'
}
