#!/usr/bin/env bash
# ngx_async_task_module: set up, build, test and run.
#
#   ./build.sh          install what is missing, build the module
#   ./build.sh test     ... and run the whole test suite (t/*.t)
#   ./build.sh run      ... and run the gateway on 127.0.0.1:${PORT:-8080}
#   ./build.sh bench    ... and run the benchmarks (bench/*.sh)
#   ./build.sh fuzz [SECONDS] [HARNESS...]
#                       ... and run the libFuzzer harnesses (fuzz/run.sh),
#                       SECONDS each (60); 0 replays the committed inputs
#
# Builds ngx_http_async_task_module.so against Debian's nginx (nginx-dev's
# configure tree and conf_flags), or against a full nginx source tree given
# as NGINX_SRC=DIR, whose nginx binary then runs the tests.
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
cd "$root"

build=$root/build
module=ngx_http_async_task_module.so

packages=(
    nginx-core nginx-dev
    libsqlite3-dev libcjson-dev uuid-dev sqlite3
    build-essential
    perl libtest-base-perl libtext-diff-perl libipc-run-perl
    libwww-perl liburi-perl libhttp-message-perl
    python3 curl wrk bc procps
)

say() { printf '==> %s\n' "$*"; }

install_packages() {
    local missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    if [ "$(id -u)" != 0 ]; then
        echo "build.sh: missing packages: ${missing[*]} (run as root)" >&2
        exit 1
    fi

    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

    # the package starts a system nginx on port 80: the gateway does not
    # need it, and tests must not depend on it
    if command -v systemctl >/dev/null && systemctl is-active -q nginx 2>/dev/null; then
        systemctl stop nginx || true
    fi
}

# a fingerprint of what configure depends on: a change reconfigures
config_stamp() {
    cat "$root/config" "$root"/migrations/*.sql "$1" 2>/dev/null | md5sum | cut -d' ' -f1
}

build_module() {
    local src stamp flags_file

    if [ -n "${NGINX_SRC:-}" ]; then
        src=$(cd "$NGINX_SRC" && pwd)
        flags_file=$src/configure
        stamp=$(config_stamp "$flags_file")
        if [ "$(cat "$src/objs/.async_task_stamp" 2>/dev/null)" != "$stamp" ]; then
            say "configuring $src"
            (cd "$src" && ./configure --with-compat --with-threads --with-debug \
                ${NGINX_CONFIGURE_ARGS:-} --add-dynamic-module="$root" >/dev/null)
            echo "$stamp" > "$src/objs/.async_task_stamp"
        fi
        say "building nginx and the module in $src"
        make -s -C "$src" -f objs/Makefile -j"$(nproc)" binary modules
        module_path=$src/objs/$module
        nginx_binary=$src/objs/nginx
        return
    fi

    src=$build/nginx
    flags_file=/usr/share/nginx/src/conf_flags
    stamp=$(config_stamp "$flags_file")

    if [ "$(cat "$src/objs/.async_task_stamp" 2>/dev/null)" != "$stamp" ]; then
        say "configuring against Debian's nginx ($(nginx -v 2>&1))"
        rm -rf "$src"
        mkdir -p "$build"
        cp -r /usr/share/nginx/src "$src"
        # shellcheck disable=SC1090
        . "$flags_file"
        (cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$root" >/dev/null)
        echo "$stamp" > "$src/objs/.async_task_stamp"
    fi

    say "building $module"
    make -s -C "$src" -f objs/Makefile -j"$(nproc)" modules
    module_path=$src/objs/$module
    nginx_binary=/usr/sbin/nginx
}

run_tests() {
    say "running the test suite"
    export TEST_NGINX_BINARY=$nginx_binary
    export TEST_NGINX_LOAD_MODULES=$module_path
    export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$build/servroot}
    export TEST_NGINX_FAKE_GPU=$root/tools/fake_gpu.py
    prove -I "$root/t/lib" -r ${PROVE_ARGS:-} "${@:-t/}"
}

run_gateway() {
    local port=${PORT:-8080} run=$root/run pids=()

    # the module makes run/data for the worker processes' user itself
    mkdir -p "$run/logs"
    sed -e "s#@MODULE@#$module_path#g" -e "s#@RUN@#$run#g" \
        -e "s#@PORT@#$port#g" "$root/examples/nginx.conf" > "$run/nginx.conf"

    "$nginx_binary" -p "$run" -c "$run/nginx.conf" -t -q

    cleanup() {
        trap - INT TERM EXIT
        say "stopping"
        "$nginx_binary" -p "$run" -c "$run/nginx.conf" -s quit 2>/dev/null || true
        [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    }
    trap cleanup INT TERM EXIT

    if [ -f "$root/tools/fake_gpu.py" ]; then
        python3 "$root/tools/fake_gpu.py" --port 18000 --kind image --latency 2 &
        pids+=($!)
        python3 "$root/tools/fake_gpu.py" --port 18002 --kind image --latency 3 &
        pids+=($!)
        python3 "$root/tools/fake_gpu.py" --port 18001 --kind speech --latency 1 &
        pids+=($!)
    fi

    "$nginx_binary" -p "$run" -c "$run/nginx.conf" -g 'daemon off;' &
    pids+=($!)

    sleep 0.5
    api=http://127.0.0.1:$port/api/v1
    cat <<EOF

ngx_async_task_module is serving $api/ (state in $run/, Ctrl-C stops it)

  # submit an image task: 202 and the task
  curl -si -H 'Content-Type: application/json' -H 'X-User-Id: alice' \\
       -d '{"prompt": "a red fox in snow", "width": 512, "height": 512}' \\
       $api/image/async

  # follow it, list yours, cancel one
  curl -s -H 'X-User-Id: alice' $api/tasks/<id>
  curl -s -H 'X-User-Id: alice' '$api/tasks?status=QUEUED&limit=10'
  curl -s -X DELETE -H 'X-User-Id: alice' $api/tasks/<id>

  # speech: a multipart upload, or raw 16-bit PCM
  curl -s -H 'X-User-Id: alice' -F file=@speech.wav -F language=en \\
       $api/speech/transcribe
  curl -s -H 'Content-Type: application/octet-stream' --data-binary @audio.pcm \\
       '$api/speech/pcm?sample_rate=16000&channels=1'

  # the result once DONE, and the gateway's figures
  curl -s -o out.png -H 'X-User-Id: alice' $api/tasks/<id>/result
  curl -s $api/system/stats

EOF
    wait "${pids[-1]}"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift

# the fuzzing harnesses are built with clang and libFuzzer
[ "$cmd" = fuzz ] && packages+=(clang libfuzzer-14-dev)

install_packages
build_module

case $cmd in
    build) say "built $module_path" ;;
    test)  run_tests "$@" ;;
    run)   run_gateway ;;
    bench)
        export NGINX_BINARY=$nginx_binary MODULE_PATH=$module_path
        for b in "$root"/bench/*.sh; do "$b"; done ;;
    fuzz)  "$root/fuzz/run.sh" "$@" ;;
    *) echo "usage: $0 [build|test|run|bench|fuzz]" >&2; exit 2 ;;
esac
