# Active health checks: one probe per instance for the whole nginx, fails=
# take an instance out, passes= bring it back, the state survives reloads.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: one probe per interval for the whole nginx, not one per worker
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19301;
        async_task_health_check interval=200ms timeout=1s uri=/v1/models;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19301, kind => 'image');
--- init
my $log = AsyncTaskTest::servroot() . '/html/fake-19301.log';
my $count = sub {
    open my $fh, '<', $log or return 0;
    return scalar grep { m{ GET /v1/models } } <$fh>;
};
my $before = $count->();
Time::HiRes::sleep(2);
my $probes = $count->() - $before;
Test::More::cmp_ok($probes, '>=', 4, "about one probe per 200 to 300 ms ($probes)");
Test::More::cmp_ok($probes, '<=', 11, "not one per worker ($probes)");
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true,"inflight":0,"max_conns":1,"requests":0,"failures":0,"last_check":"20\d\d-
--- no_error_log
[error]
[alert]



=== TEST 2: fails= probes take an instance out, tasks wait, passes= bring it back and they run
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19302;
        async_task_health_check interval=100ms timeout=1s fails=2 passes=3
                                uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19302, kind => 'image');
--- init
AsyncTaskTest::fake(19302, 'POST', '/control', {health => 'down'});
my $healthy = 1;
for (1 .. 100) {
    my (undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
    $healthy = $s->{backends}[0]{healthy} ? 1 : 0;
    last unless $healthy;
    Time::HiRes::sleep(0.05);
}
Test::More::is($healthy, 0, 'marked down');

my ($st, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "waits"}');
Time::HiRes::sleep(0.5);
my (undef, $task) = AsyncTaskTest::api('GET', "tasks/$t->{id}");
Test::More::is($task->{status}, 'QUEUED', 'no instance up: the task waits');
Test::More::is($task->{attempts}, 0, 'uncharged');
my (undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::is($s->{workers}{total}, 0, 'no slots');

AsyncTaskTest::fake(19302, 'POST', '/control', {health => 'up'});
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'it runs once the instance is back');
--- request
GET /api/v1/system/stats
--- response_body_like: "workers":\{"busy":0,"total":1\}.*"healthy":true
--- grep_error_log eval: qr/instance gpu\/127\.0\.0\.1:19302 is (?:down|up again)/
--- grep_error_log_out
instance gpu/127.0.0.1:19302 is down
instance gpu/127.0.0.1:19302 is up again
--- no_error_log
[error]
[alert]



=== TEST 3: an instance that does not answer probes is down; a reload keeps it so
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19303;
        server 127.0.0.1:19304;
        async_task_health_check interval=100ms timeout=300ms fails=1
                                passes=1 uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19303, kind => 'image');
--- init
Time::HiRes::sleep(0.6);
my (undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::is(join(',', map { $_->{healthy} ? 1 : 0 } @{$s->{backends}}),
               '1,0', 'the instance with nothing behind it is down');

my $root = AsyncTaskTest::servroot();
my $master = `cat $root/logs/nginx.pid`;
chomp $master;
kill 'HUP', $master;
Time::HiRes::sleep(0.3);
(undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::is(join(',', map { $_->{healthy} ? 1 : 0 } @{$s->{backends}}),
               '1,0', 'still down after the reload');

# tasks all go to the healthy one
my @ids;
for my $i (1 .. 4) {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "t$i"}));
    push @ids, $t->{id};
}
my @backends = map { AsyncTaskTest::wait_task($_, ['DONE'])->{backend} } @ids;
Test::More::is(join(',', @backends), join(',', ('gpu/127.0.0.1:19303') x 4),
               'every task on the healthy instance');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":4
--- no_error_log
[alert]
