package AsyncTaskTest;

# Shared set-up for the module's Test::Nginx::Socket suites.
#
# - Every block gets a fresh task store of its own: "@STORE@" in its
#   http_config stands for a new directory, and a block without an
#   http_config gets the default gateway below (image and speech kinds,
#   both on a fake instance that is never contacted by these tests).
#   The store lives in html/, which either runner makes anew per block.
# - A block without a config gets the API location.
# - Helpers for "--- init" code (which Test::Nginx runs once nginx is up):
#   plain HTTP requests, seeding the store with sqlite3, and a kill -9 of
#   the whole nginx followed by a start on the same configuration.
#
# Works with the real Test::Nginx and with the runner in t/lib alike.

use strict;
use warnings;

use Test::Nginx::Socket ();
use IO::Socket::INET;
use File::Path qw(make_path remove_tree);
use Time::HiRes qw(sleep time);
use POSIX qw(WNOHANG);
use Cwd qw(abs_path);
use File::Basename qw(dirname basename);

our @EXPORT_OK = qw(http api seed store_db crash_and_restart
                    wait_port migrations sql tid store_dir);

my $root = abs_path(dirname(__FILE__) . '/../..');

# which stores a file's blocks run on: ":sqlite_only" (tests of SQLite
# itself), ":postgresql_only" (tests of the shared store); by default both
my $only = '';

sub import {
    my $class = shift;

    my $caller = caller;
    no strict 'refs';
    for my $name (@_) {
        if ($name =~ /^:(sqlite|postgresql)_only$/) {
            $only = $1;
            next;
        }
        *{"${caller}::$name"} = \&{"AsyncTaskTest::$name"};
    }

    Test::Nginx::Socket::add_block_preprocessor(\&preprocess);
}

sub servroot {
    return $Test::Nginx::Util::ServRoot
           || $ENV{TEST_NGINX_SERVROOT}
           || "$root/t/servroot";
}

sub port {
    return $Test::Nginx::Util::ServerPort
           || $ENV{TEST_NGINX_SERVER_PORT}
           || $ENV{TEST_NGINX_PORT}
           || 1984;
}

sub preprocess {
    my $block = shift;

    # html/ is made anew for every block, by either runner
    my $dir = '$TEST_NGINX_SERVER_ROOT/html/store';

    my $http_config = $block->http_config;

    if (!defined $http_config) {
        $http_config = <<'EOF';
    async_task_store @STORE@/tasks.db zone=async_task:4m
                     thread_pool=async_task max_queued=1000;
    async_task_backend image gpu_image model=test-image;
    async_task_backend speech gpu_speech model=test-speech;

    upstream gpu_image {
        server 127.0.0.1:9 max_conns=2 down;
    }

    upstream gpu_speech {
        server 127.0.0.1:9 down;
    }
EOF
    }

    $http_config =~ s/\@STORE\@/$dir/g;
    $http_config = pg_config($block, $http_config);
    $block->set_value('http_config', $http_config);

    if (!defined $block->main_config) {
        $block->set_value('main_config',
                          "thread_pool async_task threads=2;\n");
    }

    if (!defined $block->config) {
        $block->set_value('config', <<'EOF');
    location /api/v1/ {
        async_task_api;
        async_task_user $http_x_user_id;
    }
EOF
    }
}

# PostgreSQL: the suite runs a second time with TEST_NGINX_STORE=postgresql
# (build.sh starts the cluster, TEST_NGINX_PG_HOST is its socket's
# directory).  Each block gets a schema of its own in one database, and
# its store line that schema's URI; "@PG@" in a config stands for it too.
# Blocks that reach into the SQLite file (seed, sql, store_db, sqlite3)
# and files marked ":sqlite_only" are skipped there, with skip_eval, which
# the real Test::Nginx honours as well; ":postgresql_only" files run only
# there.

sub store {
    return $ENV{TEST_NGINX_STORE} || 'sqlite';
}

# for "--- skip_eval: N: AsyncTaskTest::on_postgresql()" in blocks about
# SQLite's own files
sub on_postgresql {
    return store() eq 'postgresql';
}

my $pg_schemas = 0;
my $pg_current;         # the schema of the block that runs now

sub pg_schema {
    my $schema = "b${$}_" . ++$pg_schemas;
    my $host = $ENV{TEST_NGINX_PG_HOST}
        or die "TEST_NGINX_PG_HOST is not set: run the tests with build.sh";

    system('psql', '-h', $host, '-U', 'postgres', '-d', 'async_task', '-qAt',
           '-c', "CREATE SCHEMA $schema") == 0
        or die "cannot create the schema $schema";

    return $schema;
}

sub pg_uri {
    my ($schema) = @_;
    return "postgresql:///async_task?host=$ENV{TEST_NGINX_PG_HOST}"
           . "&user=postgres&options=-csearch_path%3D$schema";
}

sub pg_config {
    my ($block, $config) = @_;

    my $raw = $block->original_values;
    my $needs_sqlite = $only eq 'sqlite' || grep {
        defined && !ref && /\bsql\s*\(|sqlite3/
    } values %$raw;

    if (store() ne 'postgresql') {
        if ($only eq 'postgresql' && !defined $block->skip_eval) {
            $block->set_value('skip_eval', '1: "PostgreSQL only"');
        }
        return $config;
    }

    if ($needs_sqlite) {
        $block->set_value('skip_eval', '1: "SQLite only"')
            unless defined $block->skip_eval;
        return $config;
    }

    my $schema = pg_schema();
    my $uri = pg_uri($schema);

    $pg_current = $schema;

    $config =~ s/\@PG\@/$uri/g;
    $config =~ s/\@PG_SCHEMA\@/$schema/g;
    $config =~ s/\@PG_HOST\@/$ENV{TEST_NGINX_PG_HOST}/g;

    $config =~ s{async_task_store\s+([^\s;]+\.db)([^;]*);}{
        my ($db, $rest) = ($1, $2);
        $block->{_async_task_db} = $db;
        (my $files = $db) =~ s{[^/]*$}{files};
        $rest .= " files=$files" unless $rest =~ /\bfiles=/;
        "async_task_store $uri$rest;"
    }ge;

    return $config;
}

# the directory of the default store ("@STORE@"): tasks.db, files/
sub store_dir {
    return servroot() . '/html/store';
}

# the id of seeded task n: UUIDv7-shaped, n (hex) at the end, so that ids
# sort as n does
sub tid {
    return sprintf '01900000-0000-7000-8000-%012x', $_[0];
}

# the SQLite file of a block ("--- init" code sees the block as $block)
sub store_db {
    my $block = shift;
    my ($db) = $block->{_async_task_db}
               // $block->http_config =~ /async_task_store\s+([^\s;]+)/;
    my $servroot = servroot();
    $db =~ s/\$TEST_NGINX_SERVER_ROOT/$servroot/;
    return $db;
}

# one HTTP/1.0 request to the nginx under test: (status, headers, body)
sub http {
    my ($method, $path, %opt) = @_;

    my $body = $opt{body} // '';
    my $headers = $opt{headers} // {};

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $opt{port} // port(),
                                     Timeout => 5)
        or die "cannot connect to nginx: $!";

    my $req = "$method $path HTTP/1.0\r\nHost: localhost\r\n";
    for my $h (sort keys %$headers) {
        $req .= "$h: $headers->{$h}\r\n";
    }
    $req .= "Content-Length: " . length($body) . "\r\n" if length $body;
    $req .= "\r\n$body";

    print $sock $req;

    local $/;
    my $resp = <$sock>;
    close $sock;

    die "no response to $method $path" unless defined $resp && length $resp;

    my ($head, $content) = split /\r\n\r\n/, $resp, 2;
    my ($status) = $head =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for my $line (split /\r\n/, $head) {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }

    return ($status, \%h, $content // '');
}

# an API request, JSON answer decoded
sub api {
    my ($method, $path, %opt) = @_;

    require JSON::PP;
    my ($status, $h, $body) = http($method, "/api/v1/$path", %opt);
    my $json = eval { JSON::PP::decode_json($body) };

    return ($status, $json, $h, $body);
}

sub migrations {
    return sort glob("$root/migrations/[0-9]*.sql");
}

sub sql {
    my ($db, $sql) = @_;

    make_path(dirname($db));
    open my $fh, '|-', 'sqlite3', $db or die "sqlite3: $!";
    print $fh $sql;
    close $fh or die "sqlite3 failed on: $sql";
}

sub pg_migrations {
    return sort glob("$root/migrations/postgresql/[0-9]*.sql");
}

# rows straight into the block's schema, with the schema made first as
# the module would make it (psql as the client)
sub pg_seed {
    my ($db, @tasks) = @_;

    # as the SQLite seed leaves it: the store's directory is there
    make_path(dirname($db));

    my $sql = "SET search_path TO $pg_current;\n"
              . "SET client_min_messages TO warning;\n";

    my $made = `psql -h $ENV{TEST_NGINX_PG_HOST} -U postgres -d async_task -qAt -c "SELECT count(*) FROM pg_tables WHERE schemaname = '$pg_current' AND tablename = 'tasks'"`;

    if ($made =~ /^0/) {
        my @m = pg_migrations();
        $sql .= "BEGIN;\n";
        for my $m (@m) {
            local $/;
            open my $fh, '<', $m or die "$m: $!";
            $sql .= <$fh>;
        }
        $sql .= "CREATE TABLE async_task_schema (version integer NOT NULL);\n"
                . "INSERT INTO async_task_schema VALUES (" . scalar(@m)
                . ");\nCOMMIT;\n";
    }

    $sql .= "BEGIN;\n";

    for my $t (@tasks) {
        my @cols = sort keys %$t;
        my @vals = map {
            my $v = $t->{$_};
            !defined $v ? 'NULL'
                : $v =~ /^-?\d+$/ && $_ !~ /^(id|user|params|result|error)$/
                    ? $v
                    : do { (my $q = $v) =~ s/'/''/g; "'$q'" }
        } @cols;
        $sql .= "INSERT INTO tasks (" . join(', ', map { "\"$_\"" } @cols)
                . ") VALUES (" . join(', ', @vals) . ");\n";
    }

    $sql .= "COMMIT;\n";

    open my $fh, '|-', 'psql', '-h', $ENV{TEST_NGINX_PG_HOST}, '-U',
         'postgres', '-d', 'async_task', '-qAt', '-v', 'ON_ERROR_STOP=1'
        or die "psql: $!";
    print $fh $sql;
    close $fh or die "psql failed on: $sql";
}

# rows straight into a store, as the sqlite3 CLI would put them
sub seed {
    my ($db, @tasks) = @_;

    return pg_seed($db, @tasks) if on_postgresql();

    my $sql = '';

    if (!-e $db) {
        for my $m (migrations()) {
            local $/;
            open my $fh, '<', $m or die "$m: $!";
            $sql .= <$fh>;
        }
    }

    $sql .= "BEGIN;\n";

    for my $t (@tasks) {
        my @cols = sort keys %$t;
        my @vals = map {
            my $v = $t->{$_};
            !defined $v ? 'NULL'
                : $v =~ /^-?\d+$/ && $_ !~ /^(id|user|params|result|error)$/
                    ? $v
                    : do { (my $q = $v) =~ s/'/''/g; "'$q'" }
        } @cols;
        $sql .= "INSERT INTO tasks (" . join(', ', @cols) . ") VALUES ("
                . join(', ', @vals) . ");\n";
    }

    $sql .= "COMMIT;\n";

    sql($db, $sql);
}

sub wait_port {
    my $deadline = time + 10;

    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => port(), Timeout => 1);
        if ($s) {
            close $s;
            return 1;
        }
        sleep 0.05;
    }

    die "nginx does not listen on " . port();
}

sub pid_of_master {
    my $file = servroot() . '/logs/nginx.pid';
    open my $fh, '<', $file or die "$file: $!";
    my $pid = <$fh>;
    chomp $pid;
    return $pid;
}

# kill -9 of the master and all of its workers, then a start on the same
# configuration: what a power cut and a reboot would do to nginx
sub crash_and_restart {
    my $master = pid_of_master();

    my @workers = split ' ', `pgrep -P $master`;
    kill 'KILL', $master, @workers;

    for (1 .. 200) {
        last unless grep { kill 0, $_ } $master, @workers;
        sleep 0.02;
    }

    unlink servroot() . '/logs/nginx.pid';

    my $binary = $Test::Nginx::Util::NginxBinary
                 || $ENV{TEST_NGINX_BINARY} || 'nginx';
    my $servroot = servroot();

    system("$binary -p $servroot/ -c $servroot/conf/nginx.conf") == 0
        or die "nginx did not start again";

    for (1 .. 200) {
        last if -s "$servroot/logs/nginx.pid";
        sleep 0.02;
    }

    wait_port();
}

# Fake GPU instances (tools/fake_gpu.py), for the dispatcher's tests.
# Start them in "--- post_setup_server_root" (before nginx, so that the
# first dispatch finds them up); each start stops the previous ones.

my @fakes;

sub fake_gpu {
    my (%opt) = @_;

    my $port = $opt{port} or die "fake_gpu needs a port";
    my $dir = servroot() . "/html";
    my $ready = "$dir/fake-$port.ready";

    unlink $ready;

    my @args = ('python3', "$root/tools/fake_gpu.py", '--port', $port,
                '--kind', $opt{kind} // 'both',
                '--latency', $opt{latency} // 0,
                '--ready-file', $ready,
                '--log', "$dir/fake-$port.log");
    push @args, '--max-concurrent', $opt{max_concurrent}
        if $opt{max_concurrent};
    push @args, '--mode', $opt{mode} if $opt{mode};
    push @args, '--health', $opt{health} if $opt{health};
    push @args, '--tls-cert', $opt{tls_cert}, '--tls-key', $opt{tls_key}
        if $opt{tls_cert};
    push @args, '--control-port', $opt{control_port} if $opt{control_port};
    push @args, '--api-key', $opt{api_key} if defined $opt{api_key};

    my $pid = fork();
    die "fork: $!" unless defined $pid;

    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "$dir/fake-$port.err";
        exec @args or POSIX::_exit(127);
    }

    push @fakes, $pid;

    for (1 .. 500) {
        return $pid if -s $ready;
        sleep 0.01;
    }

    die "the fake GPU on port $port did not start";
}

sub stop_fake_gpus {
    kill 'TERM', @fakes if @fakes;
    waitpid($_, 0) for @fakes;
    @fakes = ();
}

sub stop_fake_gpu {
    my $pid = shift;
    kill 'TERM', $pid;
    waitpid($pid, 0);
    @fakes = grep { $_ != $pid } @fakes;
}

END { stop_fake_gpus(); node2_stop() }

# the fake's control API: fake_control(PORT, {mode => ...}) or GET paths
sub fake {
    my ($port, $method, $path, $body) = @_;

    require JSON::PP;
    my ($status, $h, $content) = http($method, $path, port => $port,
        body => defined $body ? JSON::PP::encode_json($body) : '',
        headers => defined $body ? {'Content-Type' => 'application/json'}
                                 : {});
    return $content =~ /^[\[{]/ ? JSON::PP::decode_json($content) : $content;
}

# polls a task until it is in one of the given statuses (or 10 s pass);
# port= another node's, headers= the user's
sub wait_task {
    my ($id, $statuses, %opt) = @_;

    my %want = map { $_ => 1 } @$statuses;
    my $deadline = time + ($opt{timeout} // 10);
    my $task;

    while (time < $deadline) {
        (undef, $task) = api('GET', "tasks/$id", headers => $opt{headers},
                             port => $opt{port});
        return $task if $task && $task->{status} && $want{$task->{status}};
        sleep 0.05;
    }

    return $task;
}

# Helpers for the dispatcher's tests, called from "--- init" code.

# an image task: its id, or undef when it was not accepted
sub submit {
    my ($prompt, %extra) = @_;

    require JSON::PP;
    my ($s, $t) = api('POST', 'image/async',
        headers => {'Content-Type' => 'application/json'},
        body => JSON::PP::encode_json({prompt => $prompt, width => 64,
                                       height => 64, seed => 1, %extra}));
    return $s == 202 ? $t->{id} : undef;
}

sub task {
    my (undef, $t) = api('GET', "tasks/$_[0]");
    return $t;
}

# system/stats, of the node on $port if given
sub stats {
    my ($port) = @_;
    my (undef, $stats) = api('GET', 'system/stats', port => $port);
    return $stats;
}

sub backend_stats {
    my ($server, $port) = @_;
    my ($b) = grep { $_->{server} eq $server } @{ stats($port)->{backends} };
    return $b;
}

# polls system/stats until no task is QUEUED or RUNNING (or $timeout s
# pass), every= s apart (0.05); calls probe= with each stats object on the
# way; the stats then
sub wait_idle {
    my ($timeout, %opt) = @_;
    my $deadline = time + $timeout;
    my $stats;
    while (time < $deadline) {
        $stats = stats();
        $opt{probe}->($stats) if $opt{probe};
        last if $stats->{tasks}{QUEUED} == 0 && $stats->{tasks}{RUNNING} == 0;
        sleep($opt{every} // 0.05);
    }
    return $stats;
}

sub fake_stats {
    return fake($_[0], 'GET', '/control/stats');
}

sub fake_control {
    my ($port, %set) = @_;
    return fake($port, 'POST', '/control', {%set});
}

# the prompts of the image job requests in the fakes' logs (html/fake-PORT.log)
sub fake_prompts {
    my @p;
    for my $port (@_) {
        open my $fh, '<', servroot() . "/html/fake-$port.log" or next;
        while (<$fh>) {
            push @p, $1
                if m{ POST /v1/images/generations \S+ .*prompt="([^"]*)"};
        }
    }
    return @p;
}

# established TCP connections to 127.0.0.1:PORT (the client side)
sub connections_to {
    my ($port) = @_;
    my $n = 0;
    open my $fh, '<', '/proc/net/tcp' or die "/proc/net/tcp: $!";
    while (<$fh>) {
        my (undef, undef, $rem, $st) = split;
        $n++ if $st && $st eq '01' && $rem eq sprintf('0100007F:%04X', $port);
    }
    return $n;
}

# A slow client: one HTTP/1.1 request, the answer read in small pieces
# with pauses (a small receive buffer keeps nginx's writes blocked), so
# that nginx sends the body over many event loop turns: (status,
# headers, body).  "meanwhile" is code to run once the answer has begun.
sub slow_get {
    my ($path, %opt) = @_;

    require Socket;

    my $chunk = $opt{chunk} // 32768;
    my $pause = $opt{pause} // 0.01;
    my $headers = $opt{headers} // {};

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $opt{port} // port(),
                                     Timeout => 10)
        or die "cannot connect to nginx: $!";

    setsockopt($sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), $chunk);

    my $req = "GET $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "$_: $headers->{$_}\r\n" for sort keys %$headers;
    print $sock "$req\r\n";

    my $resp = '';
    my $deadline = time + ($opt{timeout} // 60);

    while (time < $deadline) {
        my $n = sysread($sock, my $buf, $chunk);
        last unless $n;
        $resp .= $buf;
        (delete $opt{meanwhile})->() if $opt{meanwhile};
        sleep $pause;
    }

    close $sock;

    my ($head, $content) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for my $line (split /\r\n/, $head // '') {
        $h{lc $1} = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }

    return ($status, \%h, $content // '');
}

# Certificates made with openssl, in html/tls/ (made anew per block):
# ca.pem, a CA; server.pem and server.key, signed by it for gpu.test,
# localhost and 127.0.0.1; other-ca.pem, a CA that signed nothing here.
sub tls_certs {
    my $dir = servroot() . '/html/tls';

    make_path($dir);

    open my $fh, '>', "$dir/san.cnf" or die "$dir/san.cnf: $!";
    print $fh "subjectAltName=DNS:gpu.test,DNS:localhost,IP:127.0.0.1\n";
    close $fh;

    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes');
    my @steps = (
        ['req', '-x509', @ec, '-keyout', "$dir/ca.key", '-out', "$dir/ca.pem",
         '-days', '2', '-subj', '/CN=async task test CA'],
        ['req', '-x509', @ec, '-keyout', "$dir/other-ca.key",
         '-out', "$dir/other-ca.pem", '-days', '2',
         '-subj', '/CN=async task other CA'],
        ['req', @ec, '-keyout', "$dir/server.key", '-out', "$dir/server.csr",
         '-subj', '/CN=gpu.test'],
        ['x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.pem",
         '-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
         '-out', "$dir/server.pem", '-extfile', "$dir/san.cnf"],
    );

    # openssl draws its progress on stderr
    open my $stderr, '>&', \*STDERR or die $!;
    open STDERR, '>', "$dir/openssl.log" or die $!;
    my $failed = grep { system('openssl', @$_) != 0 } @steps;
    open STDERR, '>&', $stderr or die $!;
    die "openssl failed, see $dir/openssl.log" if $failed;

    return $dir;
}

# A second nginx node on the same PostgreSQL store, for "--- init" code:
# the block's nginx.conf with its own prefix (servroot/html/node2: conf,
# logs, temporary files; under html/, which either runner makes anew per
# block), its own port and node=b for node=a.  The rest of html/ (files=)
# stays shared, as a shared directory would be, unless own_files=1: then
# node b's files= is html/files2 for html/files.  edit= code that edits
# the configuration in $_.

my $node2_pid;

sub node2_root {
    return servroot() . '/html/node2';
}

# node b's files= with own_files=1
sub node2_files {
    return servroot() . '/html/files2';
}

sub node2_start {
    my (%opt) = @_;

    node2_stop();

    my $port = $opt{port} or die "node2_start needs a port";
    my $servroot = servroot();
    my $root2 = node2_root();

    open my $in, '<', "$servroot/conf/nginx.conf" or die "nginx.conf: $!";
    local $/;
    my $conf = <$in>;
    close $in;

    remove_tree($root2);

    my $main = port();
    $conf =~ s{\Q$servroot\E/(logs|conf|\w+_temp)}{$root2/$1}g;
    $conf =~ s{\blisten\s+(127\.0\.0\.1:)?$main\b}{listen $port}g;
    $conf =~ s{\bnode=a\b}{node=b}g;
    $conf =~ s{/html/files\b}{/html/files2}g if $opt{own_files};
    $opt{edit}->() for grep { $opt{edit} } $conf;

    make_path("$root2/conf", "$root2/logs");
    open my $out, '>', "$root2/conf/nginx.conf" or die "$root2: $!";
    print $out $conf;
    close $out;

    my $binary = $Test::Nginx::Util::NginxBinary
                 || $ENV{TEST_NGINX_BINARY} || 'nginx';

    system("$binary -p $root2/ -c $root2/conf/nginx.conf "
           . "-e $root2/logs/error.log") == 0
        or die "the second node did not start";

    my $deadline = time + 10;
    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Timeout => 1);
        if ($s) {
            close $s;
            $node2_pid = node2_master();
            return;
        }
        sleep 0.05;
    }

    die "the second node does not listen on $port";
}

sub node2_master {
    my $file = node2_root() . '/logs/nginx.pid';
    open my $fh, '<', $file or return undef;
    my $pid = <$fh>;
    chomp $pid;
    return $pid;
}

sub node2_stop {
    my $pid = $node2_pid or return;
    undef $node2_pid;
    kill 'QUIT', $pid;
    for (1 .. 500) {
        last unless kill 0, $pid;
        sleep 0.02;
    }
    kill 'KILL', $pid if kill 0, $pid;
}

sub node2_error_log {
    open my $fh, '<', node2_root() . '/logs/error.log' or return '';
    local $/;
    return scalar <$fh>;
}

# two-node tests: an API request to the node on $port, as alice (type=
# the Content-Type, JSON unless told; headers= more headers); an image
# task submitted there (its id, or undef); a task read there; the lines of
# both nodes' error logs that match $re
sub node_api {
    my ($port, $method, $path, %opt) = @_;
    my $type = delete $opt{type} // 'application/json';
    my $more = delete $opt{headers} // {};
    return api($method, $path, port => $port,
               headers => {'X-User-Id' => 'alice',
                           'Content-Type' => $type, %$more},
               %opt);
}

sub node_submit {
    my ($port, $prompt) = @_;
    require JSON::PP;
    my ($s, $t) = node_api($port, 'POST', 'image/async',
        body => JSON::PP::encode_json({prompt => $prompt, width => 64,
                                       height => 64, seed => 1}));
    return $s == 202 ? $t->{id} : undef;
}

sub node_task {
    my ($port, $id) = @_;
    my (undef, $t) = node_api($port, 'GET', "tasks/$id");
    return $t;
}

sub nodes_log_lines {
    my ($re) = @_;
    return grep { /$re/ } split /\n/, error_log() . node2_error_log();
}

# a task's result as the node on $port serves it to alice: (status,
# headers, body); %headers more request headers (Range)
sub node_result {
    my ($port, $id, %headers) = @_;
    return http('GET', "/api/v1/tasks/$id/result", port => $port,
                headers => {'X-User-Id' => 'alice', %headers});
}

# polls a task of alice's on the node on $port, as wait_task does, for
# up to 20 s unless told (a run may wait for the other node)
sub node_wait_task {
    my ($port, $id, $statuses, %opt) = @_;
    return wait_task($id, $statuses, port => $port, timeout => 20,
                     headers => {'X-User-Id' => 'alice'}, %opt);
}

# waits until every task is in a final status, as node $port reads them:
# "STATUS:N ..." of the tasks then
sub node_wait_final {
    my ($port, $ids, $timeout) = @_;
    my $deadline = time + $timeout;
    my %status;
    while (time < $deadline) {
        %status = ();
        for my $id (@$ids) {
            my $t = node_task($port, $id);
            $status{$t ? $t->{status} : 'none'}++;
        }
        last unless $status{QUEUED} || $status{RUNNING} || $status{none};
        sleep 0.1;
    }
    return join ' ', map { "$_:$status{$_}" } sort keys %status;
}

# one check: no line of either node's error log matches $re, bar those
# that match except=; name= the check's
sub nodes_log_clean {
    my ($re, %opt) = @_;
    my @bad = grep { !$opt{except} || !/$opt{except}/ } nodes_log_lines($re);
    Test::More::is(scalar(@bad), 0, $opt{name})
        or Test::More::diag(join "\n", @bad[0 .. ($#bad > 19 ? 19 : $#bad)]);
}

# no [error] (or worse) on either node
sub nodes_no_errors {
    return nodes_log_clean(qr/\[(error|alert|crit|emerg)\]/,
                           name => 'no error on either node', @_);
}

# no [alert], [crit] or [emerg] on either node
sub nodes_no_alerts {
    return nodes_log_clean(qr/\[(alert|crit|emerg)\]/,
                           name => 'no alert, crit or emerg on either node',
                           @_);
}

# the tests' PostgreSQL cluster: stop and start it (build.sh's script)
sub pg_ctl {
    my ($what) = @_;
    system("$ENV{TEST_NGINX_PG_HOST}/ctl", $what) == 0
        or die "cannot $what PostgreSQL";
}

# a query on the block's PostgreSQL schema (psql as the client): the rows,
# "|" between columns (in scalar context the first row); dies when psql
# fails
sub pg_sql {
    my ($query) = @_;
    open my $fh, '-|', 'psql', '-h', $ENV{TEST_NGINX_PG_HOST}, '-U',
         'postgres', '-d', 'async_task', '-qAtX', '-v', 'ON_ERROR_STOP=1',
         '-c', "SET search_path TO $pg_current", '-c', $query
        or die "psql: $!";
    chomp(my @rows = <$fh>);
    close $fh or die "psql failed on: $query";
    return wantarray ? @rows : $rows[0];
}

sub error_log {
    open my $fh, '<', servroot() . '/logs/error.log' or die $!;
    local $/;
    return scalar <$fh>;
}

# one check: no [alert], [crit], [emerg] or failed assertion in error.log,
# bar the lines that match one of @allowed
sub no_bad_log_lines {
    my (@allowed) = @_;
    my @bad = grep { /\[(alert|crit|emerg)\]/ || /Assertion .* failed/ }
              split /\n/, error_log();
    for my $re (@allowed) {
        @bad = grep { !/$re/ } @bad;
    }
    Test::More::is(scalar(@bad), 0, @allowed
                   ? 'no unexpected alert, crit or emerg in error.log'
                   : 'no alert, crit or emerg in error.log')
        or Test::More::diag(join "\n", @bad);
}


1;
