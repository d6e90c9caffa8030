#!/usr/bin/env python3
"""fake_gpu.py: a fake GPU inference server for tests, the demo and benchmarks.

It stands in for the servers ngx_async_task_module talks to and speaks their
wire protocols (shared/research/backend-protocols.md):

  * text-to-image as stable-diffusion.cpp's sd-server / OpenAI / LocalAI:
    POST /v1/images/generations, JSON {"model", "prompt", "n", "size": "WxH",
    "response_format", "negative_prompt", "seed", "steps", "cfg_scale"}; the
    sd-server form that hides native options inside the prompt,
    "a cat <sd_cpp_extra_args>{"seed": 42, ...}</sd_cpp_extra_args>", is
    parsed: the block is stripped from the prompt and its fields win.
    Answer: 200 {"created": <unix>, "output_format": "png",
    "data": [{"b64_json": "<PNG>"}, ...]}.
  * speech-to-text as speaches (faster-whisper) / whisper.cpp / OpenAI:
    POST /v1/audio/transcriptions (and whisper.cpp's POST /inference),
    multipart/form-data with parts file, model, language, prompt,
    response_format (json | text | verbose_json).
  * text-to-image as AUTOMATIC1111 (Forge, SD.Next, sd-server's /sdapi):
    POST /sdapi/v1/txt2img, JSON {"prompt", "negative_prompt", "width",
    "height", "steps", "seed" (-1: random), "cfg_scale", "batch_size", ...}
    -> 200 {"images": ["<PNG base64>", ...], "parameters": {...},
    "info": "<JSON text>"}; a field of the wrong type -> 422 {"detail": [...]}
    as FastAPI answers; errors -> {"error", "detail", "body", "errors"}.
    GET /sdapi/v1/options -> the options object (503 while health is down).
  * speech-to-text as whisper.cpp's server: POST /inference, multipart;
    parts by name, unknown ones ignored; "file" required (400 {"error":
    "no 'file' field in the request"}); response_format json (default) |
    text | srt | vtt | verbose_json; verbose_json -> {"task", "language"
    (the full name: "english"), "duration", "text", "segments": [{"id",
    "text", "start", "end", "tokens", "words", "temperature", "avg_logprob",
    "no_speech_prob"}], "detected_language",
    "detected_language_probability"}; errors -> {"error": "..."}.
  * GET /health -> {"status": "ok"}; GET /v1/models -> OpenAI model list
    (both 503 while health is set "down").

TLS and credentials, as options:
  * --tls-cert FILE --tls-key FILE: the port speaks HTTPS (TLS 1.2 and
    1.3) with that certificate; --control-port N then serves the same
    routes, plain, on a second port, for the tests' control calls.
  * --api-key KEY: every route but /health and /control* needs
    "Authorization: Bearer KEY" (as speaches with API_KEY); without it the
    answer is 401 {"error": {..., "code": "invalid_api_key"}}, at once,
    counted in the stats as "unauthorized".

Usage:
  python3 tools/fake_gpu.py --port N [--kind image|speech|both] [--latency S]
      [--fail-rate F] [--max-concurrent N] [--model NAME] [--mode MODE]
      [--health up|down] [--header-interval S] [--pid-file PATH]
      [--log PATH] [--ready-file PATH] [--tls-cert FILE --tls-key FILE]
      [--control-port N] [--api-key KEY]

  Listens on 127.0.0.1 only (--port 0 picks a free port; the ready file then
  tells which).  The ready file is written, holding "<port>\\n", once the
  socket listens; the pid and ready files are removed on SIGTERM / SIGINT.
  --log appends one line per request: time, client, method, path, status,
  elapsed seconds and, for job requests, a summary of the job.

Deterministic results, so tests can tell which answer belongs to which job:
  * PNG: 16x16, 8-bit RGB, no interlace.  d = sha256(f"{prompt}|{seed}")
    (UTF-8), where prompt is the prompt with any <sd_cpp_extra_args> block
    removed and surrounding whitespace stripped, and seed the effective seed
    (extra args "seed", else body "seed", else -1).  The 768 bytes of pixel
    data are d repeated 24 times: pixel (x, y) channel c is
    d[(3 * (16 * y + x) + c) % 32].  With n > 1, image i uses seed + i.
    GET /control/expected-png?prompt=P&seed=S returns the exact bytes.
  * Transcript: "transcript of <N> bytes <h>" where N is the size of the file
    part and h the first 8 hex digits of its sha256.  language is the
    "language" part, else "en".  duration is frames / rate from the RIFF/WAVE
    header when the file is a WAV, bytes / 32000 when its Content-Type is
    audio/pcm or audio/raw (16 kHz mono s16le, as speaches reads it), else
    0.0; rounded to 3 decimals.  GET /control/expected-transcript?
    sha256=HEX&bytes=N returns {"text": ...}.

Fault injection (POST /control, or the command-line defaults):
  {"mode": "ok" | "error500" | "error400" | "reset" | "hang" | "malformed" |
           "slow_headers" | "truncated" | "chunked" | "until_close",
   "times": N,             apply the mode to the next N job requests only
   "latency": S,           seconds each job "computes"
   "fail_rate": F,         in mode ok, answer this fraction of jobs 500
   "health": "up"|"down",  /health and /v1/models answer 503 when down
   "header_interval": S,   slow_headers: pause between header lines
   "huge_size": N,         huge_body: the body's size
   "error_message": T}     the message of error400 and error500 (null: the
                           default), in the error shape of the job's path
  Only the keys given change; the answer is the new settings (also at GET
  /control).  Modes:
    error500      500 {"error": {..., "type": "server_error"}}
    error400      400 {"error": {..., "type": "invalid_request_error"}}
    reset         part of the status line and headers, then a TCP RST
    hang          the request is read and never answered; the connection
                  is closed once the client closes its side
    malformed     200 application/json whose body is truncated JSON
    slow_headers  the normal answer, its header lines header_interval apart
    truncated     Content-Length of the full answer, half the body, then FIN
    chunked       the normal answer, Transfer-Encoding: chunked, in small
                  chunks (one with a chunk extension) and a trailer
    until_close   the normal answer with neither length nor chunks: the
                  body ends when the connection closes
    chunked_keepalive  chunked, without Connection: close: the connection
                  stays open
    early_error   413 and Connection: close once the request's headers are
                  read, then the connection closed with the body unread
    interim       100 Continue and 103 Early Hints before the answer
    bare_lf       every line of the answer's head ends in a bare LF
    bare_lf_length  the Content-Length line alone ends in a bare LF
    huge_body     Content-Length: huge_size and that many bytes
    endless_chunked  1 MiB chunks until the client stops reading
    huge_headers  header lines until the client stops reading
    empty         200 application/json "{}": valid JSON without a result
  Every answer to a job request comes after the latency except a 400 (real
  validation errors and error400 are immediate) and hang.  A job stays in
  flight for its whole latency even if the client goes away, as on a real
  GPU server.

Statistics: GET /control/stats -> {"requests", "by_path", "inflight",
"max_inflight", "max_concurrent", "violations", "last_requests"}; the last 50
job requests, oldest first, each {"method", "path", "headers" (names lower
case), "peer_port", "tls" (null, or {"version", "session_reused", "sni"}), "chunked", "body_bytes", "body_sha256", "json",
"sd_cpp_extra_args", "params", "fields", "parts" (each multipart part:
"headers" lines, "bytes", "sha256", "value" unless a file), "file_bytes",
"file_sha256", "file_name", "file_content_type", "fault", "status"}.  POST /control/reset-stats zeroes the counters and the
recorded requests (max_inflight restarts from the current inflight).  A
violation is counted, and logged, each time a job request starts while more
than --max-concurrent are already being served.

The server is a single asyncio event loop: every connection is a coroutine,
so the counters need no lock, latency costs no thread, and HTTP/1.1
keep-alive, pipelining, chunked request bodies and "Expect: 100-continue"
are handled by the small parser below.
"""

import argparse
import asyncio
import base64
import collections
import email.message
import email.utils
import hashlib
import http
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import sys
import time
import traceback
import zlib
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from fake_comfyui import FakeComfyUI

HEADER_LIMIT = 64 * 1024          # request line + headers
MAX_BODY = 256 * 1024 * 1024      # request body, Content-Length or chunked
LAST_REQUESTS = 50
MODES = ("ok", "error500", "error400", "reset", "hang", "malformed",
         "slow_headers", "truncated", "chunked", "until_close",
         "chunked_keepalive", "early_error", "interim", "bare_lf",
         "bare_lf_length", "huge_body", "endless_chunked", "huge_headers",
         "empty")
INTERIM = (b"HTTP/1.1 100 Continue\r\n\r\n"
           b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
HUGE_STEP = 1024 * 1024
RESPONSE_FORMATS = ("json", "text", "verbose_json")
EXTRA_ARGS_RE = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.S)
SIZE_RE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")
CHUNK_SIZE_RE = re.compile(rb"[0-9a-fA-F]{1,15}")
MALFORMED_BODY = b'{"created": 0, "data": "oops"'
RESET_PREFIX = b"HTTP/1.1 200 OK\r\nContent-Type: appli"
JSON = "application/json"
# whisper.cpp names the language in full in verbose_json
WHISPER_LANGUAGES = {"en": "english", "de": "german", "fr": "french", "es": "spanish"}


# --------------------------------------------------------------------------
# Deterministic results

PNG_SIDE = 16


def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


@lru_cache(maxsize=4096)
def expected_png(prompt, seed):
    """The PNG answered for (prompt, seed): see the module docstring."""
    digest = hashlib.sha256(f"{prompt}|{seed}".encode()).digest()
    row = PNG_SIDE * 3
    pixels = digest * (PNG_SIDE * row // len(digest))
    # Each scanline is preceded by its filter type, 0 (None).
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(PNG_SIDE))
    ihdr = struct.pack(">IIBBBBB", PNG_SIDE, PNG_SIDE, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


@lru_cache(maxsize=4096)
def expected_png_b64(prompt, seed):
    return base64.b64encode(expected_png(prompt, seed)).decode("ascii")


def expected_transcript(sha256_hex, size):
    return f"transcript of {size} bytes {sha256_hex[:8].lower()}"


def audio_duration(data, content_type):
    """Seconds of audio: from a RIFF/WAVE header, or for headerless PCM."""
    if content_type in ("audio/pcm", "audio/raw"):
        return round(len(data) / 32000, 3)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return 0.0
    rate = block_align = 0
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        pos += 8
        if chunk_id == b"fmt " and size >= 16:
            _, _, rate, _, block_align = struct.unpack_from("<HHIIH", data, pos)
        elif chunk_id == b"data":
            if not rate or not block_align:
                return 0.0
            # Streaming writers put 0 or 0xFFFFFFFF here: trust the bytes.
            size = min(size, len(data) - pos)
            return round(size // block_align / rate, 3)
        pos += size + (size & 1)   # chunks are word aligned
    return 0.0


# --------------------------------------------------------------------------
# HTTP

class HttpError(Exception):
    """A request that cannot be served; answered, then the connection closes."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    __slots__ = ("method", "path", "query", "version", "headers", "body",
                 "chunked", "keep_alive")


def openai_error(status, message, kind="invalid_request_error", param=None, code=None):
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return status, json.dumps(body).encode(), JSON


def a1111_error(status, message, kind="invalid_request_error", param=None):
    """AUTOMATIC1111's answer to an exception in an API route."""
    body = {"error": "HTTPException", "detail": message, "body": "",
            "errors": f"{status}: {message}"}
    return status, json.dumps(body).encode(), JSON


def whispercpp_error(status, message, kind="invalid_request_error", param=None):
    """whisper.cpp's server: {"error": "..."}."""
    return status, json.dumps({"error": message}).encode(), JSON


# the error shape of each job path that is not OpenAI's
ERROR_SHAPES = {"/sdapi/v1/txt2img": a1111_error, "/inference": whispercpp_error}


def json_response(status, obj):
    return status, json.dumps(obj).encode(), JSON


_date = [0, ""]


def http_date():
    now = int(time.time())
    if now != _date[0]:
        _date[0], _date[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date[1]


def response_head(status, content_type, length, req):
    if req is not None and req.keep_alive:
        # HTTP/1.0 clients only keep the connection when told so.
        connection = "Connection: keep-alive\r\n" if req.version == "HTTP/1.0" else ""
    else:
        connection = "Connection: close\r\n"
    return (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
            f"Server: fake-gpu\r\nDate: {http_date()}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
            f"{connection}\r\n").encode("latin-1")


async def read_request(reader, writer, early=None):
    """Read one request, body included; None on a clean end of connection.

    early(req, writer), when given, may answer from the headers alone and
    close: the request then comes back with body None."""
    try:
        first = await reader.readexactly(1)
        # a TLS handshake record on a plain port: refused at once, as HTTP
        # servers do (the client sees "wrong version number")
        if first == b"\x16" and writer.get_extra_info("ssl_object") is None:
            raise HttpError(400, "TLS on a plain HTTP port")
        head = first + await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request headers too large")
    lines = head[:-4].decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    req = Request()
    req.method, target, req.version = parts
    if not target.startswith("/"):
        target = urlsplit(target).path or "/"   # absolute-form
    req.path, _, req.query = target.partition("?")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name.strip() != name:
            raise HttpError(400, "bad header line")
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    req.headers = headers

    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if req.version == "HTTP/1.0":
        req.keep_alive = "keep-alive" in tokens
    else:
        req.keep_alive = "close" not in tokens

    te = headers.get("transfer-encoding")
    req.chunked = te is not None
    length = 0
    if req.chunked:
        if te.lower() != "chunked":
            raise HttpError(501, f"unsupported transfer-encoding {te}")
    else:
        # Transfer-Encoding wins over Content-Length (RFC 9112, 6.3).
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise HttpError(400, "bad content-length")
        length = int(length)
        if length > MAX_BODY:
            raise HttpError(413, "request body too large")
    req.body = None
    if early is not None and await early(req, writer):
        req.body = None
        return req
    if headers.get("expect", "").lower() == "100-continue" and (req.chunked or length):
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if req.chunked:
        req.body = await read_chunked(reader)
    else:
        req.body = await reader.readexactly(length) if length else b""
    return req


async def read_chunked(reader):
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = line[:-2].split(b";", 1)[0].strip()   # drop chunk extensions
        if not CHUNK_SIZE_RE.fullmatch(size):
            raise HttpError(400, "bad chunk size")
        size = int(size, 16)
        if size == 0:
            break
        if len(body) + size > MAX_BODY:
            raise HttpError(413, "request body too large")
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "bad chunk terminator")
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass   # trailer fields, ignored
    return bytes(body)


def parsed_header(name, value):
    """A structured header (Content-Type, Content-Disposition), to query its parameters."""
    msg = email.message.Message()
    msg[name] = value
    return msg


def parse_multipart(body, content_type):
    """Split multipart/form-data into (headers dict, content bytes, header
    lines) parts."""
    boundary = parsed_header("content-type", content_type).get_boundary()
    if not boundary:
        raise ValueError("no boundary in Content-Type")
    delimiter = b"--" + boundary.encode("latin-1")
    # The first delimiter starts the body or follows a preamble and CRLF.
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        pos = body.find(b"\r\n" + delimiter)
        if pos < 0:
            raise ValueError("boundary not found")
        pos += 2 + len(delimiter)
    separator = b"\r\n" + delimiter
    parts = []
    while not body.startswith(b"--", pos):       # "--" ends the last part
        eol = body.find(b"\r\n", pos)
        if eol < 0 or body[pos:eol].strip(b" \t"):  # transport padding only
            raise ValueError("malformed delimiter line")
        end = body.find(separator, eol + 2)
        if end < 0:
            raise ValueError("unterminated part")
        part = body[eol:end]                      # starts with the CRLF
        blank = part.find(b"\r\n\r\n")
        if blank < 0:
            raise ValueError("part without header terminator")
        headers = {}
        lines = part[2:blank].decode("utf-8", "replace").split("\r\n")
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        parts.append((headers, part[blank + 4:], lines))
        pos = end + len(separator)
    return parts


# --------------------------------------------------------------------------
# The server

class Settings:
    """Behaviour changed at run time through POST /control."""

    def __init__(self, args):
        self.mode = args.mode
        self.times = None          # None: the mode stays until changed
        self.latency = args.latency
        self.fail_rate = args.fail_rate
        self.health = args.health
        self.header_interval = args.header_interval
        self.huge_size = 64 * 1024 * 1024
        self.error_message = None

    def as_dict(self):
        return {"mode": self.mode, "times": self.times, "latency": self.latency,
                "fail_rate": self.fail_rate, "health": self.health,
                "header_interval": self.header_interval,
                "huge_size": self.huge_size,
                "error_message": self.error_message}

    def update(self, change):
        """Validate the whole change, then apply it; a message on error."""
        if not isinstance(change, dict):
            return "body must be a JSON object"
        unknown = set(change) - {"mode", "times", "latency", "fail_rate",
                                 "health", "header_interval", "huge_size",
                                 "error_message"}
        if unknown:
            return f"unknown keys: {', '.join(sorted(unknown))}"
        mode, times = change.get("mode", self.mode), change.get("times")
        if mode not in MODES:
            return f"mode must be one of {', '.join(MODES)}"
        if times is not None and (not is_int(times) or times < 1 or "mode" not in change):
            return "times must be a positive integer, given with mode"
        for key in ("latency", "header_interval"):
            if key in change and not (is_number(change[key]) and change[key] >= 0):
                return f"{key} must be a number >= 0"
        if "fail_rate" in change and not (is_number(change["fail_rate"])
                                          and 0 <= change["fail_rate"] <= 1):
            return "fail_rate must be a number in [0, 1]"
        if change.get("health", "up") not in ("up", "down"):
            return "health must be up or down"
        if "huge_size" in change and not (is_int(change["huge_size"])
                                          and change["huge_size"] >= 64):
            return "huge_size must be an integer >= 64"
        if "error_message" in change and not (change["error_message"] is None
                                              or isinstance(change["error_message"], str)):
            return "error_message must be a string or null"
        if "mode" in change:
            self.mode, self.times = mode, (times if mode != "ok" else None)
        for key in ("latency", "fail_rate", "health", "header_interval",
                    "huge_size", "error_message"):
            if key in change:
                setattr(self, key, change[key])
        return None

    def take_fault(self):
        """The fault for the next job request ("ok" for none)."""
        mode = self.mode
        if mode != "ok":
            if self.times is not None:
                self.times -= 1
                if self.times == 0:
                    self.mode, self.times = "ok", None
            return mode
        if self.fail_rate and random.random() < self.fail_rate:
            return "error500"
        return "ok"


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Stats:
    def __init__(self, max_concurrent):
        self.max_concurrent = max_concurrent
        self.inflight = 0
        self.reset()

    def reset(self):
        self.requests = 0
        self.by_path = collections.Counter()
        self.max_inflight = self.inflight
        self.violations = 0
        self.unauthorized = 0
        self.last = collections.deque(maxlen=LAST_REQUESTS)

    def begin(self, req):
        """Count a job request starting; True if it exceeds --max-concurrent."""
        self.requests += 1
        self.by_path[req.path] += 1
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        if self.max_concurrent and self.inflight > self.max_concurrent:
            self.violations += 1
            return True
        return False

    def as_dict(self):
        return {"requests": self.requests, "by_path": dict(self.by_path),
                "inflight": self.inflight, "max_inflight": self.max_inflight,
                "max_concurrent": self.max_concurrent,
                "violations": self.violations, "unauthorized": self.unauthorized,
                "last_requests": list(self.last)}


class FakeGpu:
    def __init__(self, args):
        self.args = args
        self.settings = Settings(args)
        self.stats = Stats(args.max_concurrent)
        self.log_file = open(args.log, "a", buffering=1, encoding="utf-8") if args.log else None
        self.connections = set()   # their tasks, to close them on shutdown
        # path -> (method, handler, is_job)
        self.routes = {
            "/health": ("GET", self.health, False),
            "/readyz": ("GET", self.health, False),     # LocalAI's probe
            "/v1/models": ("GET", self.models, False),
            "/control": (None, self.control, False),
            "/control/stats": ("GET", self.control_stats, False),
            "/control/reset-stats": ("POST", self.control_reset_stats, False),
            "/control/expected-png": ("GET", self.control_expected_png, False),
            "/control/expected-transcript": ("GET", self.control_expected_transcript, False),
        }
        if args.kind in ("image", "both"):
            self.routes["/v1/images/generations"] = ("POST", self.image_job, True)
            self.routes["/sdapi/v1/txt2img"] = ("POST", self.a1111_job, True)
            self.routes["/sdapi/v1/options"] = ("GET", self.a1111_options, False)
        if args.kind in ("speech", "both"):
            self.routes["/v1/audio/transcriptions"] = ("POST", self.speech_job, True)
            self.routes["/inference"] = ("POST", self.whispercpp_job, True)
        # ComfyUI's routes (tools/fake_comfyui.py): the latency is a
        # prompt's execution, not each request's
        self.comfyui = (FakeComfyUI(self, expected_png)
                        if args.kind == "comfyui" else None)

    def log(self, client, method, path, status, started, summary=""):
        if self.log_file is None:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        line = (f"{stamp}.{int(now * 1000) % 1000:03d}Z {client} {method} {path} "
                f"{status} {time.monotonic() - started:.3f}s {summary}")
        self.log_file.write(line.rstrip() + "\n")

    # ---- connections

    async def serve_connection(self, reader, writer):
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if peer else "-"
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            while True:
                started = time.monotonic()
                try:
                    req = await read_request(reader, writer, self.early_answer)
                except HttpError as e:
                    writer.write(self.render(openai_error(e.status, e.message), None))
                    self.log(client, "-", "-", e.status, started, e.message)
                    break
                if req is None or req.body is None:
                    break
                if not await self.dispatch(req, reader, writer, client, started):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass   # the client went away or sent garbage mid-request
        except asyncio.CancelledError:
            # Only our shutdown cancels; end normally, because asyncio's stream
            # callback (3.11) reports a cancelled handler task as an error.
            pass
        except Exception:
            traceback.print_exc()
        finally:
            writer.close()
            self.connections.discard(task)

    def authorized(self, req):
        """--api-key: the Bearer key, except on /health, /readyz, /control*."""
        key = self.args.api_key
        if not key or req.path in ("/health", "/readyz") or req.path.startswith("/control"):
            return True
        return req.headers.get("authorization") == f"Bearer {key}"

    def render(self, response, req):
        status, body, content_type = response
        return response_head(status, content_type, len(body), req) + body

    async def dispatch(self, req, reader, writer, client, started):
        """Serve one request; True to keep the connection open."""
        method, handler, is_job = self.routes.get(req.path, (None, None, False))
        if handler is None and self.comfyui is not None:
            method, handler, is_job = (self.comfyui.route(req.path)
                                       or (None, None, False))
        if not self.authorized(req):
            self.stats.unauthorized += 1
            response = openai_error(401, "fake-gpu: invalid API key", code="invalid_api_key")
        elif handler is None:
            response = openai_error(404, f"no route for {req.path}")
        elif method is not None and req.method != method:
            response = openai_error(405, f"{req.method} not allowed on {req.path}")
        elif is_job:
            return await self.run_job(req, handler, reader, writer, client, started)
        else:
            response = handler(req)
        writer.write(self.render(response, req))
        await writer.drain()
        self.log(client, req.method, req.path, response[0], started)
        return req.keep_alive

    def new_record(self, req, writer):
        """The record of a job request, in last_requests."""
        peer = writer.get_extra_info("peername")
        body = req.body or b""
        record = {"method": req.method, "path": req.path, "headers": req.headers,
                  "peer_port": peer[1] if peer else None,
                  "chunked": req.chunked, "body_bytes": len(body),
                  "body_sha256": hashlib.sha256(body).hexdigest(),
                  "json": None, "sd_cpp_extra_args": None, "params": None,
                  "fields": None, "parts": None, "file_bytes": None,
                  "file_sha256": None, "file_name": None,
                  "file_content_type": None, "fault": None, "status": None,
                  "tls": tls_info(writer)}
        self.stats.last.append(record)
        return record

    async def early_answer(self, req, writer):
        """early_error: 413 as soon as a job request's headers are read,
        then close with the body unread (the client sees a reset)."""
        route = self.routes.get(req.path)
        if route is None or not route[2] or self.settings.mode != "early_error":
            return False
        started = time.monotonic()
        record = self.new_record(req, writer)
        self.stats.begin(req)
        record["fault"] = self.settings.take_fault()
        try:
            status, body, content_type = openai_error(
                413, "fake-gpu: request body too large")
            writer.write(response_head(status, content_type, len(body), None) + body)
            await writer.drain()
            record["status"] = status
            # Let the answer arrive before the reset that the unread body causes.
            await asyncio.sleep(0.2)
            writer.transport.abort()
        finally:
            self.stats.inflight -= 1
            self.log("-", req.method, req.path, 413, started, "fault=early_error")
        return True

    async def run_job(self, req, handler, reader, writer, client, started):
        record = self.new_record(req, writer)
        if self.stats.begin(req):
            self.log(client, req.method, req.path, "VIOLATION", started,
                     f"inflight={self.stats.inflight} > max-concurrent={self.stats.max_concurrent}")
        status, keep_alive, summary = "-", False, ""
        try:
            response, summary = handler(req, record)
            fault = ("ok" if self.comfyui and not self.comfyui.fault_applies(req)
                     else self.settings.take_fault())
            if fault != "ok":
                record["fault"] = fault
                summary += f" fault={fault}"
            status, keep_alive = await self.answer(
                fault, response, req, reader, writer,
                0 if self.comfyui else self.settings.latency)
            record["status"] = status if isinstance(status, int) else None
        finally:
            self.stats.inflight -= 1
            self.log(client, req.method, req.path, status, started, summary)
        return keep_alive

    async def answer(self, fault, response, req, reader, writer, latency):
        """Deliver a job's answer, or the fault, after latency seconds;
        (status for the log, keep-alive)."""
        if fault == "hang":
            while await reader.read(65536):
                pass   # until the client closes its side
            return "hang", False
        error = ERROR_SHAPES.get(req.path, openai_error)
        if fault == "error400":
            response = error(400, self.settings.error_message
                             or "fake-gpu: injected rejection")
        elif fault == "error500":
            response = error(500, self.settings.error_message
                             or "fake-gpu: injected failure", "server_error")
        elif fault == "malformed":
            response = (200, MALFORMED_BODY, JSON)
        elif fault == "empty":
            response = (200, b"{}", JSON)
        if latency and response[0] != 400:
            await asyncio.sleep(latency)
        if writer.transport.is_closing():
            return "-", False   # the client reset the connection meanwhile

        status, body, content_type = response
        if fault == "reset":
            writer.write(RESET_PREFIX)
            await writer.drain()
            # Let the client read the partial answer before the RST arrives,
            # so it sees a connection reset mid-answer, not a refused request.
            await asyncio.sleep(0.05)
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return "reset", False
        if fault in ("chunked", "chunked_keepalive", "until_close"):
            return await self.write_unsized(writer, fault, status, body,
                                            content_type, req)
        if fault in ("huge_body", "endless_chunked", "huge_headers"):
            return await self.write_huge(writer, fault)
        head = response_head(status, content_type, len(body), req)
        if fault == "interim":
            head = INTERIM + head
        elif fault == "bare_lf":
            head = head.replace(b"\r\n", b"\n")
        elif fault == "bare_lf_length":
            head = re.sub(rb"(Content-Length: [0-9]+)\r\n", rb"\1\n", head)
        if fault == "truncated":
            writer.write(head + body[:len(body) // 2])
            return f"{status}-truncated", False
        if fault == "slow_headers":
            lines = head.splitlines(keepends=True)
            for line in lines[:-1]:
                writer.write(line)
                await writer.drain()
                await asyncio.sleep(self.settings.header_interval)
            head = lines[-1]
        writer.write(head + body)
        await writer.drain()
        return status, req.keep_alive

    async def write_huge(self, writer, fault):
        """An answer too large for any client cap, sent until the client
        stops reading: huge_size bytes of body, or endless chunks, or an
        endless header block."""
        size = self.settings.huge_size
        head = (f"HTTP/1.1 200 OK\r\nServer: fake-gpu\r\n"
                f"Content-Type: {JSON}\r\n")
        if fault == "huge_body":
            writer.write((head + f"Content-Length: {size}\r\n\r\n").encode()
                         + b'{"data": [{"b64_json": "')
            size -= 24
        elif fault == "endless_chunked":
            writer.write((head + "Transfer-Encoding: chunked\r\n\r\n").encode()
                         + b'18\r\n{"data": [{"b64_json": "\r\n')
        else:
            writer.write(head.encode())
        pad = b"A" * HUGE_STEP
        try:
            while fault != "huge_body" or size > 0:
                if fault == "huge_body":
                    data = pad[:min(size, HUGE_STEP)]
                    size -= len(data)
                elif fault == "endless_chunked":
                    data = f"{HUGE_STEP:x}\r\n".encode() + pad + b"\r\n"
                else:
                    data = b"X-Pad: " + pad[:HUGE_STEP // 16] + b"\r\n"
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            return f"200-{fault}-cut", False
        await asyncio.sleep(0.5)   # the client may still be reading
        return f"200-{fault}", False

    async def write_unsized(self, writer, fault, status, body, content_type, req):
        """The answer without Content-Length: chunked, or to the close."""
        head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                f"Server: fake-gpu\r\nDate: {http_date()}\r\n"
                f"Content-Type: {content_type}\r\n")
        if fault == "until_close":
            writer.write((head + "Connection: close\r\n\r\n").encode("latin-1")
                         + body)
            await writer.drain()
            return f"{status}-until-close", False
        keep_alive = fault == "chunked_keepalive" and req.keep_alive
        writer.write((head + "Transfer-Encoding: chunked\r\n"
                      + ("" if keep_alive else "Connection: close\r\n")
                      + "\r\n").encode("latin-1"))
        step = max(1, len(body) // 7)
        for i, at in enumerate(range(0, len(body), step)):
            chunk = body[at:at + step]
            ext = ";ext=1" if i == 1 else ""
            writer.write(f"{len(chunk):x}{ext}\r\n".encode("latin-1")
                         + chunk + b"\r\n")
            await writer.drain()
        writer.write(b"0\r\nX-Trailer: 1\r\n\r\n")
        await writer.drain()
        return f"{status}-chunked", keep_alive

    # ---- jobs: (response, log summary), the request recorded on the way

    def image_job(self, req, record):
        try:
            body = json.loads(req.body)
        except ValueError:
            return openai_error(400, "invalid JSON body"), "invalid JSON"
        record["json"] = body
        if not isinstance(body, dict):
            return openai_error(400, "body must be a JSON object"), "not an object"
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return openai_error(400, "prompt required", param="prompt"), "no prompt"
        extra = {}
        match = EXTRA_ARGS_RE.search(prompt)
        if match:
            try:
                extra = json.loads(match.group(1))
            except ValueError:
                extra = None
            if not isinstance(extra, dict):
                return openai_error(400, "invalid sd_cpp_extra_args"), "bad extra args"
            record["sd_cpp_extra_args"] = extra
            prompt = prompt[:match.start()] + prompt[match.end():]
        prompt = prompt.strip()
        if not prompt:
            return openai_error(400, "prompt required", param="prompt"), "no prompt"

        seed = extra.get("seed", body.get("seed", -1))
        if not is_int(seed):
            return openai_error(400, "seed must be an integer", param="seed"), "bad seed"
        n = body.get("n", 1)
        if not is_int(n) or not 1 <= n <= 10:
            return openai_error(400, "n must be an integer in [1, 10]", param="n"), "bad n"
        size = body.get("size", "512x512")
        size_match = SIZE_RE.fullmatch(size) if isinstance(size, str) else None
        if not size_match:
            return openai_error(400, "size must be \"WxH\"", param="size"), "bad size"
        sample = extra.get("sample_params")
        sample = sample if isinstance(sample, dict) else {}
        guidance = sample.get("guidance")
        guidance = guidance if isinstance(guidance, dict) else {}
        record["params"] = {
            "prompt": prompt,
            "negative_prompt": extra.get("negative_prompt", body.get("negative_prompt")),
            "seed": seed, "n": n,
            "width": int(size_match.group(1)), "height": int(size_match.group(2)),
            "steps": sample.get("sample_steps", body.get("steps")),
            "cfg_scale": guidance.get("txt_cfg", body.get("cfg_scale")),
        }
        result = {"created": int(time.time()), "output_format": "png",
                  "data": [{"b64_json": expected_png_b64(prompt, seed + i)} for i in range(n)]}
        summary = f"prompt={json.dumps(prompt[:60])} seed={seed} size={size} n={n}"
        return json_response(200, result), summary

    def a1111_job(self, req, record):
        """POST /sdapi/v1/txt2img, as AUTOMATIC1111's API reads it."""
        try:
            body = json.loads(req.body)
        except ValueError:
            body = None
        record["json"] = body
        if not isinstance(body, dict):
            return json_response(422, {"detail": [
                {"loc": ["body"], "msg": "value is not a valid dict",
                 "type": "type_error.dict"}]}), "not an object"
        types = {"prompt": str, "negative_prompt": str, "width": int, "height": int,
                 "steps": int, "seed": int, "batch_size": int, "n_iter": int,
                 "cfg_scale": (int, float)}
        for name, kind in types.items():
            value = body.get(name)
            if name in body and (not isinstance(value, kind) or isinstance(value, bool)):
                return json_response(422, {"detail": [
                    {"loc": ["body", name], "msg": f"{name} has the wrong type",
                     "type": "type_error"}]}), f"bad {name}"
        prompt = body.get("prompt", "")
        seed = body.get("seed", -1)
        batch = body.get("batch_size", 1)
        if not 1 <= batch <= 8:
            return a1111_error(422, "batch_size must be in [1, 8]"), "bad batch_size"
        record["params"] = {
            "prompt": prompt, "negative_prompt": body.get("negative_prompt"),
            "seed": seed, "n": batch, "width": body.get("width", 512),
            "height": body.get("height", 512), "steps": body.get("steps"),
            "cfg_scale": body.get("cfg_scale"),
        }
        parameters = dict(body)
        info = {"prompt": prompt, "seed": seed, "all_seeds": [seed + i for i in range(batch)],
                "width": record["params"]["width"], "height": record["params"]["height"]}
        result = {"images": [expected_png_b64(prompt, seed + i) for i in range(batch)],
                  "parameters": parameters, "info": json.dumps(info)}
        summary = f"prompt={json.dumps(prompt[:60])} seed={seed} batch_size={batch}"
        return json_response(200, result), summary

    def a1111_options(self, req):
        if self.settings.health == "down":
            return a1111_error(503, "model not loaded")
        return json_response(200, {"sd_model_checkpoint": self.args.model,
                                   "samples_format": "png", "CLIP_stop_at_last_layers": 1})

    def whispercpp_job(self, req, record):
        """POST /inference, as whisper.cpp's server reads it."""
        content_type = req.headers.get("content-type", "")
        if parsed_header("content-type", content_type).get_content_type() != "multipart/form-data":
            return whispercpp_error(400, "no 'file' field in the request"), "not multipart"
        try:
            parts = parse_multipart(req.body, content_type)
        except ValueError as e:
            return whispercpp_error(400, f"bad multipart body: {e}"), "bad multipart"
        fields, audio = self.multipart_fields(parts, record)
        if audio is None:
            return whispercpp_error(400, "no 'file' field in the request"), "no file"
        data, filename, file_type = audio
        digest = hashlib.sha256(data).hexdigest()
        record.update(file_bytes=len(data), file_sha256=digest,
                      file_name=filename, file_content_type=file_type)
        response_format = fields.get("response_format", "json")
        summary = f"file={filename} bytes={len(data)} sha256={digest[:8]} format={response_format}"
        if not data:
            return whispercpp_error(400, "failed to read audio data"), summary
        text = expected_transcript(digest, len(data))
        if response_format in ("text", "srt", "vtt"):
            return (200, text.encode(), "text/plain; charset=utf-8"), summary
        if response_format != "verbose_json":
            return json_response(200, {"text": text}), summary
        duration = audio_duration(data, (file_type or "").split(";")[0].strip().lower())
        language = WHISPER_LANGUAGES.get(fields.get("language") or "en", "english")
        segment = {"id": 0, "text": text, "start": 0.0, "end": duration,
                   "tokens": [50364, 1025], "words": [
                       {"word": text, "start": 0.0, "end": duration,
                        "t_dtw": -1, "probability": 0.9}],
                   "temperature": 0.0, "avg_logprob": -0.1, "no_speech_prob": 0.0}
        return json_response(200, {"task": "transcribe", "language": language,
                                   "duration": duration, "text": text,
                                   "segments": [segment],
                                   "detected_language": language,
                                   "detected_language_probability": 0.99}), summary

    def multipart_fields(self, parts, record):
        """The parts as fields by name, and the first "file" part."""
        fields, audio = {}, None
        record["parts"] = [
            dict({"headers": lines, "bytes": len(content),
                  "sha256": hashlib.sha256(content).hexdigest()},
                 **({} if "filename" in headers.get("content-disposition", "")
                    else {"value": content.decode("utf-8", "replace")}))
            for headers, content, lines in parts]
        for headers, content, _ in parts:
            disposition = parsed_header("content-disposition",
                                        headers.get("content-disposition", ""))
            name = disposition.get_param("name", header="content-disposition")
            if isinstance(name, tuple):     # RFC 2231 encoded
                name = email.utils.collapse_rfc2231_value(name)
            if name == "file" and audio is None:
                audio = (content, disposition.get_filename(), headers.get("content-type"))
            elif name is not None:
                fields[name] = content.decode("utf-8", "replace")
        record["fields"] = fields
        return fields, audio

    def speech_job(self, req, record):
        content_type = req.headers.get("content-type", "")
        if parsed_header("content-type", content_type).get_content_type() != "multipart/form-data":
            return openai_error(400, "expected multipart/form-data"), "not multipart"
        try:
            parts = parse_multipart(req.body, content_type)
        except ValueError as e:
            return openai_error(400, f"bad multipart body: {e}"), "bad multipart"
        fields, audio = {}, None
        record["parts"] = [
            dict({"headers": lines, "bytes": len(content),
                  "sha256": hashlib.sha256(content).hexdigest()},
                 **({} if "filename" in headers.get("content-disposition", "")
                    else {"value": content.decode("utf-8", "replace")}))
            for headers, content, lines in parts]
        for headers, content, _ in parts:
            disposition = parsed_header("content-disposition",
                                        headers.get("content-disposition", ""))
            name = disposition.get_param("name", header="content-disposition")
            if isinstance(name, tuple):     # RFC 2231 encoded
                name = email.utils.collapse_rfc2231_value(name)
            if name == "file" and audio is None:
                audio = (content, disposition.get_filename(), headers.get("content-type"))
            elif name is not None:
                value = content.decode("utf-8", "replace")
                # Repeated parts (timestamp_granularities[]) become a list.
                if name in fields:
                    previous = fields[name]
                    fields[name] = (previous if isinstance(previous, list) else [previous]) + [value]
                else:
                    fields[name] = value
        record["fields"] = fields
        if audio is None:
            return openai_error(400, "no 'file' field in the request", param="file"), "no file"
        data, filename, file_type = audio
        digest = hashlib.sha256(data).hexdigest()
        record.update(file_bytes=len(data), file_sha256=digest,
                      file_name=filename, file_content_type=file_type)
        response_format = fields.get("response_format", "json")
        summary = f"file={filename} bytes={len(data)} sha256={digest[:8]} format={response_format}"
        if not data:
            return openai_error(400, "empty audio", param="file"), summary
        if response_format not in RESPONSE_FORMATS:
            return openai_error(400, f"response_format must be one of {', '.join(RESPONSE_FORMATS)}",
                                param="response_format"), summary

        text = expected_transcript(digest, len(data))
        if response_format == "text":
            return (200, text.encode(), "text/plain; charset=utf-8"), summary
        if response_format == "json":
            return json_response(200, {"text": text}), summary
        duration = audio_duration(data, (file_type or "").split(";")[0].strip().lower())
        segment = {"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text,
                   "tokens": [], "temperature": 0.0, "avg_logprob": -0.1,
                   "compression_ratio": 1.0, "no_speech_prob": 0.0}
        language = fields.get("language") or "en"
        return json_response(200, {"task": "transcribe", "language": language,
                                   "duration": duration, "text": text,
                                   "segments": [segment]}), summary

    # ---- health and control

    def health(self, req):
        if self.settings.health == "down":
            return json_response(503, {"status": "loading model"})
        return json_response(200, {"status": "ok"})

    def models(self, req):
        if self.settings.health == "down":
            return openai_error(503, "model not loaded", "server_error")
        return json_response(200, {"object": "list", "data": [
            {"id": self.args.model, "object": "model", "created": 0, "owned_by": "fake-gpu"}]})

    def control(self, req):
        if req.method == "POST":
            try:
                change = json.loads(req.body)
            except ValueError:
                return openai_error(400, "invalid JSON body")
            error = self.settings.update(change)
            if error:
                return openai_error(400, error)
        elif req.method != "GET":
            return openai_error(405, f"{req.method} not allowed on {req.path}")
        return json_response(200, dict(self.settings.as_dict(), kind=self.args.kind,
                                       model=self.args.model))

    def control_stats(self, req):
        return json_response(200, self.stats.as_dict())

    def control_reset_stats(self, req):
        self.stats.reset()
        return json_response(200, self.stats.as_dict())

    def control_expected_png(self, req):
        query = parse_qs(req.query)
        prompt = query.get("prompt", [""])[0].strip()
        seed = query.get("seed", ["-1"])[0]
        if not prompt or not re.fullmatch(r"-?[0-9]+", seed):
            return openai_error(400, "need prompt=TEXT and an integer seed")
        return 200, expected_png(prompt, int(seed)), "image/png"

    def control_expected_transcript(self, req):
        query = parse_qs(req.query)
        digest = query.get("sha256", [""])[0]
        size = query.get("bytes", [""])[0]
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", digest) or not size.isdigit():
            return openai_error(400, "need sha256=HEX and bytes=N")
        return json_response(200, {"text": expected_transcript(digest, int(size))})


# --------------------------------------------------------------------------
# TLS

def remember_sni(ssl_object, name, context):
    """The server name the client sent, for the record of its requests."""
    ssl_object.fake_gpu_sni = name


def tls_info(writer):
    """How a request came over TLS: None when it came in plain HTTP."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    return {"version": ssl_object.version(), "session_reused": ssl_object.session_reused,
            "sni": getattr(ssl_object, "fake_gpu_sni", None)}


# --------------------------------------------------------------------------
# Main

def write_file(path, text):
    """Write atomically, so a watcher never reads a partial file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def remove_file(path):
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


async def serve(args):
    app = FakeGpu(args)
    remove_file(args.ready_file)   # a stale one would announce a dead server
    if args.pid_file:
        write_file(args.pid_file, f"{os.getpid()}\n")
    try:
        context = None
        if args.tls_cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(args.tls_cert, args.tls_key)
            context.sni_callback = remember_sni
        server = await asyncio.start_server(app.serve_connection, "127.0.0.1", args.port,
                                            limit=HEADER_LIMIT, backlog=4096, ssl=context)
        control = None
        if args.control_port:
            control = await asyncio.start_server(app.serve_connection, "127.0.0.1",
                                                 args.control_port, limit=HEADER_LIMIT)
        port = server.sockets[0].getsockname()[1]
        if args.ready_file:
            write_file(args.ready_file, f"{port}\n")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        if control:
            control.close()
        # Close open connections (hung jobs, idle keep-alive) while the log
        # is still open: they log their last request as they end.
        for task in app.connections:
            task.cancel()
        await asyncio.gather(*app.connections, return_exceptions=True)
    finally:
        remove_file(args.ready_file)
        remove_file(args.pid_file)
        if app.log_file:
            app.log_file.close()


def parse_args(argv):
    def fraction(text):
        value = float(text)
        if not 0 <= value <= 1:
            raise argparse.ArgumentTypeError("must be in [0, 1]")
        return value

    def non_negative(text):
        value = float(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return value

    def positive_int(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError("must be >= 1")
        return value

    p = argparse.ArgumentParser(description="Fake GPU inference server (sd-server / "
                                "OpenAI images, speaches / whisper.cpp transcriptions).")
    p.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any)")
    p.add_argument("--kind", choices=("image", "speech", "both", "comfyui"),
                   default="both", help="comfyui: ComfyUI's routes only")
    p.add_argument("--latency", type=non_negative, default=0.0,
                   help="seconds each job computes")
    p.add_argument("--fail-rate", type=fraction, default=0.0,
                   help="fraction of job requests answered 500")
    p.add_argument("--max-concurrent", type=positive_int,
                   help="count a violation when more job requests are in flight")
    p.add_argument("--model", default="fake-gpu", help="the id /v1/models lists")
    p.add_argument("--mode", choices=MODES, default="ok", help="initial fault mode")
    p.add_argument("--health", choices=("up", "down"), default="up")
    p.add_argument("--header-interval", type=non_negative, default=1.0,
                   help="slow_headers: seconds between header lines")
    p.add_argument("--pid-file")
    p.add_argument("--log", help="append one line per request")
    p.add_argument("--ready-file", help="written with the port once listening")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    p.add_argument("--control-port", type=int,
                   help="also serve plain HTTP on this port (for control calls)")
    p.add_argument("--api-key", help="require Authorization: Bearer KEY")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as e:
        print(f"fake_gpu: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
