# max_conns across nodes: two nginx nodes on one PostgreSQL store share
# each instance's slots (leased in the database with the claim), and the
# slots of a node's killed workers, or of a killed node, come back.
#
# Node a is the block's nginx (port $TEST_NGINX_SERVER_PORT), node b a
# second nginx on port 19590 with the same configuration (node=b), see
# t/121-pg-nodes.t.  Fake GPU instances: tools/fake_gpu.py, ports
# 19520-19529; each counts the requests it serves at once (max_inflight)
# and those beyond --max-concurrent (violations).

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use JSON::PP ();
use Time::HiRes ();

master_on();
workers(2);

our $B = 19590;

run_tests();

# the nodes whose runs are in the store now ("a", "b")
sub running_nodes {
    return sort map { (split m{/})[0] } AsyncTaskTest::pg_sql(
        "SELECT lease_owner FROM tasks WHERE status = 'RUNNING'");
}

# waits until node b runs a task (and no other node does): its id
sub wait_b_runs {
    for (1 .. 400) {
        my @n = running_nodes();
        if ("@n" eq 'b') {
            my ($id) = AsyncTaskTest::pg_sql(
                "SELECT id FROM tasks WHERE status = 'RUNNING'");
            return $id;
        }
        Time::HiRes::sleep(0.025);
    }
    return undef;
}

# node a's instance, down in its nginx.conf, up: a reload
sub a_up {
    my $conf = AsyncTaskTest::servroot() . '/conf/nginx.conf';
    open my $in, '<', $conf or die "$conf: $!";
    my $text = do { local $/; <$in> };
    close $in;
    $text =~ s/ max_conns=1 down;/ max_conns=1;/;
    open my $out, '>', $conf or die "$conf: $!";
    print $out $text;
    close $out;
    kill 'HUP', AsyncTaskTest::pid_of_master();
}

__DATA__

=== TEST 1: max_conns=1 holds across two nodes: one request at a time at the instance
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19520 max_conns=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19520, kind => 'image', latency => 0.3,
                        max_concurrent => 1);
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($_ % 2 ? $main::B : $A, "s $_") } 1 .. 12;
Test::More::is(scalar(grep { defined } @ids), 12, '12 tasks accepted');
my %seen;
my $deadline = Time::HiRes::time() + 60;
while (Time::HiRes::time() < $deadline) {
    my @n = main::running_nodes();
    $seen{scalar @n}++;
    my ($left) = AsyncTaskTest::pg_sql(
        "SELECT count(*) FROM tasks WHERE status IN ('QUEUED', 'RUNNING')");
    last if $left == 0;
    Time::HiRes::sleep(0.02);
}
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 30),
               'DONE:12', 'all 12 DONE');
my $stats = AsyncTaskTest::fake_stats(19520);
Test::More::is($stats->{max_inflight}, 1, 'the instance served one at a time');
Test::More::is($stats->{violations}, 0, 'never more than its max_conns');
Test::More::ok(!$seen{2}, 'never two runs in the store at once');
my @slots = AsyncTaskTest::pg_sql(
    "SELECT DISTINCT slot FROM tasks WHERE slot IS NOT NULL");
Test::More::is("@slots", 'gpu_image/127.0.0.1:19520',
               'the slots leased were of the instance');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 120


=== TEST 2: both nodes run on two instances of max_conns=1, one slot each at a time
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19521 max_conns=1;
        server 127.0.0.1:19522 max_conns=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.2,
                        max_concurrent => 1) for 19521, 19522;
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($_ % 2 ? $main::B : $A, "t $_") } 1 .. 20;
Test::More::is(scalar(grep { defined } @ids), 20, '20 tasks accepted');
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 60),
               'DONE:20', 'all 20 DONE');
for my $port (19521, 19522) {
    my $stats = AsyncTaskTest::fake_stats($port);
    Test::More::is($stats->{max_inflight}, 1, "$port: one at a time");
    Test::More::is($stats->{violations}, 0, "$port: within max_conns");
}
my @per = AsyncTaskTest::pg_sql(
    "SELECT slot, count(*) FROM tasks GROUP BY slot ORDER BY 1");
Test::More::is(scalar(@per), 2, 'both instances ran tasks')
    or Test::More::diag("@per");
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 120


=== TEST 3: kill -9 of node b's workers while they hold the slot: it comes back, and node a, which has the instance too, never runs beside the killed run
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19523 max_conns=1 down;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19523, kind => 'image', latency => 0.5,
                        max_concurrent => 1);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=1 down;/ max_conns=1;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($_ % 2 ? $main::B : $A, "k $_") } 1 .. 8;
Test::More::is(scalar(grep { defined } @ids), 8, '8 tasks accepted');
my $id = main::wait_b_runs();
Test::More::ok($id, 'node b holds the slot');
my $master = AsyncTaskTest::node2_master();
my @workers = split ' ', `pgrep -P $master`;
kill 'KILL', @workers;
my $killed = Time::HiRes::time();
# node a gets the instance too: it waits for the killed run's slot
main::a_up();
my $left;
for (1 .. 400) {
    ($left) = AsyncTaskTest::pg_sql(
        "SELECT count(*) FROM tasks WHERE status = 'RUNNING' "
        . "AND id = '$id' AND lease_owner LIKE 'b/%'");
    last if $left == 0;
    Time::HiRes::sleep(0.05);
}
Test::More::is($left, 0, "the killed run's slot came back");
Test::More::diag(sprintf 'slot back after the kill: %.1f s',
                         Time::HiRes::time() - $killed);
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 40),
               'DONE:8', 'all 8 DONE');
my $stats = AsyncTaskTest::fake_stats(19523);
Test::More::is($stats->{violations}, 0, 'never more than its max_conns');
Test::More::is($stats->{max_inflight}, 1, 'one at a time');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts(except => qr/exited on signal 9/);
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 90


=== TEST 4: kill -9 of node b (master and workers) while it holds the slot: node a gets it back once b is seen dead, and finishes every task
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=300s;
    upstream gpu_image {
        server 127.0.0.1:19524 max_conns=1 down;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19524, kind => 'image', latency => 1,
                        max_concurrent => 1);
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=1 down;/ max_conns=1;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($_ % 2 ? $main::B : $A, "n $_") } 1 .. 6;
Test::More::is(scalar(grep { defined } @ids), 6, '6 tasks accepted');
my $id = main::wait_b_runs();
Test::More::ok($id, 'node b holds the slot');
my $master = AsyncTaskTest::node2_master();
my @workers = split ' ', `pgrep -P $master`;
kill 'KILL', $master, @workers;
my $killed = Time::HiRes::time();
main::a_up();
Time::HiRes::sleep(3);
my @n = main::running_nodes();
Test::More::is("@n", 'b', "meanwhile the dead node's run holds the slot");
for (1 .. 600) {
    my @n = main::running_nodes();
    last if "@n" eq 'a';
    Time::HiRes::sleep(0.05);
}
Test::More::diag(sprintf 'slot back after the kill: %.1f s',
                         Time::HiRes::time() - $killed);
Test::More::is(AsyncTaskTest::node_wait_final($A, \@ids, 30),
               'DONE:6', 'all 6 DONE');
my $stats = AsyncTaskTest::fake_stats(19524);
Test::More::is($stats->{violations}, 0, 'never more than its max_conns');
Test::More::is($stats->{max_inflight}, 1, 'one at a time');
Test::More::like(AsyncTaskTest::error_log(),
                 qr/task $id of "b\/pid:\d+" is taken back/,
                 "node a took the dead node's run back, and says whose");
AsyncTaskTest::nodes_no_alerts(except => qr/exited on signal 9/);
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 90
