# POST image/async: validation, defaults, the 202 and what it stores.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

run_tests();

__DATA__

=== TEST 1: a minimal submission: 202, Location, defaults filled in
--- request
POST /api/v1/image/async
{"prompt": "a red fox in snow"}
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_headers_like
Location: ^/api/v1/tasks/[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$
Content-Type: ^application/json$
--- response_body_like: ^\{"id":"[0-9a-f-]{36}","kind":"image","status":"QUEUED","user":null,"priority":5,"position":0,"params":\{"prompt":"a red fox in snow","width":1024,"height":1024,"steps":20,"seed":\d+\},"created_at":"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","started_at":null,"finished_at":null,"attempts":0,"backend":null,"result":null,"error":null\}$
--- no_error_log
[error]
[alert]



=== TEST 2: every field, an owner, a priority
--- request
POST /api/v1/image/async
{"prompt": "ein Fuchs \u00fc \"quoted\"", "negative_prompt": "blurry", "width": 512, "height": 768, "steps": 150, "seed": 4294967295, "cfg_scale": 7.5, "priority": 9}
--- more_headers
Content-Type: application/json; charset=utf-8
X-User-Id: alice
--- error_code: 202
--- response_body_like: "kind":"image","status":"QUEUED","user":"alice","priority":9,"position":0,"params":\{"prompt":"ein Fuchs ü \\"quoted\\"","negative_prompt":"blurry","width":512,"height":768,"steps":150,"seed":4294967295,"cfg_scale":7.5\}
--- no_error_log
[error]



=== TEST 3: the lowest values of every range
--- request
POST /api/v1/image/async
{"prompt": "x", "negative_prompt": "", "width": 64, "height": 2048, "steps": 1, "seed": 0, "cfg_scale": 0, "priority": 0}
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like: "priority":0,"position":0,"params":\{"prompt":"x","negative_prompt":"","width":64,"height":2048,"steps":1,"seed":0,"cfg_scale":0\}
--- no_error_log
[error]



=== TEST 4: a prompt of 4000 characters, multi-byte ones counting once
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"" . ("\x{c3}\x{bc}" x 4000) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like: "status":"QUEUED"
--- no_error_log
[error]



=== TEST 5: submissions are stored and listed, newest first, with positions
--- request eval
[
"POST /api/v1/image/async\n{\"prompt\": \"first\"}",
"POST /api/v1/image/async\n{\"prompt\": \"second\", \"priority\": 7}",
"GET /api/v1/tasks",
]
--- more_headers
Content-Type: application/json
--- error_code eval
[202, 202, 200]
--- response_body_like eval
[
qr/"position":0/,
qr/"priority":7,"position":0/,
qr/^\{"tasks":\[\{"id":"[^"]+","kind":"image","status":"QUEUED","user":null,"priority":7,"position":0,"params":\{"prompt":"second".*\},\{"id":"[^"]+","kind":"image","status":"QUEUED","user":null,"priority":5,"position":1,"params":\{"prompt":"first".*\}\],"next_cursor":null\}$/,
]
--- no_error_log
[error]



=== TEST 6: not JSON
--- request
POST /api/v1/image/async
{"prompt": "a fox"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_json","message":"the body is not valid JSON"}}
--- no_error_log
[error]



=== TEST 7: JSON followed by more
--- request
POST /api/v1/image/async
{"prompt": "a fox"} {"prompt": "two"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_json","message":"the body is not valid JSON"}}
--- no_error_log
[error]



=== TEST 8: JSON that is not an object
--- request eval
["POST /api/v1/image/async\n[\"prompt\", \"a fox\"]",
 "POST /api/v1/image/async\n\"a fox\"",
 "POST /api/v1/image/async\nnull"]
--- more_headers
Content-Type: application/json
--- error_code eval
[400, 400, 400]
--- response_body eval
['{"error":{"code":"invalid_json","message":"the body is not a JSON object"}}',
 '{"error":{"code":"invalid_json","message":"the body is not a JSON object"}}',
 '{"error":{"code":"invalid_json","message":"the body is not a JSON object"}}']
--- no_error_log
[error]



=== TEST 9: an empty body
--- request
POST /api/v1/image/async
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_json","message":"the body is empty"}}
--- no_error_log
[error]



=== TEST 10: no prompt
--- request
POST /api/v1/image/async
{"width": 512}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt is required","field":"prompt"}}
--- no_error_log
[error]



=== TEST 11: an empty prompt
--- request
POST /api/v1/image/async
{"prompt": ""}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt must not be empty","field":"prompt"}}
--- no_error_log
[error]



=== TEST 12: a prompt of 4001 characters
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"" . ("a" x 4001) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt is longer than 4000 characters","field":"prompt"}}
--- no_error_log
[error]



=== TEST 13: a negative prompt of 4001 characters
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"x\", \"negative_prompt\": \"" . ("a" x 4001) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"negative_prompt is longer than 4000 characters","field":"negative_prompt"}}
--- no_error_log
[error]



=== TEST 14: a prompt that is not valid UTF-8
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"a \xff\xfe fox\"}"
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"prompt is not valid UTF-8","field":"prompt"}}
--- no_error_log
[error]



=== TEST 15: wrong types
--- request eval
["POST /api/v1/image/async\n{\"prompt\": 42}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"width\": \"512\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"height\": 512.5}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"steps\": true}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"seed\": null}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"cfg_scale\": \"7\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"negative_prompt\": [\"y\"]}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"priority\": {}}"]
--- more_headers
Content-Type: application/json
--- error_code eval
[(400) x 8]
--- response_body eval
['{"error":{"code":"invalid_argument","message":"prompt must be a string","field":"prompt"}}',
 '{"error":{"code":"invalid_argument","message":"width must be an integer","field":"width"}}',
 '{"error":{"code":"invalid_argument","message":"height must be an integer","field":"height"}}',
 '{"error":{"code":"invalid_argument","message":"steps must be an integer","field":"steps"}}',
 '{"error":{"code":"invalid_argument","message":"seed must be an integer","field":"seed"}}',
 '{"error":{"code":"invalid_argument","message":"cfg_scale must be a number","field":"cfg_scale"}}',
 '{"error":{"code":"invalid_argument","message":"negative_prompt must be a string","field":"negative_prompt"}}',
 '{"error":{"code":"invalid_argument","message":"priority must be an integer","field":"priority"}}']
--- no_error_log
[error]



=== TEST 16: out of range, past int64_t's range too
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"x\", \"width\": 56}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"width\": 1e19}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"seed\": -1e300}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"width\": 2056}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"height\": 1020}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"steps\": 0}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"steps\": 151}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"seed\": -1}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"seed\": 4294967296}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"cfg_scale\": 30.5}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\", \"priority\": 10}"]
--- more_headers
Content-Type: application/json
--- error_code eval
[(400) x 11]
--- response_body eval
['{"error":{"code":"invalid_argument","message":"width must be between 64 and 2048","field":"width"}}',
 '{"error":{"code":"invalid_argument","message":"width must be between 64 and 2048","field":"width"}}',
 '{"error":{"code":"invalid_argument","message":"seed must be between 0 and 4294967295","field":"seed"}}',
 '{"error":{"code":"invalid_argument","message":"width must be between 64 and 2048","field":"width"}}',
 '{"error":{"code":"invalid_argument","message":"height must be a multiple of 8","field":"height"}}',
 '{"error":{"code":"invalid_argument","message":"steps must be between 1 and 150","field":"steps"}}',
 '{"error":{"code":"invalid_argument","message":"steps must be between 1 and 150","field":"steps"}}',
 '{"error":{"code":"invalid_argument","message":"seed must be between 0 and 4294967295","field":"seed"}}',
 '{"error":{"code":"invalid_argument","message":"seed must be between 0 and 4294967295","field":"seed"}}',
 '{"error":{"code":"invalid_argument","message":"cfg_scale must be between 0 and 30","field":"cfg_scale"}}',
 '{"error":{"code":"invalid_argument","message":"priority must be between 0 and 9","field":"priority"}}']
--- no_error_log
[error]



=== TEST 17: an unknown field is named
--- request
POST /api/v1/image/async
{"prompt": "x", "sampler": "euler"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"unknown field \"sampler\"","field":"sampler"}}
--- no_error_log
[error]



=== TEST 18: a field given twice
--- request
POST /api/v1/image/async
{"prompt": "x", "prompt": "y"}
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body chomp
{"error":{"code":"invalid_argument","message":"duplicate field \"prompt\"","field":"prompt"}}
--- no_error_log
[error]



=== TEST 19: a wrong Content-Type, or none
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"x\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"x\"}"]
--- more_headers eval
["Content-Type: text/plain", ""]
--- error_code eval
[415, 415]
--- response_body eval
['{"error":{"code":"unsupported_media_type","message":"the body must be application/json"}}',
 '{"error":{"code":"unsupported_media_type","message":"the body must be application/json"}}']
--- no_error_log
[error]



=== TEST 20: a JSON body over the 64 KiB a submission can need
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"x\", \"pad\": \"" . ("a" x 70000) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over 64 KiB"}}
--- no_error_log
[error]



=== TEST 21: a body over client_max_body_size gets the JSON error too
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 100;
    }
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"" . ("a" x 200) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_headers
Content-Type: application/json
--- response_body chomp
{"error":{"code":"payload_too_large","message":"the body is over client_max_body_size"}}
--- error_log
client intended to send too large body
--- no_error_log
[alert]



=== TEST 22: a chunked body over client_max_body_size
--- config
    location /api/v1/ {
        async_task_api;
        client_max_body_size 100;
    }
--- raw_request eval
"POST /api/v1/image/async HTTP/1.1\r
Host: localhost\r
Content-Type: application/json\r
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



=== TEST 23: a chunked submission is accepted
--- raw_request eval
"POST /api/v1/image/async HTTP/1.1\r
Host: localhost\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
Connection: close\r
\r
5\r
{\"pro\r
f\r
mpt\": \"chunks\"}\r
0\r
\r
"
--- error_code: 202
--- response_body_like: "params":\{"prompt":"chunks"
--- no_error_log
[error]



=== TEST 24: a body larger than client_body_buffer_size is read from its temp file
--- config
    location /api/v1/ {
        async_task_api;
        client_body_buffer_size 1k;
    }
--- request eval
"POST /api/v1/image/async\n{\"prompt\": \"" . ("b" x 3000) . "\"}"
--- more_headers
Content-Type: application/json
--- error_code: 202
--- response_body_like: "params":\{"prompt":"bbbbbbbbbb
--- no_error_log
[error]



=== TEST 25: only POST
--- request
GET /api/v1/image/async
--- error_code: 405
--- response_headers
Allow: POST
--- response_body chomp
{"error":{"code":"method_not_allowed","message":"method not allowed here"}}
--- no_error_log
[error]



=== TEST 26: a bad request stores nothing
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"x\", \"width\": 1}",
 "GET /api/v1/system/stats"]
--- more_headers
Content-Type: application/json
--- error_code eval
[400, 200]
--- response_body_like eval
[qr/invalid_argument/, qr/"QUEUED":0,/]
--- no_error_log
[error]



=== TEST 27: a NUL inside a string is refused, not cut short
--- request eval
["POST /api/v1/image/async\n{\"prompt\": \"a\\u0000b\"}",
 "POST /api/v1/image/async\n{\"prompt\": \"a\\\\u0000b\"}"]
--- more_headers
Content-Type: application/json
--- error_code eval
[400, 202]
--- response_body_like eval
[qr/^\{"error":\{"code":"invalid_argument","message":"strings must not contain NUL characters"\}\}$/,
 qr/"params":\{"prompt":"a\\\\u0000b"/]
--- no_error_log
[error]
