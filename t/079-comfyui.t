# protocol=comfyui: a workflow file with placeholders, filled in
# JSON-safely; the run posts it to /prompt, follows /history, fetches
# /view; ComfyUI's refusals and failures become the task's error; a
# cancel interrupts the prompt or takes it out of ComfyUI's queue; a busy
# ComfyUI is not a down one; nginx -t refuses a bad workflow.
#
# Fake ComfyUI instances: tools/fake_gpu.py --kind comfyui, ports
# 19790-19809.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;
use JSON::PP ();
use Time::HiRes ();
use File::Path ();
use Digest::SHA ();

master_on();
workers(1);

run_tests();

sub tid { sprintf '01900000-0000-7000-8000-%012x', $_[0] }

sub store { AsyncTaskTest::servroot() . '/html/store' }

# a task straight into the store, as another tool (or an old version)
# would have written it
sub seed_task {
    my ($n, $params) = @_;

    AsyncTaskTest::seed(store() . '/tasks.db', {
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
    my ($port, $where) = @_;
    for (1 .. 200) {
        my $q = AsyncTaskTest::fake($port, 'GET', '/queue');
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
Test::More::is($post->{json}{client_id}, $id, 'the client id is the task id');
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
--- no_error_log
[error]
[alert]
