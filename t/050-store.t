# The store: durable acknowledgements across restarts and kill -9, a
# store that cannot be written, a full queue.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(:sqlite_only);

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: every task that got a 202 survives kill -9 of master and workers
--- init
use POSIX ();
my $acked = "$ENV{TEST_NGINX_SERVER_ROOT}/html/acked.txt";

# a client submits as fast as it can and notes every 202
my $pid = fork();
if ($pid == 0) {
    open my $out, '>', $acked or POSIX::_exit(1);
    $out->autoflush(1);
    for my $i (1 .. 100000) {
        my ($status, $task) = eval {
            AsyncTaskTest::api('POST', 'image/async',
                headers => {'Content-Type' => 'application/json'},
                body => qq({"prompt": "crash $i"}));
        };
        last unless $status;
        print $out "$task->{id}\n" if $status == 202;
    }
    POSIX::_exit(0);
}

Time::HiRes::sleep(0.7);
AsyncTaskTest::crash_and_restart();
waitpid($pid, 0);

open my $in, '<', $acked or die "$acked: $!";
my @ids = map { chomp; $_ } <$in>;
Test::More::cmp_ok(scalar @ids, '>', 50, 'many submissions were acknowledged');

my $missing = 0;
for my $id (@ids) {
    my ($status, $task) = AsyncTaskTest::api('GET', "tasks/$id");
    $missing++ unless $status == 200 && $task->{status} eq 'QUEUED';
}
Test::More::is($missing, 0, 'no acknowledged task is lost');

my ($status, $stats) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::cmp_ok($stats->{tasks}{QUEUED}, '>=', scalar @ids,
                   'the zone was rebuilt from the store');
--- request
GET /api/v1/system/stats
--- response_body_like: "queue":\{"depth":[1-9]\d*,
--- no_error_log
[error]
[alert]



=== TEST 2: tasks and their order survive a graceful restart
--- init
my @ids;
for my $p (3, 9, 3) {
    my ($status, $task) = AsyncTaskTest::api('POST', 'image/async',
                              headers => {'Content-Type' => 'application/json',
                                          'X-User-Id' => 'alice'},
                              body => qq({"prompt": "p$p", "priority": $p}));
    push @ids, $task->{id};
}

my $binary = $Test::Nginx::Util::NginxBinary || $ENV{TEST_NGINX_BINARY} || 'nginx';
my $root = AsyncTaskTest::servroot();
system("$binary -p $root/ -c $root/conf/nginx.conf -s quit 2>/dev/null") == 0 or die;
for (1 .. 300) {
    last unless -e "$root/logs/nginx.pid";
    Time::HiRes::sleep(0.02);
}
system("$binary -p $root/ -c $root/conf/nginx.conf") == 0 or die;
AsyncTaskTest::wait_port();

my @positions = map {
    my ($s, $t) = AsyncTaskTest::api('GET', "tasks/$_", headers => {'X-User-Id' => 'alice'});
    $t->{position};
} @ids;
Test::More::is("@positions", "1 0 2", 'positions after the restart');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":3,
--- no_error_log
[error]
[alert]



=== TEST 3: a store that cannot be written answers 503 with Retry-After, and stores nothing
--- http_config
    async_task_store @STORE@/tasks.db lock_timeout=300ms thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my $db = AsyncTaskTest::store_db($block);
# another writer holds the database for a second
open my $lock, '|-', "sqlite3 $db" or die;
$lock->autoflush(1);
print $lock "BEGIN EXCLUSIVE; INSERT INTO tasks (id, kind, status, priority, params, created_at) VALUES ('x', 'image', 'DONE', 1, '{}', 1);\n";
Time::HiRes::sleep(0.2);
my ($status, $err, $h) = AsyncTaskTest::api('POST', 'image/async',
                             headers => {'Content-Type' => 'application/json'},
                             body => '{"prompt": "locked out"}');
Test::More::is($status, 503, 'locked store: 503');
Test::More::is($err->{error}{code}, 'unavailable', 'locked store: unavailable');
Test::More::is($h->{'retry-after'}, '1', 'locked store: Retry-After');
print $lock "ROLLBACK;\n";
close $lock;
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,
--- error_log
database is locked
--- no_error_log
[alert]



=== TEST 4: a full queue answers 429 with Retry-After and takes no upload
--- http_config
    async_task_store @STORE@/tasks.db max_queued=2 thread_pool=async_task;
    async_task_backend image gpu;
    async_task_backend speech gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"one\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"two\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"three\"}",
 "POST /api/v1/speech/transcribe\n" . ("a" x 1000),
 "GET /api/v1/system/stats"]
--- more_headers eval
["Content-Type: application/json", "Content-Type: application/json",
 "Content-Type: application/json", "Content-Type: audio/ogg", ""]
--- error_code eval
[202, 202, 429, 429, 200]
--- response_headers eval
["", "", "Retry-After: 5", "Retry-After: 5", ""]
--- response_body_like eval
[qr/"position":0/, qr/"position":1/,
 qr/^\{"error":\{"code":"queue_full","message":"the queue is full, try again later"\}\}$/,
 qr/queue_full/,
 qr/"QUEUED":2,.*"queue":\{"depth":2,"capacity":2,"kinds":\{"image":2,"speech":0\}\}/]
--- no_error_log
[error]



=== TEST 5: a canceled task frees its queue slot
--- http_config
    async_task_store @STORE@/tasks.db max_queued=1 thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my ($s1, $t1) = AsyncTaskTest::api('POST', 'image/async',
                    headers => {'Content-Type' => 'application/json'},
                    body => '{"prompt": "one"}');
my ($s2) = AsyncTaskTest::api('POST', 'image/async',
               headers => {'Content-Type' => 'application/json'},
               body => '{"prompt": "two"}');
Test::More::is("$s1 $s2", "202 429", 'the second one does not fit');
my ($s3) = AsyncTaskTest::api('DELETE', "tasks/$t1->{id}");
Test::More::is($s3, 200, 'canceled');
--- request
POST /api/v1/image/async
{"prompt": "three"}
--- more_headers
Content-Type: application/json
--- error_code: 202
--- no_error_log
[error]
