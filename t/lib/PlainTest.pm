package PlainTest;

# Helpers for the plain Test::More drivers (t/090 to t/093), which run
# nginx or the package themselves and load no Test::Nginx: a free port,
# curl, a whole file, a tool on PATH, a fake GPU instance.  "use
# PlainTest" imports them all.

use strict;
use warnings;

use IO::Socket::INET ();
use POSIX ();
use Time::HiRes ();
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(__FILE__) . '/../..');

sub import {
    my $caller = caller;
    no strict 'refs';
    for my $name (qw(free_port curl slurp have start_fake)) {
        *{"${caller}::$name"} = \&{"PlainTest::$name"};
    }
}

# a TCP port on 127.0.0.1 that nothing listens on now
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0, ReuseAddr => 1)
        or die "no free port: $!";
    return $s->sockport;
}

# curl -s with a 10 s limit and these arguments: what it printed
sub curl {
    open my $fh, '-|', 'curl', '-s', '--max-time', '10', @_
        or die "curl: $!";
    local $/;
    my $out = <$fh>;
    close $fh;
    return $out // '';
}

# a file's text, '' when it cannot be read
sub slurp {
    open my $fh, '<', $_[0] or return '';
    local $/;
    return scalar <$fh>;
}

# whether a tool is on PATH
sub have {
    my ($tool) = @_;
    return scalar grep { -x "$_/$tool" } split /:/, $ENV{PATH};
}

# a fake GPU instance (tools/fake_gpu.py) on $port, its files in $dir:
# fake-PORT.ready once it listens, fake-PORT.log, fake-PORT.err.  kind=
# (both), latency= (0.3 s), key= its API key, tls= a directory with
# server.pem and server.key (control= then its plain control port).  Its
# pid, once it is ready or 10 s have passed: the caller stops it.
sub start_fake {
    my ($dir, $port, %opt) = @_;

    my @args = ('python3', "$root/tools/fake_gpu.py", '--port', $port,
                '--kind', $opt{kind} // 'both',
                '--latency', $opt{latency} // 0.3,
                '--ready-file', "$dir/fake-$port.ready",
                '--log', "$dir/fake-$port.log");
    push @args, '--api-key', $opt{key} if defined $opt{key};
    push @args, '--tls-cert', "$opt{tls}/server.pem",
                '--tls-key', "$opt{tls}/server.key",
                '--control-port', $opt{control} if $opt{tls};

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "$dir/fake-$port.err";
        exec @args or POSIX::_exit(127);
    }

    for (1 .. 1000) {
        last if -s "$dir/fake-$port.ready";
        Time::HiRes::sleep(0.01);
    }

    return $pid;
}

1;
