# Routing on the request URI: the endpoint is the end of the URI, the
# API's base what comes before it, so exact, nested and regex locations
# can hold single endpoints; Location headers and result URLs follow the
# base; what is not an endpoint is 404.

use strict;
use warnings;

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();

our $T0 = 1764410000000;

sub store_db { return store_dir() . '/tasks.db' }

sub seed {
    AsyncTaskTest::seed(store_db(),
        { id => tid(1), kind => 'image', status => 'DONE', priority => 5,
          params => '{"prompt":"x"}', created_at => $T0,
          started_at => $T0 + 1, finished_at => $T0 + 2, attempts => 1,
          backend => 'gpu_image/127.0.0.1:9', file => tid(1) . '.png',
          result => '{"content_type":"image/png","bytes":4}' },
        { id => tid(2), kind => 'speech', status => 'DONE', priority => 5,
          params => '{"filename":"a.wav","content_type":"audio/wav","bytes":4}',
          created_at => $T0 + 1000, started_at => $T0 + 1001,
          finished_at => $T0 + 1002, attempts => 1,
          backend => 'gpu_speech/127.0.0.1:9',
          result => '{"text":"hello","language":"en"}' });
}

# a submission through a path: (status, Location, the task)
sub submit_at {
    my ($path) = @_;
    my ($status, $h, $body) = AsyncTaskTest::http('POST', $path,
        headers => { 'Content-Type' => 'application/json' },
        body => '{"prompt":"a fox","width":64,"height":64}');
    my $task = eval { JSON::PP::decode_json($body) };
    return ($status, $h->{location}, $task);
}

sub get_json {
    my ($path) = @_;
    my ($status, $h, $body) = AsyncTaskTest::http('GET', $path);
    my $json = eval { JSON::PP::decode_json($body) };
    return ($status, $json, $body);
}

run_tests();

__DATA__

=== TEST 1: an exact location for system/stats (restricted by address) beside the API's location
--- config
    location /api/v1/ {
        async_task_api;
    }

    location = /api/v1/system/stats {
        async_task_api;
        allow 127.0.0.1;
        deny all;
    }

    location = /api/v2/system/stats {
        async_task_api;
        deny all;
    }
--- request eval
["GET /api/v1/system/stats", "GET /api/v2/system/stats"]
--- error_code eval
[200, 403]
--- response_body_like eval
['^\{"uptime_seconds":\d+,"tasks":\{',
 '^\{"error":\{"code":"forbidden","message":"access is forbidden"\}\}$']
--- no_error_log
[alert]



=== TEST 2: exact and regex locations for one task's result; the task's result URL keeps its base
--- post_setup_server_root
::seed();
--- config
    location = /api/v1/tasks/01900000-0000-7000-8000-000000000002/result {
        async_task_api;
    }

    location ~ ^/r/[0-9a-f-]+/api/tasks/[^/]+(/result)?$ {
        async_task_api;
    }
--- init
my ($status, $t) = ::get_json('/r/0/api/tasks/' . ::tid(1));
Test::More::is($status, 200, "$0 regex: the task");
Test::More::is($t->{result}{url}, '/r/0/api/tasks/' . ::tid(1) . '/result',
               "$0 regex: the result URL");
($status, $t) = ::get_json('/r/0/api/tasks/' . ::tid(2) . '/result');
Test::More::is($t->{text}, 'hello', "$0 regex: a speech result");
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000002/result
--- error_code: 200
--- response_body chomp
{"text":"hello","language":"en"}
--- no_error_log
[error]
[alert]



=== TEST 3: a nested location denies one part of the API; the rest answers
--- config
    location /api/v1/ {
        async_task_api;

        location /api/v1/system/ {
            async_task_api;
            deny all;
        }
    }
--- init
my ($status, $location, $task) = ::submit_at('/api/v1/image/async');
Test::More::is($status, 202, "$0 a submission");
Test::More::is($location, "/api/v1/tasks/$task->{id}", "$0 its Location");
--- request eval
["GET /api/v1/system/stats", "GET /api/v1/tasks"]
--- error_code eval
[403, 200]
--- response_body_like eval
['"code":"forbidden"', '^\{"tasks":\[\{"id":"']
--- no_error_log
[alert]



=== TEST 4: a regex location: submissions, Location, listings
--- config
    location ~ ^/gw/[a-z]+/ {
        async_task_api;
    }
--- init
my ($status, $location, $task) = ::submit_at('/gw/east/image/async');
Test::More::is($status, 202, "$0 a submission");
Test::More::is($location, "/gw/east/tasks/$task->{id}", "$0 its Location");
my ($s2, $again) = ::get_json($location);
Test::More::is($again->{id}, $task->{id}, "$0 the Location answers");
--- request
GET /gw/east/tasks?limit=1
--- error_code: 200
--- response_body_like: ^\{"tasks":\[\{"id":"[^"]+","kind":"image","status":"QUEUED"
--- no_error_log
[error]
[alert]



=== TEST 5: a prefix location without a trailing slash
--- config
    location /api/v1 {
        async_task_api;
    }
--- init
my ($status, $location, $task) = ::submit_at('/api/v1/image/async');
Test::More::is($location, "/api/v1/tasks/$task->{id}", "$0 Location");
--- request eval
["GET /api/v1/system/stats", "GET /api/v1x/system/stats"]
--- error_code eval
[200, 404]
--- response_body_like eval
['"uptime_seconds"', '^\{"error":\{"code":"not_found","message":"no such endpoint"\}\}$']
--- no_error_log
[error]
[alert]



=== TEST 6: what is not an endpoint is 404 no such endpoint: tasks/ (an empty id), paths below the base, a wrong tail
--- request eval
["GET /api/v1/tasks/",
 "DELETE /api/v1/tasks/",
 "GET /api/v1/x/tasks",
 "GET /api/v1/x/system/stats",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/results",
 "GET /api/v1/mytasks",
 "GET /api/v1/",
 "GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/result/"]
--- error_code eval
[(404) x 8]
--- response_body eval
[('{"error":{"code":"not_found","message":"no such endpoint"}}') x 8]
--- no_error_log
[error]
[alert]



=== TEST 7: a base with bytes that need escaping: Location escaped as a URI, the result URL as JSON
--- config
    location ~ ^/[^/]+/api/ {
        async_task_api;
    }
--- init
my ($status, $location, $task) = ::submit_at('/a%20b%22c%5C%0D%0AX:%20y/api/image/async');
Test::More::is($status, 202, "$0 a submission");
Test::More::is($location, "/a%20b%22c%5C%0D%0AX:%20y/api/tasks/$task->{id}",
               "$0 Location: escaped, one header");
my (undef, $h) = AsyncTaskTest::http('POST', '/a%0D%0AX:%20y/api/image/async',
    headers => { 'Content-Type' => 'application/json' },
    body => '{"prompt":"a fox","width":64,"height":64}');
Test::More::ok(!exists $h->{x}, "$0 no header injected");
my (undef, $t) = ::get_json('/a%20b%22c%5C/api/tasks/' . $task->{id});
Test::More::is($t->{id}, $task->{id}, "$0 the task through the same base");
--- request
GET /x/api/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]



=== TEST 8: each routing decision and each answer is traced at debug level
--- request
GET /api/v1/tasks/01900000-0000-7000-8000-000000000001/result
--- error_code: 404
--- error_log eval
['async task api: GET "tasks/*/result" base "/api/v1/" id "01900000-0000-7000-8000-000000000001"',
 'async task api: error not_found: no such task',
 'async task api: 404, 55 bytes of JSON']
--- no_error_log
[error]
[alert]



=== TEST 9: ... and a URI that is no endpoint
--- request
GET /api/v1/nothing
--- error_code: 404
--- error_log
async task api: no endpoint for "/api/v1/nothing"
--- no_error_log
[error]
[alert]
