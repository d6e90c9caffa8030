# protocol=a1111: image tasks as AUTOMATIC1111's txt2img (Forge, SD.Next,
# sd-server's /sdapi): the body the instance gets, the PNG it answers in
# images[0], its errors mapped as the other protocols map them, and its
# health probe.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19770-19779.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();

master_on();
workers(2);

run_tests();

# an image task that ends FAILED: its error, and the one request made
sub failed {
    my ($port, %c) = @_;
    my $id = AsyncTaskTest::submit($c{prompt});
    my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
    Test::More::is($t->{status}, 'FAILED', "$c{prompt}: FAILED");
    Test::More::is($t->{attempts}, $c{attempts}, "$c{prompt}: attempts");
    Test::More::is_deeply($t->{error}, {code => $c{code},
                                        message => $c{message}},
                          "$c{prompt}: the error");
    my $r = AsyncTaskTest::fake_stats($port)->{last_requests}[-1];
    Test::More::is($r->{path}, '/sdapi/v1/txt2img', "$c{prompt}: txt2img");
    return $t;
}

__DATA__

=== TEST 1: a task goes as txt2img's own fields, and its PNG is images[0]
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111 model=sdxl;
    upstream forge { server 127.0.0.1:19770; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19770, kind => 'image');
--- init
my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "a red fox", "negative_prompt": "blurry",'
            . ' "width": 512, "height": 256, "steps": 9, "seed": 7,'
            . ' "cfg_scale": 4.5}');
Test::More::is($s, 202, 'accepted');
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'DONE');
Test::More::is($done->{attempts}, 1, 'one attempt');

my $r = AsyncTaskTest::fake_stats(19770)->{last_requests}[-1];
Test::More::is($r->{method}, 'POST', 'POST');
Test::More::is($r->{path}, '/sdapi/v1/txt2img', 'to txt2img');
Test::More::is($r->{headers}{'content-type'}, 'application/json', 'JSON');
Test::More::is_deeply($r->{json}, {
    prompt => 'a red fox',
    negative_prompt => 'blurry', width => 512, height => 256, steps => 9,
    seed => 7, cfg_scale => 4.5, batch_size => 1},
    'exactly these fields: no model, n, size or response_format');

my ($rs, $rh, $png) = AsyncTaskTest::http('GET',
                                          "/api/v1/tasks/$t->{id}/result");
my $want = AsyncTaskTest::fake(19770, 'GET',
                               '/control/expected-png?prompt=a%20red%20fox&seed=7');
Test::More::is($rs, 200, 'result 200');
Test::More::is($rh->{'content-type'}, 'image/png', 'a PNG');
Test::More::ok(length $png > 8 && $png eq $want, 'the PNG of images[0]');
Test::More::is($done->{result}{bytes}, length $png, 'result bytes');
Test::More::like($done->{result}{url}, qr{/api/v1/tasks/$t->{id}/result$},
                 'result url');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 2: the defaults the task was stored with go as fields; no others
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111;
    upstream forge { server 127.0.0.1:19771; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19771, kind => 'image');
--- init
my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "plain"}');
my $done = AsyncTaskTest::wait_task($t->{id}, ['DONE', 'FAILED']);
Test::More::is($done->{status}, 'DONE', 'DONE');
my $p = $done->{params};
my $r = AsyncTaskTest::fake_stats(19771)->{last_requests}[-1];
Test::More::is_deeply($r->{json}, {prompt => 'plain', width => 1024,
    height => 1024, steps => 20, seed => $p->{seed}, batch_size => 1},
    'prompt, the stored size, steps and seed, batch_size');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 3: a 4xx fails at once with backend_rejected and the server's detail
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111 retries=2 backoff=50ms;
    upstream forge { server 127.0.0.1:19772; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19772, kind => 'image', mode => 'error400');
--- init
main::failed(19772, prompt => 'rejected', attempts => 1,
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
    async_task_backend image forge protocol=a1111 retries=1 backoff=50ms;
    upstream forge { server 127.0.0.1:19773; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19773, kind => 'image', mode => 'error500');
--- init
main::failed(19773, prompt => 'broken', attempts => 2,
    code => 'backend_error',
    message => 'the instance answered 500: fake-gpu: injected failure');
Test::More::is(AsyncTaskTest::fake_stats(19773)->{requests}, 2, 'two tries');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[alert]



=== TEST 5: a 200 that is not txt2img's JSON is a bad_response, retried
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111 retries=1 backoff=50ms;
    upstream forge { server 127.0.0.1:19774; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19774, kind => 'image', mode => 'malformed');
--- init
main::failed(19774, prompt => 'garbage', attempts => 2,
    code => 'bad_response',
    message => q{the instance's answer is not the expected JSON (status 200)});
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[alert]



=== TEST 6: an answer whose images[0] is no PNG is a bad_response
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111 retries=0;
    upstream forge { server 127.0.0.1:19775; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19775, kind => 'image', mode => 'empty');
--- init
main::failed(19775, prompt => 'no image', attempts => 1,
    code => 'bad_response', message => 'the answer has no images[0]');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[alert]



=== TEST 7: without uri=, the health check probes GET /sdapi/v1/options, and a 503 there takes the instance out
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111;
    upstream forge {
        server 127.0.0.1:19776;
        async_task_health_check interval=100ms timeout=1s fails=1 passes=1;
    }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19776, kind => 'image');
--- init
my $log = AsyncTaskTest::servroot() . '/html/fake-19776.log';
my $count = sub {
    my ($re) = @_;
    open my $fh, '<', $log or return 0;
    return scalar grep { $_ =~ $re } <$fh>;
};
Time::HiRes::sleep(0.5);
Test::More::cmp_ok($count->(qr{ GET /sdapi/v1/options 200 }), '>=', 2,
                   'probes go to /sdapi/v1/options');
Test::More::is($count->(qr{ /health }), 0, 'not to /health');

AsyncTaskTest::fake_control(19776, health => 'down');
my $healthy = 1;
for (1 .. 100) {
    $healthy = AsyncTaskTest::backend_stats('127.0.0.1:19776')->{healthy};
    last unless $healthy;
    Time::HiRes::sleep(0.05);
}
Test::More::ok(!$healthy, 'a 503 from /sdapi/v1/options: down');

AsyncTaskTest::fake_control(19776, health => 'up');
for (1 .. 100) {
    $healthy = AsyncTaskTest::backend_stats('127.0.0.1:19776')->{healthy};
    last if $healthy;
    Time::HiRes::sleep(0.05);
}
Test::More::ok($healthy, 'up again');
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true
--- error_log
async_task: instance forge/127.0.0.1:19776 is down
async_task: instance forge/127.0.0.1:19776 is up again
--- no_error_log
[error]
[alert]



=== TEST 8: a message cut at its cap inside a character is stored as valid JSON
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image forge protocol=a1111 retries=0;
    upstream forge { server 127.0.0.1:19777; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19777, kind => 'image', mode => 'error400');
--- init
AsyncTaskTest::fake_control(19777, error_message => "x" . ("\x{e9}" x 150));
main::failed(19777, prompt => 'cut', attempts => 1,
    code => 'backend_rejected',
    message => "the instance answered 400: x" . ("\x{e9}" x 99) . "\x{fffd}");
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 9: a1111 is an image protocol
--- http_config
    async_task_store @STORE@/tasks.db;
    async_task_backend speech gpu protocol=a1111;
    upstream gpu { server 127.0.0.1:9 down; }
--- must_die
--- error_log
"protocol=a1111" is only for image backends
