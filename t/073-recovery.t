# Restarts: after kill -9 of the whole nginx, tasks that were RUNNING are
# QUEUED again and run; a worker process killed alone has its runs taken
# back; reloads while tasks run lose nothing and run nothing twice.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19260-19299.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use Time::HiRes ();

master_on();
workers(2);

run_tests();

# helpers for the "--- init" code (which runs in another package)

# until n of the tasks are RUNNING; the tasks then
sub wait_running {
    my ($n, @ids) = @_;
    my @t;
    for (1 .. 250) {
        @t = map { AsyncTaskTest::task($_) } @ids;
        last if $n <= grep { $_->{status} eq 'RUNNING' } @t;
        Time::HiRes::sleep(0.02);
    }
    return @t;
}

# prompt => number of job requests for it in a fake's log
sub fake_log_count {
    my %n;
    $n{$_}++ for AsyncTaskTest::fake_prompts(@_);
    return %n;
}

sub workers_of {
    my ($master) = @_;
    return sort { $a <=> $b } split ' ', `pgrep -P $master`;
}

# pid => number of established connections it holds to 127.0.0.1:PORT
sub connections_by_pid {
    my ($port, @pids) = @_;
    my %inode;
    open my $fh, '<', '/proc/net/tcp' or die "/proc/net/tcp: $!";
    while (<$fh>) {
        my @f = split;
        $inode{$f[9]} = 1
            if $f[3] && $f[3] eq '01' && $f[2] eq sprintf('0100007F:%04X', $port);
    }
    my %n;
    for my $pid (@pids) {
        $n{$pid} = 0;
        opendir my $d, "/proc/$pid/fd" or next;
        for my $fd (readdir $d) {
            my $l = readlink "/proc/$pid/fd/$fd" // next;
            $n{$pid}++ if $l =~ /^socket:\[(\d+)\]$/ && $inode{$1};
        }
    }
    return %n;
}

__DATA__

=== TEST 1: kill -9 of the whole nginx while tasks run: they are QUEUED again, run, and end DONE uncharged
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image { server 127.0.0.1:19260 max_conns=2; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19260, kind => 'image', latency => 1);
--- init
my @ids = map { AsyncTaskTest::submit("crash $_") } 1 .. 6;
Test::More::is(scalar(grep { defined } @ids), 6, 'six accepted');
my @t = main::wait_running(2, @ids);
my @running = map { $_->{id} } grep { $_->{status} eq 'RUNNING' } @t;
Test::More::is(scalar @running, 2, 'two RUNNING');
Time::HiRes::sleep(0.3);

AsyncTaskTest::crash_and_restart();

my $stats = AsyncTaskTest::stats();
Test::More::is($stats->{tasks}{QUEUED} + $stats->{tasks}{RUNNING} + $stats->{tasks}{DONE}, 6,
               'every task is still there after the crash');
Test::More::is($stats->{tasks}{FAILED}, 0, 'none FAILED');
$stats = AsyncTaskTest::wait_idle(15);
Test::More::is($stats->{tasks}{DONE}, 6, 'all six DONE after the start');
@t = map { AsyncTaskTest::task($_) } @ids;
Test::More::is(join(' ', map { $_->{status} } @t), join(' ', ('DONE') x 6), 'each DONE');
Test::More::is(join(' ', map { $_->{attempts} } @t), join(' ', (1) x 6),
               'one attempt each: the interrupted run is not charged');
my %n = main::fake_log_count(19260);
Test::More::is(join(' ', map { $n{"crash $_"} // 0 } 1 .. 6),
               join(' ', map { my $id = $ids[$_ - 1]; (grep { $_ eq $id } @running) ? 2 : 1 } 1 .. 6),
               'the two interrupted tasks ran again, the others once');
Test::More::is($stats->{workers}{busy}, 0, 'workers.busy 0');
Test::More::is($stats->{backends}[0]{inflight}, 0, 'no slot left taken');
Test::More::like(AsyncTaskTest::error_log(), qr/async_task store: [1-9]\d* live tasks loaded/,
                 'the start found the live tasks');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":6,"FAILED":0,"CANCELED":0\}


=== TEST 2: a worker process killed alone: its runs are taken back within a second and run again
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image { server 127.0.0.1:19261 max_conns=2; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19261, kind => 'image', latency => 1.5);
--- init
my @ids = map { AsyncTaskTest::submit("worker $_") } 1 .. 4;
my @t = main::wait_running(2, @ids);
my @running = map { $_->{id} } grep { $_->{status} eq 'RUNNING' } @t;
Test::More::is(scalar @running, 2, 'two RUNNING');
my $master = AsyncTaskTest::pid_of_master();
my @workers = main::workers_of($master);
Test::More::is(scalar @workers, 2, 'two workers');
# the worker that holds connections to the instance runs tasks
my %conns;
for (1 .. 100) {
    %conns = main::connections_by_pid(19261, @workers);
    my $sum = 0;
    $sum += $_ for values %conns;
    last if $sum >= 2;
    Time::HiRes::sleep(0.02);
}
my ($victim) = sort { $conns{$b} <=> $conns{$a} } @workers;
my $lost = $conns{$victim};
Test::More::cmp_ok($lost, '>=', 1, "worker $victim runs $lost of them");

my $killed = Time::HiRes::time();
kill 'KILL', $victim;

# taken back: the notice logged for each of its runs
my ($back, @back);
for (1 .. 150) {
    @back = AsyncTaskTest::error_log() =~ /task (\S+) of exited process $victim is taken back/g;
    if (@back >= $lost) {
        $back = Time::HiRes::time() - $killed;
        last;
    }
    Time::HiRes::sleep(0.02);
}
Test::More::is(scalar @back, $lost, 'the runs of the killed worker are taken back');
Test::More::cmp_ok($back // 99, '<', 2, sprintf('within about a second (%.2f s)', $back // 99));
my %running = map { $_ => 1 } @running;
Test::More::is(scalar(grep { $running{$_} } @back), $lost, 'the tasks taken back are those that ran');
my @now = main::workers_of($master);
Test::More::is(scalar @now, 2, 'the master started a new worker');

my $stats = AsyncTaskTest::wait_idle(15);
Test::More::is($stats->{tasks}{DONE}, 4, 'all four DONE');
@t = map { AsyncTaskTest::task($_) } @ids;
Test::More::is(join(' ', map { $_->{attempts} } @t), '1 1 1 1', 'one attempt each: the lost runs are not charged');
my %n = main::fake_log_count(19261);
my %lost = map { $_ => 1 } @back;
Test::More::is(join(' ', map { $n{"worker $_"} // 0 } 1 .. 4),
               join(' ', map { $lost{$ids[$_ - 1]} ? 2 : 1 } 1 .. 4),
               'the lost runs ran again, the others once');
Test::More::is($stats->{workers}{busy}, 0, 'workers.busy back to 0');
Test::More::is($stats->{backends}[0]{inflight}, 0, "the killed worker's slots are given back");
my ($again) = grep { $_->{id} eq $back[0] } @t;
Test::More::is($again->{backend}, 'gpu_image/127.0.0.1:19261', 'backend of a task run again');
AsyncTaskTest::no_bad_log_lines(qr/worker process $victim exited on signal 9/);
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":4,"FAILED":0,"CANCELED":0\}


=== TEST 3: submissions during three reloads: all DONE, each run once, max_conns kept
--- main_config
    thread_pool async_task threads=2;
    worker_shutdown_timeout 10s;
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image {
        server 127.0.0.1:19262 max_conns=2;
        server 127.0.0.1:19263;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19262, kind => 'image', latency => 0.3, max_concurrent => 2);
AsyncTaskTest::fake_gpu(port => 19263, kind => 'image', latency => 0.3, max_concurrent => 1);
--- init
my $master = AsyncTaskTest::pid_of_master();
my @ids;
my $round = 0;
my $busy_at_reload = 0;
for my $reload (1 .. 3) {
    push @ids, map { AsyncTaskTest::submit("reload $round " . $_) } 1 .. 6;
    # reload while runs are in flight: wait for one (a loaded machine
    # may take longer than the first run's 0.3 s to start it)
    for (1 .. 250) {
        if (AsyncTaskTest::stats()->{workers}{busy} > 0) {
            $busy_at_reload++;
            last;
        }
        Time::HiRes::sleep(0.02);
    }
    kill 'HUP', $master;
    Time::HiRes::sleep(0.2);
    $round++;
}
push @ids, map { AsyncTaskTest::submit("reload $round " . $_) } 1 .. 6;
Test::More::is(scalar(grep { defined } @ids), 24, '24 accepted around the reloads');
Test::More::is($busy_at_reload, 3, 'tasks were running at each reload');
my $stats = AsyncTaskTest::wait_idle(30);
Test::More::is($stats->{tasks}{DONE}, 24, 'all DONE');
my @t = map { AsyncTaskTest::task($_) } @ids;
Test::More::is(scalar(grep { $_->{status} eq 'DONE' && $_->{attempts} == 1 } @t), 24,
               'each DONE with one attempt');
my %n = main::fake_log_count(19262, 19263);
Test::More::is(scalar(keys %n), 24, 'every task reached an instance');
Test::More::is(scalar(grep { $_ != 1 } values %n), 0, 'no task ran twice');
my @f = map { AsyncTaskTest::fake_stats($_) } 19262, 19263;
Test::More::is($f[0]{requests} + $f[1]{requests}, 24, '24 requests in all');
Test::More::is("$f[0]{violations} $f[1]{violations}", '0 0',
               'max_conns kept across old and new worker processes');
Test::More::is($stats->{workers}{busy}, 0, 'workers.busy 0');
Test::More::is(join(' ', map { $_->{inflight} } @{ $stats->{backends} }), '0 0',
               'no slot left taken');
my @reloads = AsyncTaskTest::error_log() =~ /(signal 1 \(SIGHUP\) received)/g;
Test::More::is(scalar @reloads, 3, 'three reloads');
my @w = main::workers_of($master);
Test::More::is(scalar @w, 2, 'two workers in the end');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":24,"FAILED":0,"CANCELED":0\}


=== TEST 4: a reload whose old workers cannot wait (worker_shutdown_timeout): their runs go back to the queue uncharged
--- main_config
    thread_pool async_task threads=2;
    worker_shutdown_timeout 500ms;
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=m retries=0;
    upstream gpu_image { server 127.0.0.1:19264 max_conns=2; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19264, kind => 'image', latency => 2);
--- init
my @ids = map { AsyncTaskTest::submit("cut $_") } 1 .. 3;
my @t = main::wait_running(2, @ids);
my @running = map { $_->{id} } grep { $_->{status} eq 'RUNNING' } @t;
Test::More::is(scalar @running, 2, 'two RUNNING');
my $master = AsyncTaskTest::pid_of_master();
my @old = main::workers_of($master);
kill 'HUP', $master;

# the old workers leave after 500 ms, their runs cut short
my $gone;
for (1 .. 150) {
    my %now = map { $_ => 1 } main::workers_of($master);
    if (!grep { $now{$_} } @old) {
        $gone = 1;
        last;
    }
    Time::HiRes::sleep(0.02);
}
Test::More::ok($gone, 'the old workers are gone');
my $stats = AsyncTaskTest::wait_idle(15);
Test::More::is($stats->{tasks}{DONE}, 3, 'all three DONE');
@t = map { AsyncTaskTest::task($_) } @ids;
Test::More::is(join(' ', map { $_->{attempts} } @t), '1 1 1',
               'one attempt each: the runs cut by the reload are not charged');
my %n = main::fake_log_count(19264);
my %cut = map { $_ => 1 } @running;
Test::More::is(join(' ', map { $n{"cut $_"} // 0 } 1 .. 3),
               join(' ', map { $cut{$ids[$_ - 1]} ? 2 : 1 } 1 .. 3),
               'the cut runs ran again after the reload');
Test::More::is(join(' ', map { $_->{inflight} } @{ $stats->{backends} }), '0',
               'no slot left taken');
Test::More::is($stats->{workers}{busy}, 0, 'workers.busy 0');
AsyncTaskTest::no_bad_log_lines();
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":3,"FAILED":0,"CANCELED":0\}
