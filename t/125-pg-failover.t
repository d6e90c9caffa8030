# Two nginx nodes on one PostgreSQL store, under load and through
# failures: 1,000 tasks each run once, PostgreSQL restarted while tasks
# are submitted, a reload of one node, a run that ends while PostgreSQL
# is down, and max_queued for the queue of both nodes together.
#
# Node a is the block's nginx (port $TEST_NGINX_SERVER_PORT), node b a
# second nginx on port 19591 with the same configuration (node=b) and the
# prefix html/node2, started by the "--- init" code; html/files is the
# files= directory they share.
# Fake GPU instances: tools/fake_gpu.py, ports 19520-19529.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use JSON::PP ();
use Time::HiRes ();
use POSIX ();

master_on();
workers(2);

# node b's port
our $B = 19591;

run_tests();

# helpers for the "--- init" code (which runs in another package)

# "STATUS:N ..." of the tasks in the store, once none is QUEUED or RUNNING
sub wait_store_final {
    my ($timeout) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    my %status;
    while (1) {
        %status = map { split /\|/ }
                  AsyncTaskTest::pg_sql(
                      "SELECT status, count(*) FROM tasks GROUP BY status");
        last if !$status{QUEUED} && !$status{RUNNING}
                || Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.2);
    }
    return join ' ', map { "$_:$status{$_}" } sort keys %status;
}

# prompts that ran other than exactly once, among those given
sub not_once {
    my ($prompts, @ports) = @_;
    my %runs;
    $runs{$_}++ for AsyncTaskTest::fake_prompts(@ports);
    return grep { ($runs{$_} // 0) != 1 } @$prompts;
}

# Submitters: one process per port in @$ports, each submitting "$tag-K-N"
# until html/stop exists (or $count were sent); each line of its file
# html/load.K: "STATUS ID PROMPT CODE" (ID "-" unless 202, CODE the error
# code, "-" when none, "bad" when the answer is not the contract's).
sub load_start {
    my ($tag, $ports, $count) = @_;
    my $dir = AsyncTaskTest::servroot() . '/html';
    unlink "$dir/stop";
    my @kids;
    for my $k (0 .. $#$ports) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open my $out, '>', "$dir/load.$k" or POSIX::_exit(1);
            $out->autoflush(1);
            for (my $i = 1; !$count || $i <= $count; $i++) {
                last if -e "$dir/stop";
                my $p = "$tag-$k-$i";
                my ($s, $t, $h) = eval {
                    AsyncTaskTest::node_api($ports->[$k], 'POST',
                        'image/async',
                        body => JSON::PP::encode_json({prompt => $p,
                                          width => 64, height => 64}));
                };
                $s //= 'none';
                my $code = '-';
                if ($s ne '202') {
                    $code = ref $t && ref $t->{error}
                            && $t->{error}{code} && $t->{error}{message}
                            && ($s ne '503' || $h->{'retry-after'})
                            ? $t->{error}{code} : 'bad';
                }
                printf $out "%s %s %s %s\n", $s,
                       $s eq '202' ? $t->{id} : '-', $p, $code;

                # a steady load, not as much as the machine can take: the
                # runs that follow must fit the wait, on a slow build too
                Time::HiRes::sleep(0.01) unless $count;
            }
            close $out;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    return @kids;
}

# stops the submitters: [STATUS, ID, PROMPT, CODE] of every submission
sub load_stop {
    my @kids = @_;
    my $dir = AsyncTaskTest::servroot() . '/html';
    open my $stop, '>', "$dir/stop" or die "$dir/stop: $!";
    close $stop;
    waitpid($_, 0) for @kids;
    my @all;
    for my $k (0 .. $#kids) {
        open my $in, '<', "$dir/load.$k" or die "$dir/load.$k: $!";
        push @all, map { [split] } <$in>;
    }
    return @all;
}

sub codes {
    my %c;
    $c{"$_->[0] $_->[3]"}++ for @_;
    return join ', ', map { "$_: $c{$_}" } sort keys %c;
}

__DATA__

=== TEST 1: 1,000 tasks submitted across both nodes: each runs exactly once
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=2000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19520 max_conns=4;
        server 127.0.0.1:19521 max_conns=4;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.005)
    for 19520, 19521;
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my @kids = main::load_start('t', [$A, $main::B, $A, $main::B], 250);
waitpid($_, 0) for @kids;
my @subs = main::load_stop(@kids);
Test::More::is(main::codes(@subs), '202 -: 1000', '1000 tasks accepted');
Test::More::is(main::wait_store_final(60), 'DONE:1000', 'all 1000 DONE');
Test::More::is(scalar(AsyncTaskTest::fake_prompts(19520, 19521)), 1000,
               '1000 requests to the instances');
Test::More::is(scalar(main::not_once([map { $_->[2] } @subs], 19520, 19521)),
               0, 'each task exactly once');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 120



=== TEST 2: PostgreSQL restarted while both nodes take tasks: every 202 ends DONE, once; the others are the contract's 503
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=5000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19522 max_conns=4;
        server 127.0.0.1:19523 max_conns=4;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.1)
    for 19522, 19523;
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my @kids = main::load_start('r', [$A, $main::B]);
Time::HiRes::sleep(1);
AsyncTaskTest::pg_ctl('stop');
Time::HiRes::sleep(2);
AsyncTaskTest::pg_ctl('start');
Time::HiRes::sleep(2);
my @subs = main::load_stop(@kids);
my @acked = grep { $_->[0] eq '202' } @subs;
my @refused = grep { $_->[0] ne '202' } @subs;
Test::More::ok(@acked > 20, 'tasks accepted before and after: ' . @acked);
Test::More::ok(@refused > 0, 'submissions refused while it was down: '
                             . @refused);
Test::More::is(scalar(grep { "$_->[0] $_->[3]" ne '503 unavailable' }
                      @refused), 0,
               'each refused with 503 "unavailable", Retry-After')
    or Test::More::diag(main::codes(@refused));
Test::More::like(main::wait_store_final(90), qr/^DONE:\d+$/,
                 'every task in the store DONE');
my %done = map { $_ => 1 } AsyncTaskTest::pg_sql(
    "SELECT id FROM tasks WHERE status = 'DONE'");
Test::More::is(scalar(grep { !$done{$_->[1]} } @acked), 0,
               'every acknowledged task is in the store, DONE');
Test::More::is(scalar(main::not_once([map { $_->[2] } @acked],
                                     19522, 19523)), 0,
               'each acknowledged task ran exactly once');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 150



=== TEST 3: a reload of one node while both take tasks: nothing lost, nothing run twice
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=5000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19524 max_conns=4;
        server 127.0.0.1:19525 max_conns=4;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.1)
    for 19524, 19525;
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my $root2 = AsyncTaskTest::node2_root();
my $binary = $Test::Nginx::Util::NginxBinary || $ENV{TEST_NGINX_BINARY}
             || 'nginx';
my @old = split ' ', `pgrep -P ${\ AsyncTaskTest::node2_master()}`;
my @kids = main::load_start('h', [$A, $main::B]);
Time::HiRes::sleep(1);
system("$binary -p $root2/ -c $root2/conf/nginx.conf -s reload 2>/dev/null")
    == 0
    or die "reload of node b failed";
Time::HiRes::sleep(2);
my @subs = main::load_stop(@kids);
my $gone = 0;
for (1 .. 100) {
    $gone = !grep { kill 0, $_ } @old;
    last if $gone;
    Time::HiRes::sleep(0.1);
}
Test::More::ok($gone, "node b's old workers exited");
Test::More::is(scalar(grep { $_->[0] ne '202' } @subs), 0,
               'every submission accepted: ' . @subs);
Test::More::is(main::wait_store_final(90), 'DONE:' . @subs,
               'all of them DONE');
Test::More::is(scalar(main::not_once([map { $_->[2] } @subs],
                                     19524, 19525)), 0,
               'each ran exactly once');
Test::More::like(AsyncTaskTest::node2_error_log(), qr/reconfiguring/,
                 'node b reloaded');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 150



=== TEST 4: a run that ends while PostgreSQL is down keeps its outcome: stored once it is back, the task not run again
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=30s;
    upstream gpu_image {
        server 127.0.0.1:19526 max_conns=2 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19526, kind => 'image', latency => 1.5);
--- init
# node b runs the tasks; node a, whose instance is down, only watches
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/ max_conns=2 down;/ max_conns=2;/ });
my $A = AsyncTaskTest::port();
my @ids = map { AsyncTaskTest::node_submit($A, "kept $_") } 1 .. 2;
Test::More::is(scalar(grep { defined } @ids), 2, '2 tasks accepted');
my $running = 0;
for (1 .. 100) {
    $running = grep { AsyncTaskTest::node_task($A, $_)->{status}
                      eq 'RUNNING' } @ids;
    last if $running == 2;
    Time::HiRes::sleep(0.05);
}
Test::More::is($running, 2, 'node b runs both');
AsyncTaskTest::pg_ctl('stop');
# the runs end meanwhile, and node b keeps their outcomes
Time::HiRes::sleep(3);
Test::More::is(scalar(AsyncTaskTest::fake_prompts(19526)), 2,
               'both runs ended while PostgreSQL was down');
# Node b freezes until well after PostgreSQL is back: its heartbeat is
# older than 10 s by then, and its leases are its own still.  Node a
# lost PostgreSQL too, so it does not take node b for dead.
my @workers = split ' ', `pgrep -P ${\ AsyncTaskTest::node2_master()}`;
kill 'STOP', @workers;
Time::HiRes::sleep(8);
AsyncTaskTest::pg_ctl('start');
Time::HiRes::sleep(5.5);
kill 'CONT', @workers;
my $t0 = Time::HiRes::time();
my %st;
for (1 .. 100) {
    %st = ();
    $st{AsyncTaskTest::node_task($A, $_)->{status} // 'none'}++ for @ids;
    last if ($st{DONE} // 0) == 2;
    Time::HiRes::sleep(0.1);
}
Test::More::is(join(' ', map { "$_:$st{$_}" } sort keys %st), 'DONE:2',
               'both DONE once it is back');
Test::More::diag(sprintf 'outcomes stored %.1f s after node b went on',
                 Time::HiRes::time() - $t0);
Time::HiRes::sleep(2);
Test::More::is(join(' ', sort(AsyncTaskTest::fake_prompts(19526))),
               'kept 1 kept 2',
               'the instance saw one request for each, not another after');
Test::More::is(join(' ', map { AsyncTaskTest::node_task($A, $_)->{attempts} }
                        @ids), '1 1', 'one attempt each');
my ($rs, $rh, $png) = AsyncTaskTest::node_result($A, $ids[0]);
Test::More::is($rs . ' ' . substr($png, 1, 3), '200 PNG', 'its result');
Test::More::is(scalar(() = AsyncTaskTest::node2_error_log()
                           =~ /outcome of task \S+ waits for the store/g),
               2, 'node b said each outcome waits');
Test::More::unlike(AsyncTaskTest::error_log(), qr/is taken back/,
                   'node a took back nothing');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_alerts();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 60



=== TEST 5: max_queued bounds the queue of both nodes together
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=10;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19527 max_conns=2 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();
my @a = map { AsyncTaskTest::node_submit($A, "qa $_") } 1 .. 6;
Test::More::is(scalar(grep { defined } @a), 6, 'node a takes 6');
my @b = map { AsyncTaskTest::node_submit($main::B, "qb $_") } 1 .. 4;
Test::More::is(scalar(grep { defined } @b), 4, 'node b takes 4');
my ($s, $e, $h) = AsyncTaskTest::node_api($main::B, 'POST', 'image/async',
    body => JSON::PP::encode_json({prompt => 'qb 5'}));
Test::More::is($s, 429, 'the 11th, on node b: 429');
Test::More::is($e->{error}{code}, 'queue_full', 'queue_full');
Test::More::is($h->{'retry-after'}, 5, 'Retry-After: 5');
($s) = AsyncTaskTest::node_api($A, 'POST', 'image/async',
    body => JSON::PP::encode_json({prompt => 'qa 7'}));
Test::More::is($s, 429, 'node a refuses too');
Test::More::is((AsyncTaskTest::pg_sql("SELECT count(*) FROM tasks"))[0], 10,
               'the store holds 10');
my ($ds) = AsyncTaskTest::node_api($A, 'DELETE', "tasks/$b[0]");
Test::More::is($ds, 200, 'one canceled');
Test::More::ok(defined AsyncTaskTest::node_submit($A, 'qa 8'),
               'node a takes one again');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 30
