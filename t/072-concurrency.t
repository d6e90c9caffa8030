# Exactly one runner: with two worker processes, each instance runs at most
# max_conns tasks at once, no task runs twice, and a canceled run gives its
# slot back at once.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19230-19259.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use Time::HiRes ();
use POSIX ();

master_on();
workers(2);

run_tests();

# helpers for the "--- init" code (which runs in another package)

# the prompts of the job requests in a fake's log, with their status
sub fake_log_prompts {
    my ($port) = @_;
    my $file = AsyncTaskTest::servroot() . "/html/fake-$port.log";
    open my $fh, '<', $file or die "$file: $!";
    my @p;
    while (<$fh>) {
        next unless m{ POST /v1/images/generations (\S+) .*prompt="([^"]*)"};
        push @p, [$2, $1];
    }
    return @p;
}

__DATA__

=== TEST 1: max_conns is never exceeded, across both worker processes
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19230 max_conns=3;
        server 127.0.0.1:19231;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19230, kind => 'image', latency => 0.05, max_concurrent => 3);
AsyncTaskTest::fake_gpu(port => 19231, kind => 'image', latency => 0.05, max_concurrent => 1);
--- init
my @ids = map { AsyncTaskTest::submit("task $_") } 1 .. 60;
Test::More::is(scalar(grep { defined } @ids), 60, '60 tasks accepted');
my ($over, $max_busy, $samples) = (0, 0, 0);
my $stats = AsyncTaskTest::wait_idle(20, every => 0.02, probe => sub {
    my $s = shift;
    $samples++;
    $max_busy = $s->{workers}{busy} if $s->{workers}{busy} > $max_busy;
    $over++ if $s->{workers}{busy} > $s->{workers}{total};
    for my $b (@{ $s->{backends} }) {
        $over++ if $b->{inflight} > $b->{max_conns};
    }
    $over++ if $s->{tasks}{RUNNING} > 4;
});
Test::More::is($stats->{tasks}{DONE}, 60, 'all 60 DONE');
Test::More::is($over, 0, "system/stats never shows more than max_conns ($samples samples)");
Test::More::cmp_ok($max_busy, '<=', 4, "workers.busy at most 4 ($max_busy)");
Test::More::is($stats->{workers}{total}, 4, 'workers.total: the sum of max_conns');
my ($a, $b) = map { AsyncTaskTest::fake_stats($_) } 19230, 19231;
Test::More::is($a->{violations}, 0, 'max_conns=3 instance: no violation');
Test::More::is($b->{violations}, 0, 'max_conns=1 instance: no violation');
Test::More::is($a->{max_inflight}, 3, 'max_conns=3 instance: 3 at once at most, and used');
Test::More::is($b->{max_inflight}, 1, 'max_conns=1 instance: 1 at once');
Test::More::is($a->{requests} + $b->{requests}, 60, '60 requests in all');
my $attempts = grep { AsyncTaskTest::task($_)->{attempts} != 1 } @ids;
Test::More::is($attempts, 0, 'one attempt each');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":60,"FAILED":0,"CANCELED":0\}.*"workers":\{"busy":0,"total":4\}


=== TEST 2: while tasks run: workers.busy, per-instance inflight, the queue
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19232 max_conns=2;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19232, kind => 'image', latency => 1.5, max_concurrent => 2);
--- init
my @ids = map { AsyncTaskTest::submit("busy $_") } 1 .. 3;
my @t;
for (1 .. 100) {
    @t = map { AsyncTaskTest::task($_) } @ids;
    last if 2 == grep { $_->{status} eq 'RUNNING' } @t;
    Time::HiRes::sleep(0.02);
}
# Two workers may claim for the same free slot at once: the one whose
# start comes second queues its task again, so the older of the last two
# can be the one that waits (see "Dispatch" in docs/architecture.md).
my @running = grep { $_->{status} eq 'RUNNING' } @t;
my @waiting = grep { $_->{status} eq 'QUEUED' } @t;
Test::More::is(scalar @running, 2, 'two run');
Test::More::is(scalar @waiting, 1, 'the third waits');
Test::More::is($waiting[0]{position}, 0, 'the waiting one is next');
Test::More::ok(defined $running[0]{started_at}, 'started_at of a running task');
Test::More::is($running[0]{backend}, 'gpu_image/127.0.0.1:19232', 'backend of a running task');
Time::HiRes::sleep(0.3);
my $s = AsyncTaskTest::stats();
Test::More::is($s->{workers}{busy}, 2, 'workers.busy 2');
Test::More::is($s->{workers}{total}, 2, 'workers.total 2');
Test::More::is($s->{backends}[0]{inflight}, 2, 'instance inflight 2');
Test::More::is($s->{queue}{depth}, 1, 'queue depth 1');
Test::More::is(AsyncTaskTest::fake_stats(19232)->{inflight}, 2, 'the instance runs two');
$s = AsyncTaskTest::wait_idle(10);
Test::More::is($s->{tasks}{DONE}, 3, 'all DONE');
Test::More::is($s->{workers}{busy}, 0, 'workers.busy back to 0');
Test::More::is($s->{backends}[0]{inflight}, 0, 'instance inflight back to 0');
Test::More::is($s->{backends}[0]{requests}, 3, 'instance requests 3');
Test::More::is(AsyncTaskTest::fake_stats(19232)->{violations}, 0, 'no violation');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3,


=== TEST 3: 300 short tasks, 3 instances, 2 workers: every task runs exactly once
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19233 max_conns=4;
        server 127.0.0.1:19234 max_conns=4;
        server 127.0.0.1:19235 max_conns=4;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.01, max_concurrent => 4)
    for 19233 .. 19235;
--- init
my $n = 300;
my %id_of;
# four clients at once, so that the queue builds up
my $dir = AsyncTaskTest::servroot() . '/html';
my @kids;
for my $k (0 .. 3) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open my $out, '>', "$dir/ids.$k" or POSIX::_exit(1);
        for my $i (grep { $_ % 4 == $k } 1 .. $n) {
            my $p = sprintf 'p-%04d', $i;
            print $out "$p ", AsyncTaskTest::submit($p, seed => $i) // 'failed', "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
for my $k (0 .. 3) {
    open my $in, '<', "$dir/ids.$k" or die "$dir/ids.$k: $!";
    while (<$in>) {
        my ($p, $id) = split;
        $id_of{$p} = $id eq 'failed' ? undef : $id;
    }
}
Test::More::is(scalar(grep { defined } values %id_of), $n, "$n tasks accepted");
my $stats = AsyncTaskTest::wait_idle(40);
Test::More::is($stats->{tasks}{DONE}, $n, "all $n DONE");

my @fakes = map { AsyncTaskTest::fake_stats($_) } 19233 .. 19235;
my $total = 0;
$total += $_->{requests} for @fakes;
Test::More::is($total, $n, "the instances got $n requests in all");
Test::More::is(join(' ', map { $_->{violations} } @fakes), '0 0 0', 'no max_conns violation');
Test::More::ok(!grep({ $_->{max_inflight} > 4 } @fakes), 'at most 4 at once on each ('
               . join(' ', map { $_->{max_inflight} } @fakes) . ')');

# each prompt once in the fakes' logs, on the instance the task names
my (%count, %where, $not_200);
for my $port (19233 .. 19235) {
    for my $r (main::fake_log_prompts($port)) {
        $count{$r->[0]}++;
        $where{$r->[0]} = "gpu_image/127.0.0.1:$port";
        $not_200++ if $r->[1] ne '200';
    }
}
Test::More::is(scalar(keys %count), $n, 'every prompt reached an instance');
my @twice = grep { $count{$_} != 1 } sort keys %count;
Test::More::is(scalar(@twice), 0, 'no prompt sent twice')
    or Test::More::diag("sent more than once: @twice[0 .. ($#twice < 9 ? $#twice : 9)]");
Test::More::is($not_200, undef, 'every request answered 200');

my ($wrong, $attempts) = (0, 0);
for my $p (sort keys %id_of) {
    my $t = AsyncTaskTest::task($id_of{$p});
    $wrong++ unless $t->{status} eq 'DONE' && ($where{$p} // '') eq $t->{backend};
    $attempts++ unless $t->{attempts} == 1;
}
Test::More::is($wrong, 0, 'each task DONE on the instance that got its prompt');
Test::More::is($attempts, 0, 'one attempt each');

# results belong to their own task
my $bad_png = 0;
for my $i (map { $_ * 10 } 1 .. 30) {
    my $p = sprintf 'p-%04d', $i;
    my (undef, undef, $png) = AsyncTaskTest::http('GET', "/api/v1/tasks/$id_of{$p}/result");
    my $expected = AsyncTaskTest::fake(19233, 'GET', "/control/expected-png?prompt=$p&seed=$i");
    $bad_png++ unless $png eq $expected;
}
Test::More::is($bad_png, 0, 'results are the PNGs of their own prompts');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":300,"FAILED":0,"CANCELED":0\}.*"workers":\{"busy":0,"total":12\}


=== TEST 4: DELETE of a RUNNING task closes its connection and frees its slot at once
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image { server 127.0.0.1:19236; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19236, kind => 'image', latency => 2, max_concurrent => 1);
--- init
# A never gets an answer; B computes 2 s
AsyncTaskTest::fake_control(19236, mode => 'hang', times => 1);
my $a = AsyncTaskTest::submit('A');
my $b = AsyncTaskTest::submit('B');
my $ta = AsyncTaskTest::wait_task($a, ['RUNNING'], timeout => 5);
Test::More::is($ta->{status}, 'RUNNING', 'A RUNNING');
Time::HiRes::sleep(0.3);
Test::More::is(AsyncTaskTest::task($b)->{status}, 'QUEUED', 'B waits for the slot');
Test::More::is(AsyncTaskTest::fake_stats(19236)->{inflight}, 1, 'the instance has A');

my $start = Time::HiRes::time();
my ($s, $c) = AsyncTaskTest::api('DELETE', "tasks/$a");
Test::More::is($s, 200, 'DELETE 200');
Test::More::is($c->{status}, 'CANCELED', 'A CANCELED');
my $tb = AsyncTaskTest::wait_task($b, ['RUNNING', 'DONE', 'FAILED'], timeout => 5);
my $took = Time::HiRes::time() - $start;
Test::More::is($tb->{status}, 'RUNNING', 'B RUNNING');
Test::More::cmp_ok($took, '<', 1, "B started within a second ($took s)");

Time::HiRes::sleep(0.3);
my $f = AsyncTaskTest::fake_stats(19236);
Test::More::is($f->{requests}, 2, 'the instance got A, then B');
Test::More::is($f->{inflight}, 1, "A's connection is closed: only B is in flight");
Test::More::is($f->{violations}, 0, 'never two at once');
Test::More::is($f->{last_requests}[0]{params}{prompt}, 'A', 'first request: A');
Test::More::is($f->{last_requests}[0]{status}, undef, 'A got no answer');
Test::More::is($f->{last_requests}[1]{params}{prompt}, 'B', 'second request: B');
my $st = AsyncTaskTest::stats();
Test::More::is($st->{workers}{busy}, 1, 'workers.busy 1: B');
Test::More::is($st->{backends}[0]{inflight}, 1, 'instance inflight 1: B');

$tb = AsyncTaskTest::wait_task($b, ['DONE', 'FAILED'], timeout => 5);
Test::More::is($tb->{status}, 'DONE', 'B DONE');
Test::More::is($tb->{attempts}, 1, 'B one attempt');
$ta = AsyncTaskTest::task($a);
Test::More::is($ta->{status}, 'CANCELED', 'A stays CANCELED');
Test::More::is($ta->{result}, undef, 'A has no result');
my ($rs) = AsyncTaskTest::api('GET', "tasks/$a/result");
Test::More::is($rs, 409, 'no result for A');
($s) = AsyncTaskTest::api('DELETE', "tasks/$a");
Test::More::is($s, 409, 'a second DELETE: 409');
Test::More::is(AsyncTaskTest::fake_stats(19236)->{requests}, 2, 'A never ran again');
$st = AsyncTaskTest::stats();
Test::More::is($st->{backends}[0]{inflight}, 0, 'instance inflight 0');
Test::More::like(AsyncTaskTest::error_log(), qr/task $a canceled while it ran on gpu_image\/127\.0\.0\.1:19236/,
                 'the cancel is logged');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":1,"FAILED":0,"CANCELED":1\}


=== TEST 5: DELETE of a RUNNING task on a busy instance: the next task starts, the old answer is dropped
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image { server 127.0.0.1:19237; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19237, kind => 'image', latency => 2);
--- init
my $a = AsyncTaskTest::submit('A');
my $b = AsyncTaskTest::submit('B');
my $ta = AsyncTaskTest::wait_task($a, ['RUNNING'], timeout => 5);
Test::More::is($ta->{status}, 'RUNNING', 'A RUNNING');
Test::More::is(AsyncTaskTest::task($b)->{status}, 'QUEUED', 'B QUEUED');
Time::HiRes::sleep(0.2);

my $start = Time::HiRes::time();
my ($s, $c) = AsyncTaskTest::api('DELETE', "tasks/$a");
Test::More::is($c->{status}, 'CANCELED', 'A CANCELED');
my $tb = AsyncTaskTest::wait_task($b, ['RUNNING', 'DONE', 'FAILED'], timeout => 5);
my $took = Time::HiRes::time() - $start;
Test::More::is($tb->{status}, 'RUNNING', 'B RUNNING');
Test::More::cmp_ok($took, '<', 1, "B started within a second ($took s)");
Time::HiRes::sleep(0.2);
my $f = AsyncTaskTest::fake_stats(19237);
Test::More::is($f->{requests}, 2, 'the instance got A and B');
Test::More::is(AsyncTaskTest::connections_to(19237), 1, "A's connection is closed: nginx holds B's only");
Test::More::is(AsyncTaskTest::stats()->{backends}[0]{inflight}, 1, 'nginx counts B only');

$tb = AsyncTaskTest::wait_task($b, ['DONE', 'FAILED'], timeout => 5);
Test::More::is($tb->{status}, 'DONE', 'B DONE');
Test::More::is(AsyncTaskTest::task($a)->{status}, 'CANCELED', 'A stays CANCELED after its answer was due');
my ($rs) = AsyncTaskTest::api('GET', "tasks/$a/result");
Test::More::is($rs, 409, 'no result for A');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":1,"FAILED":0,"CANCELED":1\}
