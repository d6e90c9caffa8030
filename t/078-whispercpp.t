# protocol=whispercpp: speech tasks as whisper.cpp's server takes them,
# POST /inference in multipart/form-data; its verbose_json becomes the
# same result object as OpenAI's; its errors are mapped as the other
# protocols map them; its health probe is GET /health.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19780-19789.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use Digest::SHA ();

master_on();
workers(2);

run_tests();

# one second of 16 kHz mono PCM, as speech/pcm takes it
sub pcm { join '', map { pack 's<', ($_ * 37) % 30000 } 1 .. 16000 }

sub submit_pcm {
    my ($query) = @_;
    my ($s, $t) = AsyncTaskTest::api('POST', "speech/pcm?$query",
        headers => {'Content-Type' => 'application/octet-stream'},
        body => pcm());
    Test::More::is($s, 202, "speech/pcm?$query accepted");
    return $t->{id};
}

# the same second as a WAV file, as speech/transcribe takes one
sub wav {
    my $pcm = pcm();
    return 'RIFF' . pack('V', 36 + length $pcm) . 'WAVEfmt '
           . pack('VvvVVvv', 16, 1, 1, 16000, 32000, 2, 16)
           . 'data' . pack('V', length $pcm) . $pcm;
}

# a speech task that ends FAILED: its error
sub failed {
    my ($port, %c) = @_;
    my $id = submit_pcm('language=en');
    my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
    Test::More::is($t->{status}, 'FAILED', "$c{what}: FAILED");
    Test::More::is($t->{attempts}, $c{attempts}, "$c{what}: attempts");
    Test::More::is_deeply($t->{error}, {code => $c{code},
                                        message => $c{message}},
                          "$c{what}: the error");
    my $r = AsyncTaskTest::fake_stats($port)->{last_requests}[-1];
    Test::More::is($r->{path}, '/inference', "$c{what}: /inference");
    return $t;
}

__DATA__

=== TEST 1: POST /inference with whisper.cpp's parts; its verbose_json is mapped to OpenAI's result object
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=whispercpp model=ggml-base;
    upstream whisper { server 127.0.0.1:19780; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19780, kind => 'speech');
--- init
my ($s, $t) = AsyncTaskTest::api('POST',
    'speech/transcribe?language=de&prompt=Gr%C3%BC%C3%9Fe',
    headers => {'Content-Type' => 'audio/wav'}, body => main::wav());
Test::More::is($s, 202, 'accepted');
my $id = $t->{id};
my $done = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'DONE');
Test::More::is($done->{attempts}, 1, 'one attempt');

my $r = AsyncTaskTest::fake_stats(19780)->{last_requests}[-1];
Test::More::is($r->{method}, 'POST', 'POST');
Test::More::is($r->{path}, '/inference', 'to /inference');
my ($b) = $r->{headers}{'content-type'}
          =~ /^multipart\/form-data; boundary=(ngx-async-task-[0-9a-f]{32})$/;
Test::More::ok($b, 'multipart, with a boundary of 128 random bits');
Test::More::is_deeply([map { $_->{headers}[0] } @{ $r->{parts} }],
    ['Content-Disposition: form-data; name="response_format"',
     'Content-Disposition: form-data; name="language"',
     'Content-Disposition: form-data; name="prompt"',
     'Content-Disposition: form-data; name="file"; filename="audio"'],
    'the parts, in order: no model (whisper.cpp serves its own)');
Test::More::is_deeply($r->{fields}, {response_format => 'verbose_json',
    language => 'de', prompt => "Gr\x{fc}\x{df}e"}, 'their values');
Test::More::is($r->{file_content_type}, 'audio/wav', 'the file is the WAV');

my $wav = 44 + length main::pcm();
Test::More::is($r->{file_bytes}, $wav, 'sent whole');

my $text = AsyncTaskTest::fake(19780, 'GET',
    "/control/expected-transcript?sha256=$r->{file_sha256}&bytes=$wav")->{text};
Test::More::is_deeply($done->{result}, {
    text => $text, language => 'german', duration => 1,
    segments => [{id => 0, text => $text, start => 0, end => 1,
                  tokens => [50364, 1025], temperature => 0,
                  avg_logprob => -0.1, no_speech_prob => 0}]},
    "text, language, duration and OpenAI's segment fields: no words, "
    . 'no task, no detected_language');

my ($rs, $rh, $body) = AsyncTaskTest::http('GET',
                                           "/api/v1/tasks/$id/result");
Test::More::is($rs, 200, 'result 200');
Test::More::is_deeply(JSON::PP::decode_json($body), $done->{result},
                      'the result endpoint: the same object');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 2: the same audio through protocol=openai gets the same object from the same server's fields
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=openai;
    upstream whisper { server 127.0.0.1:19781; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19781, kind => 'speech');
--- init
my $id = main::submit_pcm('language=en');
my $done = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'DONE');
Test::More::is_deeply([sort keys %{ $done->{result} }],
    [qw(duration language segments text)], 'the same keys');
my $r = AsyncTaskTest::fake_stats(19781)->{last_requests}[-1];
Test::More::is($r->{path}, '/v1/audio/transcriptions', 'OpenAI path');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 3: a 4xx (whisper.cpp's {"error": "..."}) fails at once with backend_rejected
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=whispercpp retries=2;
    upstream whisper { server 127.0.0.1:19782; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19782, kind => 'speech', mode => 'error400');
--- init
main::failed(19782, what => 'rejected', attempts => 1,
    code => 'backend_rejected',
    message => 'the instance answered 400: fake-gpu: injected rejection');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 4: a 5xx is retried, then FAILED backend_error
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=whispercpp retries=1 backoff=50ms;
    upstream whisper { server 127.0.0.1:19783; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19783, kind => 'speech', mode => 'error500');
--- init
main::failed(19783, what => 'broken', attempts => 2,
    code => 'backend_error',
    message => 'the instance answered 500: fake-gpu: injected failure');
Test::More::is(AsyncTaskTest::fake_stats(19783)->{requests}, 2, 'two tries');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[alert]



=== TEST 5: garbage, or JSON without "text", is a bad_response
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=whispercpp retries=0;
    upstream whisper { server 127.0.0.1:19784; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19784, kind => 'speech', mode => 'malformed');
--- init
main::failed(19784, what => 'garbage', attempts => 1,
    code => 'bad_response',
    message => q{the instance's answer is not the expected JSON (status 200)});
AsyncTaskTest::fake_control(19784, mode => 'empty');
main::failed(19784, what => 'no text', attempts => 1,
    code => 'bad_response', message => 'the answer has no "text"');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":2,
--- no_error_log
[alert]



=== TEST 6: without uri=, the health check probes GET /health; whisper.cpp's 503 while loading takes the instance out
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech whisper protocol=whispercpp;
    upstream whisper {
        server 127.0.0.1:19785;
        async_task_health_check interval=100ms timeout=1s fails=1 passes=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19785, kind => 'speech', health => 'down');
--- init
my $healthy = 1;
for (1 .. 100) {
    $healthy = AsyncTaskTest::backend_stats('127.0.0.1:19785')->{healthy};
    last unless $healthy;
    Time::HiRes::sleep(0.05);
}
Test::More::ok(!$healthy, 'loading model (503): down');
my $id = main::submit_pcm('language=en');
Time::HiRes::sleep(0.3);
Test::More::is(AsyncTaskTest::task($id)->{status}, 'QUEUED', 'the task waits');

AsyncTaskTest::fake_control(19785, health => 'up');
my $done = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'it runs once the model is loaded');

my $log = AsyncTaskTest::servroot() . '/html/fake-19785.log';
open my $fh, '<', $log or die $!;
my @probes = grep { m{ GET /health } } <$fh>;
Test::More::cmp_ok(scalar @probes, '>=', 2, 'the probes go to /health');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- error_log
async_task: instance whisper/127.0.0.1:19785 is up again
--- no_error_log
[error]
[alert]



=== TEST 7: whispercpp is a speech protocol
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend image gpu protocol=whispercpp;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
"protocol=whispercpp" is only for speech backends
