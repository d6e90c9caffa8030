# protocol=comfyui: a workflow file with placeholders, filled in
# JSON-safely; the run posts it to /prompt, follows /history, fetches
# /view; ComfyUI's refusals and failures become the task's error; a
# cancel interrupts the prompt or takes it out of ComfyUI's queue; a busy
# ComfyUI is not a down one; nginx -t refuses a bad workflow.
#
# Fake ComfyUI instances: tools/fake_gpu.py --kind comfyui, ports
# 19790-19809.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();
use Time::HiRes ();
use File::Path ();
use Digest::SHA ();

master_on();
workers(1);

run_tests();

# a task straight into the store, as another tool (or an old version)
# would have written it
sub seed_task {
    my ($n, $params) = @_;

    AsyncTaskTest::seed(store_dir() . '/tasks.db', {
        id => tid($n), kind => 'image', status => 'QUEUED', priority => 5,
        params => JSON::PP->new->utf8->canonical->encode($params),
        created_at => int(Time::HiRes::time() * 1000)});
}

sub submit {
    my ($body) = @_;
    my ($s, $t) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => JSON::PP::encode_json($body));
    die "submit: $s" unless $s == 202;
    return $t->{id};
}

# the requests the fake got, by method and path
sub requests {
    my ($port, $method, $path) = @_;
    return grep { $_->{method} eq $method && $_->{path} =~ $path }
           @{ AsyncTaskTest::fake_stats($port)->{last_requests} };
}

# the example workflow in html/, and a fake ComfyUI (stopping the others)
sub start_comfy {
    my ($port, %opt) = @_;
    require File::Copy;
    File::Copy::copy('examples/qwen-image-gguf-comfyui.json',
                     AsyncTaskTest::servroot() . '/html/') or die $!;
    AsyncTaskTest::stop_fake_gpus();
    AsyncTaskTest::fake_gpu(port => $port, kind => 'comfyui', %opt);
}

sub result_png {
    my ($id) = @_;
    my ($s, $h, $body) = AsyncTaskTest::http('GET', "/api/v1/tasks/$id/result");
    return $body;
}

sub expected_png {
    my ($port, $prompt, $seed) = @_;
    require URI::Escape;
    my (undef, undef, $png) = AsyncTaskTest::http('GET',
        '/control/expected-png?prompt=' . URI::Escape::uri_escape_utf8($prompt)
        . "&seed=$seed", port => $port);
    return $png;
}

# waits until the fake runs (or holds pending) a prompt of this task
sub wait_prompt {
    my ($port, $where, $key) = @_;
    for (1 .. 200) {
        my (undef, undef, $body) = AsyncTaskTest::http('GET', '/queue',
            port => $port,
            headers => $key ? {Authorization => "Bearer $key"} : {});
        my $q = JSON::PP::decode_json($body);
        my @mine = grep { ($_->[3]{client_id} // '') ne 'someone-else' }
                   @{ $q->{$where} };
        return $mine[0][1] if @mine;
        Time::HiRes::sleep(0.05);
    }
    return undef;
}

__DATA__

=== TEST 1: the workflow as ComfyUI gets it: each placeholder filled in, JSON-safely, and the image is the task's result
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19790; }
--- user_files
>>> wf.json
{"3": {"class_type": "KSampler", "inputs": {"model": ["1", 0],
   "seed": "{{seed}}", "steps": "{{steps}}", "cfg": "{{cfg_scale|2.5}}",
   "sampler_name": "euler", "scheduler": "simple", "denoise": 1,
   "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
 "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "q.gguf"}},
 "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": "c", "type": "qwen_image"}},
 "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "clip": ["2", 0]}},
 "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{negative_prompt|ugly, \"blurry\"}}", "clip": ["2", 0]}},
 "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1}},
 "4": {"class_type": "VAELoader", "inputs": {"vae_name": "v"}},
 "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 0]}},
 "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0],
   "filename_prefix": "run {{seed}} of \u007b{prompt}} w{{width}}"}}}
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
AsyncTaskTest::fake_gpu(port => 19790, kind => 'comfyui', latency => 0.2);
--- init
my $prompt = "a \"red\" fox\\ in\nsnow, caf\x{e9} {{seed}} </x> \x{1f98a}";
my $id = main::submit({prompt => $prompt, width => 512, height => 768,
                       steps => 9, seed => 4294967295, cfg_scale => 3.25});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE') or Test::More::diag(JSON::PP::encode_json($t));

my ($post) = main::requests(19790, 'POST', qr{^/prompt$});
my $graph = $post->{json}{prompt};
Test::More::is($post->{json}{client_id}, 'ngx_async_task',
               'a client id that is not the task id (ComfyUI shows it)');
Test::More::is($graph->{6}{inputs}{text}, $prompt, 'the prompt, exactly (quotes, backslash, newline, UTF-8, braces)');
Test::More::is($graph->{7}{inputs}{text}, 'ugly, "blurry"', 'a string default');
is_deeply_num($graph->{3}{inputs}, {seed => 4294967295, steps => 9, cfg => 3.25});
Test::More::is($graph->{5}{inputs}{width} . 'x' . $graph->{5}{inputs}{height}, '512x768', 'the size');
Test::More::is($graph->{9}{inputs}{filename_prefix},
               'run 4294967295 of {{prompt}} w512', 'inside a string: text; \u007b{ stays literal');

my ($raw) = $post->{body_bytes};
Test::More::ok($raw > 0, 'a body');
my @polls = main::requests(19790, 'GET', qr{^/history/});
Test::More::ok(@polls >= 1, 'the history was polled');
Test::More::like($polls[-1]{path}, qr{^/history/\Q$post->{prompt_id}\E$}, 'for the prompt id ComfyUI gave');
my ($view) = main::requests(19790, 'GET', qr{^/view$});
Test::More::is_deeply($view->{view}, {filename => 'run 4294967295 of {{prompt}} w512_00001_.png',
    subfolder => '', type => 'output'}, 'the image ComfyUI named');

my $png = main::result_png($id);
Test::More::is(Digest::SHA::sha256_hex($png),
    Digest::SHA::sha256_hex(main::expected_png(19790, $prompt, 4294967295)),
    'the result is the PNG from /view, byte for byte');

sub is_deeply_num {
    my ($in, $want) = @_;
    for my $k (sort keys %$want) {
        Test::More::ok(JSON::PP->new->canonical->encode([$in->{$k}]) eq
                       JSON::PP->new->canonical->encode([$want->{$k}]),
                       "$k is the number $want->{$k}, not a string");
    }
}
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- error_log eval
qr/task [0-9a-f-]{36} is ComfyUI prompt [0-9a-f-]{36} on comfy\/127.0.0.1:19790/
--- no_error_log
[error]
[alert]



=== TEST 2: the example Qwen-Image GGUF workflow runs as it is: defaults for what a task leaves out
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19791; }
--- post_setup_server_root
main::start_comfy(19791);
--- init
my $id = main::submit({prompt => 'a lighthouse at dusk', seed => 7});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE') or Test::More::diag(JSON::PP::encode_json($t));
my ($post) = main::requests(19791, 'POST', qr{^/prompt$});
Test::More::is_deeply($post->{params}, {prompt => 'a lighthouse at dusk',
    negative_prompt => '', seed => 7, steps => 20, cfg_scale => 2.5,
    width => 1024, height => 1024}, 'the task\'s values, the file\'s cfg, no negative');
my ($view) = main::requests(19791, 'GET', qr{^/view$});
Test::More::is_deeply($view->{view}, {filename => 'ngx_async_task_7_00001_.png',
    subfolder => 'qwen-image', type => 'output'}, 'the SaveImage output, in its subfolder');
Test::More::is(Digest::SHA::sha256_hex(main::result_png($id)),
    Digest::SHA::sha256_hex(main::expected_png(19791, 'a lighthouse at dusk', 7)),
    'the PNG');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 3: a graph ComfyUI refuses (node errors in its 400): backend_rejected, at once, with ComfyUI's words
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=2
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19792; }
--- post_setup_server_root
main::seed_task(1, {prompt => 'tiny', width => 8, height => 64, seed => 1,
                    steps => 4});
main::start_comfy(19792);
--- init
my $t = AsyncTaskTest::wait_task(main::tid(1), ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{attempts}, 1, 'not retried');
Test::More::is($t->{error}{code}, 'backend_rejected', 'backend_rejected');
Test::More::is($t->{error}{message},
    'ComfyUI refused the workflow (400): Prompt outputs failed validation; '
    . 'node 7 (EmptySD3LatentImage): Value 8 smaller than min of 16: width',
    'ComfyUI\'s message and the node\'s error');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 4: ComfyUI fails the prompt (status_str "error"): backend_error with its exception message
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19793; }
--- post_setup_server_root
main::start_comfy(19793);
--- init
AsyncTaskTest::fake(19793, 'POST', '/control/comfyui',
    {execution_error => "CUDA out of memory. Tried to allocate 2.00 GiB"});
my $id = main::submit({prompt => 'x', width => 64, height => 64, seed => 1});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{error}{code}, 'backend_error', 'backend_error');
Test::More::is($t->{error}{message},
    'ComfyUI failed the prompt: node 3 (KSampler): CUDA out of memory. '
    . 'Tried to allocate 2.00 GiB', 'the node and its exception');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 5: a failed prompt is retried as a 5xx is; a 500 from /prompt too
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=2 backoff=10ms
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19794; }
--- post_setup_server_root
main::start_comfy(19794);
--- init
AsyncTaskTest::fake(19794, 'POST', '/control/comfyui',
    {execution_error => "boom"});
AsyncTaskTest::fake_control(19794, mode => 'error500', times => 1);
my $id = main::submit({prompt => 'y', width => 64, height => 64, seed => 2});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE on the third attempt');
Test::More::is($t->{attempts}, 3, 'three attempts');
Test::More::is(scalar(() = main::requests(19794, 'POST', qr{^/prompt$})), 3,
               'three prompts posted');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 6: a history answer over 4 MiB is a bad_response, not a worker's memory
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19795; }
--- post_setup_server_root
main::start_comfy(19795);
--- init
AsyncTaskTest::fake(19795, 'POST', '/control/comfyui', {fault_on => 'history'});
AsyncTaskTest::fake_control(19795, mode => 'huge_body', huge_size => 5000000);
my $id = main::submit({prompt => 'z', width => 64, height => 64, seed => 3});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{error}{code}, 'bad_response', 'bad_response');
Test::More::is($t->{error}{message},
    'the answer is larger than the limit of 4194304 bytes', 'the cap');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[alert]



=== TEST 7: what /view sends must be a PNG
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19796; }
--- post_setup_server_root
main::start_comfy(19796);
--- init
AsyncTaskTest::fake(19796, 'POST', '/control/comfyui', {fault_on => 'view'});
AsyncTaskTest::fake_control(19796, mode => 'malformed');
my $id = main::submit({prompt => 'w', width => 64, height => 64, seed => 4});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{error}{code}, 'bad_response', 'bad_response');
Test::More::is($t->{error}{message},
    'the image ComfyUI sent is not a PNG', 'why');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 8: an odd file name and subfolder reach /view escaped, and come back exact
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19797; }
--- post_setup_server_root
main::start_comfy(19797);
--- init
my $name = "fox & hound #1?=%+ caf\x{e9}.png";
my $sub = "a b/c&d=e;f";
AsyncTaskTest::fake(19797, 'POST', '/control/comfyui',
    {filename => $name, subfolder => $sub});
my $id = main::submit({prompt => 'v', width => 64, height => 64, seed => 5});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE') or Test::More::diag(JSON::PP::encode_json($t));
my ($view) = main::requests(19797, 'GET', qr{^/view$});
Test::More::is_deeply($view->{view}, {filename => $name, subfolder => $sub,
    type => 'output'}, 'the names as ComfyUI gave them');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 9: a file name with control bytes is not asked for
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19798; }
--- post_setup_server_root
main::start_comfy(19798);
--- init
AsyncTaskTest::fake(19798, 'POST', '/control/comfyui',
    {filename => "a\r\nHost: evil\r\n.png"});
my $id = main::submit({prompt => 'u', width => 64, height => 64, seed => 6});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{error}{code}, 'bad_response', 'bad_response');
Test::More::is(scalar(() = main::requests(19798, 'GET', qr{^/view$})), 0,
               'no /view request');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]



=== TEST 10: a stored task whose values the graph cannot take is not sent
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui retries=0
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19799; }
--- post_setup_server_root
main::seed_task(1, {prompt => 'p', width => 64, height => 64,
                    seed => '1, "x": 2', steps => 4});
main::start_comfy(19799);
--- init
my $t = AsyncTaskTest::wait_task(main::tid(1), ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is(scalar(() = main::requests(19799, 'POST', qr{^/prompt$})), 0,
               'nothing posted');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- error_log
the request of task 01900000-0000-7000-8000-000000000001 could not be made
--- no_error_log
[error]



=== TEST 11: a task canceled while ComfyUI executes its prompt: POST /interrupt names that prompt
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19800; }
--- post_setup_server_root
main::start_comfy(19800, latency => 30);
--- init
my $id = main::submit({prompt => 'slow', width => 64, height => 64, seed => 1});
my $pid = main::wait_prompt(19800, 'queue_running');
Test::More::ok($pid, 'ComfyUI runs it');
my ($s, $t) = AsyncTaskTest::api('DELETE', "tasks/$id");
Test::More::is($t->{status}, 'CANCELED', 'CANCELED');
my @int;
for (1 .. 100) {
    @int = main::requests(19800, 'POST', qr{^/interrupt$});
    last if @int;
    Time::HiRes::sleep(0.05);
}
Test::More::is_deeply([map { $_->{json} } @int], [{prompt_id => $pid}],
                      'one interrupt, for our prompt');
Test::More::is(scalar(() = main::requests(19800, 'POST', qr{^/queue$})), 0,
               'no delete');
my $h = AsyncTaskTest::fake(19800, 'GET', "/history/$pid");
Test::More::is($h->{$pid}{status}{messages}[-1][0], 'execution_interrupted',
               'ComfyUI stopped it');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1\}
--- error_log
dropped on comfy/127.0.0.1:19800
--- no_error_log
[error]
[alert]



=== TEST 12: a task canceled while its prompt waits in ComfyUI's queue: POST /queue deletes it, nothing is interrupted
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19801; }
--- post_setup_server_root
main::start_comfy(19801);
--- init
AsyncTaskTest::fake(19801, 'POST', '/control/comfyui', {busy => 30});
my $id = main::submit({prompt => 'queued', width => 64, height => 64, seed => 1});
my $pid = main::wait_prompt(19801, 'queue_pending');
Test::More::ok($pid, 'ComfyUI holds it behind another client\'s');
my ($s, $t) = AsyncTaskTest::api('DELETE', "tasks/$id");
Test::More::is($t->{status}, 'CANCELED', 'CANCELED');
my @del;
for (1 .. 100) {
    @del = main::requests(19801, 'POST', qr{^/queue$});
    last if @del;
    Time::HiRes::sleep(0.05);
}
Test::More::is_deeply([map { $_->{json} } @del], [{delete => [$pid]}],
                      'one delete, of our prompt');
Test::More::is(scalar(() = main::requests(19801, 'POST', qr{^/interrupt$})), 0,
               'the other client\'s prompt runs on');
my $q = AsyncTaskTest::fake(19801, 'GET', '/queue');
Test::More::is(scalar @{ $q->{queue_pending} }, 0, 'ours is out of the queue');
Test::More::is(scalar @{ $q->{queue_running} }, 1, 'theirs still runs');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1\}
--- no_error_log
[error]
[alert]



=== TEST 13: ComfyUI busy with others' prompts past the timeout: the task times out, the instance stays healthy, our prompt leaves its queue
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui timeout=1500ms
                       retries=0 workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy {
        zone comfy 64k;
        server 127.0.0.1:19802;
        async_task_health_check interval=200ms timeout=1s fails=1 passes=1
                                uri=/system_stats;
    }
--- post_setup_server_root
main::start_comfy(19802);
--- init
AsyncTaskTest::fake(19802, 'POST', '/control/comfyui', {busy => 30});
my $id = main::submit({prompt => 'late', width => 64, height => 64, seed => 1});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'FAILED', 'FAILED');
Test::More::is($t->{error}{code}, 'timeout', 'timeout');
Test::More::like($t->{error}{message}, qr/^ComfyUI did not finish prompt [0-9a-f-]{36} in time$/,
                 'why');
Time::HiRes::sleep(0.5);
my $b = AsyncTaskTest::backend_stats('127.0.0.1:19802');
Test::More::ok($b->{healthy}, 'still healthy');
my @del;
for (1 .. 100) {
    @del = main::requests(19802, 'POST', qr{^/queue$});
    last if @del;
    Time::HiRes::sleep(0.05);
}
Test::More::is(scalar @del, 1, 'our prompt deleted from ComfyUI\'s queue');
--- request
GET /api/v1/system/stats
--- response_body_like: "FAILED":1,
--- no_error_log
[error]
[alert]
is down



=== TEST 14: a ComfyUI whose /system_stats fails is down: tasks wait
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy {
        zone comfy 64k;
        server 127.0.0.1:19803;
        async_task_health_check interval=200ms timeout=1s fails=1 passes=1
                                uri=/system_stats;
    }
--- post_setup_server_root
main::start_comfy(19803, health => 'down');
--- init
Time::HiRes::sleep(0.6);
my $id = main::submit({prompt => 'wait', width => 64, height => 64, seed => 1});
Time::HiRes::sleep(0.6);
Test::More::is(AsyncTaskTest::task($id)->{status}, 'QUEUED', 'the task waits');
Test::More::ok(!AsyncTaskTest::backend_stats('127.0.0.1:19803')->{healthy},
               'down');
AsyncTaskTest::fake_control(19803, health => 'up');
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'runs once it is up');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- error_log
async_task: instance comfy/127.0.0.1:19803 is down
async_task: instance comfy/127.0.0.1:19803 is up again
--- no_error_log
[error]
[alert]



=== TEST 15: nginx -t refuses a workflow file that is not there, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/nope.json;
    upstream comfy { server 127.0.0.1:19804; }
--- must_die
--- error_log
nope.json" failed (2: No such file or directory)



=== TEST 16: nginx -t refuses a workflow that is not JSON, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "X", "inputs": {"text": "{{prompt}}"}},}
--- must_die
--- error_log
wf.json" is not valid JSON



=== TEST 17: nginx -t refuses a workflow in the UI's format, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"nodes": [{"id": 1, "type": "KSampler", "widgets_values": ["{{prompt}}"]}], "links": []}
--- must_die
--- error_log
wf.json" is not in ComfyUI's API format



=== TEST 18: nginx -t refuses a workflow without a prompt placeholder, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox", "seed": "{{seed}}"}}}
--- must_die
--- error_log
wf.json" has no "{{prompt}}" placeholder



=== TEST 19: nginx -t refuses an unknown placeholder, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}", "x": "{{promt}}"}}}
--- must_die
--- error_log
wf.json" has an unknown placeholder "{{promt}}"



=== TEST 20: nginx -t refuses a placeholder left open, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}"}}}
--- must_die
--- error_log
wf.json" has a "{{" that no "}}" closes in its string



=== TEST 21: nginx -t refuses cfg_scale without a default, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "KSampler", "inputs": {"text": "{{prompt}}", "cfg": "{{cfg_scale}}"}}}
--- must_die
--- error_log
"{{cfg_scale}}" needs a default, as in "{{cfg_scale|4.0}}"



=== TEST 22: nginx -t refuses a default that is not an integer, naming the file
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "KSampler", "inputs": {"text": "{{prompt}}", "steps": "{{steps|20.5}}"}}}
--- must_die
--- error_log
the default of "{{steps}}" is not an integer



=== TEST 23: nginx -t refuses protocol=comfyui without a workflow
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui ;
    upstream comfy { server 127.0.0.1:19804; }
--- must_die
--- error_log
protocol=comfyui needs "workflow="



=== TEST 24: a workflow is only for protocol=comfyui
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}}
--- must_die
--- error_log
"workflow" is only for protocol=comfyui



=== TEST 25: protocol=comfyui is for images
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech comfy protocol=comfyui;
    upstream comfy { server 127.0.0.1:19804; }
--- must_die
--- error_log
"protocol=comfyui" is only for image backends



=== TEST 26: nginx -t refuses a workflow with anything after its object (cJSON alone would stop at the object's end)
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files
>>> wf.json
{"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}} "x": "{{seed
--- must_die
--- error_log
wf.json" is not valid JSON (near byte 73)



=== TEST 27: nginx -t refuses a raw control character in a workflow's string
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui workflow=../html/wf.json;
    upstream comfy { server 127.0.0.1:19804; }
--- user_files eval
[["wf.json", qq({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}\x01"}}})]]
--- must_die
--- error_log
wf.json" has a control character in a string (near byte 69)



=== TEST 28: a reload while ComfyUI executes a prompt: the old worker drops it there (interrupt), the task runs again uncharged
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19805; }
--- post_setup_server_root
main::start_comfy(19805, latency => 3);
--- init
my $id = main::submit({prompt => 'reload', width => 64, height => 64, seed => 1});
my $pid = main::wait_prompt(19805, 'queue_running');
Test::More::ok($pid, 'ComfyUI runs it');
kill 'HUP', AsyncTaskTest::pid_of_master();
my @int;
for (1 .. 100) {
    @int = main::requests(19805, 'POST', qr{^/interrupt$});
    last if @int;
    Time::HiRes::sleep(0.05);
}
Test::More::is_deeply([map { $_->{json} } @int], [{prompt_id => $pid}],
                      'the old worker interrupted its prompt');
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED'], timeout => 15);
Test::More::is($t->{status}, 'DONE', 'DONE after the reload');
Test::More::is($t->{attempts}, 1, 'the cut run was not charged');
Test::More::is(scalar(() = main::requests(19805, 'POST', qr{^/prompt$})), 2,
               'posted again by the new worker');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 29: with keepalive=, a run's requests share one kept connection, each answer in a pool freed before the next
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui keepalive=1
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19806; }
--- post_setup_server_root
main::start_comfy(19806, latency => 1.2);
--- init
my $id = main::submit({prompt => 'kept', width => 64, height => 64, seed => 1});
my $t = AsyncTaskTest::wait_task($id, ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE');
my @r = grep { $_->{path} =~ m{^/(prompt|history/|view)} }
        @{ AsyncTaskTest::fake_stats(19806)->{last_requests} };
Test::More::ok(@r >= 4, 'a post, polls and a view');
Test::More::is(scalar(keys %{{ map { $_->{peer_port} => 1 } @r }}), 1,
               'all on one connection');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]



=== TEST 30: with api_key=, every request of a run and of dropping its prompt carries the key
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image comfy protocol=comfyui api_key=k-comfy-7
                       workflow=../html/qwen-image-gguf-comfyui.json;
    upstream comfy { server 127.0.0.1:19807; }
--- post_setup_server_root
main::start_comfy(19807, latency => 30, api_key => 'k-comfy-7');
--- init
my $id = main::submit({prompt => 'keyed', width => 64, height => 64, seed => 1});
my $pid = main::wait_prompt(19807, 'queue_running', 'k-comfy-7');
Test::More::ok($pid, 'ComfyUI runs it: /prompt had the key');
my ($s, $t) = AsyncTaskTest::api('DELETE', "tasks/$id");
my @int;
for (1 .. 100) {
    @int = main::requests(19807, 'POST', qr{^/interrupt$});
    last if @int;
    Time::HiRes::sleep(0.05);
}
Test::More::is_deeply([map { $_->{json} } @int], [{prompt_id => $pid}],
                      'the interrupt got through');
my @r = grep { $_->{path} =~ m{^/(prompt|history/|queue|interrupt)} }
        @{ AsyncTaskTest::fake_stats(19807)->{last_requests} };
Test::More::is(scalar(grep { ($_->{headers}{authorization} // '') ne
                             'Bearer k-comfy-7' } @r), 0,
               'each with the key');
--- request
GET /api/v1/system/stats
--- response_body_like: "CANCELED":1\}
--- no_error_log
[error]
[alert]
could not be dropped
