#!/usr/bin/env bash
# Submission and status-read throughput, against a plain `return` on the
# same nginx in the same run.  Prints req/s, p50, p99 and the ratio to the
# baseline for each, with 1 worker (wrk -t1) and with 2 workers (wrk -t2);
# and the size of SQLite's write-ahead log: its peak while submissions
# run, and after 3 s of idle.
#
#   ./build.sh bench            or    bench/submit.sh
#   DURATION=10s CONNECTIONS=64 WAITING=50000 RUNS="1:1 2:2"
#   STORE=postgresql PG_HOST=DIR   the PostgreSQL store, a schema of its
#                      own in the database async_task of the cluster whose
#                      Unix socket is in DIR (./build.sh bench starts one)
#   BENCH_DIR=/dev/shm/bench   nginx's prefix and the SQLite file there
#                      (default build/bench): on tmpfs a flush costs
#                      nothing, which parts the disk's share of the tail
#                      from the module's
#
# Each figure comes with the CPU time the hypervisor stole meanwhile, and
# SQLite's runs start with the disk's own flush times (p50, p99, p99.9).
#
# Stores and nodes side by side: COMPARE="sqlite:1 postgresql:1
# postgresql:2" (with PG_HOST) measures only the baseline and the durable
# submissions of each, taking turns within each of ROUNDS rounds, for
# each of RUNS.  "postgresql:2" is two nginx nodes (two prefixes, ports
# BENCH_PORT and BENCH_PORT+1, node=bench-a and bench-b) on one schema,
# each with the workers of RUNS, and two wrk at once, each with half of
# the connections (and of wrk's threads, at least one) on its own node:
# the req/s is their sum, the p50 and p99 the higher of the two.
#
# To compare builds of the module on a shared machine, where figures move
# from minute to minute: MODULES="a.so b.so" ROUNDS=3 measures only the
# baseline and the durable submissions, the builds taking turns within
# each round (a.so, b.so, a.so, b.so, ... for each of RUNS).
#
# The upstream is "down": what is measured is the API and the store, with
# no dispatching beside it (bench/e2e.sh measures that).
#
# wrk runs as SCHED_BATCH (WRK_POLICY=batch, the default; "other" for
# the normal policy): on one 2-core machine that holds both the client
# and nginx, each answer woke wrk on nginx's CPU and the wake-up preempted
# nginx inside its writev(): a context switch per answer, 21% of the
# event loop's samples and thousands of preemptions a second.  A client
# on another host costs nginx nothing of the kind.  A batch thread is not
# run sooner for being woken, so wrk's own latency figures can only come
# out longer for it, never shorter.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib/steal.bash"
nginx=${NGINX_BINARY:-/usr/sbin/nginx}
module=${MODULE_PATH:-$root/build/nginx/objs/ngx_http_async_task_module.so}
duration=${DURATION:-10s}
conns=${CONNECTIONS:-64}
waiting=${WAITING:-50000}
port=${BENCH_PORT:-18480}
policy=${WRK_POLICY:-batch}
pool_threads=${POOL_THREADS:-4}
dir=${BENCH_DIR:-$root/build/bench}
store=${STORE:-sqlite}
schema=

body='{"prompt": "a red fox standing in fresh snow at dawn, telephoto, shallow depth of field, soft golden light, highly detailed fur", "negative_prompt": "blurry, low quality, watermark, text", "width": 1024, "height": 1024, "steps": 20, "seed": 42, "cfg_scale": 4.5, "priority": 5}'

cat > /tmp/async_task_post.lua <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF

# the async_task_store line's store: SQLite, or a new PostgreSQL schema
# (dropped at the next run's start: its tasks are left to look at)
store_setup() {
    local old

    if [ "$store" != postgresql ]; then
        store_uri=$dir/data/tasks.db
        return
    fi
    for old in $(psql -h "$PG_HOST" -U postgres -d async_task -qAtc \
                 "SELECT nspname FROM pg_namespace WHERE nspname ~ '^bench_'"); do
        psql -h "$PG_HOST" -U postgres -d async_task -qAtc \
            "DROP SCHEMA $old CASCADE" 2>/dev/null
    done
    schema=bench_$$_$RANDOM
    psql -h "$PG_HOST" -U postgres -d async_task -qAtc "CREATE SCHEMA $schema"
    store_uri="postgresql:///async_task?host=$PG_HOST&user=postgres&options=-csearch_path%3D$schema files=$root/build/bench-files"
}

start_nginx() {
    local workers=$1 module=${2:-$module} nodes=${3:-1}

    rm -rf "$dir" "$dir-2" "$root/build/bench-files"
    store_setup
    start_node "$dir" "$port" bench-a "$workers" "$module"
    if [ "$nodes" = 2 ]; then
        # the second node waits for the first's migrations: no race
        start_node "$dir-2" "$((port + 1))" bench-b "$workers" "$module"
    fi
    sleep 0.5
}

# one nginx: its prefix, port and name
start_node() {
    local prefix=$1 port=$2 name=$3 workers=$4 module=$5 uri=$store_uri

    mkdir -p "$prefix/logs"
    [ "$store" = postgresql ] && uri="$uri node=$name"

    cat > "$prefix/nginx.conf" <<EOF
load_module $module;
worker_processes $workers;
error_log $prefix/logs/error.log warn;
pid $prefix/logs/nginx.pid;
thread_pool async_task threads=$pool_threads;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    async_task_store $uri zone=async_task:512m
                     thread_pool=async_task max_queued=1000000;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location = /baseline {
            default_type application/json;
            return 202 '{"id":"0b6f8c52-7a1e-4c1b-9d53-2f0c6a3f1e27","kind":"image","status":"QUEUED"}';
        }
        location /api/v1/ {
            async_task_api;
            client_max_body_size 1m;
        }
    }
}
EOF
    "$nginx" -p "$prefix" -c "$prefix/nginx.conf"
}

stop_nginx() {
    local prefix

    for prefix in "$dir" "$dir-2"; do
        [ -f "$prefix/logs/nginx.pid" ] || continue
        "$nginx" -p "$prefix" -c "$prefix/nginx.conf" -s quit 2>/dev/null || true
    done
    sleep 1
}

# wrk's output to "req/s p50 p99 errors", and the share of the CPUs that
# was stolen meanwhile into $dir/steal: on a shared host that, not the
# build, is often what moves p99 from one run to the next
measure() {
    local threads=$1 url=$2 script=${3:-}
    local out from

    from=$(steal_mark)
    out=$(chrt --"$policy" 0 wrk -t"$threads" -c"$conns" -d"$duration" \
              --latency ${script:+-s "$script"} "$url")
    steal_since "$from" > "$dir/steal"

    awk '
        /Requests\/sec/ { rps = $2 }
        /^ +50%/        { p50 = $2 }
        /^ +99%/        { p99 = $2 }
        /Non-2xx/       { bad = $5 }
        /Socket errors/ { sock = $0 }
        END { printf "%s %s %s %s\n", rps, p50, p99, (bad ? bad : 0) }
    ' <<< "$out"
}

# the same on two nodes at once, each with half of the connections and
# of wrk's threads: "req/s p50 p99 errors", the sum and the higher ones
measure2() {
    local threads=$(( ($1 + 1) / 2 )) path=$2 script=${3:-} c=$conns

    conns=$((c / 2))
    measure "$threads" "http://127.0.0.1:$port$path" "$script" \
        > "$dir/wrk.1" &
    measure "$threads" "http://127.0.0.1:$((port + 1))$path" "$script" \
        > "$dir/wrk.2"
    wait
    conns=$c

    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        { rps += $1; bad += $4
          if (ms($2) > p50) { p50 = ms($2); s50 = $2 }
          if (ms($3) > p99) { p99 = ms($3); s99 = $3 } }
        END { printf "%s %s %s %s\n", rps, s50, s99, bad }
    ' "$dir/wrk.1" "$dir/wrk.2"
}

report() {
    local name=$1 base=$2 rps=$3 p50=$4 p99=$5 bad=$6
    printf '  %-34s %9.0f req/s  p50 %-8s p99 %-8s %5.1f%% of return  steal %2d%%%s\n' \
        "$name" "$rps" "$p50" "$p99" "$(echo "$rps * 100 / $base" | bc -l)" \
        "$(cat "$dir/steal" 2>/dev/null || echo 0)" \
        "$( [ "$bad" != 0 ] && echo "  ($bad non-2xx!)" )"
}

# the size of the write-ahead log, in MB
wal_mb() {
    local size
    size=$(stat -c %s "$dir/data/tasks.db-wal" 2>/dev/null || echo 0)
    echo "$size" | awk '{ printf "%.1f", $1 / 1048576 }'
}

# samples the log's size every 100 ms into $dir/wal.peak, until killed
wal_watch() {
    local peak=0 size
    while :; do
        size=$(stat -c %s "$dir/data/tasks.db-wal" 2>/dev/null || echo 0)
        [ "$size" -gt "$peak" ] && peak=$size && echo "$peak" > "$dir/wal.peak"
        sleep 0.1
    done
}

submit_one() {
    curl -s -H 'Content-Type: application/json' -d "$body" \
        "http://127.0.0.1:$port/api/v1/image/async" \
        | sed -n 's/^{"id":"\([^"]*\)".*/\1/p'
}

run() {
    local workers=$1 threads=$2 id base_post base_get r depth watcher

    start_nginx "$workers"
    echo "nginx: $workers worker(s), wrk -t$threads -c$conns -d$duration ($policy)"

    read -r base_post p50 p99 bad < <(measure "$threads" \
        "http://127.0.0.1:$port/baseline" /tmp/async_task_post.lua)
    report "POST return 202 (baseline)" "$base_post" "$base_post" "$p50" "$p99" "$bad"

    read -r base_get p50 p99 bad < <(measure "$threads" \
        "http://127.0.0.1:$port/baseline")
    report "GET return 202 (baseline)" "$base_get" "$base_get" "$p50" "$p99" "$bad"

    id=$(submit_one)
    read -r r p50 p99 bad < <(measure "$threads" \
        "http://127.0.0.1:$port/api/v1/tasks/$id")
    report "GET tasks/{id}, 1 waiting" "$base_get" "$r" "$p50" "$p99" "$bad"

    echo 0 > "$dir/wal.peak"
    wal_watch &
    watcher=$!

    read -r r p50 p99 bad < <(measure "$threads" \
        "http://127.0.0.1:$port/api/v1/image/async" /tmp/async_task_post.lua)
    report "POST image/async (durable)" "$base_post" "$r" "$p50" "$p99" "$bad"

    kill "$watcher"
    wait "$watcher" 2>/dev/null || true
    echo "  WAL: peak $(awk '{ printf "%.1f", $1 / 1048576 }' "$dir/wal.peak") MB" \
         "during the submissions, $(wal_mb) MB at their end," \
         "$(sleep 3; wal_mb) MB after 3 s idle"

    # top the queue up to the waiting target, then read again
    depth=$(curl -s "http://127.0.0.1:$port/api/v1/system/stats" \
            | sed -n 's/.*"depth":\([0-9]*\).*/\1/p')
    while [ "$depth" -lt "$waiting" ]; do
        wrk -t1 -c64 -d2s -s /tmp/async_task_post.lua \
            "http://127.0.0.1:$port/api/v1/image/async" >/dev/null
        depth=$(curl -s "http://127.0.0.1:$port/api/v1/system/stats" \
                | sed -n 's/.*"depth":\([0-9]*\).*/\1/p')
    done

    read -r r p50 p99 bad < <(measure "$threads" \
        "http://127.0.0.1:$port/api/v1/tasks/$id")
    report "GET tasks/{id}, $depth waiting" "$base_get" "$r" "$p50" "$p99" "$bad"

    local rows
    if [ "$store" = postgresql ]; then
        rows=$(psql -h "$PG_HOST" -U postgres -d async_task -qAtc \
               "SELECT count(*) FROM $schema.tasks")
    else
        rows=$(sqlite3 "$dir/data/tasks.db" "SELECT count(*) FROM tasks")
    fi
    echo "  store: $rows rows on disk, queue depth $depth"

    stop_nginx
}

# one build's submissions, after a baseline of the same nginx; on
# "nodes" nodes
compare() {
    local workers=$1 threads=$2 build=$3 nodes=${4:-1} base p50 p99 bad r
    local m=measure url=http://127.0.0.1:$port

    start_nginx "$workers" "$build" "$nodes"
    echo "$(basename "$build"), $store, $nodes node(s): $workers worker(s) each, wrk -t$threads -c$conns -d$duration in all ($policy)"

    if [ "$nodes" = 2 ]; then
        m=measure2
        url=
    fi

    read -r base p50 p99 bad < <($m "$threads" \
        "$url/baseline" /tmp/async_task_post.lua)
    report "POST return 202 (baseline)" "$base" "$base" "$p50" "$p99" "$bad"

    read -r r p50 p99 bad < <($m "$threads" \
        "$url/api/v1/image/async" /tmp/async_task_post.lua)
    report "POST image/async (durable)" "$base" "$r" "$p50" "$p99" "$bad"

    stop_nginx
}

command -v wrk >/dev/null || { echo "wrk is not installed (./build.sh installs it)" >&2; exit 1; }
command -v bc >/dev/null || { echo "bc is not installed" >&2; exit 1; }

if [ -n "${COMPARE:-}" ]; then
    for round in $(seq "${ROUNDS:-3}"); do
        echo "round $round"
        for r in ${RUNS:-1:1 2:2}; do
            for c in $COMPARE; do
                store=${c%:*}
                compare "${r%:*}" "${r#*:}" "$module" "${c#*:}"
            done
        done
    done
    exit 0
fi

# the disk's own floor: 3 s of 16 KB appends, each flushed (fsync), on
# the file system of the store's file, before any nginx runs.  A batch's
# answers wait for its flush, and at 64 connections nearly every
# connection waits in each batch: a slow flush is a slow submission.
disk_flush() {
    mkdir -p "$dir"
    perl -MIO::Handle -MTime::HiRes=time -e '
        open(my $f, ">", $ARGV[0]) or die "$ARGV[0]: $!";
        my ($buf, @t, $end) = ("x" x 16384);
        $end = time + 3;
        while (time < $end) {
            print $f $buf; $f->flush;
            my $t = time; $f->sync or die "fsync: $!"; push @t, time - $t;
            seek($f, 0, 0) if tell($f) > 4194304;
        }
        unlink $ARGV[0];
        @t = sort { $a <=> $b } @t;
        my ($sum, $slow) = (0, 0);
        for (@t) { $sum += $_; $slow += $_ if $_ > 0.003 }
        printf "disk: %d flushes of 16 KB in 3 s, p50 %.2f ms, p99 %.2f ms,"
               . " p99.9 %.2f ms; %.0f%% of the time flushing is in"
               . " flushes over 3 ms\n", scalar @t,
               map({ 1000 * $t[int(@t * $_)] } 0.5, 0.99, 0.999),
               100 * $slow / $sum;
    ' "$dir/flush.test"
}

echo "store: $store"
[ "$store" = sqlite ] && disk_flush

if [ -n "${MODULES:-}" ]; then
    for round in $(seq "${ROUNDS:-3}"); do
        echo "round $round"
        for r in ${RUNS:-1:1 2:2}; do
            for m in $MODULES; do
                compare "${r%:*}" "${r#*:}" "$m"
            done
        done
    done
    exit 0
fi

# workers:wrk threads
for r in ${RUNS:-1:1 2:2}; do
    run "${r%:*}" "${r#*:}"
done
