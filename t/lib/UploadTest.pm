package UploadTest;

# Helpers for the upload and hostile-input suites (t/011, t/012, t/013):
# multipart bodies, audio, the files directory, raw requests sent in
# pieces (to stall or trickle), file modes.  "use UploadTest qw(NAMES)"
# imports those names only ($B always), plain "use UploadTest" all.

use strict;
use warnings;

use IO::Socket::INET ();
use Time::HiRes ();
use AsyncTaskTest ();

our $B = 'Bnd-7fQ2x';

sub import {
    my (undef, @names) = @_;
    my $caller = caller;
    no strict 'refs';
    @names = qw(mp audio files_dir entries err_re send_raw open_raw
                finish_raw mode) unless @names;
    for my $name (@names) {
        *{"${caller}::$name"} = \&{"UploadTest::$name"};
    }
    *{"${caller}::B"} = \$B;
}

# a multipart/form-data body: parts are [name, content, filename => ..,
# type => .., headers => ".."]; an $eol before the parts is the line
# break ("\r\n" unless told)
sub mp {
    my ($boundary, @parts) = @_;
    my $eol = @parts && !ref $parts[0] ? shift @parts : "\r\n";
    my $body = '';

    for my $p (@parts) {
        my ($name, $content, %o) = @$p;

        $body .= "--$boundary$eol"
                 . "Content-Disposition: form-data; name=\"$name\"";
        $body .= "; filename=\"$o{filename}\"" if defined $o{filename};
        $body .= $eol;
        $body .= "Content-Type: $o{type}$eol" if defined $o{type};
        $body .= $o{headers} if defined $o{headers};
        $body .= "$eol$content$eol";
    }

    return $body . "--$boundary--$eol";
}

# n bytes of "audio", starting "OggS", ending "!"
sub audio {
    my $n = shift;
    my $s = 'OggS' . join '', map { chr(($_ * 31 + 7) % 256) } 4 .. $n - 2;
    return substr($s . '!', 0, $n);
}

sub files_dir {
    my $block = shift;
    (my $dir = AsyncTaskTest::store_db($block)) =~ s{/[^/]+$}{/files};
    return $dir;
}

sub entries {
    my $dir = shift;
    opendir my $dh, $dir or return ("cannot open $dir: $!");
    return sort grep { !/^\.\.?$/ } readdir $dh;
}

# the body of a 400 invalid_argument naming a field
sub err_re {
    my ($message, $field) = @_;
    return qr/^\{"error":\{"code":"invalid_argument","message":"\Q$message\E","field":"\Q$field\E"\}\}$/;
}

# a connection with the request's first packet sent
sub open_raw {
    my ($first) = @_;

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => AsyncTaskTest::port(),
                                     Timeout => 10)
        or die "cannot connect to nginx: $!";

    print $sock $first;
    $sock->flush;

    return $sock;
}

# the rest of the request, then the answer: (status, head, body)
sub finish_raw {
    my ($sock, $rest) = @_;

    if (defined $rest) {
        print $sock $rest;
        $sock->flush;
    }

    local $/;
    my $resp = <$sock>;
    close $sock;

    my ($head, $body) = split /\r\n\r\n/, $resp // '', 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};

    return ($status, $head // '', $body // '');
}

sub send_raw {
    my ($request) = @_;
    return finish_raw(open_raw($request));
}

# "mode owner" of a path
sub mode {
    my @st = stat $_[0] or return "missing $_[0]";
    return sprintf('%04o %s', $st[2] & 07777, scalar getpwuid($st[4]));
}

1;
