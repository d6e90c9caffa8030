# docs/openapi.yaml against the real tools and the running gateway: it lints
# clean with @redocly/cli; every endpoint's answers, successes and error
# paths, are valid against it (tools/openapi/contract.js, Ajv); and a
# client generated from it (openapi-typescript, openapi-fetch, tsc --strict)
# submits a task and reads it back. The npm tools are the ones build.sh
# installs into build/npm ($ASYNC_TASK_NPM) from tools/npm's lock file.

use Test::Nginx::Socket 'no_plan';
use AsyncTaskTest;

use JSON::PP ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Path qw(make_path remove_tree);

our $Root = abs_path(dirname(__FILE__) . '/..');
our $Npm = $ENV{ASYNC_TASK_NPM} || "$Root/build/npm";
our $Spec = "$Root/docs/openapi.yaml";

die "the npm tools are not in $Npm: run ./build.sh tools (or ./build.sh test)"
    unless -d "$Npm/node_modules";

# a command's output and exit status, stderr with stdout
sub run {
    my $cmd = join ' ', map { "'$_'" } @_;
    my $out = `$cmd 2>&1`;
    return ($out, $? >> 8);
}

# the contract check against a document: its report, decoded, and status;
# with arguments, those instead of the fakes' ports (--only ...)
sub contract {
    my ($spec, @args) = @_;
    my $port = AsyncTaskTest::port();
    @args = ('--image-fake', 19341, '--speech-fake', 19342,
             '--locked-base', "http://127.0.0.1:$port/locked/v1")
        unless @args;
    local $ENV{NODE_PATH} = "$Npm/node_modules";
    my ($out, $rc) = run('node', "$Root/tools/openapi/contract.js", $spec,
                         "http://127.0.0.1:$port/api/v1", @args);
    my $report = eval { JSON::PP::decode_json($out) };
    die "contract.js did not report ($rc): $out" unless $report;
    return ($report, $rc);
}

our ($Run, $Contract) = (\&run, \&contract);

master_on();
workers(2);

run_tests();

__DATA__

=== TEST 1: the document lints clean with @redocly/cli (recommended rules)
--- init
my ($out, $rc) = $main::Run->("$main::Npm/node_modules/.bin/redocly", 'lint',
    $main::Spec, '--config', "$main::Root/docs/redocly.yaml",
    '--format', 'stylish');
Test::More::is($rc, 0, 'redocly lint passes') or Test::More::diag($out);
Test::More::unlike($out, qr/\b(warning|error)\b/, 'no warnings, no errors')
    or Test::More::diag($out);
Test::More::like($out, qr/Your API description is valid/, 'valid');
--- request
GET /api/v1/system/stats
--- no_error_log
[error]
[alert]



=== TEST 2: every endpoint's answers, and its error paths, match the document
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=10;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;

    upstream gpu_image {
        server 127.0.0.1:19341 max_conns=2;
    }

    upstream gpu_speech {
        server 127.0.0.1:19342;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        client_max_body_size 200k;
    }
    location /locked/v1/ {
        async_task_api;
        deny all;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19341, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19342, kind => 'speech');
--- init
my ($r, $rc) = $main::Contract->($main::Spec);
Test::More::is($rc, 0, 'contract.js passes');
Test::More::is_deeply($r->{failures}, [], 'every answer matches the document')
    or Test::More::diag(JSON::PP->new->pretty->encode($r->{failures}));
Test::More::cmp_ok($r->{checked}, '>=', 90, "exchanges checked ($r->{checked})");

# each operation of the document was sent, with each status it declares
my $doc = `'$main::Npm/node_modules/.bin/redocly' bundle '$main::Spec' --ext json 2>/dev/null`;
$doc = JSON::PP::decode_json($doc);
my %skip = map { $_ => 1 } (
    # 503 of the writes, and 404 of a kind with no backend: the next tests
    map({ ("$_ 503", "$_ 404") } qw(submitImage submitSpeech submitPcm)),
    'cancelTask 503',
    # 503 of the reads: a locked database does not stop readers (WAL);
    # t/050-store.t makes the store fail otherwise
    map({ "$_ 503" } qw(listTasks getTask getResult)),
);
for my $path (sort keys %{ $doc->{paths} }) {
    for my $method (qw(get head post delete)) {
        my $op = $doc->{paths}{$path}{$method} or next;
        my $id = $op->{operationId};
        my %seen = map { $_ => 1 } @{ $r->{covered}{$id} || [] };
        for my $status (sort keys %{ $op->{responses} }) {
            next if $status eq 'default' || $skip{"$id $status"};
            Test::More::ok($seen{$status}, "$id answered $status");
        }
    }
}
Test::More::ok($r->{covered}{'(no such endpoint)'}, 'paths that are no endpoint');
Test::More::ok((grep { /^\(PUT / } keys %{ $r->{covered} }), 'a method an endpoint does not take');
Test::More::ok((grep { /default$/ } keys %{ $r->{covered} }), 'nginx\'s own errors (403)');
--- request
GET /api/v1/system/stats
--- response_body_like: "RUNNING":0,
--- no_error_log
[alert]



=== TEST 3: the submissions to a gateway with no backend answer 404 as the document says
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
--- init
my ($r, $rc) = $main::Contract->($main::Spec, '--only', 'no-backend');
Test::More::is($rc, 0, 'contract.js passes');
Test::More::is_deeply($r->{failures}, [], 'the 404s match the document')
    or Test::More::diag(JSON::PP->new->pretty->encode($r->{failures}));
Test::More::is_deeply($r->{covered}, {submitImage => ['404'],
    submitSpeech => ['404'], submitPcm => ['404']}, 'each submission');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":0,
--- no_error_log
[error]
[alert]



=== TEST 4: writes to a locked store answer 503 and Retry-After as the document says
--- http_config
    async_task_store @STORE@/tasks.db lock_timeout=200ms thread_pool=async_task;
    async_task_backend image gpu;
    async_task_backend speech gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my $id = AsyncTaskTest::submit('waits');
my $db = AsyncTaskTest::store_db($block);
open my $lock, '|-', "sqlite3 $db" or die;
$lock->autoflush(1);
print $lock "BEGIN EXCLUSIVE; INSERT INTO tasks (id, kind, status, priority, params, created_at) VALUES ('x', 'image', 'DONE', 1, '{}', 1);\n";
Time::HiRes::sleep(0.2);
my ($r, $rc) = $main::Contract->($main::Spec, '--only', 'locked',
                                 '--task', $id);
print $lock "ROLLBACK;\n";
close $lock;
Test::More::is($rc, 0, 'contract.js passes');
Test::More::is_deeply($r->{failures}, [], 'the 503s match the document')
    or Test::More::diag(JSON::PP->new->pretty->encode($r->{failures}));
Test::More::is_deeply($r->{covered}, {submitImage => ['503'],
    submitSpeech => ['503'], submitPcm => ['503'], cancelTask => ['503']},
    'each write');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":1,
--- error_log
database is locked
--- no_error_log
[alert]



=== TEST 5: the checker refuses answers the document does not allow
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=10;
    async_task_backend image gpu_image retries=0;
    async_task_backend speech gpu_speech;

    upstream gpu_image {
        server 127.0.0.1:19344 max_conns=2;
    }

    upstream gpu_speech {
        server 127.0.0.1:19345;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
        client_max_body_size 200k;
    }
    location /locked/v1/ {
        async_task_api;
        deny all;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19344, kind => 'image');
AsyncTaskTest::fake_gpu(port => 19345, kind => 'speech');
--- init
# a document that says the uptime is a string and drops the 409 of a cancel
open my $fh, '<', $main::Spec or die $!;
my $spec = do { local $/; <$fh> };
close $fh;
$spec =~ s/(uptime_seconds:\n(?:.*\n)*?\s+type: )integer/${1}string/
    or die "no uptime_seconds";
$spec =~ s/(operationId: cancelTask\n(?:.*\n)*?\s+)'409':/${1}'418':/
    or die "no 409";
my $bad = AsyncTaskTest::servroot() . '/html/openapi-broken.yaml';
open $fh, '>', $bad or die $!;
print $fh $spec;
close $fh;

my $port = AsyncTaskTest::port();
my ($r, $rc) = $main::Contract->($bad, '--image-fake', 19344,
    '--speech-fake', 19345,
    '--locked-base', "http://127.0.0.1:$port/locked/v1");
Test::More::is($rc, 1, 'contract.js fails');
my @f = @{ $r->{failures} };
Test::More::ok((grep { $_->{path} eq '/system/stats' && $_->{method} eq 'GET'
                       && "@{ $_->{errors} }" =~ /uptime_seconds must be string/ } @f),
               'the stats body is refused');
Test::More::ok((grep { $_->{method} eq 'DELETE' && $_->{status} eq '409' } @f),
               'the undocumented 409 is refused');
--- request
GET /api/v1/system/stats
--- no_error_log
[alert]



=== TEST 6: a client generated from the document submits a task and reads it back
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task;
    async_task_backend image gpu_image;

    upstream gpu_image {
        server 127.0.0.1:19343;
    }
--- config
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
--- post_setup_server_root
AsyncTaskTest::fake_gpu(port => 19343, kind => 'image');
--- init
# the client is built where node finds the npm tools (build/npm)
my $work = "$main::Npm/work";
remove_tree($work);
make_path($work);

my ($out, $rc) = $main::Run->("$main::Npm/node_modules/.bin/openapi-typescript",
                              $main::Spec, '--default-non-nullable=false',
                              '-o', "$work/schema.d.ts");
Test::More::is($rc, 0, 'openapi-typescript generates the types')
    or Test::More::diag($out);

system('cp', "$main::Root/tools/openapi/client.mts", "$work/") == 0 or die;
open my $fh, '>', "$work/tsconfig.json" or die $!;
print $fh JSON::PP::encode_json({ compilerOptions => {
    strict => JSON::PP::true, module => 'nodenext',
    moduleResolution => 'nodenext', target => 'es2022',
    skipLibCheck => JSON::PP::true, types => [] ,
    lib => ['es2022', 'dom'] }, files => ['client.mts'] });
close $fh;

($out, $rc) = $main::Run->("$main::Npm/node_modules/.bin/tsc", '-p',
                           "$work/tsconfig.json");
Test::More::is($rc, 0, 'tsc --strict compiles the client against the types')
    or Test::More::diag($out);

my $port = AsyncTaskTest::port();
($out, $rc) = $main::Run->('node', "$work/client.mjs",
                           "http://127.0.0.1:$port/api/v1");
Test::More::is($rc, 0, 'the client runs') or Test::More::diag($out);
my $r = eval { JSON::PP::decode_json($out) } || {};
Test::More::is($r->{status}, 'DONE', 'the task it submitted is DONE');
Test::More::like($r->{location} // '', qr{^/api/v1/tasks/[0-9a-f-]{36}$}, 'Location');
Test::More::cmp_ok($r->{bytes} // 0, '>', 8, 'the PNG read back');
--- request
GET /api/v1/tasks?kind=image
--- more_headers
X-User-Id: carol
--- response_body_like: "status":"DONE"
--- no_error_log
[error]
[alert]
