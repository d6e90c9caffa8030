# Two nginx nodes on one PostgreSQL store share the health of the GPU
# instances: about one probe per instance per interval for both nodes
# together, a verdict found by one node holds on the other within an
# interval, refused connections (max_fails=) count for both, and without
# the database each node probes by itself.
#
# Node a is the block's nginx, node b a second nginx on port 19592 with
# the same configuration (node=b), as in t/121-pg-nodes.t.
# Fake GPU instances: tools/fake_gpu.py, ports 19620-19629; each logs its
# requests, health probes included, to html/fake-PORT.log.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use Time::HiRes ();

master_on();
workers(2);

# node b's port
our $B = 19592;

run_tests();

# helpers for the "--- init" code (which runs in another package)

# the health probes a fake answered so far, those with a status if given
sub probes {
    my ($port, $status) = @_;
    my $file = AsyncTaskTest::servroot() . "/html/fake-$port.log";
    open my $fh, '<', $file or return 0;
    my $re = defined $status ? qr{ GET /health $status\b} : qr{ GET /health };
    return scalar grep { /$re/ } <$fh>;
}

# waits until both nodes show the instance healthy (1) or not (0): the
# number of probes with $status the instance had answered by then
sub wait_both {
    my ($server, $healthy, $port, $status) = @_;
    for (1 .. 500) {
        my $a = AsyncTaskTest::backend_stats($server, AsyncTaskTest::port());
        my $b = AsyncTaskTest::backend_stats($server, $main::B);
        if (($a->{healthy} ? 1 : 0) == $healthy
            && ($b->{healthy} ? 1 : 0) == $healthy)
        {
            return probes($port, $status);
        }
        Time::HiRes::sleep(0.01);
    }
    return undef;
}

# the instances that ran the tasks, as node $port reads them once final
sub backends_of {
    my ($port, @ids) = @_;
    return map {
        my $t = AsyncTaskTest::node_wait_task($port, $_,
                                              [qw(DONE FAILED CANCELED)]);
        $t && $t->{status} eq 'DONE' ? $t->{backend} : 'none'
    } @ids;
}

__DATA__

=== TEST 1: about one probe per instance per interval for both nodes together
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19620;
        server 127.0.0.1:19621;
        async_task_health_check interval=300ms timeout=1s uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19620, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19621, kind => 'image');
--- init
AsyncTaskTest::node2_start(port => $main::B);
Time::HiRes::sleep(0.5);
my @before = map { main::probes($_) } 19620, 19621;
Time::HiRes::sleep(3);
my @n = map { main::probes((19620, 19621)[$_]) - $before[$_] } 0, 1;
for my $i (0, 1) {
    Test::More::cmp_ok($n[$i], '>=', 3, "instance $i is probed ($n[$i] in 3 s)");
    # ten intervals: one probe each, and some slack; each node on its own
    # would make twice as many
    Test::More::cmp_ok($n[$i], '<=', 12,
        "instance $i: one probe per interval for both nodes ($n[$i] in 10 intervals)");
}
my $b = AsyncTaskTest::backend_stats('127.0.0.1:19621', $main::B);
Test::More::like($b->{last_check} // '', qr/^20\d\d-/,
                 'node b shows when it was probed last');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true.*"healthy":true
--- no_error_log
[error]
[alert]



=== TEST 2: an instance found down is down on both nodes, which send it no task, and comes back on both
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19622;
        server 127.0.0.1:19623;
        async_task_health_check interval=300ms timeout=1s fails=2 passes=2
                                uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19622, kind => 'image', latency => 0.05);
AsyncTaskTest::fake_gpu(port => 19623, kind => 'image', latency => 0.05);
--- init
my $A = AsyncTaskTest::port();
AsyncTaskTest::node2_start(port => $main::B);
Time::HiRes::sleep(0.5);

AsyncTaskTest::fake_control(19623, health => 'down');
my $failed = main::wait_both('127.0.0.1:19623', 0, 19623, 503);
Test::More::ok(defined $failed, 'down on both nodes');
# fails=2: two failed probes take it out; each node on its own needs two
Test::More::cmp_ok($failed // 99, '<=', 3,
    "the probes of one node took it out on both ($failed failed probes)");

my @ids = ((map { AsyncTaskTest::node_submit($A, "a $_") } 1 .. 4),
           (map { AsyncTaskTest::node_submit($main::B, "b $_") } 1 .. 4));
Test::More::is(scalar(grep { defined } @ids), 8, '8 tasks accepted');
Test::More::is(join(' ', main::backends_of($A, @ids)),
               join(' ', ('gpu_image/127.0.0.1:19622') x 8),
               'every task ran on the healthy instance');
Test::More::is(AsyncTaskTest::fake_stats(19623)->{requests}, 0,
               'neither node sent the instance that is down a task');

AsyncTaskTest::fake_control(19623, health => 'up');
my $up_before = main::probes(19623, 200);
my $passed = main::wait_both('127.0.0.1:19623', 1, 19623, 200);
Test::More::ok(defined $passed, 'up again on both nodes');
Test::More::cmp_ok(($passed // 99) - $up_before, '<=', 3,
    'the probes of one node brought it back on both ('
    . (($passed // 99) - $up_before) . ' passed probes)');

@ids = ((map { AsyncTaskTest::node_submit($A, "a2 $_") } 1 .. 4),
        (map { AsyncTaskTest::node_submit($main::B, "b2 $_") } 1 .. 4));
my @b = main::backends_of($A, @ids);
Test::More::is(scalar(grep { $_ eq 'none' } @b), 0, 'all 8 DONE');
Test::More::cmp_ok(AsyncTaskTest::fake_stats(19623)->{requests}, '>', 0,
                   'the instance gets tasks again');

for my $log (AsyncTaskTest::error_log(), AsyncTaskTest::node2_error_log()) {
    Test::More::is(scalar(() = $log =~ m{instance gpu_image/127\.0\.0\.1:19623 is (?:down|up again)}g),
                   2, 'each node logs the change both ways, once');
}
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true.*"healthy":true
--- no_error_log
[error]
[alert]
--- timeout: 30



=== TEST 3: refused connections counted by one node (max_fails=) rest the instance on the other too
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19624;
        server 127.0.0.1:19625 max_fails=2 fail_timeout=30s;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19624, kind => 'image', latency => 0.05);
--- init
# node b has the same instances, for speech: it runs none of these tasks
AsyncTaskTest::node2_start(port => $main::B, edit => sub {
    s/async_task_backend image gpu_image model=m;/async_task_backend image gpu_none model=m;\n    async_task_backend speech gpu_image model=m;\n    upstream gpu_none { server 127.0.0.1:9 down; }/;
});
my $A = AsyncTaskTest::port();
Test::More::ok(AsyncTaskTest::backend_stats('127.0.0.1:19625',
                                           $main::B)->{healthy},
               'node b: the instance is healthy at first');
my @ids = map { AsyncTaskTest::node_submit($A, "r $_") } 1 .. 6;
Test::More::is(join(' ', main::backends_of($A, @ids)),
               join(' ', ('gpu_image/127.0.0.1:19624') x 6),
               'every task ran on the live instance');
my $a = AsyncTaskTest::backend_stats('127.0.0.1:19625', $A);
Test::More::cmp_ok($a->{requests}, '>=', 2, 'node a was refused by the other');
Test::More::ok(!$a->{healthy}, 'node a rests it');
my $b;
for (1 .. 300) {
    $b = AsyncTaskTest::backend_stats('127.0.0.1:19625', $main::B);
    last unless $b->{healthy};
    Time::HiRes::sleep(0.01);
}
Test::More::ok(!$b->{healthy}, 'node b rests it too');
Test::More::is($b->{requests}, 0, 'without a request of its own');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts();
--- request
GET /api/v1/system/stats
--- response_body_like: "server":"127.0.0.1:19625","healthy":false
--- no_error_log
[alert]



=== TEST 4: failed task requests on one node take the instance out on the other, which sent it nothing
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19627;
        server 127.0.0.1:19628;
        async_task_health_check interval=60s timeout=1s fails=2 passes=1
                                uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19627, kind => 'image', latency => 0.05);
AsyncTaskTest::fake_gpu(port => 19628, kind => 'image', latency => 0.05,
                        mode => 'error500');
--- init
# node b has the same instances, for speech: it runs none of these tasks
AsyncTaskTest::node2_start(port => $main::B, edit => sub {
    s/async_task_backend image gpu_image model=m;/async_task_backend image gpu_none model=m;\n    async_task_backend speech gpu_image model=m;\n    upstream gpu_none { server 127.0.0.1:9 down; }/;
});
my $A = AsyncTaskTest::port();
# the first probes (then none for a minute) pass
Time::HiRes::sleep(0.5);
Test::More::ok(AsyncTaskTest::backend_stats('127.0.0.1:19628',
                                           $main::B)->{healthy},
               'node b: the instance is healthy at first');
my @ids = map { AsyncTaskTest::node_submit($A, "f $_") } 1 .. 6;
main::backends_of($A, @ids);
my $a = AsyncTaskTest::backend_stats('127.0.0.1:19628', $A);
Test::More::cmp_ok($a->{failures}, '>=', 2, 'node a got 5xx answers from it');
Test::More::ok(!$a->{healthy}, 'fails=2: node a takes it out');
my $b;
for (1 .. 300) {
    $b = AsyncTaskTest::backend_stats('127.0.0.1:19628', $main::B);
    last unless $b->{healthy};
    Time::HiRes::sleep(0.01);
}
Test::More::ok(!$b->{healthy}, 'node b too');
Test::More::is($b->{requests}, 0, 'without a request of its own');
Test::More::is(main::probes(19628), 1, 'and without a probe since the first');
Test::More::like(AsyncTaskTest::node2_error_log(),
                 qr{instance gpu_image/127\.0\.0\.1:19628 is down},
                 'node b logs the change');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/system/stats
--- response_body_like: "server":"127.0.0.1:19628","healthy":false
--- no_error_log
[error]
[alert]



=== TEST 5: PostgreSQL stopped: each node probes by itself; back: the probes are shared again
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19626;
        async_task_health_check interval=300ms timeout=1s fails=1 passes=1
                                uri=/health;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19626, kind => 'image');
--- init
AsyncTaskTest::node2_start(port => $main::B);
Time::HiRes::sleep(0.5);
AsyncTaskTest::pg_ctl('stop');
Time::HiRes::sleep(1.5);
AsyncTaskTest::fake_control(19626, health => 'down');
Test::More::ok(defined main::wait_both('127.0.0.1:19626', 0, 19626),
               'without the database both nodes find the instance down');
AsyncTaskTest::fake_control(19626, health => 'up');
Test::More::ok(defined main::wait_both('127.0.0.1:19626', 1, 19626),
               'and up again');
AsyncTaskTest::pg_ctl('start');
Time::HiRes::sleep(2);
my $before = main::probes(19626);
Time::HiRes::sleep(3);
my $n = main::probes(19626) - $before;
Test::More::cmp_ok($n, '>=', 3, "probed ($n in 3 s)");
Test::More::cmp_ok($n, '<=', 12,
    "the database back: one probe per interval for both nodes ($n in 10 intervals)");
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts();
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true
--- no_error_log
[alert]
--- timeout: 40
