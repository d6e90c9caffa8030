# Balancing: round_robin by weight, user_hash with a consistent ring,
# least_busy; backup instances; slots shared by all workers.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: round_robin spreads by weight
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19401 max_conns=20;
        server 127.0.0.1:19402 max_conns=20 weight=3;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19401, kind => 'image', latency => 0.3);
AsyncTaskTest::fake_gpu(port => 19402, kind => 'image', latency => 0.3);
--- init
my @ids;
for my $i (1 .. 8) {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "rr $i"}));
    push @ids, $t->{id};
}
my %on;
$on{AsyncTaskTest::wait_task($_, ['DONE'])->{backend}}++ for @ids;
Test::More::is($on{'gpu/127.0.0.1:19401'}, 2, 'weight 1: a quarter');
Test::More::is($on{'gpu/127.0.0.1:19402'}, 6, 'weight 3: three quarters');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":8
--- no_error_log
[error]
[alert]



=== TEST 2: user_hash keeps a user's tasks on one instance, and moves few users when an instance goes
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19411 max_conns=50;
        server 127.0.0.1:19412 max_conns=50;
        server 127.0.0.1:19413 max_conns=50;
        server 127.0.0.1:19414 max_conns=50;
        async_task_balance user_hash;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => $_, kind => 'image') for 19411 .. 19414;
--- init
my $run = sub {
    my (%where, $stable);
    $stable = 1;
    for my $round (1 .. 2) {
        my @ids;
        for my $u (1 .. 40) {
            my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
                headers => {'Content-Type' => 'application/json',
                            'X-User-Id' => "user$u"},
                body => qq({"prompt": "u$u r$round"}));
            push @ids, [$u, $t->{id}];
        }
        for (@ids) {
            my $b = AsyncTaskTest::wait_task($_->[1], ['DONE'],
                                headers => {'X-User-Id' => "user$_->[0]"});
            $stable = 0 if $where{$_->[0]} && $where{$_->[0]} ne $b->{backend};
            $where{$_->[0]} = $b->{backend};
        }
    }
    return (\%where, $stable);
};
my ($before, $stable) = $run->();
Test::More::ok($stable, "each user's tasks stay on one instance");
my %used = map { $_ => 1 } values %$before;
Test::More::is(scalar keys %used, 4, 'all four instances serve someone');

# one instance goes away: only its users move
my $moved_users = grep { $before->{$_} eq 'gpu/127.0.0.1:19414' } keys %$before;
AsyncTaskTest::fake(19414, 'POST', '/control', {mode => 'ok'});
my $root = AsyncTaskTest::servroot();
system("sed -i 's/server 127.0.0.1:19414 max_conns=50;//' $root/conf/nginx.conf");
my $master = `cat $root/logs/nginx.pid`;
chomp $master;
kill 'HUP', $master;
Time::HiRes::sleep(0.5);
my ($after) = $run->();
my $moved = grep { $before->{$_} ne $after->{$_} } keys %$before;
Test::More::is($moved, $moved_users, "only the removed instance's users move ($moved of 40)");
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":160
--- no_error_log
[error]
[alert]



=== TEST 3: least_busy fills the instance with the most free room first
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19421 max_conns=1;
        server 127.0.0.1:19422 max_conns=3;
        async_task_balance least_busy;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19421, kind => 'image', latency => 1);
AsyncTaskTest::fake_gpu(port => 19422, kind => 'image', latency => 1);
--- init
my @ids;
for my $i (1 .. 4) {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "lb $i"}));
    push @ids, $t->{id};
}
Time::HiRes::sleep(0.4);
my (undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::is(join(',', map { $_->{inflight} } @{$s->{backends}}), '1,3',
               'all slots in use, each within max_conns');
Test::More::is($s->{workers}{busy}, 4, 'four busy');
AsyncTaskTest::wait_task($_, ['DONE']) for @ids;
my $a = AsyncTaskTest::fake(19421, 'GET', '/control/stats');
my $b = AsyncTaskTest::fake(19422, 'GET', '/control/stats');
Test::More::is("$a->{requests} $b->{requests}", '1 3', 'shared by room');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":4
--- no_error_log
[error]
[alert]



=== TEST 4: backup instances serve only when no primary one is healthy
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19431;
        server 127.0.0.1:19432 backup;
        async_task_health_check interval=100ms timeout=300ms fails=1 passes=1;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19431, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19432, kind => 'image');
--- init
my $submit = sub {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "$_[0]"}));
    return AsyncTaskTest::wait_task($t->{id}, ['DONE'])->{backend};
};
Test::More::is($submit->('p1'), 'gpu/127.0.0.1:19431', 'the primary');
AsyncTaskTest::fake(19431, 'POST', '/control', {health => 'down'});
Time::HiRes::sleep(0.5);
Test::More::is($submit->('p2'), 'gpu/127.0.0.1:19432', 'the backup');
AsyncTaskTest::fake(19431, 'POST', '/control', {health => 'up'});
Time::HiRes::sleep(0.5);
Test::More::is($submit->('p3'), 'gpu/127.0.0.1:19431', 'the primary again');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3
--- no_error_log
[error]
[alert]



=== TEST 5: a busy primary and an idle backup: tasks wait for the primary, no claim loop
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19441;
        server 127.0.0.1:19442 backup;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19441, kind => 'image', latency => 0.5);
AsyncTaskTest::fake_gpu(port => 19442, kind => 'image');
--- init
my @ids;
for my $i (1 .. 3) {
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "b$i"}));
    push @ids, $t->{id};
}
my @b = map { AsyncTaskTest::wait_task($_, ['DONE'])->{backend} } @ids;
Test::More::is(join(',', @b), join(',', ('gpu/127.0.0.1:19441') x 3),
               'all on the primary, one at a time');
open my $log, '<', AsyncTaskTest::servroot() . '/logs/error.log' or die;
my $requeues = grep { /no instance slot was free/ } <$log>;
Test::More::cmp_ok($requeues, '<=', 2, "no claim loop ($requeues requeues)");
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3,.*"workers":\{"busy":0,"total":1\}
--- no_error_log
[error]
[alert]
