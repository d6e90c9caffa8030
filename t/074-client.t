# The HTTP client against answers real servers send and hostile ones:
# chunked answers on kept connections, an early answer while the request
# is still being sent, interim 1xx answers, header lines that end in a bare
# LF, and answers or header blocks over the caps.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19740-19759.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();
use Time::HiRes ();
use File::Path ();

master_on();
workers(1);

run_tests();

# a QUEUED speech task whose input is $bytes bytes, straight into the store
sub seed_speech {
    my ($n, $bytes, %params) = @_;

    my $dir = store_dir() . '/files';
    File::Path::make_path($dir);
    open my $fh, '>:raw', "$dir/" . tid($n) . '.in' or die $!;
    my $block = join '', map { chr(($_ * 7) % 256) } 0 .. 65535;
    for (my $left = $bytes; $left > 0; $left -= length $block) {
        print $fh substr($block, 0, $left < length $block ? $left : length $block);
    }
    close $fh or die $!;

    AsyncTaskTest::seed(store_dir() . '/tasks.db', {
        id => tid($n), kind => 'speech', status => 'QUEUED', priority => 5,
        params => JSON::PP->new->canonical->encode({filename => 'a.pcm',
                      content_type => 'audio/pcm', bytes => $bytes, %params}),
        file => tid($n) . '.in',
        created_at => int(Time::HiRes::time() * 1000),
    });
}

# an image task through the API, waited for
sub image {
    my ($prompt) = @_;
    my $id = AsyncTaskTest::submit($prompt);
    Test::More::ok(defined $id, "\"$prompt\" accepted");
    return AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 20);
}

sub png_ok {
    my ($t, $port, $prompt) = @_;
    Test::More::is($t->{status}, 'DONE', "$prompt: DONE");
    my (undef, undef, $png) = AsyncTaskTest::http('GET',
                                              "/api/v1/tasks/$t->{id}/result");
    (my $q = $prompt) =~ s/ /%20/g;
    Test::More::ok($png eq AsyncTaskTest::fake($port, 'GET',
                                   "/control/expected-png?prompt=$q&seed=1"),
                   "$prompt: the PNG whole");
}

sub failed_ok {
    my ($t, $what, $attempts, $code, $message) = @_;
    Test::More::is($t->{status}, 'FAILED', "$what: FAILED");
    Test::More::is($t->{attempts}, $attempts, "$what: attempts");
    Test::More::is($t->{error}{code}, $code, "$what: code");
    Test::More::is($t->{error}{message}, $message, "$what: message");
}

__DATA__

=== TEST 1: a chunked answer leaves its connection kept for the next run
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m keepalive=2;
    upstream gpu { server 127.0.0.1:19740; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19740, kind => 'image',
                        mode => 'chunked_keepalive');
--- init
main::png_ok(main::image('chunked one'), 19740, 'chunked one');
main::png_ok(main::image('chunked two'), 19740, 'chunked two');
main::png_ok(main::image('chunked three'), 19740, 'chunked three');
my @r = @{ AsyncTaskTest::fake_stats(19740)->{last_requests} };
Test::More::is(scalar @r, 3, 'three requests');
Test::More::is(join(' ', map { $_->{fault} } @r),
               'chunked_keepalive chunked_keepalive chunked_keepalive',
               'each answered in chunks');
Test::More::is(scalar(keys %{{ map { $_->{peer_port} => 1 } @r }}), 1,
               'all on one connection');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3,
--- error_log
async task client: connect to gpu/127.0.0.1:19740
async task client: request sent to gpu/127.0.0.1:19740
async task client: status 200 from gpu/127.0.0.1:19740
async task client: headers done, length:-1 chunked:1 close:0
async task client: keep connection
async task client: reusing kept connection
--- no_error_log
[error]
[alert]


=== TEST 2: an answer sent before the request is whole counts: 413, then a reset
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech gpu model=m retries=2 backoff=50ms;
    upstream gpu { server 127.0.0.1:19741; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_speech(1, 24 * 1024 * 1024);
AsyncTaskTest::fake_gpu(port => 19741, kind => 'speech', mode => 'early_error');
--- init
my $t = AsyncTaskTest::wait_task(main::tid(1), ['DONE', 'FAILED'],
                                 timeout => 20);
main::failed_ok($t, 'early 413', 1, 'backend_rejected',
    'the instance answered 413: fake-gpu: request body too large');
my @r = @{ AsyncTaskTest::fake_stats(19741)->{last_requests} };
Test::More::is(scalar @r, 1, 'one request, not retried');
Test::More::is($r[0]{status}, 413, 'the fake answered 413');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]
[crit]


=== TEST 3: interim answers (100 Continue, 103 Early Hints) come before the real one
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m retries=0;
    upstream gpu { server 127.0.0.1:19742; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19742, kind => 'image', mode => 'interim');
--- init
main::png_ok(main::image('after interim'), 19742, 'after interim');
Test::More::is(AsyncTaskTest::fake_stats(19742)->{last_requests}[0]{fault},
               'interim', '100 and 103 were sent first');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]


=== TEST 4: header lines that end in a bare LF, all of them or Content-Length's only
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m retries=0;
    upstream gpu { server 127.0.0.1:19743; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19743, kind => 'image');
--- init
for my $mode ('bare_lf', 'bare_lf_length') {
    AsyncTaskTest::fake_control(19743, mode => $mode, times => 1);
    (my $prompt = $mode) =~ s/_/ /g;
    main::png_ok(main::image($prompt), 19743, $prompt);
    Test::More::is(AsyncTaskTest::fake_stats(19743)->{last_requests}[-1]{fault},
                   $mode, "$mode was sent");
}
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":2,
--- no_error_log
[error]
[alert]


=== TEST 5: an answer over the image cap (Content-Length): bad_response, charged
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m retries=1 backoff=50ms;
    upstream gpu { server 127.0.0.1:19744; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19744, kind => 'image', mode => 'huge_body');
--- init
AsyncTaskTest::fake_control(19744, huge_size => 40 * 1024 * 1024);
main::failed_ok(main::image('huge'), 'huge body', 2, 'bad_response',
    'the answer is larger than the limit of 25165824 bytes');
Test::More::is(AsyncTaskTest::fake_stats(19744)->{requests}, 2,
               'one request per attempt');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- error_log
gpu/127.0.0.1:19744 sent an answer larger than 25165824 bytes
--- no_error_log
[alert]
[crit]


=== TEST 6: an endless chunked answer ends at the cap, image and speech alike
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m retries=0;
    async_task_backend speech gpu model=m retries=0;
    upstream gpu { server 127.0.0.1:19745; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_speech(2, 1000);
AsyncTaskTest::fake_gpu(port => 19745, mode => 'endless_chunked');
--- init
main::failed_ok(AsyncTaskTest::wait_task(main::tid(2), ['DONE', 'FAILED'],
                                         timeout => 20),
    'endless speech', 1, 'bad_response',
    'the answer is larger than the limit of 8388608 bytes');
main::failed_ok(main::image('endless'), 'endless image', 1, 'bad_response',
    'the answer is larger than the limit of 25165824 bytes');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":2,
--- error_log
gpu/127.0.0.1:19745 sent an answer larger than 8388608 bytes
gpu/127.0.0.1:19745 sent an answer larger than 25165824 bytes
--- no_error_log
[alert]
[crit]


=== TEST 7: a header block over its cap: bad_response
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu model=m retries=0;
    upstream gpu { server 127.0.0.1:19746; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19746, kind => 'image', mode => 'huge_headers');
--- init
main::failed_ok(main::image('huge headers'), 'huge headers', 1,
    'bad_response', 'the answer\'s header block is larger than 32768 bytes');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- error_log
gpu/127.0.0.1:19746 sent a header block larger than 32768 bytes
--- no_error_log
[alert]
[crit]
