# Uploads under stress: clients that trickle or stall hold no queue slot,
# so they cannot lock others out; an upload whose task is not stored
# leaves no file (store failure, full queue, client gone, body too
# large); the input file is readable by the worker user only.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use UploadTest;

use Time::HiRes ();

our $Head = "POST /api/v1/speech/transcribe HTTP/1.1\r\nHost: localhost\r\n"
            . "Content-Type: audio/ogg\r\nConnection: close\r\n";

run_tests();

__DATA__

=== TEST 1: uploads that stall hold no queue slot: with max_queued=2, two stalled uploads leave room for others
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=2;
    async_task_backend speech gpu_speech model=test-speech;
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- init
my $files = main::files_dir($block);
my $body = main::audio(1000);

# two clients send half of their bodies, then stall
my @stalled = map {
    main::open_raw("$::Head" . "Content-Length: 1000\r\n\r\n"
                   . substr($body, 0, 500))
} 1 .. 2;
Time::HiRes::sleep(0.3);

# a third client is served at once
my ($s1, $t1) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => 'audio/ogg'}, body => $body);
Test::More::is($s1, 202, 'a third client gets 202 while two uploads stall');

# the first stalled upload completes: the last free slot is its
my ($s2, undef, $b2) = main::finish_raw($stalled[0], substr($body, 500));
Test::More::is($s2, 202, 'a stalled upload that completes gets 202');
Test::More::like($b2, qr/"bytes":1000/, 'with all of its body');

# the queue is full now: the second one is refused once its body is in
my ($s3, $h3, $b3) = main::finish_raw($stalled[1], substr($body, 500));
Test::More::is($s3, 429, 'a stalled upload that completes into a full queue: 429');
Test::More::like($h3, qr/^Retry-After: 5\r?$/m, 'with Retry-After');
Test::More::is($b3, '{"error":{"code":"queue_full","message":"the queue is full, try again later"}}',
               'and the JSON error');

my @entries = main::entries($files);
Test::More::is(scalar @entries, 2, 'two input files, those of the two tasks')
    or Test::More::diag("@entries");
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":2,"RUNNING":0,
--- no_error_log
[error]
[alert]



=== TEST 2: a stalled upload that times out or is abandoned leaves no file, no task, and no slot taken
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1;
    async_task_backend speech gpu_speech model=test-speech;
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- config
    location /api/v1/ {
        async_task_api;
        client_body_timeout 300ms;
    }
--- init
my $files = main::files_dir($block);

# one stalls past client_body_timeout, one goes away mid-body
my $slow = main::open_raw("$::Head" . "Content-Length: 1000\r\n\r\nOggS");
my $gone = main::open_raw("$::Head" . "Content-Length: 1000\r\n\r\nOggS");
Time::HiRes::sleep(0.1);
close $gone;

my ($s, $h, $b) = main::finish_raw($slow);
Test::More::ok(!defined $s, 'a stalled upload times out: nginx closes it (408)');

Test::More::is_deeply([main::entries($files)], [], 'the files directory is empty');
--- request eval
"POST /api/v1/speech/transcribe\n" . main::audio(100)
--- more_headers
Content-Type: audio/ogg
--- error_code: 202
--- response_body_like: "status":"QUEUED"
--- no_error_log
[alert]
[crit]



=== TEST 3: an upload whose insert fails (the store is locked) answers 503 and leaves no file
--- http_config
    async_task_store @STORE@/tasks.db lock_timeout=300ms thread_pool=async_task;
    async_task_backend speech gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my $db = AsyncTaskTest::store_db($block);
my $files = main::files_dir($block);
my $ct = "multipart/form-data; boundary=$::B";

# another writer holds the database
open my $lock, '|-', "sqlite3 $db" or die;
$lock->autoflush(1);
print $lock "BEGIN EXCLUSIVE; INSERT INTO tasks (id, kind, status, priority, params, created_at) VALUES ('x', 'speech', 'DONE', 1, '{}', 1);\n";
Time::HiRes::sleep(0.2);

my ($s1, $e1, $h1) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => 'audio/ogg'}, body => main::audio(5000));
my ($s2, $e2) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => $ct},
    body => main::mp($::B, ['file', main::audio(5000)], ['language', 'en']));
my ($s3, $e3) = AsyncTaskTest::api('POST', 'speech/pcm', headers => {},
    body => 'AB' x 3000);

print $lock "ROLLBACK;\n";
close $lock;

Test::More::is("$s1 $s2 $s3", '503 503 503', 'a locked store: 503');
Test::More::is($e1->{error}{code}, 'unavailable', 'unavailable');
Test::More::is($h1->{'retry-after'}, '1', 'with Retry-After');
Test::More::is_deeply([main::entries($files)], [], 'no input file is left');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,
--- error_log
database is locked
--- no_error_log
[alert]
[crit]



=== TEST 4: refused uploads leave no file: full queue, a body over client_max_body_size half-way, a client gone after its body
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1;
    async_task_backend speech gpu_speech model=test-speech;
    upstream gpu_speech { server 127.0.0.1:9 down; }
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 2k;
    }
--- init
my $files = main::files_dir($block);

# a chunked multipart body that grows over the limit
my ($s1) = main::send_raw("POST /api/v1/speech/transcribe HTTP/1.1\r\nHost: localhost\r\n"
    . "Content-Type: multipart/form-data; boundary=$::B\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . "400\r\n" . ("--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" . ('a' x 1024))
      =~ s/^(.{1024}).*/$1/sr . "\r\n"
    . "800\r\n" . ('b' x 2048) . "\r\n0\r\n\r\n");
Test::More::is($s1, 413, 'a multipart body over the limit: 413');

# a client that sends its whole body and goes at once
my $gone = main::open_raw("$::Head" . "Content-Length: 100\r\n\r\n" . main::audio(100));
close $gone;
Time::HiRes::sleep(0.3);

# the queue holds one task now, or none if the client's went: fill it
AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => 'audio/ogg'}, body => main::audio(100));

my ($s2) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => 'audio/ogg'}, body => main::audio(100));
Test::More::is($s2, 429, 'a full queue: 429');

my ($s, $stats) = AsyncTaskTest::api('GET', 'system/stats');
my @entries = main::entries($files);
Test::More::is(scalar @entries, $stats->{tasks}{QUEUED},
               'one input file per task, no other')
    or Test::More::diag("@entries");
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":1,
--- no_error_log
[alert]
[crit]



=== TEST 5: an input file is readable and writable by its owner only
--- init
my $files = main::files_dir($block);
my ($s, $t) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => 'audio/ogg'}, body => main::audio(100));
Test::More::is($s, 202, 'an upload');
my $mode = main::mode("$files/$t->{id}.in");
Test::More::like($mode, qr/^0600 /, 'its input file is 0600');
Test::More::like(main::mode($files), qr/^0700 /, 'the files directory is 0700');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":1,
--- no_error_log
[error]
[alert]
