# $async_task_id, $async_task_kind, $async_task_status, $async_task_user
# and $async_task_position: set by submissions and by reads of one task,
# in log_format, add_header and map.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

master_on();
workers(2);

# the lines of the access log, once it has n of them (a request's line is
# written when it ends, which may be a moment after its answer)
sub log_lines {
    my ($name, $n) = @_;
    my @lines;
    for (1 .. 100) {
        if (open my $fh, '<', AsyncTaskTest::servroot() . "/logs/$name") {
            @lines = map { chomp; $_ } <$fh>;
        }
        last if @lines >= $n;
        Time::HiRes::sleep(0.05);
    }
    return @lines;
}

run_tests();

__DATA__

=== TEST 1: the access log of submissions, reads, a cancel and other requests
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task max_queued=3;
    async_task_backend image gpu;
    async_task_backend speech gpu;
    upstream gpu { server 127.0.0.1:9 down; }
    log_format task '$request_method $uri $status id=$async_task_id '
                    'kind=$async_task_kind status=$async_task_status '
                    'user=$async_task_user position=$async_task_position';
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        access_log logs/tasks.log task;
    }
--- init
use Test::More;
my $json = {'Content-Type' => 'application/json'};

my ($s, $a) = AsyncTaskTest::api('POST', 'image/async',
    headers => {%$json, 'X-User-Id' => 'alice'}, body => '{"prompt": "a"}');
my (undef, $b) = AsyncTaskTest::api('POST', 'speech/pcm',
    headers => {'Content-Type' => 'application/octet-stream'}, body => 'abcd');
AsyncTaskTest::api('GET', "tasks/$b->{id}");
AsyncTaskTest::api('GET', "tasks/$a->{id}", headers => {'X-User-Id' => 'alice'});
AsyncTaskTest::api('GET', "tasks/$a->{id}", headers => {'X-User-Id' => 'bob'});
AsyncTaskTest::api('DELETE', "tasks/$a->{id}", headers => {'X-User-Id' => 'alice'});
AsyncTaskTest::api('GET', "tasks/$a->{id}", headers => {'X-User-Id' => 'alice'});
AsyncTaskTest::api('POST', 'image/async', headers => $json, body => '{}');
AsyncTaskTest::api('GET', 'system/stats');

my @lines = main::log_lines('tasks.log', 9);
my $ia = $a->{id};
my $ib = $b->{id};
my @want = (
    "POST /api/v1/image/async 202 id=$ia kind=image status=QUEUED user=alice position=0",
    "POST /api/v1/speech/pcm 202 id=$ib kind=speech status=QUEUED user=- position=0",
    "GET /api/v1/tasks/$ib 200 id=$ib kind=speech status=QUEUED user=- position=0",
    "GET /api/v1/tasks/$ia 200 id=$ia kind=image status=QUEUED user=alice position=0",
    "GET /api/v1/tasks/$ia 404 id=- kind=- status=- user=- position=-",
    "DELETE /api/v1/tasks/$ia 200 id=$ia kind=image status=CANCELED user=alice position=-",
    "GET /api/v1/tasks/$ia 200 id=$ia kind=image status=CANCELED user=alice position=-",
    "POST /api/v1/image/async 400 id=- kind=image status=- user=- position=-",
    "GET /api/v1/system/stats 200 id=- kind=- status=- user=- position=-",
);
# a refused request's line may come after the next one's (lingering close)
is_deeply([sort @lines], [sort @want], 'one line per request, with its task');
--- request
GET /api/v1/system/stats
--- no_error_log
[error]
[alert]



=== TEST 2: add_header and map: the task's id and status in the answer's headers
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:19321; }
    map $async_task_status $task_over {
        DONE      yes;
        FAILED    yes;
        CANCELED  yes;
        default   no;
    }
    log_format over '$async_task_id $task_over';
--- config
    # "always": add_header leaves out a 202 otherwise
    location /api/v1/ {
        async_task_api;
        add_header X-Task-Id $async_task_id always;
        add_header X-Task-Status $async_task_status always;
        add_header X-Task-Over $task_over always;
        access_log logs/over.log over;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19321, kind => 'image');
--- init
use Test::More;
my ($s, $t, $h) = AsyncTaskTest::api('POST', 'image/async',
    headers => {'Content-Type' => 'application/json'},
    body => '{"prompt": "fox"}');
is($s, 202, 'accepted');
is($h->{'x-task-id'}, $t->{id}, 'X-Task-Id of the 202');
like($h->{'x-task-status'}, qr/^(QUEUED|RUNNING)$/, 'X-Task-Status of the 202');
is($h->{'x-task-over'}, 'no', 'map: not over yet');
AsyncTaskTest::wait_task($t->{id}, ['DONE']);
my ($gs, $gt, $gh) = AsyncTaskTest::api('GET', "tasks/$t->{id}");
is($gh->{'x-task-status'}, 'DONE', 'X-Task-Status of a read');
is($gh->{'x-task-over'}, 'yes', 'map: over');
my ($rs, $rh) = AsyncTaskTest::http('GET', "/api/v1/tasks/$t->{id}/result");
is($rs, 200, 'the result');
is($rh->{'x-task-id'}, $t->{id}, 'the result read sets the variables too');
is($rh->{'x-task-status'}, 'DONE', 'and the status');
my @lines = main::log_lines('over.log', 3);
is($lines[-1], "$t->{id} yes", 'map in the log');
--- request
GET /api/v1/tasks/00000000-0000-4000-8000-000000000000
--- error_code: 404
--- response_headers
X-Task-Id:
X-Task-Status:
--- no_error_log
[error]
[alert]
