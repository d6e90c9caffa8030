# Two nginx nodes on one PostgreSQL store, each with a files= directory of
# its own (not shared): uploads and results go through the store (table
# "files", in pieces of 256 KB), and a node that lacks a file fetches it.
#
# Node a is the block's nginx (files= html/files), node b a second nginx
# on port 19590 (prefix html/node2, files= html/files2), started by the
# "--- init" code.  Fake GPU instances: tools/fake_gpu.py, ports
# 19540-19549.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest ':postgresql_only';
use Digest::SHA ();
use Time::HiRes ();
use POSIX ();

master_on();
workers(2);

our $B = 19590;

run_tests();

# helpers for the "--- init" code (which runs in another package)

sub dir_a { AsyncTaskTest::servroot() . '/html/files' }
sub dir_b { AsyncTaskTest::node2_files() }

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    return scalar <$fh>;
}

# the pieces of a task's files in the store
sub chunks {
    my ($id) = @_;
    return scalar AsyncTaskTest::pg_sql(
        "SELECT count(*) FROM files WHERE task = '$id'");
}

# bytes that are not the same in any two pieces of 256 KB
sub audio {
    my ($n) = @_;
    my $s = '';
    my $i = 0;
    $s .= Digest::SHA::sha256(pack 'N', $i++) while length $s < $n;
    return substr $s, 0, $n;
}

sub transcript {
    my ($audio) = @_;
    return sprintf 'transcript of %d bytes %s', length $audio,
                   substr(Digest::SHA::sha256_hex($audio), 0, 8);
}

__DATA__

=== TEST 1: a speech upload on node a runs on node b, which has its own files=: the instance gets the whole audio
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend speech gpu_speech model=m;
    upstream gpu_speech {
        server 127.0.0.1:19540 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19540, kind => 'speech');
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19540 down;/:19540;/ });
my $A = AsyncTaskTest::port();
my $audio = main::audio(3000);
my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'speech/transcribe',
                                      type => 'audio/ogg',
                                      body => $audio);
Test::More::is($s, 202, 'node a accepts the upload');
Test::More::is(main::chunks($t->{id}), 1, 'the input is in the store');
my $done = AsyncTaskTest::node_wait_task($A, $t->{id}, [qw(DONE FAILED)]);
Test::More::is($done->{status}, 'DONE', 'DONE');
Test::More::is($done->{backend}, 'gpu_speech/127.0.0.1:19540',
               'node b ran it');
Test::More::is($done->{result}{text}, main::transcript($audio),
               'the instance got the whole audio');
Test::More::ok(main::slurp(main::dir_b() . "/$t->{id}.in") eq $audio,
               "node b's copy of the input is the upload");
my ($rs, $r) = AsyncTaskTest::node_api($main::B, 'GET',
                                       "tasks/$t->{id}/result");
Test::More::is($r->{text}, main::transcript($audio),
               'node b serves the transcript');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200



=== TEST 2: an image made on node b is fetched whole by node a: the same PNG, Range requests too
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19541 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19541, kind => 'image');
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19541 down;/:19541;/ });
my $A = AsyncTaskTest::port();
my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'image/async',
    body => '{"prompt": "made on b", "width": 64, "height": 64, "seed": 3}');
Test::More::is($s, 202, 'node a accepts it');
Test::More::is(AsyncTaskTest::node_wait_task($A, $t->{id},
                                             [qw(DONE FAILED)])->{status},
               'DONE', 'DONE');
my $file = "$t->{id}.png";
Test::More::ok(-e main::dir_b() . "/$file", 'node b wrote the PNG');
Test::More::ok(!-e main::dir_a() . "/$file", 'node a has none yet');
Test::More::ok(main::chunks($t->{id}) >= 1, 'the PNG is in the store');
my ($bs, $bh, $bpng) = AsyncTaskTest::node_result($main::B, $t->{id});
my ($as, $ah, $apng) = AsyncTaskTest::node_result($A, $t->{id});
Test::More::is($as, 200, 'node a serves it');
Test::More::is($ah->{'content-type'}, 'image/png', 'a PNG');
Test::More::ok(length($apng) > 8 && $apng eq $bpng,
               'byte for byte the PNG of node b');
Test::More::ok(main::slurp(main::dir_a() . "/$file") eq $bpng,
               'node a keeps its copy');
my ($rs, $rh, $part) = AsyncTaskTest::node_result($A, $t->{id},
                                                   Range => 'bytes=1-3');
Test::More::is($rs, 206, 'a Range: 206');
Test::More::is($part, 'PNG', 'the bytes of that range');
my ($ns) = AsyncTaskTest::node_result($A, $t->{id}, Range => 'bytes=100000-');
Test::More::is($ns, 416, 'a Range past the end: 416');
my ($os) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result",
    headers => {'X-User-Id' => 'bob'});
Test::More::is($os, 404, "another user's result is not found");
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200



=== TEST 3: a large upload, several pieces, round-trips through the store
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend speech gpu_speech model=m;
    upstream gpu_speech {
        server 127.0.0.1:19542 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        client_max_body_size 8m;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19542, kind => 'speech');
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19542 down;/:19542;/ });
my $A = AsyncTaskTest::port();
for my $n (3 * 262144 + 1000, 4 * 262144) {
    my $audio = main::audio($n);
    my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'speech/transcribe',
                                          type => 'audio/ogg', body => $audio);
    Test::More::is($s, 202, "$n bytes: accepted");
    Test::More::is(main::chunks($t->{id}), int(($n + 262143) / 262144),
                   "$n bytes: in pieces of 256 KB");
    my $done = AsyncTaskTest::node_wait_task($A, $t->{id}, [qw(DONE FAILED)]);
    Test::More::is($done->{result}{text}, main::transcript($audio),
                   "$n bytes: the instance got the whole audio");
    Test::More::ok(main::slurp(main::dir_b() . "/$t->{id}.in") eq $audio,
                   "$n bytes: node b's copy is the upload");
}
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200



=== TEST 4: a canceled task's input leaves the store; an expired task's result too
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task retention=2s;
    async_task_backend speech gpu_speech model=m;
    async_task_backend image gpu_image model=m;
    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }
    upstream gpu_image {
        server 127.0.0.1:19543;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19543, kind => 'image');
--- init
my $A = AsyncTaskTest::port();
my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'speech/transcribe',
                                      type => 'audio/ogg',
                                      body => main::audio(300000));
Test::More::is($s, 202, 'an upload accepted');
Test::More::is(main::chunks($t->{id}), 2, 'its two pieces in the store');
my ($cs) = AsyncTaskTest::node_api($A, 'DELETE', "tasks/$t->{id}");
Test::More::is($cs, 200, 'canceled');
Test::More::is(main::chunks($t->{id}), 0, 'its pieces are gone');
Test::More::ok(!-e main::dir_a() . "/$t->{id}.in", 'and its file');
my (undef, $i) = AsyncTaskTest::node_api($A, 'POST', 'image/async',
                                         body => '{"prompt": "short lived"}');
Test::More::is(AsyncTaskTest::node_wait_task($A, $i->{id},
                                             [qw(DONE FAILED)])->{status},
               'DONE', 'an image DONE');
Test::More::ok(main::chunks($i->{id}) >= 1, 'its PNG is in the store');
my $gone;
for (1 .. 80) {
    my ($status) = AsyncTaskTest::node_api($A, 'GET', "tasks/$i->{id}");
    $gone = $status == 404;
    last if $gone;
    Time::HiRes::sleep(0.1);
}
Test::More::ok($gone, 'the image task is gone after retention');
Test::More::is(main::chunks($i->{id}), 0, 'and its pieces');
Test::More::is(AsyncTaskTest::pg_sql('SELECT count(*) FROM files'), 0,
               'nothing is left in the store');
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 20



=== TEST 5: a node that starts again with an empty files= still serves its results
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19544 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19544, kind => 'image');
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19544 down;/:19544;/ });
my $A = AsyncTaskTest::port();
my @ids;
for my $k (1 .. 3) {
    my (undef, $t) = AsyncTaskTest::node_api($A, 'POST', 'image/async',
        body => qq{{"prompt": "kept $k", "width": 64, "height": 64}});
    push @ids, $t->{id};
    Test::More::is(AsyncTaskTest::node_wait_task($A, $t->{id},
                                                 [qw(DONE FAILED)])->{status},
                   'DONE', "image $k DONE");
}
my %png = map { $_ => main::slurp(main::dir_b() . "/$_.png") } @ids;
Test::More::is(scalar(grep { defined && length } values %png), 3,
               'node b made the three');
AsyncTaskTest::node2_stop();
unlink glob(main::dir_b() . '/*');
Test::More::is(scalar(my @left = glob(main::dir_b() . '/*')), 0,
               "node b's files= is empty");
AsyncTaskTest::node2_start(port => $main::B, own_files => 1);
for my $id (@ids) {
    my ($s, undef, $png) = AsyncTaskTest::node_result($main::B, $id);
    Test::More::is($s, 200, "node b serves $id again");
    Test::More::ok($png eq $png{$id}, 'the same PNG');
}
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200



=== TEST 6: files_shared: the nodes share files=, nothing goes into the store
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     files_shared thread_pool=async_task;
    async_task_backend speech gpu_speech model=m;
    upstream gpu_speech {
        server 127.0.0.1:19545 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19545, kind => 'speech');
--- init
AsyncTaskTest::node2_start(port => $main::B,
                           edit => sub { s/:19545 down;/:19545;/ });
my $A = AsyncTaskTest::port();
my $audio = main::audio(300000);
my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'speech/transcribe',
                                      type => 'audio/ogg',
                                      body => $audio);
Test::More::is($s, 202, 'node a accepts the upload');
my $done = AsyncTaskTest::node_wait_task($A, $t->{id}, [qw(DONE FAILED)]);
Test::More::is($done->{result}{text}, main::transcript($audio),
               'node b read it from the shared directory');
Test::More::is(AsyncTaskTest::pg_sql('SELECT count(*) FROM files'), 0,
               'nothing in the store');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200



=== TEST 7: a node's copies of files whose tasks went on another node are swept away
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task retention=3s;
    async_task_backend image gpu_image model=m;
    upstream gpu_image {
        server 127.0.0.1:19546 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19546, kind => 'image');
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19546 down;/:19546;/ });
my $A = AsyncTaskTest::port();
my (undef, $t) = AsyncTaskTest::node_api($A, 'POST', 'image/async',
                                         body => '{"prompt": "copied"}');
Test::More::is(AsyncTaskTest::node_wait_task($A, $t->{id},
                                             [qw(DONE FAILED)])->{status},
               'DONE', 'DONE on node b');
my ($s) = AsyncTaskTest::node_result($A, $t->{id});
Test::More::is($s, 200, 'node a fetched it');
my @copies = map { "$_/$t->{id}.png" } main::dir_a(), main::dir_b();
Test::More::is(scalar(grep { -e } @copies), 2, 'a copy on each node');
# as if they were made a while ago: the sweep leaves young files alone
my $then = time - 3600;
utime $then, $then, @copies;
my $left;
for (1 .. 100) {
    $left = grep { -e } @copies;
    last if $left == 0;
    Time::HiRes::sleep(0.1);
}
Test::More::is($left, 0, 'both copies are gone after retention');
my ($gs) = AsyncTaskTest::node_api($A, 'GET', "tasks/$t->{id}");
Test::More::is($gs, 404, 'with the task');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 20



=== TEST 8: an input the store cannot give for a while (its table locked): the task waits, uncharged, then runs
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task lock_timeout=300ms;
    async_task_backend speech gpu_speech model=m;
    upstream gpu_speech {
        server 127.0.0.1:19547 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19547, kind => 'speech');
--- init
my $A = AsyncTaskTest::port();
my $audio = main::audio(5000);
my ($s, $t) = AsyncTaskTest::node_api($A, 'POST', 'speech/transcribe',
                                      type => 'audio/ogg',
                                      body => $audio);
Test::More::is($s, 202, 'node a accepts the upload');
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    my $locked = eval {
        AsyncTaskTest::pg_sql('BEGIN; LOCK TABLE files; SELECT pg_sleep(3); '
                              . 'COMMIT;');
        1;
    };
    POSIX::_exit($locked ? 0 : 1);
}
Time::HiRes::sleep(0.5);
AsyncTaskTest::node2_start(port => $main::B, own_files => 1,
                           edit => sub { s/:19547 down;/:19547;/ });
Time::HiRes::sleep(1.5);
my (undef, $mid) = AsyncTaskTest::node_api($A, 'GET', "tasks/$t->{id}");
Test::More::is($mid->{status}, 'QUEUED', 'while it cannot be fetched: QUEUED');
waitpid($pid, 0);
my $done = AsyncTaskTest::node_wait_task($A, $t->{id}, [qw(DONE FAILED)]);
Test::More::is($done->{status}, 'DONE', 'then DONE');
Test::More::is($done->{attempts}, 1, 'charged for one run only');
Test::More::is($done->{result}{text}, main::transcript($audio),
               'the instance got the whole audio');
AsyncTaskTest::nodes_no_errors(except => qr/lock timeout/,
                               name => 'no other error on either node');
AsyncTaskTest::node2_stop();
--- request
GET /api/v1/tasks
--- error_code: 200
--- timeout: 20



=== TEST 9: uploads past max_queued of both nodes: each refused one gets its 429 and leaves no piece, and those that fit are stored
--- http_config
    async_task_store @PG@ files=$TEST_NGINX_SERVER_ROOT/html/files node=a
                     thread_pool=async_task max_queued=2;
    async_task_backend speech gpu_speech model=m;
    upstream gpu_speech {
        server 127.0.0.1:19548 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- init
AsyncTaskTest::node2_start(port => $main::B, own_files => 1);
my $A = AsyncTaskTest::port();
my (@ok, @full);
for my $i (1 .. 4) {

    # node b fills the queue; node a's zone holds none of those, so its
    # refusals come from the count in the store, in the batch itself
    my $port = $i <= 2 ? $main::B : $A;
    my ($s, $t) = AsyncTaskTest::node_api($port, 'POST',
                                          'speech/transcribe',
                                          type => 'audio/ogg',
                                          body => main::audio(1000 + $i));
    if ($s == 202) {
        push @ok, $t->{id};
    } else {
        push @full, "$s $t->{error}{code}";
    }
}
Test::More::is(scalar(@ok), 2, 'two uploads fit');
Test::More::is_deeply(\@full, ['429 queue_full', '429 queue_full'],
                      'the others: 429 queue_full');
Test::More::is(AsyncTaskTest::pg_sql('SELECT count(DISTINCT task) FROM files'),
               2, 'the pieces of the two stored');
AsyncTaskTest::node2_stop();
AsyncTaskTest::nodes_no_errors();
--- request
GET /api/v1/tasks
--- error_code: 200
