# One UTF-8 check for text from clients (util.c's decoder, the one the
# JSON writer uses): a lead byte where a continuation byte belongs is
# not UTF-8, whichever way the text comes in.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

run_tests();

__DATA__

=== TEST 1: an image prompt with a lead byte as its continuation byte
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"a \xc3\xc3 fox\"}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt is not valid UTF-8","field":"prompt"}}
--- no_error_log
[error]
[alert]



=== TEST 2: a speech prompt in the query, a three-byte form broken the same way
--- request eval
"POST /api/v1/speech/transcribe?prompt=a%E2%C2%A1b\nOggS-audio!"
--- more_headers
Content-Type: audio/ogg
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt is not valid UTF-8","field":"prompt"}}
--- no_error_log
[error]
[alert]



=== TEST 3: well-formed two- and three-byte characters still pass
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"a \xc3\xbc \xe2\x82\xac fox\"}"
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like: "prompt":"a \xc3\xbc \xe2\x82\xac fox"
--- no_error_log
[error]
[alert]
