# GET system/stats: the queue of every kind a backend serves
# (queue.kinds), beside the gateway-wide depth and capacity.
#
# The default gateway's instances are down, so what is submitted stays
# QUEUED and the figures are known.

use strict;
use warnings;

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);

our $T0 = 1764410000000;        # 2025-11-29T09:53:20.000Z

sub store_db { return store_dir() . '/tasks.db' }

sub queued {
    my ($n, $kind) = @_;

    return {
        id => tid($n),
        kind => $kind,
        status => 'QUEUED',
        priority => 5,
        params => $kind eq 'image' ? '{"prompt":"x"}'
                  : '{"filename":"a.wav","content_type":"audio/wav",'
                    . '"bytes":4}',
        created_at => $T0 + $n * 1000,
    };
}

run_tests();

__DATA__

=== TEST 1: submissions of both kinds are counted in their kind's queue
--- request eval
["GET /api/v1/system/stats",
 "POST /api/v1/image/async\n{\"prompt\":\"a\"}",
 "POST /api/v1/speech/pcm\nabcd",
 "POST /api/v1/image/async\n{\"prompt\":\"b\",\"priority\":9}",
 "GET /api/v1/system/stats"]
--- more_headers eval
["", "Content-Type: application/json", "Content-Type: audio/pcm",
 "Content-Type: application/json", ""]
--- error_code eval
[200, 202, 202, 202, 200]
--- response_body_like eval
[qr/^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":0,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\},"queue":\{"depth":0,"capacity":1000,"kinds":\{"image":0,"speech":0\}\},"workers":\{"busy":0,"total":0\},"backends":\[/,
 qr/"status":"QUEUED"/,
 qr/"status":"QUEUED"/,
 qr/"status":"QUEUED"/,
 qr/^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":3,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\},"queue":\{"depth":3,"capacity":1000,"kinds":\{"image":2,"speech":1\}\},"workers":\{"busy":0,"total":0\},"backends":\[/]
--- no_error_log
[error]
[alert]



=== TEST 2: the queues of the kinds at start, and as tasks leave them
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(),
    ::queued(0x01, 'image'), ::queued(0x02, 'speech'),
    ::queued(0x03, 'image'), ::queued(0x04, 'speech'),
    ::queued(0x05, 'speech'));
--- request eval
["GET /api/v1/system/stats",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000004",
 "DELETE /api/v1/tasks/01900000-0000-7000-8000-000000000001",
 "GET /api/v1/system/stats"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
[qr/"tasks":\{"QUEUED":5,[^}]*\},"queue":\{"depth":5,"capacity":1000,"kinds":\{"image":2,"speech":3\}\},"workers"/,
 qr/"status":"CANCELED"/,
 qr/"status":"CANCELED"/,
 qr/"tasks":\{"QUEUED":3,[^}]*"CANCELED":2\},"queue":\{"depth":3,"capacity":1000,"kinds":\{"image":1,"speech":2\}\},"workers"/]
--- no_error_log
[error]
[alert]



=== TEST 3: only the kinds a backend serves are listed
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=10;
    async_task_backend speech gpu_speech;
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- request eval
["POST /api/v1/speech/pcm\nabcd",
 "GET /api/v1/system/stats"]
--- more_headers eval
["Content-Type: audio/pcm", ""]
--- error_code eval
[202, 200]
--- response_body_like eval
[qr/"status":"QUEUED"/,
 qr/^\{"uptime_seconds":\d+,"tasks":\{"QUEUED":1,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\},"queue":\{"depth":1,"capacity":10,"kinds":\{"speech":1\}\},"workers":\{"busy":0,"total":0\},"backends":\[\{"kind":"speech",[^\]]*\]\}$/]
--- no_error_log
[error]
[alert]



=== TEST 4: tasks of a kind no backend serves any more count in depth only
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image;
    upstream gpu_image { server 127.0.0.1:9 down; }
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(),
    ::queued(0x01, 'image'), ::queued(0x02, 'speech'));
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":2,[^}]*\},"queue":\{"depth":2,"capacity":1000,"kinds":\{"image":1\}\},"workers"
--- no_error_log
[error]
[alert]
