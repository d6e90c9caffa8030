# docs/servers.md, "Connecting real GPU servers", run as written: every
# ```nginx block of the page follows a "<!-- server: NAME -->" marker, and
# each marked block goes into an nginx of its own, with the fake GPU
# (tools/fake_gpu.py) in place of the real server:
#
# - the "server" addresses of its upstream{} blocks become the fake's;
#   paths under /etc/nginx/ move into the test's prefix, where the files
#   they name are made: a workflow= is the file of that name in examples/,
#   an api_key=file: holds a key; an api_key=$NAME is set in nginx's
#   environment; with tls, the fake speaks HTTPS with a certificate made
#   here for the block's server name, and tls_trusted_certificate= is its
#   CA;
# - nginx -t accepts it; a protocol the module does not know fails here,
#   it is not skipped;
# - each async_task_backend of the block runs one task of its kind to
#   DONE, and the fake's requests are checked: the path the page names for
#   the protocol, the model, the key (Authorization: Bearer), header= and
#   host=; no instance ran more tasks at once than its max_conns (the
#   block's tasks go in together); the health probe goes to the block's
#   uri=, which must be the one that server answers, and passes.
#
# The page must have a block for each server it names (%servers below).
#
# A plain Test::More driver, so that it runs the same under the real
# Test::Nginx; the nginx and module are those of the suite
# (TEST_NGINX_BINARY, TEST_NGINX_LOAD_MODULES).

use strict;
use warnings;

use Test::More;
use PlainTest;
use File::Temp qw(tempdir);
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use File::Copy qw(copy);
use Cwd qw(abs_path);
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes qw(sleep time);

my $root = abs_path(dirname(__FILE__) . '/..');
my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $modules = $ENV{TEST_NGINX_LOAD_MODULES} // '';

# the servers the page promises a configuration for, and the health URI
# each of them answers (backend-protocols.md): sd-server has no /health
my %servers = (sdcpp => '/v1/models', comfyui => '/system_stats',
               a1111 => '/sdapi/v1/options', speaches => '/health',
               whispercpp => '/health', localai => '/readyz');

# where each protocol's tasks go, as the page names them
my %paths = (
    'image openai'      => ['/v1/images/generations'],
    'image sdcpp'       => ['/v1/images/generations'],
    'image a1111'       => ['/sdapi/v1/txt2img'],
    'image comfyui'     => ['/prompt', '/view'],
    'speech openai'     => ['/v1/audio/transcriptions'],
    'speech whispercpp' => ['/inference'],
);

# the health probe of async_task_health_check without uri=
my %probes = (openai => '/health', sdcpp => '/health',
              a1111 => '/sdapi/v1/options', whispercpp => '/health');

for my $tool (qw(python3 openssl)) {
    plan skip_all => "$tool is not installed" unless have($tool);
}

sub spew {
    my ($file, $text, $mode) = @_;
    make_path(dirname($file));
    open my $fh, '>', $file or die "$file: $!";
    print $fh $text;
    close $fh;
    chmod $mode, $file if defined $mode;
}

# one HTTP/1.0 request: (status, body)
sub http {
    my ($port, $method, $path, %opt) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $port, Timeout => 5)
        or return (0, '');
    my $body = $opt{body} // '';
    my $req = "$method $path HTTP/1.0\r\nHost: localhost\r\n";
    $req .= "Content-Type: $opt{type}\r\n" if $opt{type};
    $req .= 'Content-Length: ' . length($body) . "\r\n" if length $body;
    print $sock "$req\r\n$body";

    local $/;
    my $resp = <$sock> // '';
    close $sock;

    my ($head, $content) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    return ($status // 0, $content // '');
}

sub json_of { my $j = eval { JSON::PP::decode_json($_[0]) }; return $j }

# the page's blocks
my $page = slurp("$root/docs/servers.md");
ok(length $page, 'docs/servers.md is there');

my (%blocks, @names);
while ($page =~ /^<!-- server: ([\w-]+) -->\n```nginx\n(.*?)^```$/msg) {
    ok(!exists $blocks{$1}, "one block marked \"$1\"");
    push @names, $1 unless exists $blocks{$1};
    $blocks{$1} = $2;
}

my $all = () = $page =~ /^```nginx$/mg;
is($all, scalar @names, 'every nginx block of the page is marked');

for my $s (sort keys %servers) {
    ok(exists $blocks{$s}, "the page has the block of \"$s\"");
}

# under logs/ of the suite's server root, where the sanitizer check looks
# and which either Test::Nginx runner leaves in place
my $base = $ENV{TEST_NGINX_SERVROOT}
           ? "$ENV{TEST_NGINX_SERVROOT}/logs/093-servers" : undef;
if ($base) {
    system('rm', '-rf', $base);
    make_path($base);
}
$base //= tempdir('async-task-servers-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $base;

my (@fakes, @running);

END {
    local $?;    # the test's own exit status stays

    for my $r (@running) {
        local @ENV{keys %{ $r->[1] }} = values %{ $r->[1] };
        system("$r->[0] -s stop 2>/dev/null");
    }
    kill 'TERM', @fakes if @fakes;
    waitpid($_, 0) for @fakes;
}

# a CA and a certificate of it for the name (and 127.0.0.1)
sub certificate {
    my ($dir, $name) = @_;

    make_path($dir);
    my $san = 'IP:127.0.0.1';
    $san .= ",DNS:$name" if $name && $name !~ /^[\d.]+$/;
    spew("$dir/san.cnf", "subjectAltName=$san\n");

    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
              '-nodes');
    my @steps = (
        ['req', '-x509', @ec, '-keyout', "$dir/ca.key", '-out', "$dir/ca.pem",
         '-days', '2', '-subj', '/CN=servers test CA'],
        ['req', @ec, '-keyout', "$dir/server.key", '-out', "$dir/server.csr",
         '-subj', '/CN=' . ($name || 'gpu')],
        ['x509', '-req', '-in', "$dir/server.csr", '-CA', "$dir/ca.pem",
         '-CAkey', "$dir/ca.key", '-CAcreateserial', '-days', '2',
         '-out', "$dir/server.pem", '-extfile', "$dir/san.cnf"],
    );

    for my $step (@steps) {
        my $args = join ' ', map { "'$_'" } @$step;
        system("openssl $args >>'$dir/openssl.log' 2>&1") == 0
            or die "openssl failed, see $dir/openssl.log";
    }
}

# one second of 16 kHz mono PCM, as speech/pcm takes it
my $pcm = join '', map { pack 's<', ($_ * 37) % 30000 } 1 .. 16000;

my %image = (prompt => 'a lighthouse at dusk', negative_prompt => 'blurry',
             width => 512, height => 512, steps => 8, seed => 42,
             cfg_scale => 2.5);

sub run_block {
    my ($name, $text) = @_;

    my $prefix = "$base/$name";
    make_path("$prefix/conf", "$prefix/logs", "$prefix/html");

    # the backends and their parameters; "server" lines by upstream
    my @backends;
    while ($text =~ /^\s*async_task_backend\s+(\w+)\s+(\w+)([^;]*);/msg) {
        my ($kind, $up, $params) = ($1, $2, $3);
        my %p = (kind => $kind, upstream => lc $up, protocol => 'openai');
        $p{protocol} = $1 if $params =~ /\bprotocol=(\S+)/;
        $p{model} = $1 if $params =~ /\bmodel=(\S+)/;
        $p{api_key} = $1 if $params =~ /\bapi_key=(\S+)/;
        $p{tls} = 1 if $params =~ /(?:^|\s)tls(?:\s|$)/;
        $p{server_name} = $1 if $params =~ /\btls_server_name=(\S+)/;
        $p{host} = $1 if $params =~ /\bhost=(\S+)/;
        $p{headers} = [$params =~ /"header=([^"]+)"|\bheader=(\S+)/g];
        $p{headers} = [grep { defined } @{ $p{headers} }];
        push @backends, \%p;
    }
    ok(@backends, "$name: the block has an async_task_backend") or return;

    my %ups;
    while ($text =~ /^\s*upstream\s+(\w+)\s*\{(.*?)\}/msg) {
        $ups{lc $1} = $2;
    }

    # a fake for each upstream, with what its backend asks of it
    my (%fake, %env);
    my $conf = $text;

    for my $b (@backends) {
        my $up = $b->{upstream};
        ok(exists $ups{$up}, "$name: upstream \"$up\" is in the block")
            or return;
        next if $fake{$up};

        my %f = (port => free_port(), kind => 'both');
        $f{kind} = 'comfyui' if $b->{protocol} eq 'comfyui';

        if (defined(my $k = $b->{api_key})) {
            if ($k =~ /^\$(\w+)$/) {
                $f{key} = "sk-$name-env";
                $env{$1} = $f{key};
            } elsif ($k =~ /^file:(\S+)$/) {
                $f{key} = "sk-$name-file";
                (my $file = $1) =~ s{^/etc/nginx/}{$prefix/conf/};
                spew($file, "$f{key}\n", 0600);
            } else {
                $f{key} = $k;
            }
        }

        if ($b->{tls}) {
            my ($host) = $ups{$up} =~ /\bserver\s+([^\s:;]+)/;
            $f{tls} = "$prefix/tls";
            $f{control} = free_port();
            certificate($f{tls}, $b->{server_name} // $b->{host} // $host);
        }

        # on, even without it: nginx -t then says what it does not know
        push @fakes, start_fake($prefix, $f{port}, %f);
        ok(-s "$prefix/fake-$f{port}.ready", "$name: the fake GPU started");
        $f{stats} = $f{control} // $f{port};
        $fake{$up} = \%f;
    }

    # the block as the test runs it
    $conf =~ s{(^\s*upstream\s+(\w+)\s*\{)(.*?)(\})}{
        my ($open, $up, $body, $close) = ($1, lc $2, $3, $4);
        my $port = $fake{$up} ? $fake{$up}{port} : free_port();
        $body =~ s/\bserver\s+[^\s;]+/server 127.0.0.1:$port/g;
        "$open$body$close"
    }msge;

    for my $file ($conf =~ /\bworkflow=(\S+?);?(?:\s|$)/g) {
        my $example = "$root/examples/" . basename($file);
        ok(-f $example, "$name: the workflow is examples/" . basename($file));
        (my $to = $file) =~ s{^/etc/nginx/}{$prefix/conf/};
        make_path(dirname($to));
        copy($example, $to);
    }

    for my $f (values %fake) {
        next unless $f->{tls};
        for my $ca ($conf =~ /\btls_trusted_certificate=(\S+?);?(?:\s|$)/g) {
            (my $to = $ca) =~ s{^/etc/nginx/}{$prefix/conf/};
            make_path(dirname($to));
            copy("$f->{tls}/ca.pem", $to);
        }
    }

    $conf =~ s{/etc/nginx/}{$prefix/conf/}g;

    my $listen = free_port();
    my $load = join '', map { "load_module $_;\n" } grep { length }
                        split /\s+/, $modules;
    my $user = $> == 0 ? "user root;\n" : '';

    spew("$prefix/conf/nginx.conf", <<EOF);
$load$user
worker_processes 1;
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log info;
thread_pool async_task threads=2;

events {
    worker_connections 64;
}

http {
    access_log off;
    client_body_temp_path $prefix/client_body_temp;
    proxy_temp_path $prefix/proxy_temp;
    fastcgi_temp_path $prefix/fastcgi_temp;
    uwsgi_temp_path $prefix/uwsgi_temp;
    scgi_temp_path $prefix/scgi_temp;

    async_task_store $prefix/store/tasks.db thread_pool=async_task;

$conf
    server {
        listen 127.0.0.1:$listen;

        location /api/v1/ {
            async_task_api;
        }
    }
}
EOF

    my $cmd = "$nginx -p $prefix/ -c $prefix/conf/nginx.conf";
    my $out = do {
        local @ENV{keys %env} = values %env;
        `$cmd -t 2>&1`;
    };
    is($?, 0, "$name: nginx -t accepts the block") or do {
        diag($out);
        return;
    };

    {
        local @ENV{keys %env} = values %env;
        system($cmd) == 0 or do { fail("$name: nginx starts"); return };
    }
    push @running, [$cmd, {%env}];

    for (1 .. 200) {
        last if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $listen, Timeout => 1);
        sleep 0.05;
    }

    # all tasks at once: the instances' max_conns must hold them back
    for my $b (@backends) {
        my $what = "$name: $b->{kind} $b->{protocol}";
        my ($s, $body);
        if ($b->{kind} eq 'image') {
            ($s, $body) = http($listen, 'POST', '/api/v1/image/async',
                               type => 'application/json',
                               body => JSON::PP::encode_json(\%image));
        } else {
            ($s, $body) = http($listen, 'POST',
                               '/api/v1/speech/pcm?language=en',
                               type => 'application/octet-stream',
                               body => $pcm);
        }
        is($s, 202, "$what: the task is accepted") or diag($body);
        $b->{id} = (json_of($body) // {})->{id} // 'none';
    }

    for my $b (@backends) {
        my $what = "$name: $b->{kind} $b->{protocol}";
        my $f = $fake{$b->{upstream}};
        my $want = $paths{"$b->{kind} $b->{protocol}"};
        my $id = $b->{id};

        ok($want, "$what: a protocol this test knows") or next;

        my $task = {};
        my $deadline = time + 20;
        while (time < $deadline) {
            $task = json_of((http($listen, 'GET', "/api/v1/tasks/$id"))[1])
                    // {};
            last if ($task->{status} // '') =~ /^(DONE|FAILED|CANCELED)$/;
            sleep 0.1;
        }
        is($task->{status}, 'DONE', "$what: the task is DONE")
            or diag(JSON::PP::encode_json($task));

        if ($b->{kind} eq 'image') {
            my (undef, $png) = http($listen, 'GET',
                                    "/api/v1/tasks/$id/result");
            my (undef, $expected) = http($f->{stats}, 'GET',
                '/control/expected-png?prompt=a%20lighthouse%20at%20dusk'
                . '&seed=42');
            ok(length $png > 8 && $png eq $expected,
               "$what: the result is the fake's PNG");
        } else {
            like($task->{result}{text} // '',
                 qr/^transcript of \d+ bytes [0-9a-f]{8}$/,
                 "$what: the result is the fake's transcript");
        }

        my $stats = json_of((http($f->{stats}, 'GET', '/control/stats'))[1])
                    // {};
        my @reqs = @{ $stats->{last_requests} // [] };
        my %seen = map { $_->{path} => $_ } @reqs;

        for my $path (@$want) {
            ok($seen{$path}, "$what: the server got $path")
                or diag(join ' ', map { $_->{path} } @reqs);
        }

        for my $r (@reqs) {
            my $h = $r->{headers} // {};

            if (defined $f->{key}) {
                is($h->{authorization}, "Bearer $f->{key}",
                   "$what: $r->{path} carries the key");
            }

            for my $line (@{ $b->{headers} }) {
                my ($hn, $hv) = $line =~ /^([^:]+):\s*(.*)$/;
                is($h->{lc $hn}, $hv, "$what: $r->{path} carries $hn");
            }

            if ($b->{host}) {
                is($h->{host}, $b->{host}, "$what: $r->{path} has Host");
            }

            if ($b->{tls}) {
                is(($r->{tls} // {})->{sni}, $b->{server_name} // $b->{host},
                   "$what: $r->{path} came over TLS, for its name");
            }
        }

        my $first = $seen{$want->[0]} // {};
        if ($b->{protocol} eq 'sdcpp') {
            ok($first->{sd_cpp_extra_args},
               "$what: the options went in <sd_cpp_extra_args>");
        }
        if ($b->{model} && $b->{kind} eq 'image'
            && $b->{protocol} =~ /^(openai|sdcpp)$/)
        {
            is($first->{json}{model}, $b->{model}, "$what: the model");
        }
        if ($b->{model} && $b->{kind} eq 'speech'
            && $b->{protocol} eq 'openai')
        {
            is($first->{fields}{model}, $b->{model}, "$what: the model");
        }
    }

    # no instance ran more tasks at once than its max_conns
    for my $up (sort keys %fake) {
        my ($max) = $ups{$up} =~ /\bmax_conns=(\d+)/;
        $max ||= 1;
        my $stats = json_of((http($fake{$up}{stats}, 'GET',
                                  '/control/stats'))[1]) // {};
        ok(($stats->{max_inflight} // 0) <= $max,
           "$name: $up ran at most $max task(s) at once");
    }

    # the health probe: where the block says, and passing
    my ($hc) = $text =~ /async_task_health_check([^;]*);/;
    ok(defined $hc, "$name: the block probes the server's health");
    if (defined $hc) {
        my ($uri) = $hc =~ /\buri=(\S+)/;
        $uri //= $probes{$backends[0]{protocol}};
        ok($uri, "$name: the probe's uri") or return;

        my $f = $fake{$backends[0]{upstream}};
        my $log = '';
        for (1 .. 100) {
            $log = slurp("$prefix/fake-$f->{port}.log");
            last if $log =~ m{ GET \Q$uri\E 200 };
            sleep 0.05;
        }
        like($log, qr{ GET \Q$uri\E 200 }, "$name: GET $uri passes");

        if ($servers{$name}) {
            is($uri, $servers{$name}, "$name: the probe is one it answers");
        }
    }

    {
        local @ENV{keys %env} = values %env;
        system("$cmd -s quit 2>/dev/null");
    }
    for (1 .. 200) { last unless -e "$prefix/logs/nginx.pid"; sleep 0.05 }
    ok(!-e "$prefix/logs/nginx.pid", "$name: nginx stopped");
    @running = grep { $_->[0] ne $cmd } @running;

    my $errors = slurp("$prefix/logs/error.log");
    unlike($errors, qr/\[(error|crit|alert|emerg)\]/,
           "$name: no errors in the error log") or diag($errors);
}

run_block($_, $blocks{$_}) for @names;

done_testing();
