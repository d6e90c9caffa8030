# Answers that must arrive whole however they are read: a multi-MB
# speech result read slowly over HTTP/1.1 and HTTP/2, the task and the
# listing that carry it; listings that stay small whatever the
# transcripts; the backend of a task that waits for a retry.

use strict;
use warnings;

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();

our $T0 = 1764410000000;

sub store_db { return store_dir() . '/tasks.db' }

# a transcript of about $mb MB in which every piece is different, so that
# a lost, repeated or stale piece cannot go unnoticed
sub transcript {
    my $mb = shift;
    my $text = '';
    my $i = 0;
    $text .= sprintf('word%07d caf\x{e9} "q" \\ ', $i++)
        while length($text) < $mb * 1024 * 1024;
    utf8::encode($text);
    return $text;
}

sub speech_result {
    my ($text, %more) = @_;
    (my $t = $text) =~ s/(["\\])/\\$1/g;
    my $json = '{"text":"' . $t . '","language":"en","duration":12.5';
    $json .= ',"segments":' . $more{segments} if $more{segments};
    return $json . '}';
}

sub done_speech {
    my ($n, $result, %t) = @_;

    return {
        id => tid($n), kind => 'speech', status => 'DONE', priority => 5,
        user => 'alice',
        params => '{"filename":"a.wav","content_type":"audio/wav","bytes":4}',
        created_at => $T0 + $n * 1000, started_at => $T0 + $n * 1000 + 1,
        finished_at => $T0 + $n * 1000 + 2, attempts => 1,
        backend => 'gpu_speech/127.0.0.1:9', result => $result, %t,
    };
}

our $BIG;

sub big_result {
    $BIG //= speech_result(transcript(4));
    return $BIG;
}

run_tests();

__DATA__

=== TEST 1: a 4 MB transcript read slowly over HTTP/1.1 arrives byte-exact, while another is read
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(), ::done_speech(1, ::big_result()),
                    ::done_speech(2, ::speech_result('x' x 5_000_000)));
--- init
my ($status, $h, $body) = AsyncTaskTest::slow_get(
    '/api/v1/tasks/' . ::tid(1) . '/result',
    headers => { 'X-User-Id' => 'alice' },
    meanwhile => sub {
        my ($s, undef, $b) = AsyncTaskTest::http('GET',
            '/api/v1/tasks/' . ::tid(2) . '/result',
            headers => { 'X-User-Id' => 'alice' });
        Test::More::is(length $b, 5_000_000 + 43, "$0 the other result, fast");
    });
Test::More::is($status, 200, "$0 slow result: 200");
Test::More::is($h->{'content-length'}, length ::big_result(),
               "$0 slow result: Content-Length");
Test::More::is(length $body, length ::big_result(), "$0 slow result: length");
Test::More::ok($body eq ::big_result(), "$0 slow result: byte-exact");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
AddressSanitizer



=== TEST 2: the task and a listing that carry it, read slowly, match a fast read
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(), ::done_speech(1, ::big_result()),
    map { ::done_speech($_, ::speech_result('t' x 5000)) } 2 .. 100);
--- init
for my $path ('tasks/' . ::tid(1), 'tasks?limit=100', 'system/stats') {
    my %h = (headers => { 'X-User-Id' => 'alice' });
    my (undef, undef, undef, $fast) = AsyncTaskTest::api('GET', $path, %h);
    my ($status, undef, $slow) =
        AsyncTaskTest::slow_get("/api/v1/$path", %h);
    Test::More::is($status, 200, "$0 slow $path: 200");
    Test::More::ok(length $fast > 300, "$0 $path: a real answer");
    Test::More::ok($slow eq $fast, "$0 slow $path: byte-exact");
}
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
AddressSanitizer



=== TEST 3: the 4 MB transcript read slowly over HTTP/2 arrives byte-exact
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(), ::done_speech(1, ::big_result()));
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
}

server {
    listen 127.0.0.1:1990 http2;

    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- init
my $out = AsyncTaskTest::servroot() . '/html/h2.out';
my $rc = system('curl', '-s', '--http2-prior-knowledge', '--limit-rate', '1M',
                '-H', 'X-User-Id: alice', '-o', $out,
                '-w', '%{http_version} %{http_code}\n',
                'http://127.0.0.1:1990/api/v1/tasks/' . ::tid(1) . '/result');
Test::More::is($rc, 0, "$0 curl over HTTP/2 ran");
open my $fh, '<:raw', $out or die "$out: $!";
my $body = do { local $/; <$fh> };
Test::More::is(length $body, length ::big_result(), "$0 HTTP/2 result: length");
Test::More::ok($body eq ::big_result(), "$0 HTTP/2 result: byte-exact");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
AddressSanitizer



=== TEST 4: a listing carries transcripts cut to 1000 characters, with a url to the full text
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(),
    ::done_speech(1, ::big_result()),
    ::done_speech(2, ::speech_result('short',
                      segments => '[' . join(',', map { qq({"id":$_,"text":"x"}) } 1 .. 100) . ']')),
    ::done_speech(3, '{"text":"tiny","language":"en"}'),
    ::done_speech(4, ::speech_result("\xc3\xa9" x 1500)));
--- init
my ($status, $list) = AsyncTaskTest::api('GET', 'tasks?limit=100',
                                         headers => { 'X-User-Id' => 'alice' });
Test::More::is($status, 200, "$0 list: 200");
my %r = map { substr($_->{id}, -1) => $_->{result} } @{ $list->{tasks} };
my $url = '/api/v1/tasks/' . ::tid(1) . '/result';
Test::More::is(length $r{1}{text}, 1000, "$0 a 4 MB text: 1000 characters");
Test::More::is($r{1}{text}, substr(JSON::PP::decode_json(::big_result())->{text}, 0, 1000),
               "$0 a 4 MB text: its beginning");
Test::More::is_deeply([ @{ $r{1} }{qw(language duration truncated url)} ],
                      ['en', 12.5, JSON::PP::true, $url], "$0 a 4 MB text: the rest");
Test::More::is_deeply($r{2}, { text => 'short', language => 'en', duration => 12.5,
                               truncated => JSON::PP::true,
                               url => '/api/v1/tasks/' . ::tid(2) . '/result' },
                      "$0 segments are left out");
Test::More::is_deeply($r{3}, { text => 'tiny', language => 'en' },
                      "$0 a small result as it is");
Test::More::is($r{4}{text}, "\x{e9}" x 1000, "$0 cut on characters, not bytes");
my (undef, $one) = AsyncTaskTest::api('GET', 'tasks/' . ::tid(1),
                                      headers => { 'X-User-Id' => 'alice' });
Test::More::ok(length $one->{result}{text} > 4_000_000, "$0 GET of the task: the full text");
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]



=== TEST 5: a task waiting for a retry runs nowhere: backend null in GET, in lists, after a restart
--- post_setup_server_root
AsyncTaskTest::seed(::store_db(), {
    id => ::tid(1), kind => 'image', status => 'QUEUED', priority => 5,
    params => '{"prompt":"x"}', created_at => $::T0, attempts => 1,
    started_at => $::T0 + 1,
    backend => 'gpu_image/127.0.0.1:9', not_before => 4102444800000 });
--- init
for my $round ('before', 'after') {
    AsyncTaskTest::crash_and_restart() if $round eq 'after';
    my (undef, $t) = AsyncTaskTest::api('GET', 'tasks/' . ::tid(1));
    my (undef, $l) = AsyncTaskTest::api('GET', 'tasks');
    Test::More::is($t->{status} . ' ' . ($t->{backend} // 'null'), 'QUEUED null',
                   "$0 GET $round a restart");
    Test::More::is($l->{tasks}[0]{status} . ' ' . ($l->{tasks}[0]{backend} // 'null'),
                   'QUEUED null', "$0 list $round a restart");
}
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000001
--- response_body_like: "status":"QUEUED".*"attempts":1,"backend":null
--- no_error_log
[error]
[alert]
