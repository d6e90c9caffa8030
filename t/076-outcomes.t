# A run's result file: written under a name of the run's own, renamed to
# <id>.png only when the store takes the outcome, with mode 0600; a run
# whose outcome the store refuses leaves the file of the run that won.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19760-19769.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use Time::HiRes ();
use IO::Socket::INET;
use POSIX ();

master_on();
workers(1);

run_tests();


sub files {
    my $dir = AsyncTaskTest::servroot() . '/html/store/files';
    opendir my $dh, $dir or return ();
    return sort grep { !/^\./ } readdir $dh;
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 10);
    while (Time::HiRes::time() < $deadline) {
        return 1 if $cond->();
        Time::HiRes::sleep(0.05);
    }
    return 0;
}

# sends a request and returns its socket, unread
sub send_request {
    my ($req) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => AsyncTaskTest::port(),
                                     Timeout => 10)
        or die "cannot connect: $!";
    print $sock $req;
    return $sock;
}

# the status of the answer on a socket, or "none"
sub status_of {
    my ($sock) = @_;
    local $/;
    my $resp = <$sock> // '';
    return $resp =~ m{^HTTP/1\.\d (\d+)} ? $1 : 'none';
}

# another process holds SQLite's write lock for a while
sub hold_lock {
    my ($db, $seconds) = @_;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open my $fh, '|-', 'sqlite3', $db or POSIX::_exit(1);
        print $fh "BEGIN IMMEDIATE;\n.shell sleep $seconds\nCOMMIT;\n";
        close $fh;
        POSIX::_exit(0);
    }
    return $pid;
}

# a cancel and a submit sent while another process holds the store's
# write lock: (the task canceled, the locker, the two sockets, unread)
sub cancel_and_submit_behind_lock {
    my ($block, $prompt) = @_;
    my $id = AsyncTaskTest::submit('to cancel');
    my $locker = hold_lock(AsyncTaskTest::store_db($block), 1.5);
    Time::HiRes::sleep(0.3);
    my $del = send_request("DELETE /api/v1/tasks/$id HTTP/1.0\r\n"
                           . "Host: localhost\r\n\r\n");
    my $body = "{\"prompt\": \"$prompt\"}";
    my $post = send_request("POST /api/v1/image/async HTTP/1.0\r\n"
                            . "Host: localhost\r\n"
                            . "Content-Type: application/json\r\n"
                            . "Content-Length: " . length($body)
                            . "\r\n\r\n$body");
    Time::HiRes::sleep(0.3);
    return ($id, $locker, $del, $post);
}

__DATA__

=== TEST 1: an image result is <id>.png, mode 0600, and no other file is left
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19760;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19760, kind => 'image');
--- init
my @ids = map { AsyncTaskTest::submit("file $_") } 1 .. 3;
AsyncTaskTest::wait_task($_, ['DONE']) for @ids;
my $dir = AsyncTaskTest::servroot() . '/html/store/files';
Test::More::is_deeply([main::files()], [sort map { "$_.png" } @ids],
                      'the three results, and nothing else');
for my $id (@ids) {
    my $mode = (stat "$dir/$id.png")[2] & 07777;
    Test::More::is(sprintf('%04o', $mode), '0600', "$id.png is 0600");
}
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3
--- no_error_log
[error]
[alert]



=== TEST 2: a run whose outcome is refused leaves the winner's PNG alone
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19761;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19761, kind => 'image', latency => 1.5);
--- init
my $id = AsyncTaskTest::submit('the loser');
my $t = AsyncTaskTest::wait_task($id, ['RUNNING']);
Test::More::is($t->{status}, 'RUNNING', 'the run started');
# meanwhile another run of the task won: its outcome and its file
my $dir = AsyncTaskTest::servroot() . '/html/store/files';
open my $fh, '>', "$dir/$id.png" or die "$dir/$id.png: $!";
print $fh "the winner's PNG";
close $fh;
my $now = int(Time::HiRes::time() * 1000);
AsyncTaskTest::sql(AsyncTaskTest::store_db($block), ".timeout 5000\n"
    . "UPDATE tasks SET status = 'DONE', lease_owner = NULL, "
    . "lease_expires = NULL, finished_at = $now, file = '$id.png', "
    . "result = '{\"content_type\":\"image/png\",\"bytes\":16}' "
    . "WHERE id = '$id';");
# the loser's run ends; the store refuses its outcome
Test::More::ok(main::wait_for(sub {
    AsyncTaskTest::fake_stats(19761)->{inflight} == 0
        && AsyncTaskTest::stats()->{tasks}{RUNNING} == 0 }),
    'the refused run left the zone');
Time::HiRes::sleep(0.3);
my $png = open($fh, '<', "$dir/$id.png") ? do { local $/; <$fh> } : "gone: $!";
Test::More::is($png, "the winner's PNG", 'the winner\'s file is still there');
Test::More::is_deeply([main::files()], ["$id.png"], 'no file of the loser');
--- request
GET /api/v1/system/stats
--- response_body_like: "RUNNING":0
--- no_error_log
[error]
[alert]



=== TEST 3: a reload while a cancel and a submit wait for the store: both are answered, and the zone agrees
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task lock_timeout=10s;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:9 down;
    }
--- init
my ($id, $locker, $del, $post)
    = main::cancel_and_submit_behind_lock($block, 'submitted during the reload');
kill 'HUP', AsyncTaskTest::pid_of_master();
Test::More::is(main::status_of($del), 200, 'the cancel is answered');
Test::More::is(main::status_of($post), 202, 'the submit is answered');
waitpid $locker, 0;
Time::HiRes::sleep(0.5);
Test::More::is(AsyncTaskTest::task($id)->{status}, 'CANCELED',
               'the task reads CANCELED');
my $stats = AsyncTaskTest::stats();
Test::More::is($stats->{tasks}{CANCELED}, 1, 'stats: one CANCELED');
Test::More::is($stats->{tasks}{QUEUED}, 1, 'stats: one QUEUED, the new one');
Test::More::is($stats->{queue}{depth}, 1, 'queue depth 1');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1
--- no_error_log
[error]
[alert]



=== TEST 4: a lease that runs out under a live runner: its slot is given back once, max_conns holds
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19762 max_conns=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19762, kind => 'image', latency => 0.3,
                        max_concurrent => 1);
AsyncTaskTest::fake_control(19762, mode => 'hang', times => 1);
--- init
my $first = AsyncTaskTest::submit('hangs');
Test::More::is(AsyncTaskTest::wait_task($first, ['RUNNING'])->{status},
               'RUNNING', 'the first run hangs');
my @ids = ($first, map { AsyncTaskTest::submit("after $_") } 1 .. 4);
AsyncTaskTest::sql(AsyncTaskTest::store_db($block), ".timeout 5000\n"
    . "UPDATE tasks SET lease_expires = 1 WHERE id = '$first';");
my ($over, $samples) = (0, 0);
main::wait_for(sub {
    my $s = AsyncTaskTest::stats();
    $samples++;
    $over++ if $s->{backends}[0]{inflight} > 1;
    return $s->{tasks}{DONE} == 5;
}, 20);
Test::More::is(AsyncTaskTest::stats()->{tasks}{DONE}, 5, 'all five DONE');
Test::More::is($over, 0, "stats never show more than max_conns ($samples samples)");
Test::More::is(AsyncTaskTest::fake_stats(19762)->{violations}, 0,
               'the instance never ran two at once');
Test::More::is(AsyncTaskTest::stats()->{backends}[0]{inflight}, 0,
               'no slot left taken');
Test::More::like(AsyncTaskTest::error_log(), qr/the lease of task $first expired/,
                 'the lease ran out');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":5
--- no_error_log
[error]
[alert]



=== TEST 5: a full zone: a claimed task it has no room for queues again, uncharged, and is not taken for canceled
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:64k
                     thread_pool=async_task max_queued=47;
    async_task_backend image gpu retries=100 backoff=100ms;
    upstream gpu {
        server 127.0.0.1:19763 max_conns=4 max_fails=0;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19763, kind => 'image', mode => 'error500');
--- init
# The start-up check leaves room for max_queued tasks and the runs, so
# only tasks that another tool puts in the store can fill the zone: each
# one claimed needs a node, and each fails (500) and waits for a retry
# in the zone, until no node is left for the next claim.
my $db = AsyncTaskTest::store_db($block);
AsyncTaskTest::sql($db, ".timeout 5000\nBEGIN;\n" . join('', map {
    sprintf("INSERT INTO tasks (id, kind, status, priority, params, "
            . "created_at) VALUES ('01900000-0000-7000-8000-%012x', "
            . "'image', 'QUEUED', 9, '{\"prompt\":\"outside %d\","
            . "\"width\":64,\"height\":64}', %d);\n", $_, $_, $_)
} 1 .. 600) . "COMMIT;\n");
my ($id, $log);
for (1 .. 300) {
    $log = AsyncTaskTest::error_log();
    last if ($id) = $log =~ /async_task zone is full: task (\S+) queues again/;
    Time::HiRes::sleep(0.1);
}
Test::More::ok($id, 'the full zone is logged');
Time::HiRes::sleep(1.5);
$log = AsyncTaskTest::error_log();
Test::More::unlike($log, qr/canceled while it ran/,
                   'no run was taken for canceled');
my @errors = grep { /\[error\]/ && !/answered 500|status 500|is full: increase/ }
             split /\n/, $log;
Test::More::is_deeply(\@errors, [], 'no [error] but the 500s and the full zone');
my $row = `sqlite3 -cmd '.timeout 5000' '$db' "SELECT status, attempts FROM tasks WHERE id = '$id'"`;
chomp $row;
Test::More::like($row, qr/^(QUEUED|RUNNING)\|0$/, "queued again, uncharged ($row)");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[alert]
[crit]



=== TEST 6: a graceful stop while a cancel and a submit wait for the store: both are answered and stored
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task lock_timeout=10s;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:9 down;
    }
--- init
my ($id, $locker, $del, $post)
    = main::cancel_and_submit_behind_lock($block, 'submitted during the stop');
my $master = AsyncTaskTest::pid_of_master();
kill 'QUIT', $master;
Test::More::is(main::status_of($del), 200, 'the cancel is answered');
Test::More::is(main::status_of($post), 202, 'the submit is answered');
waitpid $locker, 0;
main::wait_for(sub { !kill 0, $master });
# start again on the same configuration, for the reads below
my $binary = $Test::Nginx::Util::NginxBinary || 'nginx';
my $servroot = AsyncTaskTest::servroot();
system("$binary -p $servroot/ -c $servroot/conf/nginx.conf") == 0
    or die "nginx did not start again";
AsyncTaskTest::wait_port();
Test::More::is(AsyncTaskTest::task($id)->{status}, 'CANCELED',
               'the task reads CANCELED');
my $stats = AsyncTaskTest::stats();
Test::More::is($stats->{tasks}{QUEUED}, 1, 'one QUEUED, the new one');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1
--- no_error_log
[error]
[alert]



=== TEST 7: a dead runner's task taken back by the reaper, then by its lease: its slot is given back once, max_conns holds
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu {
        server 127.0.0.1:19764 max_conns=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19764, kind => 'image', latency => 6,
                        max_concurrent => 1);
AsyncTaskTest::fake_control(19764, mode => 'hang', times => 1);
--- init
my $first = AsyncTaskTest::submit('runner dies');
Test::More::is(AsyncTaskTest::wait_task($first, ['RUNNING'])->{status},
               'RUNNING', 'the first run hangs');
my @ids = ($first, map { AsyncTaskTest::submit("after $_") } 1 .. 2);
my $master = AsyncTaskTest::pid_of_master();
my ($worker) = split ' ', `pgrep -P $master`;
kill 'KILL', $worker;
# the reaper finds the lease another's (it takes the slot back, the task
# stays RUNNING); then the lease runs out (the task queues again)
AsyncTaskTest::sql(AsyncTaskTest::store_db($block), ".timeout 5000\n"
    . "UPDATE tasks SET lease_owner = 'pid:1', lease_expires = 1 "
    . "WHERE id = '$first';");
my ($over, $samples) = (0, 0);
main::wait_for(sub {
    my $s = AsyncTaskTest::stats();
    $samples++;
    $over++ if $s->{backends}[0]{inflight} > 1;
    return $s->{tasks}{DONE} == 3;
}, 40);
Test::More::is(AsyncTaskTest::stats()->{tasks}{DONE}, 3, 'all three DONE');
my $log = AsyncTaskTest::error_log();
Test::More::like($log, qr/task $first of exited process $worker is taken back/,
                 'the reaper took it back');
Test::More::like($log, qr/the lease of task $first expired/,
                 'then its lease ran out');
Test::More::is(AsyncTaskTest::fake_stats(19764)->{violations}, 0,
               'the instance never ran two at once');
Test::More::is(AsyncTaskTest::stats()->{backends}[0]{inflight}, 0,
               'no slot left taken');
my @alerts = grep { /\[alert\]/ && !/exited on signal 9/ } split /\n/, $log;
Test::More::is_deeply(\@alerts, [], 'no [alert] but the killed worker');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3
--- timeout: 10
--- no_error_log
[error]
[crit]
