# `position` on the PostgreSQL store: counted from the queue's depths per
# (kind, priority), kept by triggers (migrations/postgresql/0003), it
# must equal a recount of the QUEUED tasks ahead after every kind of
# move into or out of the queue, and the 202s of batches that two nodes
# commit at the same time must count each other.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19610-19619.  Node b: a
# second nginx on port 19690 (see t/121-pg-nodes.t).

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use JSON::PP ();
use Time::HiRes ();
use POSIX ();

master_on();
workers(2);

our $B = 19690;

run_tests();

# rows of a query in the block's schema, each a reference to its columns
sub psql {
    return map { [split /\|/, $_, -1] } AsyncTaskTest::pg_sql(@_);
}

# a task of a kind at a priority: (id, position) from the 202
sub submit_on {
    my ($port, $kind, $priority) = @_;
    my ($s, $t) = $kind eq 'image'
        ? AsyncTaskTest::node_api($port, 'POST', 'image/async',
              body => JSON::PP::encode_json({prompt => "p $priority",
                  width => 64, height => 64, seed => 1,
                  priority => $priority}))
        : AsyncTaskTest::node_api($port, 'POST',
              "speech/pcm?sample_rate=16000&priority=$priority",
              type => 'application/octet-stream', body => "\0" x 3200);
    return $s == 202 ? ($t->{id}, $t->{position}) : ();
}

# the depths against a count of the QUEUED tasks, in one snapshot: the
# (kind, priority) pairs where they differ
sub depth_mismatches {
    return map { join ':', @$_ } psql(
        "SELECT coalesce(d.kind, q.kind), coalesce(d.priority, q.priority), "
        . "coalesce(d.n, 0), coalesce(q.n, 0) "
        . "FROM (SELECT kind, priority, sum(n) AS n FROM queue_depth "
        . "GROUP BY 1, 2 HAVING sum(n) <> 0) d FULL JOIN "
        . "(SELECT kind, priority, count(*) AS n FROM tasks "
        . "WHERE status = 'QUEUED' GROUP BY 1, 2) q "
        . "ON d.kind = q.kind AND d.priority = q.priority "
        . "WHERE coalesce(d.n, 0) <> coalesce(q.n, 0)");
}

# every QUEUED task's position by a recount, id => position
sub recount {
    return map { $_->[0] => $_->[1] } psql(
        "SELECT t.id, (SELECT count(*) FROM tasks q "
        . "WHERE q.status = 'QUEUED' AND q.kind = t.kind "
        . "AND (q.priority > t.priority OR (q.priority = t.priority "
        . "AND (q.created_at, q.id) < (t.created_at, t.id)))) "
        . "FROM tasks t WHERE t.status = 'QUEUED'");
}

__DATA__

=== TEST 1: positions equal a recount after submissions, claims, retries, cancels, take-backs, retention and deletes
--- main_config
    thread_pool async_task threads=2;
    worker_shutdown_timeout 1s;
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task retention=1s;
    async_task_backend image gpu_image model=m timeout=60s retries=3
                       backoff=0;
    async_task_backend speech gpu_speech;
    upstream gpu_image {
        server 127.0.0.1:19610 max_conns=2;
    }
    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19610, kind => 'image', latency => 0.2);
--- init
my $A = AsyncTaskTest::port();
srand(126);

# speech never runs here: each 202 counts the speech tasks before it
my (@speech, %prio, $wrong);
for my $i (1 .. 30) {
    my $p = int(rand(10));
    my ($id, $pos) = main::submit_on($A, 'speech', $p);
    my $ahead = grep { $prio{$_} >= $p } @speech;
    $wrong++ if !defined $pos || $pos != $ahead;
    push @speech, $id;
    $prio{$id} = $p;
}
Test::More::is($wrong // 0, 0, "30 speech 202s: each position counts the tasks before");

# image runs, and a third of its attempts fail and queue again
AsyncTaskTest::fake_control(19610, fail_rate => 0.3);
my @image = map { (main::submit_on($A, 'image', int(rand(10))))[0] } 1 .. 30;
Test::More::is(scalar(grep { defined } @image), 30, '30 image tasks accepted');

# cancels of queued tasks, of both kinds
my $canceled = 0;
for my $id (@speech[0, 7, 14, 21, 28], @image[25 .. 29]) {
    my ($s) = AsyncTaskTest::node_api($A, 'DELETE', "tasks/$id");
    $canceled++ if $s == 200;
}
Test::More::cmp_ok($canceled, '>=', 5, 'queued tasks canceled');

# runs of a node that died, to take back; old finished tasks, for
# retention; queued tasks deleted by hand
my $now = int(Time::HiRes::time() * 1000);
main::psql("INSERT INTO nodes VALUES ('dead', 0)");
main::psql(join ' ', "INSERT INTO tasks (id, kind, status, \"user\", priority,",
    "params, created_at, started_at, attempts, lease_owner, lease_expires)",
    "SELECT '00000000-0000-7000-8000-00000000000' || i, 'image', 'RUNNING',",
    "'alice', i, '{\"prompt\":\"back\",\"width\":64,\"height\":64,\"seed\":1}',",
    "$now - 1000 * i, $now, 1, 'dead/pid:1', $now + 600000",
    "FROM generate_series(1, 4) i");
main::psql(join ' ', "INSERT INTO tasks (id, kind, status, \"user\", priority,",
    "params, created_at, finished_at) SELECT",
    "'00000000-0000-7000-9000-00000000000' || i, 'image', 'DONE', 'alice', 5,",
    "'{}', $now - 100000, $now - 50000 FROM generate_series(1, 3) i");
main::psql("DELETE FROM tasks WHERE id IN ('$speech[3]', '$speech[4]')");
Test::More::is(scalar(main::depth_mismatches()), 0, 'depths right after the writes');

# take-back and retention done, then the instance hangs: two runs stay
# RUNNING and nothing moves any more
my ($back, $old);
for (1 .. 300) {
    ($back) = main::psql("SELECT count(*) FROM tasks WHERE lease_owner LIKE 'dead/%'");
    ($old) = main::psql("SELECT count(*) FROM tasks WHERE id LIKE '00000000-0000-7000-9%'");
    last if $back->[0] == 0 && $old->[0] == 0;
    Time::HiRes::sleep(0.1);
}
Test::More::is($back->[0] + $old->[0], 0, 'runs of the dead node taken back, old tasks gone');
AsyncTaskTest::fake_control(19610, mode => 'hang', fail_rate => 0);
my ($running, $queued) = (-1, -1);
for (1 .. 100) {
    my ($r) = main::psql("SELECT count(*) FILTER (WHERE status = 'RUNNING'), "
                         . "count(*) FILTER (WHERE status = 'QUEUED') FROM tasks");
    last if $r->[0] == $running && $r->[1] == $queued && $running <= 2;
    ($running, $queued) = @$r;
    Time::HiRes::sleep(0.3);
}
# the reads between two recounts that agree (a run that ends or starts
# meanwhile: again)
my (%re, %got, @listed);
for (1 .. 20) {
    %re = main::recount();
    %got = ();
    for my $id (keys %re) {
        my (undef, $t) = AsyncTaskTest::node_api($A, 'GET', "tasks/$id");
        $got{$id} = $t->{position} // 'none';
    }
    my (undef, $list) = AsyncTaskTest::node_api($A, 'GET',
                                                'tasks?status=QUEUED&limit=100');
    @listed = @{ $list->{tasks} };
    my %again = main::recount();
    last if join(',', map { "$_=$re{$_}" } sort keys %re)
            eq join(',', map { "$_=$again{$_}" } sort keys %again);
    Time::HiRes::sleep(0.5);
}
Test::More::cmp_ok(scalar(keys %re), '>=', 20, 'tasks still queued: ' . scalar(keys %re));
Test::More::is(join(' ', main::depth_mismatches()), '', 'depths equal a recount');
my @bad = map { "$_: $got{$_} != $re{$_}" } grep { $got{$_} ne $re{$_} } sort keys %re;
Test::More::is(join(', ', @bad), '', 'each queued task read: its position is the recount');
@bad = map { "$_->{id}: $_->{position} != " . ($re{$_->{id}} // 'none') }
       grep { !defined $re{$_->{id}} || $_->{position} != $re{$_->{id}} } @listed;
Test::More::is(scalar(@listed), scalar(keys %re), 'all listed');
Test::More::is(join(', ', @bad), '', 'listed: each position is the recount');
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- no_error_log
[error]
[alert]
--- timeout: 60



=== TEST 2: batches that two nodes commit at the same time: each 202 counts every task ahead that committed before it
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=10000;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:9 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- init
AsyncTaskTest::node2_start(port => $main::B);
my $A = AsyncTaskTest::port();

# the order in which the batches commit (for this test only): a deferred
# trigger numbers each transaction's rows at its COMMIT, the transactions
# one at a time from there (a lock held to the end), so that the numbers
# follow the commits
main::psql(join "\n",
    "CREATE TABLE committed (id text, x bigint, seq bigserial);",
    "CREATE FUNCTION committed() RETURNS trigger LANGUAGE plpgsql AS",
    "\$\$ BEGIN PERFORM pg_advisory_xact_lock(126126);",
    "INSERT INTO committed (id, x) VALUES (NEW.id, txid_current());",
    "RETURN NULL; END \$\$;",
    "CREATE CONSTRAINT TRIGGER committed AFTER INSERT ON tasks",
    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION committed();");

my $dir = AsyncTaskTest::servroot() . '/html';
my @kids;
for my $k (0 .. 7) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        srand(1000 + $k);
        open my $out, '>', "$dir/pos.$k" or POSIX::_exit(1);
        my $port = $k % 2 ? $main::B : $A;
        for (1 .. 60) {
            my ($id, $pos) = main::submit_on($port, 'image', 4 + int(rand(3)));
            print $out $id ? "$id $pos\n" : "failed\n";
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
waitpid($_, 0) for @kids;
my %pos;
for my $k (0 .. 7) {
    open my $in, '<', "$dir/pos.$k" or die "$dir/pos.$k: $!";
    while (<$in>) {
        my ($id, $p) = split;
        $pos{$id} = $p;
    }
}
Test::More::is(scalar(grep { $_ ne 'failed' } keys %pos), 480, '480 tasks accepted');

# each task, with the turn of its transaction's commit
my @t = map { {id => $_->[0], p => $_->[1], c => $_->[2], o => $_->[3]} }
    main::psql("SELECT t.id, t.priority, t.created_at, o.o FROM tasks t "
        . "JOIN committed c ON c.id = t.id JOIN (SELECT x, min(seq) AS o "
        . "FROM committed GROUP BY x) o ON o.x = c.x");
my %turns = map { $_->{o} => 1 } @t;
my @turns = sort { $a <=> $b } keys %turns;
Test::More::cmp_ok(scalar(@turns), '<', 480, 'batches of several tasks: ' . scalar(@turns));

# a 202's position is read after its COMMIT: it counts the tasks ahead of
# its own transaction's and of those that committed before it, and maybe
# of some that committed after, up to the time of the read
my @bad;
for my $t (@t) {
    my @ahead = sort { $a <=> $b } map { $_->{o} } grep {
        $_->{p} > $t->{p} || ($_->{p} == $t->{p}
            && ($_->{c} < $t->{c} || ($_->{c} == $t->{c} && $_->{id} lt $t->{id})))
    } @t;
    my %can;
    for my $turn (grep { $_ >= $t->{o} } @turns) {
        $can{scalar(grep { $_ <= $turn } @ahead)} = 1;
    }
    push @bad, "$t->{id}: $pos{$t->{id}} not in " . join(',', sort { $a <=> $b } keys %can)
        unless $can{$pos{$t->{id}}};
}
Test::More::is(scalar(@bad), 0, 'each 202 counts the tasks ahead committed before it, at a time after its own')
    or Test::More::diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
Test::More::is(join(' ', main::depth_mismatches()), '', 'depths equal a recount');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- no_error_log
[error]
[alert]
--- timeout: 120
