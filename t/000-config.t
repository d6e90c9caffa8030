# Directives: what nginx -t accepts, what it rejects and how it says so.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

run_tests();

__DATA__

=== TEST 1: a minimal configuration: a store and one API location
--- main_config
--- http_config
    async_task_store @STORE@/tasks.db;
--- request
GET /api/v1/system/stats
--- response_body_like: ^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":0,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\},"queue":\{"depth":0,"capacity":1000,"kinds":\{\}\},"workers":\{"busy":0,"total":0\},"backends":\[\]\}$
--- response_headers
Content-Type: application/json
--- no_error_log
[error]
[alert]



=== TEST 2: a kind with no async_task_backend is not offered
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- request
POST /api/v1/speech/pcm
abcd
--- error_code: 404
--- response_body chomp
{"error":{"code":"not_found","message":"no backend serves speech tasks"}}
--- no_error_log
[error]



=== TEST 3: every store parameter
--- http_config
    async_task_store @STORE@/tasks.db zone=tasks:1m thread_pool=async_task
                     files=@STORE@/blobs max_queued=7 retention=1h
                     lock_timeout=2s;
--- request
GET /api/v1/system/stats
--- response_body_like: "queue":\{"depth":0,"capacity":7,"kinds":\{\}\}
--- no_error_log
[error]



=== TEST 4: unknown store parameter
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:1m color=red;
--- must_die
--- error_log
invalid parameter "color=red"



=== TEST 5: malformed zone
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task;
--- must_die
--- error_log
invalid zone "zone=async_task"



=== TEST 6: bad zone size
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:lots;
--- must_die
--- error_log
invalid zone size "zone=async_task:lots"



=== TEST 7: zone too small
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:8k;
--- must_die
--- error_log
zone "zone=async_task:8k" is too small



=== TEST 8: duplicate store
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_store @STORE@/other.db;
--- must_die
--- error_log
"async_task_store" directive is duplicate



=== TEST 9: bad max_queued
--- http_config
    async_task_store @STORE@/tasks.db max_queued=many;
--- must_die
--- error_log
invalid max_queued "max_queued=many"



=== TEST 10: bad retention
--- http_config
    async_task_store @STORE@/tasks.db retention=forever;
--- must_die
--- error_log
invalid retention "retention=forever"



=== TEST 11: an undeclared thread pool
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=nosuch;
--- must_die
--- error_log
unknown thread pool "nosuch"



=== TEST 12: the API without a store
--- http_config
--- must_die
--- error_log eval
qr/"async_task_api" requires "async_task_store" in \S+nginx\.conf:\d+/



=== TEST 13: a backend on an upstream that does not exist
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image nosuch;
--- must_die
--- error_log eval
qr/unknown upstream "nosuch" in \S+nginx\.conf:\d+/



=== TEST 14: a backend on an unknown kind
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend video gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
unknown task kind "video", expected "image" or "speech"



=== TEST 15: two backends for one kind
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
backend for "image" is duplicate



=== TEST 16: bad backend parameters
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu timeout=soon;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
invalid timeout "timeout=soon"



=== TEST 17: retries must be a number
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu retries=-1;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
invalid retries "retries=-1"



=== TEST 18: sdcpp speaks images only
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend speech gpu protocol=sdcpp;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
"protocol=sdcpp" is only for image backends



=== TEST 19: unknown backend parameter
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu protocol=grpc;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
invalid parameter "protocol=grpc"



=== TEST 20: a backend upstream may be declared after the directive, and its servers show in the stats
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image qwen_image protocol=sdcpp model=qwen timeout=10s retries=0;
    upstream qwen_image {
        server 127.0.0.1:9 max_conns=3;
        server 127.0.0.2:9 down;
    }
--- request
GET /api/v1/system/stats
--- response_body_like: "workers":\{"busy":0,"total":3\},"backends":\[\{"kind":"image","upstream":"qwen_image","server":"127.0.0.1:9","healthy":true,"inflight":0,"max_conns":3,"requests":0,"failures":0,"last_check":null\},\{"kind":"image","upstream":"qwen_image","server":"127.0.0.2:9","healthy":false,
--- no_error_log
[error]



=== TEST 21: async_task_api takes no arguments
--- http_config
    async_task_store @STORE@/tasks.db;
--- config
    location /api/ { async_task_api on; }
--- must_die
--- error_log
invalid number of arguments in "async_task_api" directive



=== TEST 22: the store's schema is created and versioned
--- http_config
    async_task_store @STORE@/tasks.db;
--- init
my $db = AsyncTaskTest::store_db($block);
my $v = `sqlite3 $db 'PRAGMA user_version'`;
chomp $v;
Test::More::is($v, '1', 'schema version recorded');
my $mode = `sqlite3 $db 'PRAGMA journal_mode'`;
chomp $mode;
Test::More::is($mode, 'wal', 'the store is in WAL mode');
--- request
GET /api/v1/system/stats
--- error_log
async_task store: schema migrated to version 1
--- no_error_log
[error]



=== TEST 23: keepalive must be a number
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu keepalive=many;
    upstream gpu { server 127.0.0.1:9; }
--- must_die
--- error_log
invalid keepalive "keepalive=many"



=== TEST 24: an unknown balancing method is named, with the choices
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:9;
        async_task_balance random;
    }
--- must_die
--- error_log
invalid balancing method "random", expected "round_robin", "user_hash" or "least_busy"
