# Error bodies: valid JSON whatever the client sent (names with quotes,
# backslashes, control bytes, invalid UTF-8, very long ones), and the
# errors nginx raises itself below an API location (access control,
# limits, sizes), each with its own status, code and nginx's headers.

use strict;
use warnings;

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use IO::Socket::INET;

# the error of an answer, decoded strictly (UTF-8 included), or a failure
sub error_of {
    my ($what, $body) = @_;
    my $json = eval { JSON::PP->new->utf8->decode($body) };
    Test::More::ok($json, "$0 $what: the body is JSON")
        or Test::More::diag($@ . ' ' . substr($body, 0, 300));
    return ref $json eq 'HASH' ? $json->{error} // {} : {};
}

sub check {
    my ($what, $method, $path, %opt) = @_;
    my $want = delete $opt{want};
    my ($status, $h, $body) = AsyncTaskTest::http($method, $path, %opt);
    Test::More::is($status, $want->{status}, "$0 $what: status");
    my $e = error_of($what, $body);
    Test::More::is($e->{code}, $want->{code}, "$0 $what: code");
    Test::More::is($e->{field}, $want->{field}, "$0 $what: field")
        if exists $want->{field};
    Test::More::is($h->{'content-type'}, 'application/json',
                   "$0 $what: Content-Type");
    for my $name (keys %{ $want->{headers} // {} }) {
        Test::More::like($h->{lc $name} // '', $want->{headers}{$name},
                         "$0 $what: $name");
    }
    return $e;
}

run_tests();

__DATA__

=== TEST 1: query parameter names with quotes, backslashes, control bytes, invalid UTF-8: the field as sent, escaped
--- init
my @cases = (
    ['a%22b', "a\"b"],
    ['a"b', "a\"b"],
    ['a%5Cb', "a\\b"],
    ['a%01b%0A%7F', "a\x01b\n\x7f"],
    ['a%FFb%C3', "a\x{fffd}b\x{fffd}"],
    ['caf%C3%A9', "caf\x{e9}"],
    ['%ED%A0%80', "\x{fffd}\x{fffd}\x{fffd}"],
);
for my $c (@cases) {
    my ($raw, $name) = @$c;
    for my $path ("/api/v1/tasks?$raw=1", "/api/v1/speech/pcm?$raw=1") {
        my $e = ::check("$path", $path =~ /pcm/ ? 'POST' : 'GET', $path,
                        body => $path =~ /pcm/ ? "\0\0" : '',
                        want => { status => 400, code => 'invalid_argument',
                                  field => $name });
        Test::More::is($e->{message}, "unknown query parameter \"$name\"",
                       "$0 $path: message");
    }
}
--- request
GET /api/v1/tasks?a%22b=1
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"unknown query parameter \"a\"b\"","field":"a\"b"}}
--- no_error_log
[error]
[alert]



=== TEST 2: a very long name is echoed cut to 128 characters, the message to 512
--- init
my $name = 'n' x 5000;
my $e = ::check('long name', 'GET', "/api/v1/tasks?$name=1",
                want => { status => 400, code => 'invalid_argument' });
Test::More::is($e->{field}, ('n' x 128) . '...', "$0 long name: field cut");
Test::More::is(length $e->{message}, 515, "$0 long name: message cut");
Test::More::like($e->{message}, qr/^unknown query parameter "n+\.\.\.$/,
                 "$0 long name: message's start");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]



=== TEST 3: JSON body keys with quotes, backslashes, control characters, invalid UTF-8, a long one
--- init
my @cases = (
    ['{"prompt":"x","a\"b":1}', "a\"b"],
    ['{"prompt":"x","a\\\\b":1}', "a\\b"],
    ['{"prompt":"x","a\u0001\nb":1}', "a\x01\nb"],
    [qq({"prompt":"x","a\xffb\xc3":1}), "a\x{fffd}b\x{fffd}"],
    ['{"prompt":"x","' . ('k' x 3000) . '":1}', ('k' x 128) . '...'],
);
for my $i (0 .. $#cases) {
    my ($body, $name) = @{ $cases[$i] };
    ::check("body key $i", 'POST', '/api/v1/image/async',
            body => $body, headers => { 'Content-Type' => 'application/json' },
            want => { status => 400, code => 'invalid_argument',
                      field => $name });
}
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]



=== TEST 4: auth_basic: 401 unauthorized with nginx's WWW-Authenticate; the right password passes
--- user_files
>>> htpasswd
alice:{PLAIN}secret
--- config
    location /api/v1/ {
        async_task_api;
        auth_basic "tasks";
        auth_basic_user_file ../html/htpasswd;
    }
--- init
::check('no credentials', 'GET', '/api/v1/system/stats',
        want => { status => 401, code => 'unauthorized',
                  headers => { 'WWW-Authenticate' => qr/^Basic realm="tasks"$/ } });
::check('wrong password', 'POST', '/api/v1/image/async',
        headers => { Authorization => 'Basic YWxpY2U6d3Jvbmc=' },
        want => { status => 401, code => 'unauthorized',
                  headers => { 'WWW-Authenticate' => qr/^Basic/ } });
--- request
GET /api/v1/system/stats
--- more_headers
Authorization: Basic YWxpY2U6c2VjcmV0
--- error_code: 200
--- no_error_log
[alert]



=== TEST 5: auth_request: its 401 and 403
--- config
    location /api/v1/ {
        async_task_api;
        auth_request /auth;
    }

    location = /auth {
        internal;
        if ($http_x_token = "") {
            return 401;
        }
        if ($http_x_token = "bad") {
            return 403;
        }
        return 204;
    }
--- init
::check('auth_request 401', 'GET', '/api/v1/tasks',
        want => { status => 401, code => 'unauthorized' });
::check('auth_request 403', 'GET', '/api/v1/tasks',
        headers => { 'X-Token' => 'bad' },
        want => { status => 403, code => 'forbidden' });
--- request
GET /api/v1/system/stats
--- more_headers
X-Token: good
--- error_code: 200
--- no_error_log
[alert]



=== TEST 6: deny: 403 forbidden, for every endpoint and method
--- config
    location /api/v1/ {
        async_task_api;
        deny all;
    }
--- init
for my $r (['GET', '/api/v1/system/stats'], ['POST', '/api/v1/image/async'],
           ['DELETE', '/api/v1/tasks/01900000-0000-7000-8000-000000000001']) {
    ::check("deny $r->[0] $r->[1]", @$r,
            want => { status => 403, code => 'forbidden' });
}
--- request
GET /api/v1/tasks
--- error_code: 403
--- response_body chomp
{"error":{"code":"forbidden","message":"access is forbidden"}}
--- error_log
access forbidden by rule



=== TEST 7: limit_req: 429 rate_limited with limit_req_status 429, 503 unavailable by default
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=test-image;

    upstream gpu_image {
        server 127.0.0.1:9 down;
    }

    limit_req_zone $binary_remote_addr zone=one:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=two:1m rate=1r/m;
--- config
    location /api/v1/ {
        async_task_api;
        limit_req zone=one;
        limit_req_status 429;
    }

    location /api/v2/ {
        async_task_api;
        limit_req zone=two;
    }
--- init
for my $v (1, 2) {
    my ($status) = AsyncTaskTest::http('GET', "/api/v$v/system/stats");
    Test::More::is($status, 200, "$0 v$v: the first request passes");
}
::check('limit_req 429', 'GET', '/api/v1/system/stats',
        want => { status => 429, code => 'rate_limited' });
::check('limit_req 503', 'GET', '/api/v2/system/stats',
        want => { status => 503, code => 'unavailable' });
--- request
GET /api/v1/tasks
--- error_code: 429
--- response_body chomp
{"error":{"code":"rate_limited","message":"too many requests, try again later"}}
--- no_error_log
[alert]



=== TEST 8: limit_conn: a second request while one is in progress is 503 unavailable
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1000;
    async_task_backend speech gpu_speech model=test-speech;

    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }

    limit_conn_zone $binary_remote_addr zone=conns:1m;
--- config
    location /api/v1/ {
        async_task_api;
        limit_conn conns 1;
    }
--- init
my $held = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => AsyncTaskTest::port())
    or die "connect: $!";
print $held "POST /api/v1/speech/pcm HTTP/1.0\r\nHost: x\r\n"
            . "Content-Type: application/octet-stream\r\n"
            . "Content-Length: 100\r\n\r\n\0\0";
Time::HiRes::sleep(0.3);
::check('limit_conn', 'GET', '/api/v1/system/stats',
        want => { status => 503, code => 'unavailable' });
close $held;
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[alert]



=== TEST 9: client_max_body_size: 413 payload_too_large
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 10;
    }
--- request
POST /api/v1/image/async
{"prompt":"a red fox in the snow"}
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}
--- no_error_log
[alert]



=== TEST 10: large_client_header_buffers: a long URI is 414 uri_too_long, a long header 400 request_header_too_large
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=test-image;

    upstream gpu_image {
        server 127.0.0.1:9 down;
    }

    large_client_header_buffers 2 1k;
--- config
    location /api/v1/ {
        async_task_api;
    }

    location /other/ {
        return 200;
    }
--- init
::check('long URI', 'GET', '/api/v1/tasks?id=' . ('x' x 2000),
        want => { status => 414, code => 'uri_too_long' });
::check('long header', 'GET', '/api/v1/tasks',
        headers => { 'X-Long' => 'y' x 2000 },
        want => { status => 400, code => 'request_header_too_large' });
my ($status, $h, $body) = AsyncTaskTest::http('GET', '/other/?' . ('x' x 2000));
Test::More::is($status, 414, "$0 elsewhere: 414");
Test::More::like($body, qr/<html>/, "$0 elsewhere: nginx's own page");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[alert]



=== TEST 11: multipart part names with quotes, backslashes, invalid UTF-8: the field as sent, escaped
--- init
my @cases = (['a\\"b', "a\"b"], ["a\xffb", "a\x{fffd}b"], ['a\\\\b', "a\\b"],
             ['p' x 300, ('p' x 128) . '...']);
for my $i (0 .. $#cases) {
    my ($raw, $name) = @{ $cases[$i] };
    my $body = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
               . "filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n"
               . "--XyZ\r\nContent-Disposition: form-data; name=\"$raw\"\r\n\r\n"
               . "1\r\n--XyZ--\r\n";
    my $e = ::check("part $i", 'POST', '/api/v1/speech/transcribe', body => $body,
                    headers => { 'Content-Type' => 'multipart/form-data; boundary=XyZ' },
                    want => { status => 400, code => 'invalid_argument',
                              field => $name });
}
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
