package PlainTest;

# Helpers for the plain Test::More drivers (t/090 to t/093), which run
# nginx or the package themselves and load no Test::Nginx: a free port,
# curl, a whole file, a tool on PATH.  "use PlainTest" imports them all.

use strict;
use warnings;

use IO::Socket::INET ();

sub import {
    my $caller = caller;
    no strict 'refs';
    for my $name (qw(free_port curl slurp have)) {
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

1;
