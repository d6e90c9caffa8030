# Two nginx nodes on one PostgreSQL store: any task from any node, one
# queue, runs taken back after a worker's kill -9, and a store that goes
# away and comes back.
#
# Node a is the block's nginx (port $TEST_NGINX_SERVER_PORT), node b a
# second nginx on port 19590 with the same configuration (node=b) and the
# prefix html/node2, started by the "--- init" code; html/files is the
# files= directory they share.
# Fake GPU instances: tools/fake_gpu.py, ports 19500-19519.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use JSON::PP ();
use Time::HiRes ();
use POSIX ();

master_on();
workers(2);

# node b's port
our $B = 19590;

run_tests();

__DATA__

=== TEST 1: submitted on one node: read, listed, canceled and its result fetched on the other
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19500 max_conns=1;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19500, kind => 'image', latency => 1,
                        max_concurrent => 1);
--- init
# instance slots are counted per node: node b runs nothing here
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=1;/ max_conns=1 down;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($A, "one $_") } 1 .. 3;
Test::More::is(scalar(grep { defined } @ids), 3, '3 tasks accepted by node a');
my $t;
for (1 .. 100) {
    $t = AsyncTaskTest::node_task($main::B, $ids[0]);
    last if $t && $t->{status} eq 'RUNNING';
    Time::HiRes::sleep(0.05);
}
Test::More::is($t->{status}, 'RUNNING', 'node b reads the first: RUNNING');
$t = AsyncTaskTest::node_task($main::B, $ids[2]);
Test::More::is($t->{status}, 'QUEUED', 'node b reads the third: QUEUED');
Test::More::is($t->{position}, 1, 'node b: one task before the third');
Test::More::is($t->{params}{prompt}, 'one 3', 'node b: its params');
my (undef, $list) = AsyncTaskTest::node_api($main::B, 'GET', 'tasks?limit=10');
Test::More::is(join(' ', map { $_->{id} } @{ $list->{tasks} }),
               join(' ', reverse @ids), 'node b lists all three, newest first');
my ($s, $c) = AsyncTaskTest::node_api($main::B, 'DELETE', "tasks/$ids[2]");
Test::More::is($s, 200, 'node b cancels the third');
Test::More::is($c->{status}, 'CANCELED', 'answered CANCELED');
Test::More::is(AsyncTaskTest::node_task($A, $ids[2])->{status}, 'CANCELED',
               'node a reads it CANCELED');
Test::More::is(AsyncTaskTest::node_wait_final($main::B, [@ids[0, 1]], 20),
               'DONE:2', 'the other two DONE, as node b reads them');
my ($rs, $rh, $png) = AsyncTaskTest::node_result($main::B, $ids[0]);
Test::More::is($rs, 200, 'node b serves the result');
Test::More::is($rh->{'content-type'}, 'image/png', 'a PNG');
Test::More::is(substr($png, 1, 3), 'PNG', 'its signature');
my ($os) = AsyncTaskTest::http('GET', "/api/v1/tasks/$ids[0]",
    port => $main::B, headers => {'X-User-Id' => 'bob'});
Test::More::is($os, 404, "another user's task is not found on node b");
Test::More::is(join(' ', sort(AsyncTaskTest::fake_prompts(19500))),
               'one 1 one 2', 'the canceled task never ran');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200


=== TEST 2: a node whose instances are all down: the other node claims its tasks at once
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19501 max_conns=2 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19501, kind => 'image', latency => 0.05,
                        max_concurrent => 2);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=2 down;/ max_conns=2;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($A, "a $_") } 1 .. 20;
Test::More::is(scalar(grep { defined } @ids), 20, '20 tasks accepted by node a');
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 30), 'DONE:20',
               'all DONE: node b ran what node a queued');
Test::More::is(scalar(my @p = AsyncTaskTest::fake_prompts(19501)), 20,
               '20 requests to the instance');
Test::More::is(AsyncTaskTest::fake_stats(19501)->{violations}, 0,
               'max_conns held');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200


=== TEST 3: 400 tasks submitted across both nodes: each runs exactly once
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19502 max_conns=4;
        server 127.0.0.1:19503 max_conns=4;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.01)
    for 19502, 19503;
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my $n = 400;
my $dir = AsyncTaskTest::servroot() . '/html';
my @kids;
for my $k (0 .. 3) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open my $out, '>', "$dir/ids.$k" or POSIX::_exit(1);
        my $port = $k % 2 ? $main::B : $A;
        for my $i (grep { $_ % 4 == $k } 1 .. $n) {
            my $p = sprintf 'p-%04d', $i;
            print $out (AsyncTaskTest::node_submit($port, $p) // 'failed'), "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
my @ids;
for my $k (0 .. 3) {
    open my $in, '<', "$dir/ids.$k" or die "$dir/ids.$k: $!";
    chomp(my @l = <$in>);
    push @ids, @l;
}
Test::More::is(scalar(grep { $_ ne 'failed' } @ids), $n, "$n tasks accepted");
Test::More::is(AsyncTaskTest::node_wait_final($main::B, \@ids, 60),
               "DONE:$n", "all $n DONE");
my %runs;
$runs{$_}++ for AsyncTaskTest::fake_prompts(19502, 19503);
Test::More::is(scalar(keys %runs), $n, "$n prompts ran");
Test::More::is(scalar(grep { $_ != 1 } values %runs), 0, 'each exactly once');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 120


=== TEST 4: kill -9 of a node's workers with runs in flight: every task DONE
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19504 max_conns=4 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19504, kind => 'image', latency => 1);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=4 down;/ max_conns=4;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($A, "k $_") } 1 .. 8;
Test::More::is(scalar(grep { defined } @ids), 8, '8 tasks accepted by node a');
my $running = 0;
for (1 .. 100) {
    $running = grep { AsyncTaskTest::node_task($A, $_)->{status} eq 'RUNNING' } @ids;
    last if $running == 4;
    Time::HiRes::sleep(0.05);
}
Test::More::is($running, 4, 'node b runs four');
my $master = AsyncTaskTest::node2_master();
my @workers = split ' ', `pgrep -P $master`;
Test::More::is(scalar(@workers), 2, 'node b has two workers');
kill 'KILL', @workers;
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 40),
               'DONE:8', 'all 8 DONE');
my @attempts = map { AsyncTaskTest::node_task($A, $_)->{attempts} } @ids;
Test::More::is(scalar(grep { $_ != 1 } @attempts), 0,
               'runs cut off by the kill were not charged');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts(except => qr/exited on signal 9/);
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 60


=== TEST 5: PostgreSQL stopped: submissions 503 on both nodes, never a 202; back by itself
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19505 max_conns=2;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19505, kind => 'image', latency => 0.05);
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my $before = AsyncTaskTest::node_submit($A, 'before');
Test::More::ok(defined $before, 'accepted while the store is up');
Test::More::is(AsyncTaskTest::node_wait_final($A, [$before], 10),
               'DONE:1', 'and DONE');
AsyncTaskTest::pg_ctl('stop');
my (%codes, $accepted);
for my $i (1 .. 10) {
    for my $port ($A, $main::B) {
        my ($s, $t) = AsyncTaskTest::node_api($port, 'POST', 'image/async',
            body => JSON::PP::encode_json({prompt => "down $i"}));
        $codes{$s}++;
    }
}
Test::More::is(join(' ', map { "$_:$codes{$_}" } sort keys %codes), '503:20',
               'every submission answered 503 while PostgreSQL is down');
my ($gs) = AsyncTaskTest::node_api($A, 'GET', "tasks/$before");
Test::More::is($gs, 503, 'a read answers 503 too');
AsyncTaskTest::pg_ctl('start');
my %after;
for my $i (1 .. 50) {
    for my $port ($A, $main::B) {
        $after{$port} //= AsyncTaskTest::node_submit($port, "after $i");
    }
    last if $after{$A} && $after{$main::B};
    Time::HiRes::sleep(0.1);
}
Test::More::ok($after{$A} && $after{$main::B},
               'both nodes accept again once it is back');
Test::More::is(AsyncTaskTest::node_wait_final($main::B,
                                              [$before, values %after], 20),
               'DONE:3', 'and run the tasks');
my (undef, $list) = AsyncTaskTest::node_api($A, 'GET', 'tasks?limit=100');
Test::More::is(scalar(@{ $list->{tasks} }), 3,
               'the store holds only the tasks that got a 202');
Test::More::is(scalar(grep { /^down / } AsyncTaskTest::fake_prompts(19505)), 0,
               'no refused submission ran');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts(except => qr/exited on signal 9/);
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 60


=== TEST 6: kill -9 of a whole node (master and workers) with runs in flight: the other node takes them back and every task is DONE
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=300s;
    upstream gpu_image {
        server 127.0.0.1:19506 max_conns=4 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19506, kind => 'image', latency => 1);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=4 down;/ max_conns=4;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($A, "w $_") } 1 .. 4;
Test::More::is(scalar(grep { defined } @ids), 4, '4 tasks accepted by node a');
my $running = 0;
for (1 .. 100) {
    $running = grep { AsyncTaskTest::node_task($A, $_)->{status} eq 'RUNNING' } @ids;
    last if $running == 4;
    Time::HiRes::sleep(0.05);
}
Test::More::is($running, 4, 'node b runs all four');
my $master = AsyncTaskTest::node2_master();
my @workers = split ' ', `pgrep -P $master`;
kill 'KILL', $master, @workers;
my $killed = Time::HiRes::time();
# node a gets the instance (a reload), and waits for node b's runs
my $conf = AsyncTaskTest::servroot() . '/conf/nginx.conf';
open my $in, '<', $conf or die "$conf: $!";
my $text = do { local $/; <$in> };
close $in;
$text =~ s/ max_conns=4 down;/ max_conns=4;/;
open my $out, '>', $conf or die "$conf: $!";
print $out $text;
close $out;
kill 'HUP', AsyncTaskTest::pid_of_master();
my $t;
for (1 .. 600) {
    $t = AsyncTaskTest::node_task($A, $ids[0]);
    last if $t->{status} ne 'RUNNING';
    Time::HiRes::sleep(0.05);
}
my $took = Time::HiRes::time() - $killed;
Test::More::isnt($t->{status}, 'RUNNING', 'taken back before its lease ran out');
Test::More::diag(sprintf 'takeover after the kill: %.1f s', $took);
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 30),
               'DONE:4', 'all four DONE');
my @attempts = map { AsyncTaskTest::node_task($A, $_)->{attempts} } @ids;
Test::More::is(scalar(grep { $_ != 1 } @attempts), 0,
               'the runs cut off by the kill were not charged');
Test::More::is(scalar(grep { /is taken back/ } split /\n/,
                      AsyncTaskTest::error_log()), 4,
               'node a logs each of the four taken back');
AsyncTaskTest::nodes_no_alerts(except => qr/exited on signal 9/);
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 60


=== TEST 7: DELETE on one node stops a run on the other
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19507 max_conns=1 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19507, kind => 'image', latency => 8);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=1 down;/ max_conns=1;/ });
my $A = AsyncTaskTest::port();
my $id = AsyncTaskTest::node_submit($A, 'long');
my $t;
for (1 .. 100) {
    $t = AsyncTaskTest::node_task($A, $id);
    last if $t->{status} eq 'RUNNING';
    Time::HiRes::sleep(0.05);
}
Test::More::is($t->{status}, 'RUNNING', 'node b runs it');
my ($s, $c) = AsyncTaskTest::node_api($A, 'DELETE', "tasks/$id");
Test::More::is($s, 200, 'node a cancels it');
my $open;
for (1 .. 80) {
    $open = AsyncTaskTest::connections_to(19507);
    last if $open == 0;
    Time::HiRes::sleep(0.05);
}
Test::More::is($open, 0,
               'node b closed its request long before the run would end');
Test::More::like(AsyncTaskTest::node2_error_log(),
                 qr/task $id canceled while it ran/, 'node b says so');
Test::More::is(AsyncTaskTest::node_task($main::B, $id)->{status}, 'CANCELED',
               'CANCELED on both');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 30
