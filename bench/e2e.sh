#!/usr/bin/env bash
# End to end: tasks per second through zero-latency fake GPU instances,
# beside the fakes' own request rate measured directly in the same run,
# and the submission rate while the dispatcher runs them.  Then the cost
# of one run, image and speech: the gateway's time per run (finished_at
# - started_at of each task, one task at a time) beside the fake's own
# time for the same request sent to it directly.
#
#   ./build.sh bench        or    bench/e2e.sh
#   DURATION=5s CONNECTIONS=16 INSTANCES=2 SLOTS=16 KEEPALIVE=0 RUNS=50
#   STORE=postgresql PG_HOST=DIR   the PostgreSQL store, a schema of its
#                      own in the database async_task of the cluster whose
#                      Unix socket is in DIR (./build.sh bench starts one)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
nginx=${NGINX_BINARY:-/usr/sbin/nginx}
module=${MODULE_PATH:-$root/build/nginx/objs/ngx_http_async_task_module.so}
duration=${DURATION:-5s}
conns=${CONNECTIONS:-16}
instances=${INSTANCES:-2}
slots=${SLOTS:-16}
port=${BENCH_PORT:-18490}
fake_base=18500
dir=$root/build/bench-e2e
fakes=()

cleanup() {
    "$nginx" -p "$dir" -c "$dir/nginx.conf" -s quit 2>/dev/null || true
    [ ${#fakes[@]} -gt 0 ] && kill "${fakes[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$dir"
mkdir -p "$dir/logs"

echo "store: ${STORE:-sqlite}"

# the async_task_store line's store: SQLite, or a new PostgreSQL schema
# (the ones of earlier runs dropped)
store_uri=$dir/data/tasks.db
if [ "${STORE:-sqlite}" = postgresql ]; then
    for old in $(psql -h "$PG_HOST" -U postgres -d async_task -qAtc \
                 "SELECT nspname FROM pg_namespace WHERE nspname ~ '^e2e_'"); do
        psql -h "$PG_HOST" -U postgres -d async_task -qAtc \
            "DROP SCHEMA $old CASCADE" 2>/dev/null
    done
    schema=e2e_$$_$RANDOM
    psql -h "$PG_HOST" -U postgres -d async_task -qAtc "CREATE SCHEMA $schema"
    store_uri="postgresql:///async_task?host=$PG_HOST&user=postgres&options=-csearch_path%3D$schema files=$dir/data/files node=e2e"
fi

servers=
for i in $(seq 1 "$instances"); do
    p=$((fake_base + i))
    python3 "$root/tools/fake_gpu.py" --port "$p" --kind both \
        --ready-file "$dir/fake-$p.ready" &
    fakes+=($!)
    servers="$servers        server 127.0.0.1:$p max_conns=$slots;
"
done

for i in $(seq 1 "$instances"); do
    p=$((fake_base + i))
    for _ in $(seq 1 100); do [ -s "$dir/fake-$p.ready" ] && break; sleep 0.05; done
done

cat > "$dir/nginx.conf" <<CONF
load_module $module;
worker_processes ${WORKERS:-2};
error_log $dir/logs/error.log ${LOG_LEVEL:-warn};
pid $dir/logs/nginx.pid;
thread_pool async_task threads=4;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    async_task_store $store_uri zone=async_task:256m
                     thread_pool=async_task max_queued=500000;
    async_task_backend image gpu timeout=60s keepalive=${KEEPALIVE:-0};
    async_task_backend speech gpu timeout=60s keepalive=${KEEPALIVE:-0};
    upstream gpu {
$servers    }
    server {
        listen 127.0.0.1:$port backlog=4096;
        location /api/v1/ { async_task_api; }
    }
}
CONF

cat > /tmp/async_task_e2e.lua <<'LUA'
wrk.method = "POST"
wrk.body = '{"prompt": "a red fox in snow", "width": 512, "height": 512, "seed": 42}'
wrk.headers["Content-Type"] = "application/json"
LUA

cat > /tmp/async_task_fake.lua <<'LUA'
wrk.method = "POST"
wrk.body = '{"model": "m", "prompt": "a red fox in snow", "n": 1, "size": "512x512", "response_format": "b64_json", "seed": 42}'
wrk.headers["Content-Type"] = "application/json"
LUA

rate() { awk '/Requests\/sec/ { print $2 }'; }
p99() { awk '/^ +99%/ { print $2 }'; }

echo "fake GPU instances: $instances, $slots slots each, keepalive=${KEEPALIVE:-0}; wrk -c$conns -d$duration"

# the fakes alone: the ceiling of what the GPU side can take, with
# keep-alive, and with a connection per request as the gateway makes them
out=$(wrk -t1 -c"$conns" -d"$duration" --latency -s /tmp/async_task_fake.lua \
          "http://127.0.0.1:$((fake_base + 1))/v1/images/generations")
fake_keepalive=$(rate <<< "$out")
printf '  one fake instance, keep-alive        %8.0f req/s\n' "$fake_keepalive"

sed 's/^wrk.headers\["Content-Type"\].*/&\nwrk.headers["Connection"] = "close"/' \
    /tmp/async_task_fake.lua > /tmp/async_task_fake_close.lua
out=$(wrk -t1 -c"$conns" -d"$duration" --latency \
          -s /tmp/async_task_fake_close.lua \
          "http://127.0.0.1:$((fake_base + 1))/v1/images/generations")
fake_rate=$(rate <<< "$out")
printf '  one fake instance, new connections   %8.0f req/s\n' "$fake_rate"

"$nginx" -p "$dir" -c "$dir/nginx.conf"
sleep 0.5

stats() {
    curl -s "http://127.0.0.1:$port/api/v1/system/stats"
}

start=$(date +%s.%N)
out=$(wrk -t1 -c"$conns" -d"$duration" --latency -s /tmp/async_task_e2e.lua \
          "http://127.0.0.1:$port/api/v1/image/async")
submit_rate=$(rate <<< "$out")
submit_p99=$(p99 <<< "$out")
submitted=$(stats | sed -n 's/.*"tasks":{"QUEUED":\([0-9]*\),"RUNNING":\([0-9]*\),"DONE":\([0-9]*\),"FAILED":\([0-9]*\).*/\1 \2 \3 \4/p' \
            | awk '{ print $1 + $2 + $3 + $4 }')

while :; do
    s=$(stats)
    left=$(sed -n 's/.*"tasks":{"QUEUED":\([0-9]*\),"RUNNING":\([0-9]*\).*/\1 \2/p' <<< "$s" \
           | awk '{ print $1 + $2 }')
    [ "$left" -eq 0 ] && break
    sleep 0.05
done
end=$(date +%s.%N)

done_n=$(stats | sed -n 's/.*"DONE":\([0-9]*\).*/\1/p')
failed=$(stats | sed -n 's/.*"FAILED":\([0-9]*\).*/\1/p')
e2e=$(echo "$done_n / ($end - $start)" | bc -l)

printf '  submissions while dispatching        %8.0f req/s  p99 %s\n' \
       "$submit_rate" "$submit_p99"
printf '  tasks DONE end to end                %8.0f tasks/s (%s of %s, %s failed)\n' \
       "$e2e" "$done_n" "$submitted" "$failed"
printf '  end to end / one fake, new conns     %8.1f %%\n' \
       "$(echo "$e2e * 100 / $fake_rate" | bc -l)"

# one run at a time: the gateway's time per run beside the fake's own

python3 - "$port" "$((fake_base + 1))" "${RUNS:-50}" "$dir" <<'PY'
import http.client, json, statistics, sys, time, datetime, struct

port, fake, runs, work = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def request(p, method, path, body=b"", headers={}):
    c = http.client.HTTPConnection("127.0.0.1", p, timeout=30)
    c.request(method, path, body, dict(headers, Connection="close"))
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data

def ms(t):
    return datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000

def run(path, body, ctype):
    s, data = request(port, "POST", "/api/v1/" + path, body, {"Content-Type": ctype})
    tid = json.loads(data)["id"]
    while True:
        _, data = request(port, "GET", "/api/v1/tasks/" + tid)
        t = json.loads(data)
        if t["status"] in ("DONE", "FAILED"):
            assert t["status"] == "DONE", t
            return ms(t["finished_at"]) - ms(t["started_at"])
        time.sleep(0.002)

def direct(path, body, ctype):
    start = time.perf_counter()
    s, _ = request(fake, "POST", path, body, {"Content-Type": ctype})
    assert s == 200, s
    return (time.perf_counter() - start) * 1000

pcm = bytes(16 * 1024)
wav = (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt "
       + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
       + b"data" + struct.pack("<I", len(pcm)) + pcm)
b = "ngx-async-task-0123456789abcdef0123456789abcdef"
multipart = ("".join(f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                     for k, v in (("response_format", "verbose_json"),)).encode()
             + f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="audio.wav"\r\n'
               f'Content-Type: audio/wav\r\n\r\n'.encode() + wav + f"\r\n--{b}--\r\n".encode())
image = {"prompt": "a red fox in snow", "width": 512, "height": 512, "seed": 42}
fake_image = {"prompt": "a red fox in snow", "n": 1, "size": "512x512",
              "response_format": "b64_json", "seed": 42}

kinds = (
    ("image", lambda: run("image/async", json.dumps(image).encode(), "application/json"),
     lambda: direct("/v1/images/generations", json.dumps(fake_image).encode(), "application/json")),
    ("speech", lambda: run("speech/pcm?sample_rate=16000", pcm, "application/octet-stream"),
     lambda: direct("/v1/audio/transcriptions", multipart, f"multipart/form-data; boundary={b}")),
)

print(f"  one run at a time, {runs} runs each: median (mean) ms")
for kind, gateway, fake_own in kinds:
    g = [gateway() for _ in range(runs)]
    f = [fake_own() for _ in range(runs)]
    print(f"  {kind:6s} gateway run {statistics.median(g):7.2f} ({statistics.mean(g):7.2f})"
          f"   fake alone {statistics.median(f):6.2f} ({statistics.mean(f):6.2f})"
          f"   extra {statistics.median(g) - statistics.median(f):7.2f}")
PY
