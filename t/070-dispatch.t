# Dispatch: queued tasks run on fake GPU instances speaking the real
# protocols, and reach DONE with their results.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: an image task runs and its PNG is served; a speech task gets its transcript
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu_image model=qwen-image;
    async_task_backend speech gpu_speech model=whisper-large;
    upstream gpu_image { server 127.0.0.1:19101; }
    upstream gpu_speech { server 127.0.0.1:19102; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19101, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19102, kind => 'speech');
--- init
my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "a red fox", "width": 512, "height": 256, "seed": 7, "steps": 9}');
Test::More::is($s, 202, 'image accepted');
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'image DONE');
Test::More::is($done->{attempts}, 1, 'one attempt');
Test::More::is($done->{backend}, 'gpu_image/127.0.0.1:19101', 'backend');
my ($rs, $rh, $png) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result");
my $expected = AsyncTaskTest::fake(19101, 'GET', '/control/expected-png?prompt=a%20red%20fox&seed=7');
Test::More::is($rs, 200, 'result 200');
Test::More::ok($png eq $expected, 'the PNG of this prompt and seed');
Test::More::is($done->{result}{bytes}, length $png, 'result bytes');
my $stats = AsyncTaskTest::fake(19101, 'GET', '/control/stats');
my $req = $stats->{last_requests}[-1]{json};
Test::More::is_deeply([@$req{qw(model prompt n size response_format seed steps)}],
    ['qwen-image', 'a red fox', 1, '512x256', 'b64_json', 7, 9], 'the request the instance got');

my $pcm = join '', map { pack 's<', $_ } 1 .. 8000;
($s, $t) = AsyncTaskTest::api('POST', 'speech/pcm?sample_rate=8000&language=en',
    headers => {'Content-Type' => 'application/octet-stream'}, body => $pcm);
Test::More::is($s, 202, 'speech accepted');
$done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'speech DONE');
Test::More::like($done->{result}{text}, qr/^transcript of 16044 bytes [0-9a-f]{8}$/, 'transcript');
Test::More::is($done->{result}{language}, 'en', 'language');
Test::More::is($done->{result}{duration}, 1, 'duration from the WAV header');
$stats = AsyncTaskTest::fake(19102, 'GET', '/control/stats');
my $sreq = $stats->{last_requests}[-1];
Test::More::is($sreq->{fields}{model}, 'whisper-large', 'model part');
Test::More::is($sreq->{fields}{language}, 'en', 'language part');
Test::More::is($sreq->{file_bytes}, 16044, 'the WAV file sent whole');
my ($rs2, $rh2, $text) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result");
Test::More::like($text, qr/^\{"text":"transcript of 16044 bytes/, 'speech result endpoint');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":2,
--- no_error_log
[error]
[alert]



=== TEST 2: protocol=sdcpp carries the image options inside the prompt
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu protocol=sdcpp;
    upstream gpu { server 127.0.0.1:19103; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19103, kind => 'image');
--- init
my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "a cat", "negative_prompt": "blurry", "seed": 42, "steps": 12, "cfg_scale": 2.5, "width": 256, "height": 256}');
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'DONE');
my $req = AsyncTaskTest::fake(19103, 'GET', '/control/stats')->{last_requests}[-1];
Test::More::like($req->{json}{prompt}, qr/^a cat <sd_cpp_extra_args>\{.*\}<\/sd_cpp_extra_args>$/, 'options in the prompt');
Test::More::is_deeply($req->{sd_cpp_extra_args},
    {negative_prompt => 'blurry', seed => 42,
     sample_params => {sample_steps => 12, guidance => {txt_cfg => 2.5}}},
    'as sd-server reads them');
Test::More::ok(!exists $req->{json}{seed}, 'not as OpenAI fields');
my (undef, undef, $png) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result");
Test::More::ok($png eq AsyncTaskTest::fake(19103, 'GET', '/control/expected-png?prompt=a%20cat&seed=42'),
               'the PNG of the prompt and the seed sent inside it');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 3: retention deletes finished tasks and their files, and only those
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task retention=2s;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:19104; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19104, kind => 'image');
--- init
my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "short lived"}');
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE']);
my $png = AsyncTaskTest::servroot() . "/html/store/files/$t->{id}.png";
Test::More::ok(-e $png, 'the result file exists');
AsyncTaskTest::fake(19104, 'POST', '/control', {mode => 'hang'});
my (undef, $q) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "still running"}');
my $gone;
for (1 .. 80) {
    my ($status) = AsyncTaskTest::api('GET', "tasks/$t->{id}");
    $gone = $status == 404;
    last if $gone;
    Time::HiRes::sleep(0.1);
}
Test::More::ok($gone, 'the finished task is gone after retention');
Test::More::ok(!-e $png, 'and its file');
my ($status, $live) = AsyncTaskTest::api('GET', "tasks/$q->{id}");
Test::More::is($live->{status}, 'RUNNING', 'a live task stays');
my $s;
for (1 .. 40) {
    (undef, $s) = AsyncTaskTest::api('GET', 'system/stats');
    last if $s->{tasks}{DONE} == 0;
    Time::HiRes::sleep(0.05);
}
Test::More::is($s->{tasks}{DONE}, 0, 'the counts follow');
AsyncTaskTest::api('DELETE', "tasks/$q->{id}");
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":0,
--- no_error_log
[error]
[alert]



=== TEST 4: a lease that expired (its runner gone unseen) is taken back
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:19105 down; }
--- init
my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "lost"}');
my $db = AsyncTaskTest::store_db($block);
AsyncTaskTest::sql($db, "UPDATE tasks SET status = 'RUNNING', lease_owner = 'pid:1', lease_expires = 1 WHERE id = '$t->{id}';");
my $status;
for (1 .. 80) {
    $status = `sqlite3 $db "SELECT status FROM tasks WHERE id = '$t->{id}'"`;
    chomp $status;
    last if $status eq 'QUEUED';
    Time::HiRes::sleep(0.1);
}
Test::More::is($status, 'QUEUED', 'queued again');
my (undef, $task) = AsyncTaskTest::api('GET', "tasks/$t->{id}");
Test::More::is($task->{status}, 'QUEUED', 'and in the zone');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":1,
--- error_log eval
qr/the lease of task [0-9a-f-]{36} expired, it queues again/
--- no_error_log
[error]
[alert]



=== TEST 5: a running task shows its instance in listings and in the answer to its cancel
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:19106; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19106, kind => 'image', mode => 'hang');
--- init
my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "hangs"}');
my $running = AsyncTaskTest::wait_task($t->{id}, ['RUNNING']);
Test::More::is($running->{backend}, 'gpu/127.0.0.1:19106', 'GET shows the instance');
my (undef, $list) = AsyncTaskTest::api('GET', 'tasks?status=RUNNING');
Test::More::is($list->{tasks}[0]{backend}, 'gpu/127.0.0.1:19106', 'so does the list');
my (undef, $canceled) = AsyncTaskTest::api('DELETE', "tasks/$t->{id}");
Test::More::is($canceled->{status}, 'CANCELED', 'canceled');
Test::More::is($canceled->{backend}, 'gpu/127.0.0.1:19106', 'and where it ran');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1\}
--- no_error_log
[error]
[alert]



=== TEST 6: answers in chunks, and answers that end with the connection, are read whole
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    async_task_backend speech gpu;
    upstream gpu { server 127.0.0.1:19107; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19107);
--- init
for my $mode ('chunked', 'until_close') {
    AsyncTaskTest::fake(19107, 'POST', '/control', {mode => $mode});
    my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => qq({"prompt": "$mode", "seed": 5}));
    my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
    Test::More::is($done->{status}, 'DONE', "image, $mode");
    my (undef, undef, $png) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result");
    Test::More::ok($png eq AsyncTaskTest::fake(19107, 'GET',
                                               "/control/expected-png?prompt=$mode&seed=5"),
                   "the PNG whole, $mode");

    my $pcm = pack('s<*', 1 .. 4000);
    (undef, $t) = AsyncTaskTest::api('POST', 'speech/pcm',
        headers => {'Content-Type' => 'application/octet-stream'}, body => $pcm);
    $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
    Test::More::like($done->{result}{text}, qr/^transcript of 8044 bytes/,
                     "transcript, $mode");
}
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":4,
--- no_error_log
[error]
[alert]



=== TEST 7: keepalive= reuses connections to an instance, and a stale one is replaced
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu keepalive=2;
    upstream gpu { server 127.0.0.1:19108 max_conns=2; }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19108, kind => 'image');
--- init
my $run = sub {
    my @ids;
    for my $i (1 .. $_[0]) {
        my (undef, $t) = AsyncTaskTest::api('POST', 'image/async',
            headers => {'Content-Type' => 'application/json'},
            body => qq({"prompt": "ka $_[1] $i", "seed": 1}));
        push @ids, $t->{id};
    }
    return map { AsyncTaskTest::wait_task($_, ['DONE', 'FAILED'])->{status} } @ids;
};
my @s = $run->(10, 'a');
Test::More::is(join(',', @s), join(',', ('DONE') x 10), 'all DONE');
open my $log, '<', AsyncTaskTest::servroot() . '/html/fake-19108.log' or die;
my %peers = map { (split ' ')[1] => 1 } grep { m{/v1/images/generations} } <$log>;
Test::More::cmp_ok(scalar keys %peers, '<=', 4, 'few connections for 10 tasks (' . scalar(keys %peers) . ')');
my $req = AsyncTaskTest::fake(19108, 'GET', '/control/stats')->{last_requests}[-1];
Test::More::is($req->{headers}{connection}, 'keep-alive', 'asked for keep-alive');

# the instance restarts: the kept connections are dead, tasks still run

AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19108, kind => 'image');
@s = $run->(4, 'b');
Test::More::is(join(',', @s), join(',', ('DONE') x 4), 'DONE after the restart');
my (undef, $st) = AsyncTaskTest::api('GET', 'system/stats');
Test::More::is($st->{backends}[0]{failures}, 0, 'no failure charged');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":14,
--- no_error_log
[error]
[alert]
