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
