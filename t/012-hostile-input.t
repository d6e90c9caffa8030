# Every byte from a client is hostile: what could reach a header of the
# request to an instance (speech fields, an upload's file name and content
# type) holds no control character; no prompt carries sd-server's
# <sd_cpp_extra_args>; markup of other protocols is only text; malformed
# multipart is refused.  Each answer is the contract's JSON 4xx or a
# correct 202, and a refusal leaves no file and no task behind.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use UploadTest;

run_tests();

__DATA__

=== TEST 1: <sd_cpp_extra_args> in a prompt or a negative_prompt is refused, in any case, opening or closing tag
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"a fox <sd_cpp_extra_args>{\\\"steps\\\": 150}</sd_cpp_extra_args>\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a fox <SD_CPP_Extra_Args>{\\\"seed\\\": 1}\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a fox </sd_cpp_extra_args>\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a fox\", \"negative_prompt\": \"<sd_cpp_extra_args>{}</sd_cpp_extra_args>\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a fox \\u003csd_cpp_extra_args\\u003e{}\"}",
 "GET /api/v1/system/stats"]
--- more_headers
Content-Type: application/json
--- error_code eval
[400, 400, 400, 400, 400, 200]
--- response_body_like eval
[main::err_re('prompt must not contain sd_cpp_extra_args', 'prompt'),
 main::err_re('prompt must not contain sd_cpp_extra_args', 'prompt'),
 main::err_re('prompt must not contain sd_cpp_extra_args', 'prompt'),
 main::err_re('negative_prompt must not contain sd_cpp_extra_args', 'negative_prompt'),
 main::err_re('prompt must not contain sd_cpp_extra_args', 'prompt'),
 qr/"tasks":\{"QUEUED":0,/]
--- no_error_log
[error]
[alert]



=== TEST 2: control characters in an image prompt are refused; tab and line breaks are text
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"a\\u0001fox\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a fox\", \"negative_prompt\": \"\\u001b[31mred\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a\\u007ffox\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a\\u0000fox\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a red fox,\\n\\tin snow\\r\\n\"}"]
--- more_headers
Content-Type: application/json
--- error_code eval
[400, 400, 400, 400, 202]
--- response_body_like eval
[main::err_re('prompt must not contain control characters', 'prompt'),
 main::err_re('negative_prompt must not contain control characters', 'negative_prompt'),
 main::err_re('prompt must not contain control characters', 'prompt'),
 qr/^\{"error":\{"code":"invalid_argument","message":"strings must not contain NUL characters"\}\}$/,
 qr/"params":\{"prompt":"a red fox,\\n\\tin snow\\r\\n","width":1024,/]
--- no_error_log
[error]
[alert]



=== TEST 3: markup of other protocols in a prompt is text, stored as sent
--- request eval
"POST /api/v1/image/async\n" . '{"prompt": "<script>alert(1)</script> {\"prompt\": \"x\"} \\\\u0000 &amp; ${x} %0d%0a"}'
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like eval
qr/"params":\{"prompt":"<script>alert\(1\)<\/script> \{\\"prompt\\": \\"x\\"\} \\\\u0000 &amp; \$\{x\} %0d%0a",/
--- no_error_log
[error]
[alert]



=== TEST 4: a speech prompt with a control character is refused, in the query or in a part; line breaks are text
--- request eval
["POST /api/v1/speech/transcribe?prompt=a%01b\n" . main::audio(100),
 "POST /api/v1/speech/transcribe?prompt=a%7Fb\n" . main::audio(100),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['prompt', "a\x1bb"]),
 "POST /api/v1/speech/transcribe?prompt=line%0D%0Aline\n" . main::audio(100)]
--- more_headers eval
["Content-Type: audio/ogg", "Content-Type: audio/ogg",
 "Content-Type: multipart/form-data; boundary=$::B", "Content-Type: audio/ogg"]
--- error_code eval
[400, 400, 400, 202]
--- response_body_like eval
[main::err_re('prompt must not contain control characters', 'prompt'),
 main::err_re('prompt must not contain control characters', 'prompt'),
 main::err_re('prompt must not contain control characters', 'prompt'),
 qr/"prompt":"line\\r\\nline"/]
--- no_error_log
[error]
[alert]



=== TEST 5: a language with a line break is refused
--- request eval
["POST /api/v1/speech/transcribe?language=en%0D%0AX-Injected:%201\n" . main::audio(100),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['language', "en\r\nX: 1"])]
--- more_headers eval
["Content-Type: audio/ogg", "Content-Type: multipart/form-data; boundary=$::B"]
--- error_code eval
[400, 400]
--- response_body_like eval
[main::err_re('language must be a language code such as \"en\"', 'language'),
 main::err_re('language must be a language code such as \"en\"', 'language')]
--- no_error_log
[error]
[alert]



=== TEST 6: a file name with a control character is refused, naming the field
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), filename => "a\x01b.ogg"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), filename => "a\rX-Injected: 1.ogg"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), filename => "a\x7f.ogg"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), filename => "a\xff.ogg"])]
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[main::err_re('filename must not contain control characters', 'filename'),
 main::err_re('filename must not contain control characters', 'filename'),
 main::err_re('filename must not contain control characters', 'filename'),
 main::err_re('filename is not valid UTF-8', 'filename')]
--- no_error_log
[error]
[alert]



=== TEST 7: a content type with a control character or a CR is refused, in a part or in the header of a raw upload
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), type => "audio/ogg\x01"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), type => "audio/ogg\rX-Injected: 1"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), type => "audio/\xc3\xa9"]),
 "POST /api/v1/speech/transcribe\n" . main::audio(100)]
--- more_headers eval
["Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: multipart/form-data; boundary=$::B",
 "Content-Type: audio/ogg\x01x"]
--- error_code eval
[400, 400, 400, 400]
--- response_body_like eval
[main::err_re('content_type must be printable ASCII', 'content_type'),
 main::err_re('content_type must be printable ASCII', 'content_type'),
 main::err_re('content_type must be printable ASCII', 'content_type'),
 main::err_re('content_type must be printable ASCII', 'content_type')]
--- no_error_log
[error]
[alert]



=== TEST 8: malformed multipart: huge part headers, a part named twice, no final boundary, a boundary inside a part's data
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100), headers => "X-Pad: " . ('p' x 9000) . "\r\n"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['prompt', 'one'], ['prompt', 'two']),
 "POST /api/v1/speech/transcribe\n--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" . main::audio(100) . "\r\n",
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', "OggS a--$::B-- b\r\n--" . $::B . "x\r\n!"])]
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code eval
[400, 400, 400, 202]
--- response_body_like eval
[qr/^\{"error":\{"code":"invalid_argument","message":"the part headers are too long"/,
 main::err_re('duplicate \"prompt\" part', 'prompt'),
 qr/^\{"error":\{"code":"invalid_argument","message":"[^"]+"/,
 qr/"bytes":\d+/]
--- no_error_log
[error]
[alert]



=== TEST 9: JSON, HTML and invalid UTF-8 in multipart text parts
--- request eval
["POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['prompt', '{"model": "x"} <b>bold</b> \u0000']),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['prompt', "\xc3\x28"]),
 "POST /api/v1/speech/transcribe\n" . main::mp($::B, ['file', main::audio(100)], ['prompt', "\xed\xa0\x80"])]
--- more_headers eval
"Content-Type: multipart/form-data; boundary=$::B"
--- error_code eval
[202, 400, 400]
--- response_body_like eval
[qr/"prompt":"\{\\"model\\": \\"x\\"\} <b>bold<\/b> \\\\u0000"/,
 main::err_re('prompt is not valid UTF-8', 'prompt'),
 main::err_re('prompt is not valid UTF-8', 'prompt')]
--- no_error_log
[error]
[alert]



=== TEST 10: refusals of hostile input leave no file and no task behind
--- init
my $ct = "multipart/form-data; boundary=$::B";
my @bad = (
    [$ct, main::mp($::B, ['file', main::audio(5000), filename => "a\x01"])],
    [$ct, main::mp($::B, ['file', main::audio(5000), type => "audio/ogg\rX: 1"])],
    [$ct, main::mp($::B, ['file', main::audio(5000)], ['prompt', "a\x1b"])],
    [$ct, main::mp($::B, ['file', main::audio(5000), headers => "X: " . ('p' x 9000) . "\r\n"])],
    [$ct, "--$::B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" . main::audio(5000)],
    ["audio/ogg\x01", main::audio(5000)],
);

for my $bad (@bad) {
    my ($status, $json, $h, $raw) = AsyncTaskTest::api('POST', 'speech/transcribe',
                                        headers => {'Content-Type' => $bad->[0]},
                                        body => $bad->[1]);
    Test::More::is($status, 400, 'refused') or Test::More::diag($raw);
}

Test::More::is_deeply([main::entries(main::files_dir($block))], [],
                      'the files directory is empty');
--- request
GET /api/v1/system/stats
--- response_body_like: "tasks":\{"QUEUED":0,"RUNNING":0,"DONE":0,"FAILED":0,"CANCELED":0\}
--- no_error_log
[error]
[alert]
[crit]
