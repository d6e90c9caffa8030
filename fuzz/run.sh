#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ and runs them.
#
#   fuzz/run.sh [SECONDS] [HARNESS...]
#
# SECONDS (default 60) per harness, one at a time, from the committed
# seeds (fuzz/seeds/NAME) and regression inputs (fuzz/regressions/NAME);
# what the fuzzer finds goes to build/fuzz/corpus/NAME, crashes to
# build/fuzz/crashes/NAME. SECONDS=0 only replays the committed inputs,
# once each: the quick check for the test suite.
#
# The harnesses link nginx's own objects and the module's, compiled with
# clang and -fsanitize=fuzzer-no-link,address,undefined, from Debian's
# nginx source (NGINX_FUZZ_SRC=DIR: ./build.sh fuzz fetches Debian's once,
# with apt-get source, into build/nginx-source).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
fuzz=$root/fuzz
work=$root/build/fuzz
seconds=${1:-60}
[ $# -gt 0 ] && shift

harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
    for f in "$fuzz"/fuzz_*.c; do
        n=$(basename "$f" .c)
        harnesses+=("${n#fuzz_}")
    done
fi

sanitize='-fsanitize=address,undefined -fno-sanitize-recover=undefined'
cflags="-g -O1 -fno-omit-frame-pointer $sanitize"

say() { printf '==> %s\n' "$*"; }

# Debian's nginx source, the version the module is built for: build.sh
# fetches it once (./build.sh fuzz) and passes it as NGINX_FUZZ_SRC
nginx_source() {
    if [ -z "${NGINX_FUZZ_SRC:-}" ]; then
        echo "fuzz: no nginx source: run ./build.sh fuzz," \
             "or give a tree as NGINX_FUZZ_SRC=DIR" >&2
        exit 1
    fi
    src=$(cd "$NGINX_FUZZ_SRC" && pwd)
}

# nginx and the module (static) compiled for fuzzing, in build/fuzz/nginx
build_objects() {
    local stamp args

    args=(--with-cc=clang --with-compat --with-threads --with-debug
          --without-http_gzip_module
          --with-cc-opt="$cflags -fsanitize=fuzzer-no-link -Wno-error"
          --with-ld-opt="$sanitize" --add-module="$root")
    stamp=$( (cat "$root/config" "$root"/migrations/*.sql
              echo "${args[*]}") | md5sum | cut -d' ' -f1)

    if [ "$(cat "$work/nginx/objs/.fuzz_stamp" 2>/dev/null)" != "$stamp" ]
    then
        nginx_source
        say "configuring nginx for fuzzing ($src)"
        rm -rf "$work/nginx"
        mkdir -p "$work"
        cp -r "$src" "$work/nginx"
        (cd "$work/nginx" && ./configure "${args[@]}" >/dev/null)
        echo "$stamp" > "$work/nginx/objs/.fuzz_stamp"
    fi

    say "building nginx's and the module's objects"
    make -s -C "$work/nginx" -f objs/Makefile -j"$(nproc)" >/dev/null
}

# each harness #includes the module file it tests (to reach its static
# parsers), so that file's object is left out of its link
build_harness() {
    local name=$1 c=$fuzz/fuzz_$1.c own objs libs

    own=$(sed -n 's/^#include "\(ngx_http_async_task_[a-z_]*\)\.c"$/\1/p' "$c")
    objs=$(find "$work/nginx/objs/src" "$work/nginx/objs/addon" -name '*.o' \
           ! -name nginx.o ${own:+! -name "$own.o"} | sort)
    # the libraries nginx itself links
    libs=$(sed -n '/$(LINK) -o objs\/nginx/,/^\s*$/p' \
           "$work/nginx/objs/Makefile" | grep -o -- '-l[^ ]*' | tr '\n' ' ')

    # linked again when the harness or an object changed
    if [ -x "$work/bin/$name" ] && [ -z "$(find "$c" "$fuzz/fuzz_common.h" \
            "$work/nginx/objs" -newer "$work/bin/$name" -name '*.[cho]' \
            -print -quit)" ]
    then
        return
    fi

    mkdir -p "$work/bin"
    # shellcheck disable=SC2086
    clang $cflags -fsanitize=fuzzer -Wall -Werror \
        -I "$work/nginx/src/core" -I "$work/nginx/src/event" \
        -I "$work/nginx/src/event/modules" -I "$work/nginx/src/os/unix" \
        -I "$work/nginx/src/http" -I "$work/nginx/src/http/modules" \
        -I "$work/nginx/objs" -I "$root/ngx_async_task_module" -I "$fuzz" \
        "$work/nginx/objs/ngx_modules.o" $objs "$c" \
        -o "$work/bin/$name" $libs
}

# what a fault is, and where: replays FILE, shows the first frames in
# nginx or the module
report() {
    local log=$work/replay.log

    "$1" "$2" > "$log" 2>&1 && return
    grep -a -E 'FAULT:|runtime error|ERROR: AddressSanitizer' "$log" \
        | head -n 2 >&2
    grep -a -E '#[0-9]+ .* in (ngx_|fuzz_|LLVMFuzzer)' "$log" | head -n 4 >&2
}

# the committed inputs of a harness, one path a line
inputs() {
    find "$fuzz/seeds/$1" "$fuzz/regressions/$1" -type f 2>/dev/null | sort
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

build_objects
failed=()

# the files the upload and protocol harnesses write: in memory if it can
tmp=$(mktemp -d -p /dev/shm fuzz.XXXXXX 2>/dev/null \
      || mktemp -d -p "$work" tmp.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export FUZZ_TMPDIR=$tmp

for name in "${harnesses[@]}"; do
    if [ ! -f "$fuzz/fuzz_$name.c" ]; then
        echo "fuzz: no harness fuzz/fuzz_$name.c" >&2
        exit 2
    fi

    build_harness "$name"
    bin=$work/bin/$name

    if [ "$seconds" = 0 ]; then
        say "replaying $name ($(inputs "$name" | wc -l) inputs)"
        mapfile -t files < <(inputs "$name")

        # (with no file, libFuzzer would fuzz on and on)
        [ ${#files[@]} -eq 0 ] && continue

        # all in one process; one by one only to tell which fail
        "$bin" "${files[@]}" > /dev/null 2>&1 && continue

        for f in "${files[@]}"; do
            if ! "$bin" "$f" > /dev/null 2>&1; then
                echo "fuzz: $name fails on ${f#$root/}:" >&2
                report "$bin" "$f"
                failed+=("$name:${f#$root/}")
            fi
        done
        continue
    fi

    say "fuzzing $name for ${seconds}s"
    rm -rf "$work/crashes/$name"
    mkdir -p "$work/corpus/$name" "$work/crashes/$name" "$fuzz/seeds/$name"
    dirs=("$work/corpus/$name" "$fuzz/seeds/$name")
    [ -d "$fuzz/regressions/$name" ] && dirs+=("$fuzz/regressions/$name")

    # in a child process, so that a fault found (a known one among them)
    # does not end the run: every fault is kept in crashes/
    "$bin" -fork=1 -ignore_crashes=1 -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/crashes/$name/" \
        "${dirs[@]}" > "$work/$name.log" 2>&1 || failed+=("$name")

    faults=$(find "$work/crashes/$name" -type f | wc -l)
    if [ "$faults" -gt 0 ]; then
        failed+=("$name")
        echo "fuzz: $name found $faults faults, in $work/crashes/$name/;" \
             "the first ones:" >&2
        for f in $(find "$work/crashes/$name" -type f | head -n 3); do
            echo "  $f" >&2
            report "$bin" "$f"
        done
    fi

    echo "$name: $(grep -o '^#[0-9]*' "$work/$name.log" | tail -n1 \
                   | tr -d '#') runs," \
         "corpus $(find "$work/corpus/$name" -type f | wc -l) files," \
         "$faults faults"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: faults in: $(printf '%s\n' "${failed[@]}" | sort -u \
                               | tr '\n' ' ')" >&2
    exit 1
fi
say "fuzz: no faults"
