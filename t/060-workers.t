# Two worker processes share one queue: what one accepts the other sees at
# once, counts agree, and a reload keeps everything.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: a task submitted through one worker is visible at once through the other
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        access_log logs/api.log pid_status;
    }
--- http_config
    log_format pid_status '$pid $status';
    async_task_store @STORE@/tasks.db zone=async_task:4m thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my $n = 200;
my (%ids, $bad);
for my $i (1 .. $n) {
    my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json', 'X-User-Id' => 'u'},
        body => qq({"prompt": "task $i"}));
    $bad++ unless $s == 202;
    # a fresh connection: often another worker
    my ($g, $seen) = AsyncTaskTest::api('GET', "tasks/$t->{id}",
                                        headers => {'X-User-Id' => 'u'});
    $bad++ unless $g == 200 && $seen->{status} eq 'QUEUED'
                  && $seen->{position} == $i - 1;
    $ids{$t->{id}} = 1;
}
Test::More::is($bad, undef, 'every task visible with its position at once');
Test::More::is(scalar keys %ids, $n, 'ids are unique');

open my $log, '<', AsyncTaskTest::servroot() . '/logs/api.log' or die;
my %pids = map { (split)[0] => 1 } <$log>;
Test::More::is(scalar keys %pids, 2, 'both workers served requests');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":200,.*"queue":\{"depth":200,
--- no_error_log
[error]
[alert]



=== TEST 2: concurrent submissions on both workers: no task lost, no duplicate, exact counts
--- init
use POSIX ();
my $dir = AsyncTaskTest::servroot() . '/html';
my @kids;
for my $k (1 .. 8) {
    my $pid = fork();
    if ($pid == 0) {
        open my $out, '>', "$dir/ids.$k" or POSIX::_exit(1);
        for my $i (1 .. 50) {
            my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
                headers => {'Content-Type' => 'application/json'},
                body => qq({"prompt": "$k $i"}));
            print $out ($s == 202 ? $t->{id} : "failed $s"), "\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
my @ids = map { open my $in, '<', "$dir/ids.$_" or die; map { chomp; $_ } <$in> } 1 .. 8;
Test::More::is(scalar(grep { /failed/ } @ids), 0, 'every submission accepted');
my %uniq = map { $_ => 1 } @ids;
Test::More::is(scalar keys %uniq, 400, '400 distinct tasks');
# the random half of the ids, drawn ahead in blocks by each worker
my %bits = map { substr($_, 19) => 1 } @ids;
Test::More::is(scalar keys %bits, 400, 'no two ids share random bits');
my $db = AsyncTaskTest::store_db($block);
my $rows = `sqlite3 $db "SELECT count(*) FROM tasks WHERE status = 'QUEUED'"`;
chomp $rows;
Test::More::is($rows, 400, 'all 400 in the store');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":400,.*"queue":\{"depth":400,
--- no_error_log
[error]
[alert]



=== TEST 3: a reload keeps the zone: tasks, positions, counts
--- init
my @ids;
for my $i (1 .. 5) {
    my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "before $i"}));
    push @ids, $t->{id};
}
AsyncTaskTest::api('DELETE', "tasks/$ids[1]");

my $root = AsyncTaskTest::servroot();
my $master = `cat $root/logs/nginx.pid`;
chomp $master;
my @old = split ' ', `pgrep -P $master`;
kill 'HUP', $master;
# the old workers leave, new ones take over
for (1 .. 500) {
    my @now = split ' ', `pgrep -P $master`;
    my %old = map { $_ => 1 } @old;
    last if @now == 2 && !grep { $old{$_} } @now;
    Time::HiRes::sleep(0.02);
}
my @positions = map {
    my ($s, $t) = AsyncTaskTest::api('GET', "tasks/$_");
    $t->{status} eq 'QUEUED' ? $t->{position} : $t->{status};
} @ids;
Test::More::is("@positions", "0 CANCELED 1 2 3", 'the queue after the reload');
my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "after"}');
Test::More::is($t->{position}, 4, 'a new task queues behind them');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":5,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":1\}
--- no_error_log
[error]
[alert]
