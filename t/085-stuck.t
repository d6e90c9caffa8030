# No acknowledged task is stuck: a worker that claimed a task and found no
# instance slot free queues it again in the store; another worker may
# claim and start it before the first one hears back from the store, and
# that late answer must not put the other worker's run back into the
# zone's queue (the run was then dropped as "canceled", and the task
# stayed QUEUED in the zone and RUNNING in the store until its lease ran
# out).
#
# The same window, the other way round (TEST 2): a run that queues again
# at once (the instance refused the connection) is in the store and not
# yet in the zone when another worker claims the task.  That claim found
# the zone's node RUNNING and let the task go without giving back its
# lease: the task stayed RUNNING in the store until the lease ran out.
#
# A loaded machine opens these windows now and then; here the two worker
# processes are stopped and continued in turn (SIGSTOP, SIGCONT) while
# the tasks run, so that answers from the store come late often.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19270-19279.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use Time::HiRes ();
use POSIX ();
use JSON::PP ();

master_on();
workers(2);

run_tests();

# helpers for the "--- init" code (which runs in another package)

# the worker processes of the test's nginx, once both are up
sub worker_pids {
    my @pids;

    for (1 .. 100) {
        my $master = AsyncTaskTest::pid_of_master();
        @pids = ();

        opendir my $dh, '/proc' or die "/proc: $!";
        for my $pid (grep { /^\d+$/ } readdir $dh) {
            open my $fh, '<', "/proc/$pid/stat" or next;
            my $stat = <$fh>;
            next unless $stat && $stat =~ /^\d+ \(.*\) \S+ (\d+) /;
            push @pids, $pid if $master && $1 == $master;
        }

        last if @pids == 2;
        Time::HiRes::sleep(0.05);
    }

    return sort { $a <=> $b } @pids;
}

# stops the two workers in turn, each for a few ms, until killed (or 60 s
# have passed); returns the child's pid
sub pauser {
    my @pids = @_;

    my $kid = fork();
    die "fork: $!" unless defined $kid;

    if ($kid == 0) {
        $SIG{TERM} = sub { kill 'CONT', @pids; POSIX::_exit(0) };
        my $end = Time::HiRes::time() + 60;
        my $i = 0;
        while (Time::HiRes::time() < $end) {
            kill 'STOP', $pids[$i];
            kill 'CONT', $pids[1 - $i];
            Time::HiRes::sleep(0.002 + rand(0.006));
            $i = 1 - $i;
        }
        kill 'CONT', @pids;
        POSIX::_exit(0);
    }

    return $kid;
}

__DATA__

=== TEST 1: a worker's late "no slot" requeue leaves the run another worker started alone
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=3000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19270 max_conns=4;
        server 127.0.0.1:19271 max_conns=4;
        server 127.0.0.1:19272 max_conns=4;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => $_, kind => 'image', latency => 0.01)
    for 19270 .. 19272;
--- init
my ($n, $rounds) = (300, 8);
my @workers = main::worker_pids();
Test::More::is(scalar(@workers), 2, 'two worker processes')
    or die "no two worker processes\n";
my $pauser = main::pauser(@workers);

# rounds of four clients at once, so that both workers claim for the same
# slots; until a run is dropped, if one is
my $dir = AsyncTaskTest::servroot() . '/html';
my ($log, @ids, @dropped, $stats);
for my $round (1 .. $rounds) {
    my @kids;
    for my $k (0 .. 3) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open my $out, '>', "$dir/ids.$k" or POSIX::_exit(1);
            for my $i (grep { $_ % 4 == $k } 1 .. $n) {
                print $out AsyncTaskTest::submit("s-$round-$i", seed => $i)
                           // 'failed', "\n";
            }
            close $out;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;
    for my $k (0 .. 3) {
        open my $in, '<', "$dir/ids.$k" or die "$dir/ids.$k: $!";
        chomp(my @l = <$in>);
        push @ids, grep { $_ ne 'failed' } @l;
    }

    $stats = AsyncTaskTest::wait_idle(20);
    $log = AsyncTaskTest::error_log();
    @dropped = $log =~ /(task \S+ canceled while it ran on \S+)/g;
    last if @dropped || $stats->{tasks}{QUEUED} || $stats->{tasks}{RUNNING};
}
kill 'TERM', $pauser;
waitpid($pauser, 0);
kill 'CONT', @workers;

my $all = $n * $rounds;
Test::More::is(scalar(@ids), $all, "$all tasks accepted");
Test::More::is($stats->{tasks}{DONE}, $all, "all $all DONE")
    or Test::More::diag(JSON::PP::encode_json($stats->{tasks}));

my $requeued = () = $log =~ /: QUEUED no instance slot was free/g;
Test::More::diag("$requeued runs found no slot and queued again");
Test::More::is(scalar(@dropped), 0, 'no run is taken for canceled')
    or Test::More::diag(join "\n", @dropped);

my $requests = 0;
$requests += AsyncTaskTest::fake_stats($_)->{requests} for 19270 .. 19272;
Test::More::is($requests, $all, "the instances got $all requests in all");

my ($not_done, $attempts) = (0, 0);
for my $id (@ids) {
    my $t = AsyncTaskTest::task($id);
    $not_done++ unless $t->{status} eq 'DONE';
    $attempts++ unless $t->{attempts} == 1;
}
Test::More::is($not_done, 0, 'every task DONE in the store');
Test::More::is($attempts, 0, 'one attempt each');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":2400,"FAILED":0,"CANCELED":0\}.*"workers":\{"busy":0,"total":12\}
--- no_error_log
[error]
[alert]
[crit]


=== TEST 2: a claim of a task whose last run has not heard back from the store yet gives it back
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19273 max_conns=4;
        server 127.0.0.1:19274 max_conns=4 max_fails=0;
        server 127.0.0.1:19275 max_conns=4 max_fails=0;
        server 127.0.0.1:19276 max_conns=4 max_fails=0;
        server 127.0.0.1:19277 max_conns=4 max_fails=0;
        server 127.0.0.1:19278 max_conns=4 max_fails=0;
        server 127.0.0.1:19279 max_conns=4 max_fails=0;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19273, kind => 'image', latency => 0.01);
--- init
# 19274-19279 refuse every connection: their runs queue again at once,
# uncharged (and each instance rests 1 s)
my $n = 300;
my @workers = main::worker_pids();
Test::More::is(scalar(@workers), 2, 'two worker processes')
    or die "no two worker processes\n";
my $pauser = main::pauser(@workers);

my $dir = AsyncTaskTest::servroot() . '/html';
my (@ids, @kids);
for my $k (0 .. 3) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open my $out, '>', "$dir/ids.$k" or POSIX::_exit(1);
        for my $i (grep { $_ % 4 == $k } 1 .. $n) {
            print $out AsyncTaskTest::submit("r-$i", seed => $i) // 'failed',
                       "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
for my $k (0 .. 3) {
    open my $in, '<', "$dir/ids.$k" or die "$dir/ids.$k: $!";
    chomp(my @l = <$in>);
    push @ids, grep { $_ ne 'failed' } @l;
}

my $stats = AsyncTaskTest::wait_idle(20);
kill 'TERM', $pauser;
waitpid($pauser, 0);
kill 'CONT', @workers;

Test::More::is(scalar(@ids), $n, "$n tasks accepted");
Test::More::is($stats->{tasks}{DONE}, $n, "all $n DONE")
    or Test::More::diag(JSON::PP::encode_json($stats->{tasks}));
my $log = AsyncTaskTest::error_log();
my $refused = () = $log =~ /: QUEUED the instance could not be reached/g;
Test::More::diag("$refused runs were refused and queued again");
Test::More::is(AsyncTaskTest::fake_stats(19273)->{requests}, $n,
               "the instance got $n requests");
my $not_done = grep { AsyncTaskTest::task($_)->{status} ne 'DONE' } @ids;
Test::More::is($not_done, 0, 'every task DONE in the store');
my @errors = grep { /\[error\]/ && !/\(111: Connection refused\)/ }
             split /\n/, $log;
Test::More::is(scalar(@errors), 0, 'no [error] but the refused connections')
    or Test::More::diag(join "\n", @errors[0 .. ($#errors < 4 ? $#errors
                                                            : 4)]);
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":300,"FAILED":0,"CANCELED":0\}
--- no_error_log
[alert]
[crit]
[emerg]
