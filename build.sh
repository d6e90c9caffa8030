#!/usr/bin/env bash
# ngx_async_task_module: set up, build, test and run.
#
#   ./build.sh          install what building needs, build the module
#   ./build.sh test     ... and run the whole test suite (t/*.t)
#   ./build.sh run      ... and run the gateway on 127.0.0.1:${PORT:-8080}
#   ./build.sh bench    ... and run the benchmarks (bench/*.sh)
#   ./build.sh deb      the Debian package libnginx-mod-http-async-task
#                       (debian/) with dpkg-buildpackage, into build/
#   ./build.sh tools    install the test tools only: the Debian packages of
#                       'test' and the npm tools of tools/npm (into build/npm)
#   ./build.sh fuzz [SECONDS] [HARNESS...]
#                       ... and run the libFuzzer harnesses (fuzz/run.sh),
#                       SECONDS each (60); 0 replays the committed inputs
#
# Builds ngx_http_async_task_module.so against Debian's nginx (nginx-dev's
# configure tree and conf_flags). With a full nginx source tree it builds
# that nginx too, and its objs/nginx then runs the tests:
#
#   NGINX_SRC=DIR      the tree DIR (configured in place)
#   SANITIZE=1         nginx with the module built in, with AddressSanitizer
#                      and UndefinedBehaviorSanitizer; a sanitizer report
#                      fails the test run
#   STATIC=1           the module linked into nginx (--add-module)
#
# "test" runs the suite on each store of TEST_STORES ("sqlite postgresql"
# by default): for PostgreSQL it starts a throwaway cluster of its own
# under build/pg (a Unix socket there, no TCP port), stopped at the end.
#
# SANITIZE=1 and STATIC=1 without NGINX_SRC use the source of Debian's
# nginx, fetched once with apt-get source into build/.
set -euo pipefail

root=$(cd "$(dirname "$0")" && pwd)
cd "$root"

build=$root/build
module=ngx_http_async_task_module.so
sanitizer_logs=$build/sanitizer

say() { printf '==> %s\n' "$*"; }

# Debian packages each command needs, on top of what building needs
packages_build=(nginx-core nginx-dev libsqlite3-dev libcjson-dev uuid-dev
                libpq-dev build-essential)
packages_source=(dpkg-dev libpcre2-dev zlib1g-dev libssl-dev)
packages_sanitize=(clang)
packages_test=(perl libtest-base-perl libtext-diff-perl libipc-run-perl
               libwww-perl liburi-perl libhttp-message-perl
               python3 curl sqlite3 procps prometheus postgresql)
# the status page's test runs Chromium, the OpenAPI tests node and npm tools
packages_test+=(chromium nodejs)
packages_run=(python3 curl)
packages_bench=(python3 perl curl wrk bc procps sqlite3)
# the fuzzing harnesses are built with clang and libFuzzer
packages_fuzz=(clang libfuzzer-14-dev "${packages_source[@]}")
# the package builds with nginx-dev's dh_nginx and nginx_mod build system;
# t/092-deb.t checks it with lintian
packages_deb=(dpkg-dev debhelper nginx-dev fakeroot lintian)

packages_for() {
    local list=("${packages_build[@]}")
    if [ -z "${NGINX_SRC:-}" ] && full_source_build; then
        list+=("${packages_source[@]}")
    fi
    if [ "${SANITIZE:-0}" = 1 ]; then
        list+=("${packages_sanitize[@]}")
    fi
    case $1 in
        test|tools)
               list+=("${packages_test[@]}" "${packages_deb[@]}")
               # Debian's npm, unless a node that bundles npm is installed
               command -v npm >/dev/null || list+=(npm) ;;
        run)   list+=("${packages_run[@]}") ;;
        bench) list+=("${packages_bench[@]}") ;;
        fuzz)  list+=("${packages_fuzz[@]}") ;;
        deb)   list+=("${packages_deb[@]}") ;;
    esac
    echo "${list[@]}"
}

full_source_build() {
    [ -n "${NGINX_SRC:-}" ] || [ "${SANITIZE:-0}" = 1 ] \
        || [ "${STATIC:-0}" = 1 ]
}

install_packages() {
    local cmd=$1 missing=() p

    for p in $(packages_for "$cmd"); do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0

    if [ "$(id -u)" != 0 ]; then
        echo "build.sh: '$cmd' needs these Debian packages, not installed:" >&2
        echo "    ${missing[*]}" >&2
        echo "install them as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi

    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# a fingerprint of what configure depends on: a change reconfigures
config_stamp() {
    { cat "$root/config" "$root"/migrations/*.sql \
          "$root"/migrations/postgresql/*.sql "$1" 2>/dev/null
      cat "$root"/ngx_async_task_module/*.html 2>/dev/null
      echo "$2"; } | md5sum | cut -d' ' -f1
}

# the source of Debian's nginx with Debian's patches, unpacked once into
# build/nginx-source/: apt-get source, with the machine's own archives as
# deb-src, and package lists of its own (the system's are not touched)
debian_source() {
    local cache=$build/nginx-source parts f v opts

    if [ -f "$cache/.unpacked" ]; then
        cat "$cache/.unpacked"
        return
    fi

    if [ "$(id -u)" != 0 ]; then
        echo "build.sh: fetching the source of Debian's nginx needs root" \
             "(apt-get source); or give a source tree as NGINX_SRC=DIR" >&2
        exit 1
    fi
    say "fetching the source of Debian's nginx into $cache" >&2
    rm -rf "$cache"
    parts=$cache/sources.list.d
    mkdir -p "$parts" "$cache/lists/partial"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        sed 's/^Types: deb$/Types: deb deb-src/' "$f" > "$parts/${f##*/}"
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list \
            > "$parts/sources.list"
    fi
    opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$parts"
          -o "Dir::State::Lists=$cache/lists")
    apt-get "${opts[@]}" update -qq
    # the newest source the archive serves (security may lag the binary)
    for v in $(apt-cache "${opts[@]}" showsrc nginx \
               | sed -n 's/^Version: //p' | sort -rV); do
        if (cd "$cache" && apt-get "${opts[@]}" source -qq "nginx=$v" \
                >/dev/null 2>&1); then
            break
        fi
    done

    v=$(ls -d "$cache"/nginx-*/ 2>/dev/null | head -1)
    [ -n "$v" ] || {
        echo "build.sh: no nginx source package could be fetched" >&2
        exit 1
    }
    echo "${v%/}" > "$cache/.unpacked"
    echo "${v%/}"
}

sanitize_cc_opt='-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1'
sanitize_ld_opt='-fsanitize=address,undefined'

# nginx and the module from a full source tree
build_full() {
    local src add stamp variant args=()

    if [ -n "${NGINX_SRC:-}" ]; then
        src=$(cd "$NGINX_SRC" && pwd)
    else
        variant=nginx-static
        [ "${SANITIZE:-0}" = 1 ] && variant=nginx-sanitize
        src=$build/$variant
        if [ ! -x "$src/configure" ]; then
            local orig
            orig=$(debian_source)
            rm -rf "$src"
            cp -r "$orig" "$src"
        fi
    fi

    # sanitized, the module is built in: nginx's binary and a module .so
    # each define ngx_modules[], and ASan, registering the .so's array of
    # 2 over the binary's, reports a read past it at every reload
    add=--add-dynamic-module
    if [ "${STATIC:-0}" = 1 ] || [ "${SANITIZE:-0}" = 1 ]; then
        add=--add-module
    fi
    # the modules the tests use beside Debian's defaults; SSL for TLS to
    # the instances (Debian's nginx has it too)
    args=(--with-compat --with-threads --with-debug --with-http_v2_module
          --with-http_auth_request_module --with-http_ssl_module
          "$add=$root")
    if [ "${SANITIZE:-0}" = 1 ]; then
        args+=(--with-cc=clang "--with-cc-opt=$sanitize_cc_opt"
               "--with-ld-opt=$sanitize_ld_opt")
    fi

    stamp=$(config_stamp "$src/configure" "${args[*]} ${NGINX_CONFIGURE_ARGS:-}")
    if [ "$(cat "$src/objs/.async_task_stamp" 2>/dev/null)" != "$stamp" ]; then
        say "configuring $src"
        (cd "$src" && eval ./configure '"${args[@]}"' \
            "${NGINX_CONFIGURE_ARGS:-}" >/dev/null)
        echo "$stamp" > "$src/objs/.async_task_stamp"
    fi

    nginx_binary=$src/objs/nginx
    if [ "$add" = --add-module ]; then
        say "building nginx with the module in $src"
        make -s -C "$src" -f objs/Makefile -j"$(nproc)" binary
        module_path=
    else
        say "building nginx and the module in $src"
        make -s -C "$src" -f objs/Makefile -j"$(nproc)" binary modules
        module_path=$src/objs/$module
    fi
}

build_module() {
    local src stamp flags_file

    if full_source_build; then
        build_full
        return
    fi

    src=$build/nginx
    flags_file=/usr/share/nginx/src/conf_flags
    stamp=$(config_stamp "$flags_file" "")

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

# sanitizer reports go to files (worker processes may run as another user,
# and their stderr is the error log), which clang's runtime writes for
# ASan, LSan and UBSan alike (GCC's UBSan writes to stderr only). Every
# report is kept and the run goes on (exitcode=0: tests that check an
# exit status of nginx -s must not fail on nginx's own leaks at exit);
# the check at the end fails the run. tools/ubsan.supp holds nginx's own
# benign reports.
sanitizer_env() {
    rm -rf "$sanitizer_logs"
    mkdir -p "$sanitizer_logs"
    chmod 1777 "$sanitizer_logs"
    export ASAN_OPTIONS="log_path=$sanitizer_logs/asan:detect_leaks=${DETECT_LEAKS:-1}:exitcode=0"
    export UBSAN_OPTIONS="log_path=$sanitizer_logs/ubsan:print_stacktrace=1:halt_on_error=0:suppressions=$root/tools/ubsan.supp"
}

# every report fails the run, except leaks that nginx's own code makes:
# nginx leaves freeing to exit() (event arrays, the cycle, cached pools),
# so a leak counts when a frame of its allocation is in the module
sanitizer_check() {
    local reports logs

    reports=$(find "$sanitizer_logs" -type f -size +0 2>/dev/null \
              | xargs -r awk '
        /^(Direct|Indirect) leak/ { leak = 1; text = ""; mine = 0 }
        /ERROR: AddressSanitizer|runtime error:/ { print FILENAME; nextfile }
        leak { text = text $0 "\n"; if (/async_task/) mine = 1 }
        leak && /^$/ { if (mine) { print FILENAME; nextfile } leak = 0 }
        END { if (leak && mine) print FILENAME }' | sort -u)
    logs=$(grep -rlE 'AddressSanitizer|runtime error:' \
           "${TEST_NGINX_SERVROOT}" --include='*.log' 2>/dev/null || true)
    if [ -n "$reports$logs" ]; then
        echo "build.sh: sanitizer reports in:" $reports $logs >&2
        return 1
    fi
    say "no sanitizer reports (nginx's own leaks at exit aside)"
}

# A throwaway PostgreSQL cluster for the tests, under build/pg: made by
# initdb and run by pg_ctl as "nobody" when the tests run as root (the
# server refuses root), reachable only on its Unix socket there. No fsync
# (PG_FSYNC=on for benchmarks): nothing in it outlives the run. pg_stop
# runs at exit, failed tests too.
pg_dir=$build/pg
pg_run=()

pg_start() {
    local bin

    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    if [ ! -x "$bin/initdb" ]; then
        echo "build.sh: PostgreSQL's server is missing:" \
             "apt-get install postgresql" >&2
        exit 1
    fi
    pg_ctl=$bin/pg_ctl

    rm -rf "$pg_dir"
    mkdir -p "$pg_dir"
    if [ "$(id -u)" = 0 ]; then
        chown nobody:nogroup "$pg_dir"
        pg_run=(runuser -u nobody --)
    fi

    say "starting a PostgreSQL cluster in $pg_dir"
    "${pg_run[@]}" "$bin/initdb" -D "$pg_dir/data" -A trust -U postgres \
        -E UTF8 --locale=C --no-sync > "$pg_dir/initdb.log" 2>&1 || {
        cat "$pg_dir/initdb.log" >&2
        exit 1
    }
    trap pg_stop EXIT
    # the tests stop and start it too (a store that goes away)
    cat > "$pg_dir/ctl" <<EOF
#!/bin/sh
# $pg_dir/ctl start|stop: the tests' PostgreSQL cluster
case \$1 in
    start) exec ${pg_run[*]} "$pg_ctl" -D "$pg_dir/data" \\
               -l "$pg_dir/server.log" -w -s \\
               -o "-c listen_addresses= -k $pg_dir -c fsync=${PG_FSYNC:-off}" \\
               -o "-c full_page_writes=off -c max_connections=400" start ;;
    stop)  exec ${pg_run[*]} "$pg_ctl" -D "$pg_dir/data" -m fast -w -s stop ;;
esac
exit 2
EOF
    chmod 755 "$pg_dir/ctl"
    "$pg_dir/ctl" start
    psql -h "$pg_dir" -U postgres -d postgres -qAtc \
        'CREATE DATABASE async_task' >/dev/null
    export TEST_NGINX_PG_HOST=$pg_dir
}

pg_stop() {
    if [ -n "${pg_ctl:-}" ] && [ -f "$pg_dir/data/postmaster.pid" ]; then
        "${pg_run[@]}" "$pg_ctl" -D "$pg_dir/data" -m immediate -s stop \
            || true
    fi
}

run_tests() {
    local rc=0 store stores=${TEST_STORES:-sqlite postgresql}

    export TEST_NGINX_BINARY=$nginx_binary
    export TEST_NGINX_LOAD_MODULES=$module_path
    export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$build/servroot}
    export TEST_NGINX_FAKE_GPU=$root/tools/fake_gpu.py
    export ASYNC_TASK_NPM=$npm_dir
    [ "${SANITIZE:-0}" = 1 ] && sanitizer_env
    case " $stores " in *" postgresql "*) pg_start ;; esac
    for store in $stores; do
        say "running the test suite on $store"
        TEST_NGINX_STORE=$store \
            prove -I "$root/t/lib" -r ${PROVE_ARGS:-} "${@:-t/}" || rc=$?
    done
    if [ "${SANITIZE:-0}" = 1 ]; then
        sanitizer_check || rc=1
    fi
    return $rc
}

# the Debian package, from a copy of the checkout in build/deb/source
# (dpkg-buildpackage writes its output next to the source tree, and its
# clean step would touch the checkout); the .deb files go to build/
build_deb() {
    local work=$build/deb log=$build/deb/build.log

    rm -rf "$work"
    mkdir -p "$work/source"
    tar -C "$root" --exclude=./build --exclude=./.git --exclude=./run \
        --exclude='./t/servroot*' -cf - . | tar -C "$work/source" -xf -

    say "building the Debian package (log: $log)"
    if ! (cd "$work/source" && dpkg-buildpackage -us -uc -b) > "$log" 2>&1
    then
        tail -n 40 "$log" >&2
        echo "build.sh: dpkg-buildpackage failed, see $log" >&2
        exit 1
    fi

    rm -f "$build"/libnginx-mod-http-async-task*.deb
    cp "$work"/*.deb "$build/"
    say "built" "$build"/libnginx-mod-http-async-task_*.deb
}

# the npm tools the OpenAPI tests use (redocly, ajv, openapi-typescript,
# openapi-fetch, typescript), at the versions of tools/npm/package-lock.json,
# installed into build/npm/ with npm ci; again only when the lock changes
npm_dir=$build/npm

npm_tools() {
    local stamp

    stamp=$(cat "$root/tools/npm/package.json" \
                "$root/tools/npm/package-lock.json" | md5sum | cut -d' ' -f1)
    if [ "$(cat "$npm_dir/.stamp" 2>/dev/null)" = "$stamp" ] \
       && [ -d "$npm_dir/node_modules" ]; then
        return 0
    fi

    say "installing the npm tools into $npm_dir (npm ci)"
    rm -rf "$npm_dir"
    mkdir -p "$npm_dir"
    cp "$root/tools/npm/package.json" "$root/tools/npm/package-lock.json" \
       "$npm_dir/"
    (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error) || {
        echo "build.sh: npm ci failed: the npm registry must be reachable" \
             "for the first 'test' (or run './build.sh tools' where it is)" >&2
        exit 1
    }
    echo "$stamp" > "$npm_dir/.stamp"
}

# what run_gateway started, global for its EXIT trap
pids=()
nginx=()

run_gateway() {
    local port=${PORT:-8080} run=$root/run fake user=
    local -a fakes=(${FAKE_PORTS:-18000 18001 18002})

    # as root, the worker processes run as the checkout's owner: nginx's
    # default user (nobody) cannot reach run/ under a 0700 home directory
    if [ "$(id -u)" = 0 ]; then
        user="user $(stat -c '%U %G' "$root");"
    fi

    # the module makes run/data for the worker processes' user itself
    mkdir -p "$run/logs"
    {
        [ -n "$user" ] && echo "$user"
        sed -e "s#@MODULE@#$module_path#g" -e "s#@RUN@#$run#g" \
            -e "s#@PORT@#$port#g" -e "s#@IMAGE_PORT_1@#${fakes[0]}#g" \
            -e "s#@EXAMPLES@#$root/examples#g" \
            -e "s#@SPEECH_PORT@#${fakes[1]}#g" \
            -e "s#@IMAGE_PORT_2@#${fakes[2]}#g" \
            -e "${module_path:+#}/^load_module /d" "$root/examples/nginx.conf"
    } > "$run/nginx.conf"

    # -e: the error log before the configuration is read is ours too, not
    # the compiled-in one under /var/log, which only root may open
    nginx=("$nginx_binary" -p "$run" -c "$run/nginx.conf" -e "$run/logs/error.log")
    "${nginx[@]}" -t -q

    cleanup() {
        trap - INT TERM EXIT
        say "stopping"
        "${nginx[@]}" -s quit 2>/dev/null || true
        [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
        wait 2>/dev/null || true
    }
    trap cleanup INT TERM EXIT

    fake() {
        python3 "$root/tools/fake_gpu.py" --port "$1" --kind "$2" --latency "$3" &
        pids+=($!)
    }
    fake "${fakes[0]}" comfyui 2
    fake "${fakes[2]}" comfyui 3
    fake "${fakes[1]}" speech 1

    "${nginx[@]}" -g 'daemon off;' &
    pids+=($!)

    # the banner once nginx listens; if nginx stops instead, its message
    # is above, and the script stops
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then
            wait "${pids[-1]}" || true
            echo "build.sh: nginx did not start (see above and" \
                 "$run/logs/error.log)" >&2
            return 1
        fi
        sleep 0.1
    done
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

case $cmd in
    build|test|run|bench|fuzz|deb|tools) ;;
    *) echo "usage: $0 [build|test|run|bench|fuzz|deb|tools]" >&2; exit 2 ;;
esac

install_packages "$cmd"
if [ "$cmd" = deb ]; then
    build_deb
    exit
fi

if [ "$cmd" = tools ]; then
    npm_tools
    say "the test tools are installed"
    exit 0
fi

[ "$cmd" = test ] && npm_tools
build_module

case $cmd in
    build) say "built ${module_path:-$nginx_binary}" ;;
    test)  run_tests "$@" ;;
    run)   run_gateway ;;
    bench)
        export NGINX_BINARY=$nginx_binary MODULE_PATH=$module_path
        for b in "$root"/bench/*.sh; do "$b"; done
        # PostgreSQL (fsync on, as SQLite's FULL): the submissions of
        # SQLite, PostgreSQL and two PostgreSQL nodes side by side, taking
        # turns; then end to end
        if [ "${BENCH_STORES:-sqlite postgresql}" != sqlite ]; then
            PG_FSYNC=on pg_start
            COMPARE="sqlite:1 postgresql:1 postgresql:2" PG_HOST=$pg_dir \
                "$root/bench/submit.sh"
            STORE=postgresql PG_HOST=$pg_dir "$root/bench/e2e.sh"
        fi ;;
    fuzz)
        NGINX_FUZZ_SRC=${NGINX_SRC:-$(debian_source)} "$root/fuzz/run.sh" "$@" ;;
esac
