# Failures of a run: each kind of bad answer from an instance ends in its
# error code after the configured retries; a 4xx fails at once; a retried
# task moves to another instance; a connection that cannot be made is the
# instance's failure, not the task's: the task waits, uncharged.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19200-19229.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use Time::HiRes ();
use Time::Local ();

master_on();
workers(2);

run_tests();

# helpers for the "--- init" code (which runs in another package)

sub submit {
    my ($prompt, %extra) = @_;
    my $id = AsyncTaskTest::submit($prompt, %extra);
    Test::More::ok(defined $id, "\"$prompt\" accepted");
    return $id;
}

# RFC 3339 with milliseconds to epoch milliseconds
sub ms {
    my ($t) = @_;
    my ($Y, $M, $D, $h, $m, $s, $ms) =
        $t =~ /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z$/
        or return undef;
    return Time::Local::timegm($s, $m, $h, $D, $M - 1, $Y) * 1000 + $ms;
}

# the times (epoch ms) at which the fake ended its job requests, from its log
sub fake_log_times {
    my ($port) = @_;
    my $file = AsyncTaskTest::servroot() . "/html/fake-$port.log";
    open my $fh, '<', $file or die "$file: $!";
    my @t;
    while (<$fh>) {
        next unless m{ POST /v1/images/generations };
        my ($stamp) = split ' ';
        push @t, ms($stamp);
    }
    return @t;
}

# a run that fails with this fault on every try: its final state
sub check_failed {
    my (%c) = @_;
    my $id = submit($c{prompt});
    my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED', 'CANCELED'],
                                     timeout => 15);
    Test::More::is($t->{status}, 'FAILED', "$c{prompt}: FAILED");
    Test::More::is($t->{attempts}, $c{attempts}, "$c{prompt}: attempts");
    Test::More::is($t->{error}{code}, $c{code}, "$c{prompt}: error code");
    Test::More::is($t->{error}{message}, $c{message},
                   "$c{prompt}: error message");
    Test::More::is($t->{result}, undef, "$c{prompt}: no result");
    Test::More::ok(defined $t->{finished_at}, "$c{prompt}: finished_at");
    Test::More::is($t->{backend}, "gpu_image/127.0.0.1:$c{port}",
                   "$c{prompt}: backend");

    # no further try comes after FAILED
    Time::HiRes::sleep(0.3);
    my $f = AsyncTaskTest::fake_stats($c{port});
    Test::More::is($f->{requests}, $c{attempts},
                   "$c{prompt}: one request per attempt");
    Test::More::is($f->{inflight}, 0, "$c{prompt}: no connection left open")
        unless $c{latency};
    my @faults = map { $_->{fault} // 'none' } @{ $f->{last_requests} };
    Test::More::is("@faults", join(' ', ($c{fault}) x $c{attempts}),
                   "$c{prompt}: every try met the fault");

    my $b = AsyncTaskTest::backend_stats("127.0.0.1:$c{port}");
    Test::More::is($b->{requests}, $c{attempts}, "$c{prompt}: stats requests");
    Test::More::is($b->{failures}, $c{attempts}, "$c{prompt}: stats failures");
    Test::More::is($b->{inflight}, 0, "$c{prompt}: stats inflight");

    my (undef, $again) = AsyncTaskTest::api('GET', "tasks/$id");
    Test::More::is($again->{status}, 'FAILED', "$c{prompt}: stays FAILED");

    my ($rs, $r) = AsyncTaskTest::api('GET', "tasks/$id/result");
    Test::More::is($rs, 409, "$c{prompt}: no result to fetch");

    return $t;
}

__DATA__

=== TEST 1: 500 on every try: retried "retries" more times, then FAILED backend_error
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=2 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19200; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19200, kind => 'image', mode => 'error500');
--- init
main::check_failed(prompt => 'five hundred', port => 19200, attempts => 3,
    fault => 'error500', code => 'backend_error',
    message => 'the instance answered 500: fake-gpu: injected failure');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":0,"FAILED":1,"CANCELED":0\}
--- no_error_log
[alert]
[crit]
[emerg]


=== TEST 2: retries wait for the backoff, doubled each time (jitter: half to all of it)
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=2 backoff=400ms;
    upstream gpu_image { server 127.0.0.1:19201; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19201, kind => 'image', mode => 'error500');
--- init
my $id = main::submit('backoff');
# while it waits for its retry, it is QUEUED, charged one attempt
my $t;
for (1 .. 200) {
    (undef, $t) = AsyncTaskTest::api('GET', "tasks/$id");
    last if $t->{attempts} >= 1 || $t->{status} =~ /DONE|FAILED/;
    Time::HiRes::sleep(0.01);
}
Test::More::is($t->{status}, 'QUEUED', 'QUEUED between tries');
Test::More::is($t->{attempts}, 1, 'one attempt charged');
Test::More::is($t->{started_at}, undef, 'no started_at while it waits');
$t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 10);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{attempts}, 3, 'three attempts');
my @at = main::fake_log_times(19201);
Test::More::is(scalar @at, 3, 'three requests');
my ($gap1, $gap2) = ($at[1] - $at[0], $at[2] - $at[1]);
Test::More::cmp_ok($gap1, '>=', 200 - 20, "first retry after half of 400 ms or more ($gap1 ms)");
Test::More::cmp_ok($gap1, '<=', 400 + 600, "first retry not much after 400 ms ($gap1 ms)");
Test::More::cmp_ok($gap2, '>=', 400 - 20, "second retry after half of 800 ms or more ($gap2 ms)");
Test::More::cmp_ok($gap2, '<=', 800 + 600, "second retry not much after 800 ms ($gap2 ms)");
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 3: a 4xx fails the task at once: backend_rejected, one attempt, no retry
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=2 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19202; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19202, kind => 'image', mode => 'error400');
--- init
main::check_failed(prompt => 'four hundred', port => 19202, attempts => 1,
    fault => 'error400', code => 'backend_rejected',
    message => 'the instance answered 400: fake-gpu: injected rejection');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 4: an instance that never answers: timeout= ends each try, then FAILED timeout
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=500ms retries=1 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19203; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19203, kind => 'image', mode => 'hang');
--- init
my $start = Time::HiRes::time();
my $t = main::check_failed(prompt => 'hang', port => 19203, attempts => 2,
    fault => 'hang', code => 'timeout',
    message => 'the instance did not answer in time');
my $took = Time::HiRes::time() - $start;
Test::More::cmp_ok($took, '>=', 1.0, "two tries of 500 ms each ($took s)");
my @lines = AsyncTaskTest::error_log() =~ m{gpu_image/127\.0\.0\.1:19203 did not answer in time}g;
Test::More::is(scalar @lines, 2, 'each timeout logged');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 5: an answer slower than timeout=: FAILED timeout without waiting for it
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=300ms retries=0;
    upstream gpu_image { server 127.0.0.1:19204; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19204, kind => 'image', latency => 1.5);
--- init
my $id = main::submit('slow');
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 5);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{attempts}, 1, 'retries=0: one attempt');
Test::More::is($t->{error}{code}, 'timeout', 'timeout');
my $ran = main::ms($t->{finished_at}) - main::ms($t->{started_at});
Test::More::cmp_ok($ran, '>=', 300 - 10, "ran for timeout= ($ran ms)");
Test::More::cmp_ok($ran, '<', 1400, "did not wait for the slow answer ($ran ms)");
Test::More::is(AsyncTaskTest::fake_stats(19204)->{requests}, 1, 'one request');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 6: a connection reset mid-answer: retried, then FAILED backend_error
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=1 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19205; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19205, kind => 'image', mode => 'reset');
--- init
main::check_failed(prompt => 'reset', port => 19205, attempts => 2,
    fault => 'reset', code => 'backend_error',
    message => 'the connection failed before a complete answer');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 7: an answer cut short (half the body, then FIN): retried, then FAILED backend_error
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=2 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19206; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19206, kind => 'image', mode => 'truncated');
--- init
main::check_failed(prompt => 'truncated', port => 19206, attempts => 3,
    fault => 'truncated', code => 'backend_error',
    message => 'the connection failed before a complete answer');
my @lines = AsyncTaskTest::error_log() =~ m{gpu_image/127\.0\.0\.1:19206 sent a malformed or incomplete response}g;
Test::More::is(scalar @lines, 3, 'each cut logged');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 8: a 200 with broken JSON: retried, then FAILED bad_response
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=1 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19207; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19207, kind => 'image', mode => 'malformed');
--- init
main::check_failed(prompt => 'malformed', port => 19207, attempts => 2,
    fault => 'malformed', code => 'bad_response',
    message => "the instance's answer is not the expected JSON (status 200)");
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,


=== TEST 9: one bad answer of each kind, then a good one: DONE on the retry, two attempts
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m timeout=500ms retries=1 backoff=50ms;
    upstream gpu_image { server 127.0.0.1:19208; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19208, kind => 'image');
--- init
for my $fault (qw(error500 reset truncated malformed hang)) {
    AsyncTaskTest::fake_control(19208, mode => $fault, times => 1);
    my $id = main::submit("once $fault", seed => 42);
    my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 10);
    Test::More::is($t->{status}, 'DONE', "$fault once: DONE");
    Test::More::is($t->{attempts}, 2, "$fault once: two attempts");
    Test::More::is($t->{error}, undef, "$fault once: no error");
    my ($rs, $rh, $png) = AsyncTaskTest::http('GET', "/api/v1/tasks/$id/result");
    my $expected = AsyncTaskTest::fake(19208, 'GET',
        "/control/expected-png?prompt=once%20$fault&seed=42");
    Test::More::is($rs, 200, "$fault once: result");
    Test::More::ok($png eq $expected, "$fault once: the PNG of the good answer");
}
my $f = AsyncTaskTest::fake_stats(19208);
Test::More::is($f->{requests}, 10, 'ten requests for five tasks');
my $b = AsyncTaskTest::backend_stats('127.0.0.1:19208');
Test::More::is($b->{requests}, 10, 'stats: ten requests');
Test::More::is($b->{failures}, 5, 'stats: five failures');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":5,"FAILED":0,"CANCELED":0\}


=== TEST 10: a retried task goes to the other instance
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=2 backoff=50ms;
    upstream gpu_image {
        server 127.0.0.1:19210;
        server 127.0.0.1:19211;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19210, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19211, kind => 'image');
--- init
# round robin on a new zone: the first task goes to the first server
AsyncTaskTest::fake_control(19210, mode => 'error500', times => 1);
my $id = main::submit('moves');
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 10);
Test::More::is($t->{status}, 'DONE', 'DONE');
Test::More::is($t->{attempts}, 2, 'two attempts');
Test::More::is($t->{backend}, 'gpu_image/127.0.0.1:19211', 'ran on the other instance');
my ($a, $b) = map { AsyncTaskTest::fake_stats($_) } 19210, 19211;
Test::More::is($a->{requests}, 1, 'first instance: one request (the 500)');
Test::More::is($a->{last_requests}[0]{status}, 500, 'first instance answered 500');
Test::More::is($b->{requests}, 1, 'second instance: one request');
Test::More::is($b->{last_requests}[0]{params}{prompt}, 'moves', 'second instance got the task');
my ($sa, $sb) = map { AsyncTaskTest::backend_stats($_) } '127.0.0.1:19210', '127.0.0.1:19211';
Test::More::is($sa->{failures}, 1, 'stats: first instance one failure');
Test::More::is($sb->{failures}, 0, 'stats: second instance no failure');
Test::More::is($sa->{requests} + $sb->{requests}, 2, 'stats: two requests in all');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,


=== TEST 11: an instance that always answers 500: every task retried elsewhere ends DONE
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=1 backoff=50ms;
    upstream gpu_image {
        server 127.0.0.1:19212;
        server 127.0.0.1:19213 max_conns=8;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19212, kind => 'image', mode => 'error500');
AsyncTaskTest::fake_gpu(port => 19213, kind => 'image', latency => 0.1);
--- init
my @ids = map { main::submit("task $_") } 1 .. 8;
my @t = map { AsyncTaskTest::wait_task($_, ['DONE', 'FAILED'], timeout => 10) } @ids;
Test::More::is(scalar(grep { $_->{status} eq 'DONE' } @t), 8, 'all DONE');
Test::More::is(scalar(grep { $_->{backend} eq 'gpu_image/127.0.0.1:19213' } @t), 8,
               'all on the good instance');
my $retried = grep { $_->{attempts} == 2 } @t;
my $once = grep { $_->{attempts} == 1 } @t;
Test::More::is($retried + $once, 8, 'one or two attempts each');
my $bad = AsyncTaskTest::fake_stats(19212);
Test::More::cmp_ok($bad->{requests}, '>=', 1, 'the bad instance was tried');
Test::More::is($bad->{requests}, $retried, 'each task met the bad instance at most once');
Test::More::is(AsyncTaskTest::fake_stats(19213)->{requests}, 8, 'the good instance ran each task once');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":8,


=== TEST 12: a refused connection is not charged: tasks end DONE on the live instance
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image {
        server 127.0.0.1:19219 max_fails=1 fail_timeout=1s;
        server 127.0.0.1:19214;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19214, kind => 'image', latency => 0.05);
--- init
# retries=0: a charged attempt would fail the task
my @ids = map { main::submit("refused $_") } 1 .. 5;
my @t = map { AsyncTaskTest::wait_task($_, ['DONE', 'FAILED'], timeout => 10) } @ids;
Test::More::is(join(' ', map { $_->{status} } @t), 'DONE DONE DONE DONE DONE', 'all DONE');
Test::More::is(join(' ', map { $_->{attempts} } @t), '1 1 1 1 1', 'one attempt each');
Test::More::is(scalar(grep { $_->{backend} eq 'gpu_image/127.0.0.1:19214' } @t), 5,
               'all on the live instance');
Test::More::is(AsyncTaskTest::fake_stats(19214)->{requests}, 5, 'the live instance: five requests');
my $dead = AsyncTaskTest::backend_stats('127.0.0.1:19219');
Test::More::cmp_ok($dead->{requests}, '>=', 1, 'the dead instance was tried');
Test::More::cmp_ok($dead->{failures}, '>=', 1, 'and its failure counted');
Test::More::cmp_ok($dead->{requests}, '<=', 2, "then it rests fail_timeout=1s ($dead->{requests} tries)");
Test::More::is($dead->{inflight}, 0, 'no slot kept on the dead instance');
Test::More::like(AsyncTaskTest::error_log(), qr/\(111: Connection refused\)/,
                 'the refusal is logged');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":5,"FAILED":0,"CANCELED":0\}


=== TEST 13: no instance up: tasks wait QUEUED, uncharged, and run once one comes up
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image {
        server 127.0.0.1:19215 max_fails=1 fail_timeout=1s;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
--- init
my @ids = map { main::submit("waits $_") } 1 .. 2;
my $end = Time::HiRes::time() + 2.5;
my %seen;
while (Time::HiRes::time() < $end) {
    for my $id (@ids) {
        my (undef, $t) = AsyncTaskTest::api('GET', "tasks/$id");
        $seen{"$t->{status} $t->{attempts}"}++;
    }
    Time::HiRes::sleep(0.1);
}
# a connect attempt after fail_timeout shows RUNNING for a moment
Test::More::is(join(',', grep { !/^(?:QUEUED|RUNNING) 0$/ } sort keys %seen),
               '', 'waiting, with no attempt charged, while no instance is up');
Test::More::ok($seen{'QUEUED 0'}, 'QUEUED meanwhile');
my $s = AsyncTaskTest::backend_stats('127.0.0.1:19215');
Test::More::cmp_ok($s->{requests}, '>=', 2, 'the instance was tried again after fail_timeout');
Test::More::cmp_ok($s->{requests}, '<=', 4, "it rests fail_timeout=1s between tries ($s->{requests} in 2.5 s)");
Test::More::is($s->{inflight}, 0, 'no slot kept');

AsyncTaskTest::fake_gpu(port => 19215, kind => 'image');
my @t = map { AsyncTaskTest::wait_task($_, ['DONE', 'FAILED'], timeout => 10) } @ids;
Test::More::is(join(' ', map { $_->{status} } @t), 'DONE DONE', 'both DONE once it is up');
Test::More::is(join(' ', map { $_->{attempts} } @t), '1 1', 'one attempt each');
Test::More::is(join(' ', map { $_->{backend} } @t),
               'gpu_image/127.0.0.1:19215 gpu_image/127.0.0.1:19215', 'backend');
Test::More::is(AsyncTaskTest::fake_stats(19215)->{requests}, 2, 'two requests reached it');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":2,
