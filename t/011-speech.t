# POST speech/transcribe and speech/pcm: every accepted form, the files
# they store (byte for byte, the WAV header of PCM), every rejected input
# and what a rejection leaves behind (nothing).

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use UploadTest qw(mp audio files_dir entries);    # and $B, the boundary

use IO::Socket::INET ();
use JSON::PP ();
use Time::HiRes ();


# --- helpers for the eval sections and the init code (package main) ---

# n samples of s16le; neither end is a blank, which Test::Nginx would trim
sub pcm {
    my $n = shift;
    my $s = join '', map { pack 'v', ($_ * 7919 + 4660) & 0xffff } 0 .. $n - 1;
    substr($s, 0, 2) = "\x01\x80";
    substr($s, -2) = "\xff\x7f";
    return $s;
}

# the regex of a 202's task: exact params
sub task_re {
    my ($user, $priority, $params) = @_;
    $params = quotemeta $params;
    return qr/^\{"id":"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}","kind":"speech","status":"QUEUED","user":$user,"priority":$priority,"position":0,"params":$params,"created_at":"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null\}$/;
}

sub err {
    my ($message, $field) = @_;
    return qq({"error":{"code":"invalid_argument","message":"$message")
           . (defined $field ? qq(,"field":"$field") : '') . '}}';
}

# every file under a directory tree
sub tree {
    my $dir = shift;
    my @out;
    for my $e (entries($dir)) {
        my $path = "$dir/$e";
        push @out, -d $path ? tree($path) : $path;
    }
    return @out;
}

sub slurp {
    my $file = shift;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    return scalar <$fh>;
}

# a request sent as the given packets; (status, headers, body), the body
# de-chunked; nothing when told to abort after the packets
sub send_raw {
    my ($packets, %o) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => AsyncTaskTest::port(),
                                     Timeout => 5)
        or die "cannot connect to nginx: $!";

    for my $p (ref $packets ? @$packets : $packets) {
        print $sock $p;
        $sock->flush;
        Time::HiRes::sleep($o{delay}) if $o{delay};
    }

    if ($o{abort}) {
        close $sock;
        return;
    }

    local $/;
    my $resp = <$sock>;
    close $sock;

    my ($head, $body) = split /\r\n\r\n/, $resp // '', 2;
    $head //= '';
    $body //= '';
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};

    if ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n, '');
            $body =~ s/^\r\n//;
        }
        $body = $out;
    }

    return ($status, $head, $body);
}

sub chunked {
    my ($uri, $type, @chunks) = @_;
    my $req = "POST $uri HTTP/1.1\r\nHost: localhost\r\n"
              . (defined $type ? "Content-Type: $type\r\n" : '')
              . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    $req .= sprintf("%x\r\n", length $_) . "$_\r\n" for @chunks;
    return $req . "0\r\n\r\n";
}

run_tests();

__DATA__

=== TEST 1: multipart with every part: 202, Location, the task with its params
--- request eval
"POST /api/v1/speech/transcribe\n" . main::mp($::B,
    ['language', 'pt_BR'],
    ['file', main::audio(1000), filename => 'clip.ogg', type => 'audio/ogg'],
    ['prompt', "Caf\xc3\xa9 \"quoted\" \\ back\r\nline 2"],
    ['priority', '7'])
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B\nX-User-Id: bob"
--- error_code: 202
--- response_headers_like
Location: ^/api/v1/tasks/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$
Content-Type: ^application/json$
--- response_body_like eval
main::task_re('"bob"', 7, '{"filename":"clip.ogg","content_type":"audio/ogg","bytes":1000,"language":"pt_BR","prompt":"Caf' . "\xc3\xa9" . ' \"quoted\" \\\\ back\r\nline 2"}')
--- no_error_log
[error]
[alert]



=== TEST 2: multipart with the file part only: defaults
--- request eval
"POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(333)])
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code: 202
--- response_body_like eval
main::task_re('null', 5, '{"filename":"audio","content_type":"application/octet-stream","bytes":333}')
--- no_error_log
[error]



=== TEST 3: a raw audio/ogg body, its fields in the query
--- request eval
"POST /api/v1/speech/transcribe?language=en&prompt=Caf%C3%A9%20au%20lait%21&priority=9\n"
. main::audio(2048)
--- more_headers
Content-Type: audio/ogg
X-User-Id: carol
--- error_code: 202
--- response_headers_like
Location: ^/api/v1/tasks/[0-9a-f-]{36}$
--- response_body_like eval
main::task_re('"carol"', 9, '{"filename":"audio","content_type":"audio/ogg","bytes":2048,"language":"en","prompt":"Caf' . "\xc3\xa9" . ' au lait!"}')
--- no_error_log
[error]



=== TEST 4: raw bodies of any audio/* type, with parameters, in any case
--- request eval
["POST /api/v1/speech/transcribe\n" . main::audio(10),
 "POST /api/v1/speech/transcribe\n" . main::audio(11),
 "POST /api/v1/speech/transcribe\n" . main::audio(12),
 "POST /api/v1/speech/transcribe?priority=0\n" . main::audio(13)]
--- more_headers eval
["Content-Type: audio/mpeg",
 "Content-Type: audio/wav; codecs=1",
 "Content-Type: Audio/WebM",
 "Content-Type: audio/flac"]
--- error_code eval
[202, 202, 202, 202]
--- response_body_like eval
[main::task_re('null', 5, '{"filename":"audio","content_type":"audio/mpeg","bytes":10}'),
 qr/"priority":5,"position":1,"params":\{"filename":"audio","content_type":"audio\/wav; codecs=1","bytes":11\}/,
 qr/"priority":5,"position":2,"params":\{"filename":"audio","content_type":"Audio\/WebM","bytes":12\}/,
 qr/"priority":0,"position":3,"params":\{"filename":"audio","content_type":"audio\/flac","bytes":13\}/]
--- no_error_log
[error]



=== TEST 5: PCM with every default
--- request eval
"POST /api/v1/speech/pcm\n" . main::pcm(1600)
--- error_code: 202
--- response_headers_like
Location: ^/api/v1/tasks/[0-9a-f-]{36}$
--- response_body_like eval
main::task_re('null', 5, '{"filename":"audio.wav","content_type":"audio/wav","bytes":3244,"sample_rate":16000,"channels":1}')
--- no_error_log
[error]
[alert]



=== TEST 6: PCM in 2 channels at 44100 Hz, with a language and a priority
--- request eval
"POST /api/v1/speech/pcm?sample_rate=44100&channels=2&language=de&priority=0\n"
. main::pcm(2000)
--- more_headers
Content-Type: audio/L16;rate=44100;channels=2
X-User-Id: dave
--- error_code: 202
--- response_body_like eval
main::task_re('"dave"', 0, '{"filename":"audio.wav","content_type":"audio/wav","bytes":4044,"sample_rate":44100,"channels":2,"language":"de"}')
--- no_error_log
[error]



=== TEST 7: PCM under each accepted Content-Type, and the ends of the ranges
--- request eval
["POST /api/v1/speech/pcm?sample_rate=8000\n" . main::pcm(8),
 "POST /api/v1/speech/pcm?sample_rate=48000&channels=2\n" . main::pcm(8),
 "POST /api/v1/speech/pcm?channels=1&priority=9\n" . main::pcm(8),
 "POST /api/v1/speech/pcm\n" . main::pcm(8)]
--- more_headers eval
["Content-Type: application/octet-stream",
 "Content-Type: audio/pcm",
 "Content-Type: AUDIO/l16; rate=16000",
 "Content-Type: audio/pcm;rate=16000"]
--- error_code eval
[202, 202, 202, 202]
--- response_body_like eval
[qr/"params":\{"filename":"audio.wav","content_type":"audio\/wav","bytes":60,"sample_rate":8000,"channels":1\}/,
 qr/"params":\{"filename":"audio.wav","content_type":"audio\/wav","bytes":60,"sample_rate":48000,"channels":2\}/,
 qr/"priority":9,"position":0,"params":\{"filename":"audio.wav","content_type":"audio\/wav","bytes":60,"sample_rate":16000,"channels":1\}/,
 qr/"params":\{"filename":"audio.wav","content_type":"audio\/wav","bytes":60,"sample_rate":16000,"channels":1\}/]
--- no_error_log
[error]



=== TEST 8: multipart variants: LF line breaks, preamble and epilogue, a quoted boundary, header case, escaped and Windows file names, a 70-byte boundary
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, "\n", ['file', 'abc', filename => 'a.ogg']),
 "POST /api/v1/speech/transcribe\nThis is the preamble.\r\n" . main::mp($::B, ['file', 'abcd']) . "\r\nThis is the epilogue.",
 "POST /api/v1/speech/transcribe\n" . main::mp('a b:c=d', ['file', 'abcde']),
 "POST /api/v1/speech/transcribe\n--$::B\r\ncontent-disposition:form-data ;  NAME=file; FileName=\"my \\\"clip\\\".ogg\"\r\ncontent-type:  audio/ogg  \r\n\r\nabcdef\r\n--$::B  \r\ncontent-disposition: form-data; name=language\r\n\r\nfr\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abcdefg', filename => 'C:\\Users\\me\\clip.wav']),
 "POST /api/v1/speech/transcribe\n" . main::mp('x' x 70, ['file', 'abcdefgh'])]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=\"a b:c=d\"",
 "Content-Type: Multipart/Form-Data; charset=utf-8; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=$::B; charset=utf-8",
 "Content-Type: multipart/form-data; boundary=" . ('x' x 70)]
--- error_code eval
[202, 202, 202, 202, 202, 202]
--- response_body_like eval
[qr/"params":\{"filename":"a.ogg","content_type":"application\/octet-stream","bytes":3\}/,
 qr/"params":\{"filename":"audio","content_type":"application\/octet-stream","bytes":4\}/,
 qr/"params":\{"filename":"audio","content_type":"application\/octet-stream","bytes":5\}/,
 qr/"params":\{"filename":"my \\"clip\\".ogg","content_type":"audio\/ogg","bytes":6,"language":"fr"\}/,
 qr/"params":\{"filename":"C:\\\\Users\\\\me\\\\clip.wav","content_type":"application\/octet-stream","bytes":7\}/,
 qr/"params":\{"filename":"audio","content_type":"application\/octet-stream","bytes":8\}/]
--- no_error_log
[error]



=== TEST 9: the PCM input file is a canonical WAV: header fields, then the body as is
--- init
my $files = main::files_dir($block);

for my $case (['', 1, 16000, main::pcm(1000)],
              ['?sample_rate=48000&channels=2', 2, 48000, main::pcm(1002)],
              ['?sample_rate=8000&channels=1', 1, 8000, "\x00\x00" . main::pcm(7) . "\r\n"])
{
    my ($query, $channels, $rate, $body) = @$case;
    my $name = "PCM $rate Hz, $channels channel(s)";

    my ($status, $task) = AsyncTaskTest::api('POST', "speech/pcm$query",
                              headers => {'Content-Type' => 'audio/pcm'},
                              body => $body);
    Test::More::is($status, 202, "$name: 202");

    my $wav = main::slurp("$files/$task->{id}.in");
    Test::More::ok(defined $wav, "$name: the input file is <files>/<id>.in");
    $wav //= '';

    Test::More::is(length $wav, 44 + length $body, "$name: 44 + body bytes");
    Test::More::is($task->{params}{bytes}, length $wav,
                   "$name: params.bytes is the file size");

    my @h = unpack 'a4 V a4 a4 V v v V V v v a4 V', $wav;
    Test::More::is_deeply(\@h,
        ['RIFF', 36 + length $body, 'WAVE', 'fmt ', 16, 1, $channels, $rate,
         $rate * $channels * 2, $channels * 2, 16, 'data', length $body],
        "$name: RIFF/WAVE header fields");
    Test::More::ok(substr($wav, 44) eq $body, "$name: the data is the body");

    my ($s2, $stored) = AsyncTaskTest::api('GET', "tasks/$task->{id}");
    Test::More::is_deeply($stored->{params}, $task->{params},
                          "$name: the stored params are the answered ones");
}
--- request
GET /api/v1/tasks?kind=speech
--- response_body_like: ^\{"tasks":\[\{"id":"[^"]+","kind":"speech"[^\]]*"sample_rate":8000,.*"sample_rate":48000,.*"sample_rate":16000,.*\],"next_cursor":null\}$
--- no_error_log
[error]
[alert]



=== TEST 10: the multipart file part is stored byte for byte: CR, LF, NUL, every byte value, boundary-like lines
--- init
my $files = main::files_dir($block);
my $b = $::B;
my $all = join '', map { chr } 0 .. 255;

my @contents = (
    # starts and ends with a line break
    "\r\n" . $all . "\r\n--$b" . "x\r\n" . "xx--$b\r\n" . "\r\n--$b-x\r\n"
    . "\r\n--$b \tx\r\n" . "\r\n-$b\r\n" . "\r\n--" . lc($b) . "\r\n"
    . "\r\n--" . substr($b, 0, 5) . "\r\n" . $all . "\r\n",
    # ends with a bare CR, holds bare LFs and CRs
    "\n\r\n\r" . ("\x00" x 100) . "--\r\n--\r" . $all . "\n\r",
    # a single byte
    "\n",
);

my $i = 0;
for my $content (@contents) {
    $i++;
    my $body = main::mp($b, ['language', 'en'],
                        ['file', $content, filename => "f$i.bin",
                         type => 'audio/x-test'],
                        ['prompt', "\r\n"]);

    my ($status, $task, $h, $raw) = AsyncTaskTest::api('POST', 'speech/transcribe',
        headers => {'Content-Type' => "multipart/form-data; boundary=$b"},
        body => $body);
    Test::More::is($status, 202, "content $i: 202") or Test::More::diag($raw);

    my $stored = main::slurp("$files/$task->{id}.in") // '';
    Test::More::is(length $stored, length $content, "content $i: its length");
    Test::More::ok($stored eq $content, "content $i: stored byte for byte");
    Test::More::is($task->{params}{bytes}, length $content,
                   "content $i: params.bytes");
    Test::More::is($task->{params}{filename}, "f$i.bin", "content $i: filename");
    Test::More::is($task->{params}{content_type}, 'audio/x-test',
                   "content $i: content_type");
    Test::More::is($task->{params}{prompt}, "\r\n", "content $i: prompt");
}

# a raw body is stored as is too, blanks at both ends included
my $raw = "\r\n \t" . $all x 4 . " \r\n";
my ($status, $task) = AsyncTaskTest::api('POST', 'speech/transcribe',
                          headers => {'Content-Type' => 'audio/ogg'},
                          body => $raw);
Test::More::is($status, 202, 'raw: 202');
Test::More::ok((main::slurp("$files/$task->{id}.in") // '') eq $raw,
               'raw: stored byte for byte');
Test::More::is($task->{params}{bytes}, length $raw, 'raw: params.bytes');
--- request
GET /api/v1/tasks
--- response_body_like: ^\{"tasks":\[(\{"id":"[^"]+","kind":"speech".*){4}\],"next_cursor":null\}$
--- no_error_log
[error]



=== TEST 11: a chunked raw upload
--- raw_request eval
"POST /api/v1/speech/transcribe?language=nl HTTP/1.1\r
Host: localhost\r
Content-Type: audio/ogg\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
5\r
OggS!\r
a\r
0123456789\r
0\r
\r
"
--- error_code: 202
--- response_body_like eval
main::task_re('null', 5, '{"filename":"audio","content_type":"audio/ogg","bytes":15,"language":"nl"}')
--- no_error_log
[error]



=== TEST 12: a chunked multipart upload
--- raw_request eval
my $body = main::mp($::B, ['file', 'chunked audio'], ['priority', '3']);
"POST /api/v1/speech/transcribe HTTP/1.1\r
Host: localhost\r
Content-Type: multipart/form-data; boundary=$::B\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
" . sprintf("%x\r\n", 20) . substr($body, 0, 20) . "\r\n"
  . sprintf("%x\r\n", length($body) - 20) . substr($body, 20) . "\r\n0\r\n\r\n"
--- error_code: 202
--- response_body_like eval
main::task_re('null', 3, '{"filename":"audio","content_type":"application/octet-stream","bytes":13}')
--- no_error_log
[error]



=== TEST 13: a chunked PCM upload
--- raw_request eval
"POST /api/v1/speech/pcm?channels=2 HTTP/1.1\r
Host: localhost\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
6\r
ABCDEF\r
2\r
GH\r
0\r
\r
"
--- error_code: 202
--- response_body_like eval
main::task_re('null', 5, '{"filename":"audio.wav","content_type":"audio/wav","bytes":52,"sample_rate":16000,"channels":2}')
--- no_error_log
[error]



=== TEST 14: chunked uploads are stored intact
--- init
my $files = main::files_dir($block);
my $audio = main::audio(70000);

my ($status, $head, $body) = main::send_raw(
    [main::chunked('/api/v1/speech/transcribe', 'audio/ogg',
                   map { substr($audio, $_ * 7000, 7000) } 0 .. 9)],
    delay => 0);
Test::More::is($status, 202, 'chunked raw: 202');
my $task = JSON::PP::decode_json($body);
Test::More::ok((main::slurp("$files/$task->{id}.in") // '') eq $audio,
               'chunked raw: stored intact');

my $pcm = main::pcm(5000);
($status, $head, $body) = main::send_raw(
    [main::chunked('/api/v1/speech/pcm?sample_rate=22050', 'audio/pcm',
                   substr($pcm, 0, 3333), substr($pcm, 3333))]);
Test::More::is($status, 202, 'chunked PCM: 202');
$task = JSON::PP::decode_json($body);
my $wav = main::slurp("$files/$task->{id}.in") // '';
Test::More::is(length $wav, 10044, 'chunked PCM: its size');
Test::More::ok(substr($wav, 44) eq $pcm, 'chunked PCM: the data is intact');
Test::More::is_deeply([unpack 'x4 V x16 V x12 V', $wav], [10036, 22050, 10000],
                      'chunked PCM: sizes and rate in the header');
--- request
GET /api/v1/tasks
--- response_body_like: ^\{"tasks":\[(\{"id":"[^"]+","kind":"speech".*){2}\],"next_cursor":null\}$
--- no_error_log
[error]



=== TEST 15: a multipart body over client_body_buffer_size is stored intact
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        client_body_buffer_size 8k;
    }
--- init
my $files = main::files_dir($block);

# 200 KB with near-delimiters across every 8 KiB boundary
my $content = '';
while (length $content < 200_000) {
    $content .= main::audio(8150) . "\r\n--$::B" . "x";
}
$content = substr($content, 0, 200_000);

my ($status, $task, $h, $raw) = AsyncTaskTest::api('POST', 'speech/transcribe',
    headers => {'Content-Type' => "multipart/form-data; boundary=$::B"},
    body => main::mp($::B, ['file', $content, filename => 'big.ogg'],
                     ['language', 'en']));
Test::More::is($status, 202, 'big multipart: 202') or Test::More::diag($raw);
my $stored = main::slurp("$files/$task->{id}.in") // '';
Test::More::is(length $stored, 200_000, 'big multipart: its length');
Test::More::ok($stored eq $content, 'big multipart: stored byte for byte');
--- request eval
"POST /api/v1/speech/transcribe\n"
. main::mp($::B, ['file', main::audio(200_000), filename => 'big.ogg'], ['language', 'en'])
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code: 202
--- response_body_like: "params":\{"filename":"big.ogg","content_type":"application/octet-stream","bytes":200000,"language":"en"\}
--- no_error_log
[error]



=== TEST 16: only POST on speech/transcribe
--- request
GET /api/v1/speech/transcribe
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
--- response_body chomp
{"error":{"code":"method_not_allowed","message":"method not allowed here"}}
--- no_error_log
[error]



=== TEST 17: only POST on speech/pcm
--- request
PUT /api/v1/speech/pcm
ABCD
--- error_code: 405
--- response_headers
Allow: POST
--- response_body chomp
{"error":{"code":"method_not_allowed","message":"method not allowed here"}}
--- no_error_log
[error]



=== TEST 18: transcribe: a Content-Type that is neither multipart/form-data nor audio/*, or none
--- request eval
[("POST /api/v1/speech/transcribe\n" . main::audio(100)) x 7]
--- more_headers eval
["Content-Type: text/plain",
 "Content-Type: application/json",
 "Content-Type: application/octet-stream",
 "Content-Type: audio",
 "Content-Type: audiox/ogg",
 "Content-Type: multipart/mixed; boundary=$::B",
 ""]
--- error_code eval
[(415) x 7]
--- response_body eval
[('{"error":{"code":"unsupported_media_type","message":"the body must be multipart/form-data or audio/*"}}') x 7]
--- no_error_log
[error]



=== TEST 19: pcm: a Content-Type that is not raw PCM
--- request eval
[("POST /api/v1/speech/pcm\n" . main::pcm(50)) x 5]
--- more_headers eval
["Content-Type: audio/wav",
 "Content-Type: text/plain",
 "Content-Type: audio/pcm2",
 "Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: application/octet-streams"]
--- error_code eval
[(415) x 5]
--- response_body eval
[('{"error":{"code":"unsupported_media_type","message":"the body must be raw PCM: application/octet-stream, audio/pcm or audio/L16"}}') x 5]
--- no_error_log
[error]



=== TEST 20: multipart without a boundary, or with a malformed one
--- request eval
[("POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'])) x 5]
--- more_headers eval
["Content-Type: multipart/form-data",
 "Content-Type: multipart/form-data; charset=utf-8",
 "Content-Type: multipart/form-data; boundary=",
 "Content-Type: multipart/form-data; boundary=\"\"",
 "Content-Type: multipart/form-data; boundary=" . ('x' x 71)]
--- error_code eval
[(400) x 5]
--- response_body eval
[main::err('multipart/form-data without a boundary'),
 main::err('multipart/form-data without a boundary'),
 main::err('the multipart boundary is malformed'),
 main::err('the multipart boundary is malformed'),
 main::err('the multipart boundary is malformed')]
--- no_error_log
[error]



=== TEST 21: an unknown part is named
--- request eval
"POST /api/v1/speech/transcribe\n"
. main::mp($::B, ['file', 'abc'], ['model', 'whisper-1'])
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"unknown part \"model\"","field":"model"}}
--- no_error_log
[error]



=== TEST 22: unknown query parameters, each endpoint its own set
--- request eval
["POST /api/v1/speech/transcribe?model=x\n" . main::mp($::B, ['file', 'abc']),
 "POST /api/v1/speech/transcribe?language=en&sample_rate=16000\n" . main::audio(10),
 "POST /api/v1/speech/transcribe?channels=1\n" . main::audio(10),
 "POST /api/v1/speech/pcm?prompt=hello\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?rate=8000\n" . main::pcm(10)]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: audio/ogg",
 "Content-Type: audio/ogg",
 "",
 ""]
--- error_code eval
[(400) x 5]
--- response_body eval
[main::err('unknown query parameter \"model\"', 'model'),
 main::err('unknown query parameter \"sample_rate\"', 'sample_rate'),
 main::err('unknown query parameter \"channels\"', 'channels'),
 main::err('unknown query parameter \"prompt\"', 'prompt'),
 main::err('unknown query parameter \"rate\"', 'rate')]
--- no_error_log
[error]



=== TEST 23: empty bodies
--- request eval
["POST /api/v1/speech/transcribe",
 "POST /api/v1/speech/transcribe",
 "POST /api/v1/speech/transcribe",
 "POST /api/v1/speech/pcm",
 "POST /api/v1/speech/pcm"]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: audio/ogg\nContent-Length: 0",
 "Content-Type: multipart/form-data; boundary=$::B\nContent-Length: 0",
 "",
 "Content-Type: audio/pcm\nContent-Length: 0"]
--- error_code eval
[(400) x 5]
--- response_body eval
[(main::err('the body is empty')) x 5]
--- no_error_log
[error]



=== TEST 24: a multipart body cut short
--- request eval
["POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--$::B",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--$::B-",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\"",
 "POST /api/v1/speech/transcribe\nno delimiter at all"]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 5]
--- error_code eval
[(400) x 5]
--- response_body eval
[(main::err('the multipart body is cut short')) x 5]
--- no_error_log
[error]



=== TEST 25: no file part
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['language', 'en'], ['prompt', 'hi']),
 "POST /api/v1/speech/transcribe\n--$::B--"]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 2]
--- error_code eval
[400, 400]
--- response_body eval
[(main::err('a \"file\" part is required', 'file')) x 2]
--- no_error_log
[error]



=== TEST 26: malformed parts: no name, bad headers, a part twice, an empty file
--- request eval
["POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; filename=\"a.ogg\"\r\n\r\nabc\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Type: audio/ogg\r\n\r\nabc\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition form-data; name=\"file\"\r\n\r\nabc\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: attachment; name=\"file\"\r\n\r\nabc\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\r\n\r\nabc\r\n--$::B--",
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['file', 'def']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['language', 'en'], ['file', 'abc'], ['language', 'de']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', '', filename => 'empty.ogg'])]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 8]
--- error_code eval
[(400) x 8]
--- response_body eval
[main::err('a part has no name'),
 main::err('a part has no name'),
 main::err('a part has malformed headers'),
 main::err('a part has malformed headers'),
 main::err('a part has malformed headers'),
 main::err('duplicate \"file\" part', 'file'),
 main::err('duplicate \"language\" part', 'language'),
 main::err('the file part is empty', 'file')]
--- no_error_log
[error]



=== TEST 27: language must be a code of [A-Za-z0-9_-]{1,35}
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', 'en us']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', '']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', 'a' x 36]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', "fran\xc3\xa7ais"]),
 "POST /api/v1/speech/transcribe?language=en.US\n" . main::audio(10),
 "POST /api/v1/speech/transcribe?language=\n" . main::audio(10),
 "POST /api/v1/speech/pcm?language=en%00\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?language=" . ('b' x 36) . "\n" . main::pcm(10)]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 4,
 ("Content-Type: audio/ogg") x 2,
 "", ""]
--- error_code eval
[(400) x 8]
--- response_body eval
[(main::err('language must be a language code such as \"en\"', 'language')) x 8]
--- no_error_log
[error]



=== TEST 28: the longest language code, and every character it may hold
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', 'a' x 35]),
 "POST /api/v1/speech/transcribe?language=zh-Hant_TW09\n" . main::audio(10),
 "POST /api/v1/speech/pcm?language=AZaz09_-\n" . main::pcm(10)]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B", "Content-Type: audio/ogg", ""]
--- error_code eval
[202, 202, 202]
--- response_body_like eval
[qr/,"language":"a{35}"\},/, qr/,"language":"zh-Hant_TW09"\},/, qr/,"language":"AZaz09_-"\},/]
--- no_error_log
[error]



=== TEST 29: a prompt of 4000 characters, multi-byte ones counting once
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', 'a' x 4000]),
 "POST /api/v1/speech/transcribe?prompt=" . ('a' x 4000) . "\n" . main::audio(10),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "\xc3\xbc" x 4000]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "\xe2\x82\xac" x 4000])]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: audio/ogg",
 "Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=$::B"]
--- error_code eval
[202, 202, 202, 202]
--- response_body_like eval
[qr/,"prompt":"a{4000}"\},/, qr/,"prompt":"a{4000}"\},/,
 qr/,"prompt":"(\xc3\xbc){4000}"\},/, qr/,"prompt":"(\xe2\x82\xac){4000}"\},/]
--- no_error_log
[error]



=== TEST 30: a prompt of 4001 characters
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', 'a' x 4001]),
 "POST /api/v1/speech/transcribe?prompt=" . ('a' x 4001) . "\n" . main::audio(10),
 "POST /api/v1/speech/transcribe?prompt=" . ('%C3%BC' x 500) . ('a' x 3501) . "\n" . main::audio(10)]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: audio/ogg",
 "Content-Type: audio/ogg"]
--- error_code eval
[400, 400, 400]
--- response_body eval
[(main::err('prompt is longer than 4000 characters', 'prompt')) x 3]
--- no_error_log
[error]



=== TEST 31: a prompt that is not valid UTF-8
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "a \xff\xfe b"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "ends in \xc3"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "overlong \xc0\xaf"]),
 "POST /api/v1/speech/transcribe?prompt=a%FFb\n" . main::audio(10)]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 3, "Content-Type: audio/ogg"]
--- error_code eval
[400, 400, 400, 400]
--- response_body eval
[(main::err('prompt is not valid UTF-8', 'prompt')) x 4]
--- no_error_log
[error]



=== TEST 32: a prompt holding a NUL is kept whole or refused, never cut at the NUL
--- request eval
["POST /api/v1/speech/transcribe?prompt=a%00b\n" . main::audio(10),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['prompt', "a\x00b"])]
--- more_headers eval
["Content-Type: audio/ogg", "Content-Type: multipart/form-data; boundary=$::B"]
--- error_code_like eval
[qr/^(202|400)$/, qr/^(202|400)$/]
--- response_body_like eval
[qr/"prompt":"a\\u0000b"|^\{"error":\{"code":"invalid_argument","message":"[^"]+","field":"prompt"\}\}$/,
 qr/"prompt":"a\\u0000b"|^\{"error":\{"code":"invalid_argument","message":"[^"]+","field":"prompt"\}\}$/]
--- no_error_log
[error]



=== TEST 33: priority must be an integer 0..9
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['priority', '10']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['priority', '-1']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['priority', 'high']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['priority', '']),
 "POST /api/v1/speech/transcribe?priority=1.5\n" . main::audio(10),
 "POST /api/v1/speech/pcm?priority=99\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?priority=\n" . main::pcm(10)]
--- more_headers eval
[("Content-Type: multipart/form-data; boundary=$::B") x 4, "Content-Type: audio/ogg", "", ""]
--- error_code eval
[(400) x 7]
--- response_body eval
[(main::err('priority must be an integer between 0 and 9', 'priority')) x 7]
--- no_error_log
[error]



=== TEST 34: PCM sample_rate and channels out of range
--- request eval
["POST /api/v1/speech/pcm?sample_rate=7999\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?sample_rate=48001\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?sample_rate=16k\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?sample_rate=\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?channels=0\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?channels=3\n" . main::pcm(10),
 "POST /api/v1/speech/pcm?channels=stereo\n" . main::pcm(10)]
--- error_code eval
[(400) x 7]
--- response_body eval
[(main::err('sample_rate must be between 8000 and 48000', 'sample_rate')) x 4,
 (main::err('channels must be 1 or 2', 'channels')) x 3]
--- no_error_log
[error]



=== TEST 35: a PCM body that ends with a partial sample
--- request eval
["POST /api/v1/speech/pcm\nABC",
 "POST /api/v1/speech/pcm?channels=2\nABCDEF",
 "POST /api/v1/speech/pcm?channels=2&sample_rate=8000\nA"]
--- error_code eval
[400, 400, 400]
--- response_body eval
[(main::err('the body ends with a partial sample')) x 3]
--- no_error_log
[error]



=== TEST 36: a chunked PCM body that ends with a partial sample
--- raw_request eval
"POST /api/v1/speech/pcm?channels=2 HTTP/1.1\r
Host: localhost\r
Content-Type: audio/pcm\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
4\r
ABCD\r
2\r
EF\r
0\r
\r
"
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"the body ends with a partial sample"}}
--- no_error_log
[error]



=== TEST 37: a multipart body over client_max_body_size
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 100;
    }
--- request eval
"POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(200)])
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]



=== TEST 38: a PCM body over client_max_body_size
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 100;
    }
--- request eval
"POST /api/v1/speech/pcm\n" . main::pcm(51)
--- error_code: 413
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]



=== TEST 39: a chunked raw body over client_max_body_size
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 100;
    }
--- raw_request eval
"POST /api/v1/speech/transcribe HTTP/1.1\r
Host: localhost\r
Content-Type: audio/ogg\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
c8\r
" . ("a" x 200) . "\r
0\r
\r
"
--- error_code: 413
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}
--- error_log
client intended to send too large chunked body
--- no_error_log
[alert]



=== TEST 40: a rejected upload stores no task
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', 'abc'], ['language', 'e n']),
 "POST /api/v1/speech/pcm?channels=2\nABCDEF",
 "GET /api/v1/system/stats",
 "GET /api/v1/tasks"]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B", "", "", ""]
--- error_code eval
[400, 400, 200, 200]
--- response_body_like eval
[qr/invalid_argument/, qr/partial sample/, qr/"tasks":\{"QUEUED":0,.*"queue":\{"depth":0,/,
 qr/^\{"tasks":\[\],"next_cursor":null\}$/]
--- no_error_log
[error]



=== TEST 41: rejected uploads leave no file behind: not in the files directory, not as body temp files
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        client_body_temp_path $TEST_NGINX_SERVER_ROOT/html/body_temp;
    }
--- init
my $files = main::files_dir($block);
my $temp = AsyncTaskTest::servroot() . '/html/body_temp';
Test::More::ok(-d $temp, 'the body temp directory is there');
my @temp_before = main::tree($temp);
my $ct = "multipart/form-data; boundary=$::B";

# rejected once the body is in: while parsing it, or once the file is written
my @bad = (
    ['speech/transcribe', $ct, main::mp($::B, ['file', 'abc'], ['model', 'x'])],
    ['speech/transcribe', $ct, main::mp($::B, ['language', 'en'])],
    ['speech/transcribe', $ct, "--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"],
    ['speech/transcribe', $ct, main::mp($::B, ['file', 'abc'], ['file', 'abc'])],
    ['speech/transcribe', $ct, main::mp($::B, ['file', main::audio(5000)], ['language', 'e n'])],
    ['speech/transcribe', $ct, main::mp($::B, ['file', main::audio(5000)], ['prompt', "\xff"])],
    ['speech/transcribe', $ct, main::mp($::B, ['file', main::audio(5000)], ['prompt', 'a' x 4001])],
    ['speech/transcribe', $ct, main::mp($::B, ['file', main::audio(5000)], ['priority', '10'])],
    ['speech/transcribe?language=e+n', 'audio/ogg', main::audio(5000)],
    ['speech/transcribe?prompt=%FF', 'audio/ogg', main::audio(5000)],
    ['speech/transcribe?priority=11', 'audio/ogg', main::audio(5000)],
    ['speech/pcm?language=..', 'audio/pcm', main::pcm(5000)],
    ['speech/pcm?priority=x', 'audio/pcm', main::pcm(5000)],
);

for my $bad (@bad) {
    my ($path, $type, $body) = @$bad;
    my ($status, $json, $h, $raw) = AsyncTaskTest::api('POST', $path,
                                        headers => {'Content-Type' => $type},
                                        body => $body);
    Test::More::is($status, 400, "rejected: $path")
        or Test::More::diag($raw);
}

# a chunked PCM body is found to end with a partial sample once it is in
my ($status) = main::send_raw(
    main::chunked('/api/v1/speech/pcm', 'audio/pcm', 'AB' x 2000, 'C'));
Test::More::is($status, 400, 'rejected: chunked partial sample');

Test::More::is_deeply([main::entries($files)], [],
                      'the files directory is empty');
# (a connection in lingering close frees its request, and removes the
# body temp file, only after the client has seen the end of the answer)
my @temp_after;
for (1 .. 50) {
    @temp_after = main::tree($temp);
    last if "@temp_after" eq "@temp_before";
    Time::HiRes::sleep(0.05);
}
Test::More::is_deeply(\@temp_after, \@temp_before, 'no body temp file is left');

my ($s, $list) = AsyncTaskTest::api('GET', 'tasks');
Test::More::is_deeply($list->{tasks}, [], 'no task is listed');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\},"queue":\{"depth":0,
--- no_error_log
[error]
[alert]
[crit]



=== TEST 42: an upload the client cuts off gives its queue slot back
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1;
    async_task_backend speech gpu_speech model=test-speech;

    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }
--- init
# the client goes away in the middle of its body; max_queued=1, so a slot
# it kept would make the block's request a 429
main::send_raw(["POST /api/v1/speech/pcm HTTP/1.1\r\nHost: localhost\r\n"
                . "Content-Length: 1000\r\n\r\n" . ('AB' x 100)],
               delay => 0.2, abort => 1);
Time::HiRes::sleep(0.3);

Test::More::is_deeply([main::entries(main::files_dir($block))], [],
                      'the files directory is empty');
--- request eval
"POST /api/v1/speech/pcm\n" . main::pcm(10)
--- error_code: 202
--- response_body_like: "status":"QUEUED"
--- no_error_log
[alert]



=== TEST 43: an upload refused half-way (a chunked body over client_max_body_size) gives its queue slot back
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1;
    async_task_backend speech gpu_speech model=test-speech;

    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 1k;
    }
--- init
# the body grows over the limit after the handler has taken a queue slot
my ($status, $head, $body) = main::send_raw(
    ["POST /api/v1/speech/transcribe HTTP/1.1\r\nHost: localhost\r\n"
     . "Content-Type: audio/ogg\r\nTransfer-Encoding: chunked\r\n"
     . "Connection: close\r\n\r\n" . "200\r\n" . ('a' x 512) . "\r\n",
     "300\r\n" . ('b' x 768) . "\r\n0\r\n\r\n"],
    delay => 0.2);
Time::HiRes::sleep(0.3);
Test::More::is($status, 413, 'a chunked body over the limit: 413');
Test::More::is($body, '{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}',
               'a chunked body over the limit: the JSON error');

Test::More::is_deeply([main::entries(main::files_dir($block))], [],
                      'the files directory is empty');
--- request eval
"POST /api/v1/speech/pcm\n" . main::pcm(10)
--- error_code: 202
--- response_body_like: "status":"QUEUED"
--- no_error_log
[alert]
