# The outbound requests: nothing a stored task holds can add a multipart
# part or header, or an <sd_cpp_extra_args> block of its own; the speech
# request reaches the instance byte for byte; the boundary is 128 random
# bits.  Tasks are seeded straight into the store, as one stored before
# the submission checks (or by another tool) would be.
#
# Fake GPU instances: tools/fake_gpu.py, ports 19760-19769.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest qw(tid store_dir);
use JSON::PP ();
use Time::HiRes ();
use File::Path ();
use Digest::SHA ();

master_on();
workers(1);

run_tests();

sub input { join '', map { chr(($_ * 13 + 5) % 256) } 0 .. $_[0] - 1 }

sub seed_task {
    my ($n, $kind, $params, $file) = @_;

    my %t = (id => tid($n), kind => $kind, status => 'QUEUED', priority => 5,
             params => JSON::PP->new->utf8->canonical->encode($params),
             created_at => int(Time::HiRes::time() * 1000));

    if (defined $file) {
        my $dir = store_dir() . '/files';
        File::Path::make_path($dir);
        open my $fh, '>:raw', "$dir/" . tid($n) . '.in' or die $!;
        print $fh $file;
        close $fh or die $!;
        $t{file} = tid($n) . '.in';
    }

    AsyncTaskTest::seed(store_dir() . '/tasks.db', \%t);
}

# the multipart body the module must send, given its boundary
sub multipart {
    my ($b, $parts, $filename, $type, $file) = @_;
    my $body = '';
    for my $p (@$parts) {
        my $v = $p->[1];
        utf8::encode($v);
        $body .= "--$b\r\nContent-Disposition: form-data; name=\"$p->[0]\""
                 . "\r\n\r\n$v\r\n";
    }
    return $body . "--$b\r\nContent-Disposition: form-data; name=\"file\"; "
           . "filename=\"$filename\"\r\nContent-Type: $type\r\n\r\n$file"
           . "\r\n--$b--\r\n";
}

# what the fake got, against the parts and bytes expected
sub speech_ok {
    my ($port, $what, $parts, $filename, $type, $file) = @_;

    my $t = AsyncTaskTest::wait_task(tid(1), ['DONE', 'FAILED']);
    Test::More::is($t->{status}, 'DONE', "$what: DONE");

    my $r = AsyncTaskTest::fake_stats($port)->{last_requests}[-1];
    my ($b) = $r->{headers}{'content-type'}
              =~ /^multipart\/form-data; boundary=(.*)$/;
    Test::More::like($b, qr/^ngx-async-task-[0-9a-f]{32}$/,
                     "$what: a boundary of 128 random bits");

    my @got = map { [ $_->{headers}, $_->{value} // "$_->{bytes} $_->{sha256}" ] }
              @{ $r->{parts} };
    my @want = ((map { [ ["Content-Disposition: form-data; name=\"$_->[0]\""],
                         $_->[1] ] } @$parts),
                [ ["Content-Disposition: form-data; name=\"file\"; "
                   . "filename=\"$filename\"", "Content-Type: $type"],
                  length($file) . ' ' . Digest::SHA::sha256_hex($file) ]);
    Test::More::is_deeply(\@got, \@want, "$what: exactly these parts");

    my $body = multipart($b, $parts, $filename, $type, $file);
    Test::More::is($r->{body_bytes}, length $body, "$what: body length");
    Test::More::is($r->{body_sha256}, Digest::SHA::sha256_hex($body),
                   "$what: the body byte for byte");
    Test::More::is($r->{headers}{'content-length'}, length $body,
                   "$what: Content-Length");
}

__DATA__

=== TEST 1: a speech request reaches the instance whole: parts and bytes exact
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech gpu model=whisper-1;
    upstream gpu { server 127.0.0.1:19760; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_task(1, 'speech', {filename => 'talk.wav',
    content_type => 'audio/wav', language => 'de',
    prompt => "Gr\x{fc}\x{df}e aus K\x{f6}ln", bytes => 200001},
    main::input(200001));
AsyncTaskTest::fake_gpu(port => 19760, kind => 'speech');
--- init
main::speech_ok(19760, 'speech',
    [[model => 'whisper-1'], [response_format => 'verbose_json'],
     [language => 'de'], [prompt => "Gr\x{fc}\x{df}e aus K\x{f6}ln"]],
    'talk.wav', 'audio/wav', main::input(200001));
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]


=== TEST 2: CR, LF and other control bytes in a stored task add no part and no header
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend speech gpu model=m;
    upstream gpu { server 127.0.0.1:19761; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_task(1, 'speech', {
    filename => "a\r\nb\".wav",
    content_type => "audio/wav\r\nX-Injected: 1",
    language => "en\r\nX-Injected: 1",
    prompt => "hi\r\n--x\r\nContent-Disposition: form-data; "
              . "name=\"model\"\r\n\r\nevil\x01\x7f\tend",
    bytes => 1000}, main::input(1000));
AsyncTaskTest::fake_gpu(port => 19761, kind => 'speech');
--- init
main::speech_ok(19761, 'hostile speech',
    [[model => 'm'], [response_format => 'verbose_json'],
     [language => 'en  X-Injected: 1'],
     [prompt => 'hi  --x  Content-Disposition: form-data; name="model"'
                . '    evil   end']],
    'a__b_.wav', 'application/octet-stream', main::input(1000));
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]


=== TEST 3: protocol=sdcpp: a block in the user's text overrides nothing
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu protocol=sdcpp;
    upstream gpu { server 127.0.0.1:19762; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_task(1, 'image', {
    prompt => 'cat <sd_cpp_extra_args>{"seed":999,"sample_params":'
              . '{"sample_steps":150}}</sd_cpp_extra_args> <SD_CPP_EXTRA_ARGS>',
    negative_prompt => 'blurry </sd_cpp_extra_args>x',
    width => 64, height => 64, seed => 1, steps => 9});
AsyncTaskTest::fake_gpu(port => 19762, kind => 'image');
--- init
my $t = AsyncTaskTest::wait_task(main::tid(1), ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE');
my $r = AsyncTaskTest::fake_stats(19762)->{last_requests}[-1];
Test::More::is_deeply($r->{sd_cpp_extra_args},
    {negative_prompt => 'blurry /sd_cpp_extra_args>x', seed => 1,
     sample_params => {sample_steps => 9}}, 'our options block, only ours');
Test::More::is($r->{params}{seed}, 1, 'the validated seed');
Test::More::is($r->{params}{steps}, 9, 'the validated steps');
Test::More::is($r->{params}{prompt},
    'cat sd_cpp_extra_args>{"seed":999,"sample_params":{"sample_steps":150}}'
    . '/sd_cpp_extra_args> SD_CPP_EXTRA_ARGS>', 'the user\'s tags are inert');
Test::More::is(() = $r->{json}{prompt} =~ /<sd_cpp_extra_args>/gi, 1,
               'one opening tag in the prompt sent');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]


=== TEST 4: protocol=openai: the user's tags are inert too
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:19763; }
--- post_setup_server_root
AsyncTaskTest::stop_fake_gpus();
main::seed_task(1, 'image', {
    prompt => 'cat <sd_cpp_extra_args>{"seed":999}</sd_cpp_extra_args>',
    width => 64, height => 64, seed => 1, steps => 9});
AsyncTaskTest::fake_gpu(port => 19763, kind => 'image');
--- init
my $t = AsyncTaskTest::wait_task(main::tid(1), ['DONE', 'FAILED']);
Test::More::is($t->{status}, 'DONE', 'DONE');
my $r = AsyncTaskTest::fake_stats(19763)->{last_requests}[-1];
Test::More::is($r->{sd_cpp_extra_args}, undef, 'no options block');
Test::More::is($r->{json}{prompt},
    'cat sd_cpp_extra_args>{"seed":999}/sd_cpp_extra_args>', 'the prompt sent');
Test::More::is($r->{params}{seed}, 1, 'the validated seed');
--- request
GET /api/v1/system/stats
--- response_body_like: "DONE":1,
--- no_error_log
[error]
[alert]
