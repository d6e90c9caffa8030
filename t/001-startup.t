# Start-up checks: mistakes of the operator stop nginx with a message
# that names them (a store or files= directory the worker processes
# cannot write, a zone too small for max_queued), and what the module
# creates at start belongs to the worker user, unreadable by others.
#
# The worker processes run as nobody, so that a directory owned by root
# is one they cannot write: the master must run as root.

use Test::Nginx::Socket;
use AsyncTaskTest;

use File::Path qw(make_path);

if ($> != 0) {
    plan skip_all => 'the master must run as root to start workers as nobody';
} else {
    plan 'no_plan';
}

$ENV{TEST_NGINX_WORKER_USER} = 'nobody nogroup';

# a directory as root leaves it: owned by root, mode 0755
sub root_dir {
    my $dir = AsyncTaskTest::servroot() . "/html/$_[0]";
    make_path($dir);
    chown 0, 0, $dir;
    chmod 0755, $dir;
}

# "mode uid" of a path
sub mode {
    my @st = stat $_[0] or return "missing $_[0]";
    return sprintf('%04o %s', $st[2] & 07777, scalar getpwuid($st[4]));
}

run_tests();

__DATA__

=== TEST 1: a store directory the worker user cannot write stops nginx
--- skip_eval: 2: AsyncTaskTest::on_postgresql()
--- post_setup_server_root
main::root_dir('store');
--- must_die
--- error_log eval
qr/\[emerg\] .*async_task_store directory ".*\/html\/store\/" is not writable by user "nobody"/



=== TEST 2: a files= directory the worker user cannot write stops nginx
--- http_config
    async_task_store @STORE@/tasks.db files=$TEST_NGINX_SERVER_ROOT/html/files
                     thread_pool=async_task;
--- post_setup_server_root
main::root_dir('files');
--- must_die
--- error_log eval
qr/\[emerg\] .*async_task_store files= directory ".*\/html\/files" is not writable by user "nobody"/



=== TEST 3: a database file the worker user cannot read and write stops nginx
--- skip_eval: 2: AsyncTaskTest::on_postgresql()
--- http_config
    async_task_store @STORE@/tasks.db thread_pool=async_task;
--- post_setup_server_root
my $dir = AsyncTaskTest::servroot() . '/html/store';
main::root_dir('store');
chown 65534, 65534, $dir;
open my $fh, '>', "$dir/tasks.db-wal" or die;
close $fh;
chmod 0600, "$dir/tasks.db-wal";
--- must_die
--- error_log eval
qr/\[emerg\] .*async_task_store database ".*\/tasks\.db-wal" is not readable and writable by user "nobody"/



=== TEST 4: a zone too small for max_queued stops nginx, saying how much it needs
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:1m max_queued=1000000
                     thread_pool=async_task;
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "async_task" is too small for max_queued=1000000: needs at least \d+k \(\d+ bytes per task\)/



=== TEST 5: the zone must also hold the tasks the instances run
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:1m max_queued=10
                     thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 max_conns=100000; }
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "async_task" is too small for max_queued=10: needs at least/



=== TEST 6: a 1m zone holds max_queued=2000
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:1m max_queued=2000
                     thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- request
GET /api/v1/system/stats
--- error_code: 200
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 7: missing directories are made, for the worker user only; so is the database
--- skip_eval: 9: AsyncTaskTest::on_postgresql()
--- http_config
    async_task_store $TEST_NGINX_SERVER_ROOT/html/new/deep/tasks.db
                     files=$TEST_NGINX_SERVER_ROOT/html/new/uploads
                     thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my $root = AsyncTaskTest::servroot() . '/html/new';
my $id = AsyncTaskTest::submit('modes');
Test::More::ok($id, 'a task is accepted');
Test::More::is(main::mode("$root/deep"), '0700 nobody', 'store directory');
Test::More::is(main::mode("$root/uploads"), '0700 nobody', 'files= directory');
Test::More::is(main::mode("$root/deep/tasks.db"), '0600 nobody', 'database');
Test::More::is(main::mode("$root/deep/tasks.db-wal"), '0600 nobody', 'its -wal');
Test::More::is(main::mode("$root/deep/tasks.db-shm"), '0600 nobody', 'its -shm');
--- request
GET /api/v1/system/stats
--- response_body_like: "QUEUED":1,
--- no_error_log
[error]
[alert]
[emerg]



=== TEST 8: a zone just large enough for max_queued takes that many tasks, however long their prompts: the cached copies leave the nodes their room
--- http_config
    async_task_store @STORE@/tasks.db zone=async_task:128k max_queued=319
                     thread_pool=async_task;
    async_task_backend image gpu;
    upstream gpu { server 127.0.0.1:9 down; }
--- init
my %status;
for my $i (1 .. 319) {
    my ($s) = AsyncTaskTest::api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => '{"prompt": "' . sprintf('fox %d ', $i) . ('x' x 1500) . '"}');
    $status{$s}++;
}
Test::More::is_deeply(\%status, {202 => 319}, 'every task is accepted');
--- request
POST /api/v1/image/async
{"prompt": "one too many"}
--- more_headers
Content-Type: application/json
--- error_code: 429
--- no_error_log
[error]
[alert]
