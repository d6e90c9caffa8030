# Credentials and headers on every request to the instances: api_key=
# (given, from the environment, from a file) as "Authorization: Bearer",
# header= lines, host= for the Host header, as the fake GPU received them;
# an instance that refuses the key fails the task as backend_rejected with
# no retry; health probes carry the key too; no key appears in the error
# log (at debug level), the stats or a task.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

$ENV{ASYNC_TASK_TEST_KEY} = 'k-env-4a5b6c';

master_on();
workers(1);

run_tests();


# --- helpers for the init code (package main) ---

sub run_task {
    my $id = AsyncTaskTest::submit(shift);
    return AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
}

# the stats and the task, as clients read them
sub client_views {
    my $id = shift;
    my (undef, undef, $stats) = AsyncTaskTest::http('GET',
                                                    '/api/v1/system/stats');
    my (undef, undef, $task) = AsyncTaskTest::http('GET', "/api/v1/tasks/$id");
    return $stats . $task;
}

__DATA__

=== TEST 1: api_key=, header= and host= reach the instance as given; the key is in no log, stats or task
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=k-literal-1a2b3c
                       "header=X-Org: research team" header=X-Trace:on
                       host=gpu.internal:8000;
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19861, kind => 'image',
                        api_key => 'k-literal-1a2b3c');
--- init
my $t = main::run_task('with a key');
Test::More::is($t->{status}, 'DONE', 'done');
my $h = AsyncTaskTest::fake_stats(19861)->{last_requests}[0]{headers};
Test::More::is($h->{authorization}, 'Bearer k-literal-1a2b3c', 'the key');
Test::More::is($h->{'x-org'}, 'research team', 'a header with a blank');
Test::More::is($h->{'x-trace'}, 'on', 'a header without');
Test::More::is($h->{host}, 'gpu.internal:8000', 'host= is the Host');
Test::More::unlike(main::client_views($t->{id}), qr/k-literal/,
                   'the key is not in the stats or the task');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
k-literal-1a2b3c



=== TEST 2: api_key=$NAME takes the key from the environment of nginx
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=$ASYNC_TASK_TEST_KEY;
    upstream gpu {
        server 127.0.0.1:19862;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19862, kind => 'image',
                        api_key => 'k-env-4a5b6c');
--- init
my $t = main::run_task('key from the environment');
Test::More::is($t->{status}, 'DONE', 'done');
my $h = AsyncTaskTest::fake_stats(19862)->{last_requests}[0]{headers};
Test::More::is($h->{authorization}, 'Bearer k-env-4a5b6c', 'the key');
Test::More::is($h->{host}, '127.0.0.1:19862', 'the Host is the address');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
k-env-4a5b6c



=== TEST 3: api_key=file:PATH takes the key from a file, its line end dropped
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech gpu
        api_key=file:$TEST_NGINX_SERVER_ROOT/html/gpu.key;
    upstream gpu {
        server 127.0.0.1:19863;
    }
--- post_setup_server_root
my $file = AsyncTaskTest::servroot() . '/html/gpu.key';
open my $fh, '>', $file or die "$file: $!";
print $fh "k-file-7d8e9f\n";
close $fh;
chmod 0600, $file;
AsyncTaskTest::fake_gpu(port => 19863, kind => 'speech',
                        api_key => 'k-file-7d8e9f');
--- init
my ($s, $task) = AsyncTaskTest::api('POST',
    'speech/pcm?sample_rate=16000&channels=1',
    headers => {'Content-Type' => 'application/octet-stream'},
    body => "\x01\x80" . ("\x10\x20" x 800) . "\xff\x7f");
Test::More::is($s, 202, 'accepted');
my $t = AsyncTaskTest::wait_task($task->{id}, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'done');
my $h = AsyncTaskTest::fake_stats(19863)->{last_requests}[0]{headers};
Test::More::is($h->{authorization}, 'Bearer k-file-7d8e9f',
               'the key, on a speech request too');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
k-file-7d8e9f



=== TEST 4: a key the instance refuses: 401, the task fails as backend_rejected at once, no retry is charged, the key is not shown
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu retries=3 backoff=10ms api_key=k-wrong-0f0f0f;
    upstream gpu {
        server 127.0.0.1:19864;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19864, kind => 'image',
                        api_key => 'k-right-1e1e1e');
--- init
my $t = main::run_task('refused');
Test::More::is($t->{status}, 'FAILED', 'failed');
Test::More::is($t->{error}{code}, 'backend_rejected', 'backend_rejected');
Test::More::is($t->{error}{message},
               'the instance answered 401: fake-gpu: invalid API key',
               'the instance\'s words');
Test::More::is($t->{attempts}, 1, 'one attempt, no retry');
Time::HiRes::sleep(0.3);
Test::More::is(AsyncTaskTest::fake_stats(19864)->{unauthorized}, 1,
               'one request reached the instance');
Test::More::unlike(main::client_views($t->{id}), qr/k-wrong/,
                   'the key is not in the stats or the task');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1
--- no_error_log
[error]
[alert]
k-wrong-0f0f0f



=== TEST 5: health probes carry the key: with it the instance is up, without it down
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=k-probe-2c2c2c;
    async_task_backend speech nokey;
    upstream gpu {
        server 127.0.0.1:19865;
        async_task_health_check interval=100ms timeout=1s fails=1
                                uri=/v1/models;
    }
    upstream nokey {
        server 127.0.0.1:19866;
        async_task_health_check interval=100ms timeout=1s fails=1
                                uri=/v1/models;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19865, kind => 'image',
                        api_key => 'k-probe-2c2c2c');
AsyncTaskTest::fake_gpu(port => 19866, kind => 'speech',
                        api_key => 'k-probe-2c2c2c');
--- init
Time::HiRes::sleep(1);
my %healthy = map { $_->{server} => ($_->{healthy} ? 1 : 0) }
              @{ AsyncTaskTest::stats()->{backends} };
Test::More::is($healthy{'127.0.0.1:19865'}, 1, 'with the key: up');
Test::More::is($healthy{'127.0.0.1:19866'}, 0, 'without: down');
Test::More::is(AsyncTaskTest::fake_stats(19865)->{unauthorized}, 0,
               'no probe was refused');
Test::More::cmp_ok(AsyncTaskTest::fake_stats(19866)->{unauthorized}, '>=', 1,
                   'the probes without the key were');
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true
--- error_log
instance nokey/127.0.0.1:19866 is down
--- no_error_log
[error]
[alert]
instance gpu/127.0.0.1:19865 is down
k-probe-2c2c2c



=== TEST 6: a header the module writes itself is refused, Host with a hint
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu header=Host:example.org;
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
header "Host" is set by the module: use host=




=== TEST 7: a header with a bad name is refused without showing its value
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu "header=X(Bad): s3cr3t-value";
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
invalid header name "X(Bad)"
--- no_error_log
s3cr3t-value



=== TEST 8: an unset environment variable stops nginx, by name
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=$ASYNC_TASK_NO_SUCH_KEY;
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
api_key: the environment variable "ASYNC_TASK_NO_SUCH_KEY" is not set



=== TEST 9: a key with a blank is refused, and not shown
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu "api_key=s3cr3t key";
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
invalid api_key: it may hold visible ASCII characters only
--- no_error_log
s3cr3t



=== TEST 10: a key file that cannot be opened stops nginx
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=file:/nonexistent/gpu.key;
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
api_key: open() "/nonexistent/gpu.key" failed



=== TEST 11: api_key and an Authorization header together are refused
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu api_key=k1 "header=Authorization: Basic eA==";
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
header "Authorization" and "api_key" are both given



=== TEST 12: a second User-Agent would be a duplicate header: refused
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu "header=user-agent: mine/1.0";
    upstream gpu {
        server 127.0.0.1:19861;
    }
--- must_die
--- error_log
header "user-agent" is set by the module
