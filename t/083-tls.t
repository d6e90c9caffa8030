# TLS to the instances (async_task_backend ... tls): the fake GPU serves
# HTTPS with a certificate made by openssl for the block.  Verified with
# the right CA and name a task runs, its session is resumed, its upload is
# sent whole; a wrong CA, a wrong name or a plain HTTP instance fails the
# run as backend_error with a log line that says why; health probes go
# over TLS too.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

use Digest::SHA ();
use JSON::PP ();

master_on();
workers(1);

run_tests();


# --- helpers for the init code (package main) ---

# the fake on PORT over TLS, its control on PORT + 10
sub tls_fake {
    my ($port, %opt) = @_;
    my $dir = AsyncTaskTest::tls_certs();
    AsyncTaskTest::fake_gpu(port => $port, kind => $opt{kind} // 'image',
                            tls_cert => "$dir/server.pem",
                            tls_key => "$dir/server.key",
                            control_port => $port + 10, %opt);
}

# an image task run to its end
sub run_task {
    my $prompt = shift;
    my $id = AsyncTaskTest::submit($prompt);
    return AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
}

sub flag { return $_[0] ? 1 : 0 }

__DATA__

=== TEST 1: the right CA and name: tasks run over TLS, SNI is sent, the second connection resumes the session, the PNG is the fake's
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19831;
    }
--- post_setup_server_root
main::tls_fake(19831);
--- init
my $t1 = main::run_task('over tls one');
Test::More::is($t1->{status}, 'DONE', 'the first task is done');
my $t2 = main::run_task('over tls two');
Test::More::is($t2->{status}, 'DONE', 'the second task is done');

my $reqs = AsyncTaskTest::fake_stats(19841)->{last_requests};
Test::More::is(scalar @$reqs, 2, 'two requests reached the fake');
Test::More::like($reqs->[0]{tls}{version}, qr/^TLSv1\.[23]$/, 'over TLS');
Test::More::is($reqs->[0]{tls}{sni}, 'gpu.test', 'the server name is sent');
Test::More::is(main::flag($reqs->[0]{tls}{session_reused}), 0,
               'a full handshake first');
Test::More::is(main::flag($reqs->[1]{tls}{session_reused}), 1,
               'the next connection resumes the session');
Test::More::isnt($reqs->[0]{peer_port}, $reqs->[1]{peer_port},
                 'two connections (no keepalive=)');

my (undef, undef, $png) = AsyncTaskTest::http('GET',
    "/api/v1/tasks/$t1->{id}/result");
my $want = AsyncTaskTest::fake(19841, 'GET',
    '/control/expected-png?prompt=over%20tls%20one&seed=1');
Test::More::ok(length $png > 8 && $png eq $want, 'the PNG is the fake\'s');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":2
--- no_error_log
[error]
[alert]
[crit]



=== TEST 2: a certificate from another CA: the run fails as backend_error, the log says why, nothing reaches the instance
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu retries=0 tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/other-ca.pem;
    upstream gpu {
        server 127.0.0.1:19832;
    }
--- post_setup_server_root
main::tls_fake(19832);
--- init
my $t = main::run_task('untrusted');
Test::More::is($t->{status}, 'FAILED', 'failed');
Test::More::is($t->{error}{code}, 'backend_error', 'backend_error');
Test::More::like($t->{error}{message}, qr/TLS/, 'the message names TLS');
Test::More::is($t->{attempts}, 1, 'one attempt');
Test::More::is(AsyncTaskTest::fake_stats(19842)->{requests}, 0,
               'no request was sent');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1
--- error_log
the TLS certificate of gpu/127.0.0.1:19832 does not verify: (21:unable to verify the first certificate)
--- no_error_log
[alert]
[crit]



=== TEST 3: the right CA, the wrong name: backend_error, and the name in the log
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu retries=0 tls tls_server_name=other.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19833;
    }
--- post_setup_server_root
main::tls_fake(19833);
--- init
my $t = main::run_task('misnamed');
Test::More::is($t->{status}, 'FAILED', 'failed');
Test::More::is($t->{error}{code}, 'backend_error', 'backend_error');
Test::More::is(AsyncTaskTest::fake_stats(19843)->{requests}, 0,
               'no request was sent');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1
--- error_log
the TLS certificate of gpu/127.0.0.1:19833 does not match "other.test"
--- no_error_log
[alert]
[crit]



=== TEST 4: without tls_server_name the server's address is checked against the certificate, and no SNI is sent for an address
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19834;
    }
--- post_setup_server_root
main::tls_fake(19834);
--- init
my $t = main::run_task('by address');
Test::More::is($t->{status}, 'DONE', 'done');
my $reqs = AsyncTaskTest::fake_stats(19844)->{last_requests};
Test::More::is($reqs->[0]{tls}{sni}, undef, 'no SNI for an address');
Test::More::is($reqs->[0]{headers}{host}, '127.0.0.1:19834',
               'Host is the address');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
[crit]



=== TEST 5: tls_verify=off takes a certificate nothing vouches for
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls tls_verify=off tls_server_name=nope.test;
    upstream gpu {
        server 127.0.0.1:19835;
    }
--- post_setup_server_root
main::tls_fake(19835);
--- init
my $t = main::run_task('unverified');
Test::More::is($t->{status}, 'DONE', 'done');
my $reqs = AsyncTaskTest::fake_stats(19845)->{last_requests};
Test::More::is($reqs->[0]{tls}{sni}, 'nope.test', 'the name is still sent');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
[crit]



=== TEST 6: an instance that speaks plain HTTP: the handshake fails, backend_error
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu retries=0 tls
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19836;
    }
--- post_setup_server_root
AsyncTaskTest::tls_certs();
AsyncTaskTest::fake_gpu(port => 19836, kind => 'image');
--- init
my $t = main::run_task('plain');
Test::More::is($t->{status}, 'FAILED', 'failed');
Test::More::is($t->{error}{code}, 'backend_error', 'backend_error');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1
--- error_log
TLS handshake with gpu/127.0.0.1:19836 failed
--- no_error_log
[alert]
[crit]



=== TEST 7: keepalive= over TLS: the second task goes on the kept connection
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu keepalive=2 tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19837;
    }
--- post_setup_server_root
main::tls_fake(19837);
--- init
Test::More::is(main::run_task("kept $_")->{status}, 'DONE', "task $_ done")
    for 1 .. 3;
my $reqs = AsyncTaskTest::fake_stats(19847)->{last_requests};
Test::More::is(scalar(keys %{{ map { $_->{peer_port} => 1 } @$reqs }}), 1,
               'one connection for the three');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":3
--- no_error_log
[error]
[alert]
[crit]



=== TEST 8: a speech upload over TLS arrives whole (the file goes through memory, in pieces)
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech gpu tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    upstream gpu {
        server 127.0.0.1:19838;
    }
--- post_setup_server_root
main::tls_fake(19838, kind => 'speech');
--- init
my $audio = 'OggS' . join '', map { chr(($_ * 31 + 7) % 256) } 1 .. 300000;
my $b = 'tls-boundary-1';
my $body = "--$b\r\nContent-Disposition: form-data; name=\"file\"; "
           . "filename=\"a.ogg\"\r\nContent-Type: audio/ogg\r\n\r\n"
           . "$audio\r\n--$b--\r\n";
my ($s, $task) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => "multipart/form-data; boundary=$b"},
    body => $body);
Test::More::is($s, 202, 'accepted');
my $t = AsyncTaskTest::wait_task($task->{id}, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'done');
my $rec = AsyncTaskTest::fake_stats(19848)->{last_requests}[0];
Test::More::is($rec->{file_bytes}, length $audio, 'every byte');
Test::More::is($rec->{file_sha256}, Digest::SHA::sha256_hex($audio),
               'the same bytes');
Test::More::is($t->{result}{text},
               "transcript of 300004 bytes " . substr($rec->{file_sha256}, 0, 8),
               'the transcript');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1
--- no_error_log
[error]
[alert]
[crit]



=== TEST 9: health probes go over TLS: verified they pass, against the wrong CA they take the instance out
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/ca.pem;
    async_task_backend speech bad tls tls_server_name=gpu.test
        tls_trusted_certificate=$TEST_NGINX_SERVER_ROOT/html/tls/other-ca.pem;
    upstream gpu {
        server 127.0.0.1:19839;
        async_task_health_check interval=100ms timeout=1s fails=1 uri=/health;
    }
    upstream bad {
        server 127.0.0.1:19840;
        async_task_health_check interval=100ms timeout=1s fails=1 uri=/health;
    }
--- post_setup_server_root
main::tls_fake(19839);
AsyncTaskTest::fake_gpu(port => 19840, kind => 'speech',
    tls_cert => AsyncTaskTest::servroot() . '/html/tls/server.pem',
    tls_key => AsyncTaskTest::servroot() . '/html/tls/server.key',
    control_port => 19850);
--- init
Time::HiRes::sleep(1);
my $log = AsyncTaskTest::servroot() . '/html/fake-19839.log';
open my $fh, '<', $log or die "$log: $!";
my $probes = grep { m{ GET /health 200 } } <$fh>;
Test::More::cmp_ok($probes, '>=', 3, "probes reached the instance ($probes)");
my %healthy = map { $_->{server} => main::flag($_->{healthy}) }
              @{ AsyncTaskTest::stats()->{backends} };
Test::More::is($healthy{'127.0.0.1:19839'}, 1, 'verified: healthy');
Test::More::is($healthy{'127.0.0.1:19840'}, 0, 'unverified: down');
--- request
GET /api/v1/system/stats
--- response_body_like: "healthy":true
--- error_log
instance bad/127.0.0.1:19840 is down
the TLS certificate of bad/127.0.0.1:19840 does not verify
--- no_error_log
[alert]
[crit]
instance gpu/127.0.0.1:19839 is down



=== TEST 10: tls_* parameters need tls
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls_verify=off;
    upstream gpu {
        server 127.0.0.1:19831;
    }
--- must_die
--- error_log
"tls_verify", "tls_trusted_certificate" and "tls_server_name" require "tls"



=== TEST 11: a trusted certificate file that cannot be read stops nginx at start
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls tls_trusted_certificate=/nonexistent/ca.pem;
    upstream gpu {
        server 127.0.0.1:19831;
    }
--- must_die
--- error_log
SSL_CTX_load_verify_locations("/nonexistent/ca.pem") failed



=== TEST 12: tls_verify takes on or off
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu tls tls_verify=maybe;
    upstream gpu {
        server 127.0.0.1:19831;
    }
--- must_die
--- error_log
invalid tls_verify "tls_verify=maybe", expected "on" or "off"
