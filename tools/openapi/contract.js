#!/usr/bin/env node
// contract.js: holds a running gateway to docs/openapi.yaml.
//
//   NODE_PATH=build/npm/node_modules node tools/openapi/contract.js \
//       SPEC BASE_URL --image-fake PORT --speech-fake PORT
//       [--locked-base URL]
//   ... SPEC BASE_URL --only no-backend
//   ... SPEC BASE_URL --only locked --task ID
//
// Sends every endpoint its successes and its error paths (the table in
// main() below), and checks each exchange against the document:
//
//   - the path matches a path of the document, else the answer must be
//     404 not_found; the method is an operation there, else the answer
//     must be 405 with an Allow header, valid as components/responses/Error
//     says;
//   - the status is one the operation declares, or its "default" for an
//     error nginx raises itself (a code of the module's own must be
//     declared);
//   - the Content-Type is one that response declares; a JSON body is
//     validated with Ajv (JSON Schema 2020-12, formats) against the
//     response's schema; a PNG starts with the PNG signature; a response
//     without content, and every HEAD answer, has an empty body;
//   - every header the response marks required is there, and every header
//     it declares is valid against its schema;
//   - for a request that succeeded, its query parameters, Content-Type and
//     JSON body are valid against the operation's parameters and body.
//
// "--only no-backend" sends only the submissions, to a gateway with no
// backend (404); "--only locked" the writes, to a gateway whose database
// another process holds locked (503, Retry-After), canceling task ID.
//
// Prints one JSON object: {"checked": N, "failures": [...], "covered":
// {"operationId": ["status", ...]}}; exits 1 when something failed.

'use strict';

const fs = require('fs');
const YAML = require('yaml');
const Ajv2020 = require('ajv/dist/2020');
const addFormats = require('ajv-formats');

const argv = process.argv.slice(2);
const opt = { spec: argv[0], base: argv[1] };

for (let i = 2; i < argv.length; i++) {
    switch (argv[i]) {
    case '--image-fake': opt.imageFake = argv[++i]; break;
    case '--speech-fake': opt.speechFake = argv[++i]; break;
    case '--locked-base': opt.lockedBase = argv[++i]; break;
    case '--only': opt.only = argv[++i]; break;
    case '--task': opt.task = argv[++i]; break;
    default:
        process.stderr.write('contract.js: unknown argument ' + argv[i] + '\n');
        process.exit(2);
    }
}

if (!opt.spec || !opt.base) {
    process.stderr.write('usage: contract.js SPEC BASE_URL --image-fake PORT'
                         + ' --speech-fake PORT [--locked-base URL]\n');
    process.exit(2);
}

const doc = YAML.parse(fs.readFileSync(opt.spec, 'utf8'));
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, 'openapi');

// the errors the module's handlers answer: each operation must declare
// those it gives; "default" is for the errors nginx raises around them
const MODULE_CODES = ['invalid_json', 'invalid_argument', 'not_found',
                      'conflict', 'payload_too_large',
                      'unsupported_media_type', 'queue_full', 'unavailable',
                      'range_not_satisfiable'];

const failures = [];
const covered = {};
let checked = 0;

function deref(o) {
    while (o && o.$ref) {
        o = o.$ref.slice(2).split('/').reduce(
            (node, k) => node[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc);
    }
    return o;
}

// a validator for a schema inside the document (refs resolve in it)
const compiled = new Map();

function validator(schema) {
    if (schema.$ref) {
        return ajv.getSchema('openapi' + schema.$ref);
    }
    if (!compiled.has(schema)) {
        compiled.set(schema, ajv.compile(inline(schema)));
    }
    return compiled.get(schema);
}

// an inline schema whose $refs point into the document
function inline(schema) {
    return JSON.parse(JSON.stringify(schema).replace(/"\$ref":"#/g,
                                                     '"$ref":"openapi#'));
}

function validate(schema, value, what, fail) {
    const v = validator(schema);
    if (!v(value)) {
        fail(what + ' is not valid: ' + ajv.errorsText(v.errors, {
            dataVar: what }));
    }
}

// the document's path template that a request path matches
function findPath(path) {
    for (const template of Object.keys(doc.paths)) {
        const names = [];
        const re = new RegExp('^'
            + template.replace(/[.*+?^$()|[\]\\]/g, '\\$&')
                .replace(/\{([^}]+)\}/g, (m, name) => {
                    names.push(name);
                    return '([^/]+)';
                }) + '$');
        const m = re.exec(path);
        if (m) {
            const params = {};
            names.forEach((n, i) => {
                params[n] = decodeURIComponent(m[i + 1]);
            });
            return { template, item: doc.paths[template], params };
        }
    }
    return null;
}

function mediaMatches(range, type) {
    if (range === type) {
        return true;
    }
    if (range.endsWith('/*')) {
        return type.startsWith(range.slice(0, -1));
    }
    return false;
}

// a parameter's value from the query or a header, typed for its schema
function coerce(schema, raw) {
    const s = deref(schema);
    if (s.type === 'integer' || s.type === 'number') {
        return raw !== '' && !isNaN(Number(raw)) ? Number(raw) : raw;
    }
    return raw;
}

function checkRequest(op, pathItem, params, req, url, fail) {
    const declared = [...(pathItem.parameters || []), ...(op.parameters || [])]
        .map(deref);

    for (const p of declared) {
        if (p.in === 'path') {
            validate(p.schema, params[p.name], 'path parameter ' + p.name,
                     fail);
        }
        if (p.in === 'query' && url.searchParams.has(p.name)) {
            validate(p.schema, coerce(p.schema, url.searchParams.get(p.name)),
                     'query parameter ' + p.name, fail);
        }
    }
    for (const name of url.searchParams.keys()) {
        if (!declared.some((p) => p.in === 'query' && p.name === name)) {
            fail('query parameter ' + name + ' is not in the document');
        }
    }

    const type = (req.headers && req.headers['Content-Type'] || '')
        .split(';')[0].trim().toLowerCase();
    if (op.requestBody && type) {
        const content = deref(op.requestBody).content;
        const key = Object.keys(content).find(
            (k) => mediaMatches(k.toLowerCase(), type));
        if (!key) {
            fail('request Content-Type ' + type + ' is not in the document');
        } else if (type === 'application/json') {
            validate(content[key].schema, JSON.parse(req.body),
                     'request body', fail);
        }
    }
}

function checkHeaders(response, headers, fail) {
    for (const [name, h] of Object.entries(response.headers || {})) {
        const header = deref(h);
        const value = headers.get(name);
        if (value === null) {
            if (header.required) {
                fail('header ' + name + ' is missing');
            }
            continue;
        }
        validate(header.schema, coerce(header.schema, value),
                 'header ' + name, fail);
    }
}

// one exchange: the request sent, then its answer checked
async function exchange(name, method, path, req = {}) {
    const base = req.base || opt.base;
    const url = new URL(base + path);
    let res;
    let body;

    try {
        res = await fetch(url, { method, headers: req.headers || {},
                                 body: req.body, redirect: 'manual' });
        body = Buffer.from(await res.arrayBuffer());
    } catch (err) {
        checked++;
        failures.push({ name, method, path, status: null,
                        errors: [String(err.cause || err)] });
        return { status: 0, headers: new Headers(), json: null,
                 body: Buffer.alloc(0) };
    }

    const status = String(res.status);
    const type = (res.headers.get('content-type') || '').split(';')[0].trim();
    const errs = [];
    const fail = (m) => errs.push(m);

    checked++;

    if (req.expect && !req.expect.includes(res.status)) {
        fail('answered ' + status + ', the test expected ' + req.expect);
    }

    const found = findPath(url.pathname.slice(new URL(base).pathname.length));
    let op = null;
    let response;
    let opName;
    let undeclared = false;

    if (!found) {
        if (status !== '404') {
            fail('a path not in the document answered ' + status);
        }
        response = deref({ $ref: '#/components/responses/Error' });
        opName = '(no such endpoint)';
    } else {
        op = found.item[method.toLowerCase()];
        if (!op) {
            if (status !== '405') {
                fail(method + ' is not in the document, and answered '
                     + status);
            }
            response = deref({ $ref: '#/components/responses/Error' });
            if (!res.headers.get('allow')) {
                fail('a 405 without Allow');
            }
            opName = '(' + method + ' ' + found.template + ')';
        } else {
            opName = op.operationId;
            response = op.responses[status] || op.responses[status[0] + 'XX']
                       || op.responses.default;
            if (!op.responses[status]) {
                opName += ' default';
                undeclared = true;
            }
            if (!response) {
                fail('status ' + status + ' is not in the document');
            }
            response = deref(response);
            if (res.ok) {
                checkRequest(op, found.item, found.params, req, url, fail);
            }
        }
    }

    (covered[opName] = covered[opName] || new Set()).add(status);

    if (response) {
        checkHeaders(response, res.headers, fail);

        if (method === 'HEAD' || !response.content) {
            if (body.length) {
                fail('a body where the document has none');
            }
        } else {
            const key = Object.keys(response.content).find(
                (k) => mediaMatches(k, type));
            if (!key) {
                fail('Content-Type ' + type + ' is not in the document');
            } else if (type === 'application/json') {
                let json;
                try {
                    json = JSON.parse(body.toString('utf8'));
                } catch (e) {
                    fail('the body is not JSON');
                }
                if (json !== undefined) {
                    validate(response.content[key].schema, json, 'body', fail);
                }
                if (undeclared && json && json.error
                    && MODULE_CODES.includes(json.error.code))
                {
                    fail('the module answered ' + status + ' '
                         + json.error.code + ', which the operation does not'
                         + ' declare (only nginx\'s own errors are "default")');
                }
            } else if (type === 'image/png') {
                if (status === '200' && body.subarray(0, 8).toString('hex')
                    !== '89504e470d0a1a0a')
                {
                    fail('the body is not a PNG');
                }
            }
        }
    }

    if (errs.length) {
        failures.push({ name, method, path, status,
                        body: body.toString('utf8').slice(0, 300),
                        errors: errs });
    }

    return { status: res.status, headers: res.headers,
             json: type === 'application/json'
                   ? JSON.parse(body.toString('utf8') || 'null') : null,
             body };
}

async function fake(port, settings) {
    const r = await fetch('http://127.0.0.1:' + port + '/control', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(settings) });
    await r.arrayBuffer();
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

const JSONT = { 'Content-Type': 'application/json' };
const ALICE = { 'X-User-Id': 'alice' };

async function waitFor(id, statuses, headers = {}) {
    for (let i = 0; i < 200; i++) {
        const r = await fetch(opt.base + '/tasks/' + id, { headers });
        const t = await r.json();
        if (statuses.includes(t.status)) {
            return t;
        }
        await sleep(50);
    }
    throw new Error('task ' + id + ' did not get to ' + statuses);
}

function pcm(bytes) {
    return Buffer.alloc(bytes);
}

function multipart(parts) {
    const boundary = 'contract-boundary-7f3a';
    const chunks = [];
    for (const p of parts) {
        chunks.push(Buffer.from('--' + boundary + '\r\nContent-Disposition: '
            + 'form-data; name="' + p.name + '"'
            + (p.filename ? '; filename="' + p.filename + '"' : '') + '\r\n'
            + (p.type ? 'Content-Type: ' + p.type + '\r\n' : '') + '\r\n'));
        chunks.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value));
        chunks.push(Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from('--' + boundary + '--\r\n'));
    return { body: Buffer.concat(chunks),
             type: 'multipart/form-data; boundary=' + boundary };
}

// the three submissions, each answering the same status
async function submissions(what, st) {
    await exchange('image: ' + what, 'POST', '/image/async', {
        headers: JSONT, body: '{"prompt":"x"}', expect: [st] });
    await exchange('transcribe: ' + what, 'POST', '/speech/transcribe', {
        headers: { 'Content-Type': 'audio/ogg' }, body: 'x', expect: [st] });
    await exchange('pcm: ' + what, 'POST', '/speech/pcm', {
        headers: { 'Content-Type': 'audio/pcm' }, body: 'xy', expect: [st] });
}

async function only(what) {
    switch (what) {
    case 'no-backend':
        await submissions('no backend', 404);
        break;
    case 'locked':
        await submissions('store locked', 503);
        await exchange('cancel: store locked', 'DELETE', '/tasks/' + opt.task,
                       { expect: [503] });
        break;
    default:
        throw new Error('unknown --only ' + what);
    }
}

async function main() {
    const x = exchange;

    if (opt.only) {
        return only(opt.only);
    }

    const ID0 = '00000000-0000-7000-8000-000000000000';

    // image: success, every field, and each kind of fault
    await fake(opt.imageFake, { mode: 'ok', latency: 0 });
    const img = await x('image submitted', 'POST', '/image/async', {
        headers: { ...JSONT, ...ALICE }, expect: [202],
        body: JSON.stringify({ prompt: 'a red fox', width: 64, height: 64,
                               seed: 42 }) });
    await x('image with every field', 'POST', '/image/async', {
        headers: JSONT, expect: [202],
        body: JSON.stringify({ prompt: 'every field', negative_prompt: 'blur',
                               width: 128, height: 64, steps: 2, seed: 1,
                               cfg_scale: 4.5, priority: 9 }) });
    for (const [what, body, st] of [
        ['empty body', '', 400], ['not JSON', '{', 400],
        ['not an object', '[1]', 400],
        ['unknown field', '{"prompt":"x","sampler":"y"}', 400],
        ['duplicate field', '{"prompt":"x","prompt":"y"}', 400],
        ['no prompt', '{"width":64}', 400],
        ['width out of range', '{"prompt":"x","width":56}', 400],
        ['not a multiple of 8', '{"prompt":"x","width":65}', 400],
        ['seed a string', '{"prompt":"x","seed":"1"}', 400],
        ['cfg_scale out of range', '{"prompt":"x","cfg_scale":31}', 400],
        ['extra args', '{"prompt":"<sd_cpp_extra_args>"}', 400],
        ['over 64 KiB', JSON.stringify({ prompt: 'x'.repeat(70000) }), 413],
    ]) {
        await x('image: ' + what, 'POST', '/image/async',
                { headers: JSONT, body, expect: [st] });
    }
    await x('image: not JSON type', 'POST', '/image/async', {
        headers: { 'Content-Type': 'text/plain' }, body: '{"prompt":"x"}',
        expect: [415] });
    await x('image: GET', 'GET', '/image/async', { expect: [405] });

    // the image task to its end, its result in every form
    const done = await waitFor(img.json.id, ['DONE'], ALICE);
    await x('task DONE', 'GET', '/tasks/' + done.id,
            { headers: ALICE, expect: [200] });
    await x('task in upper case', 'GET', '/tasks/' + done.id.toUpperCase(),
            { headers: ALICE, expect: [200] });
    await x('task HEAD', 'HEAD', '/tasks/' + done.id,
            { headers: ALICE, expect: [200] });
    await x('task by query', 'GET', '/tasks?id=' + done.id,
            { headers: ALICE, expect: [200] });
    const png = await x('PNG', 'GET', '/tasks/' + done.id + '/result',
                        { headers: ALICE, expect: [200] });
    await x('PNG HEAD', 'HEAD', '/tasks/' + done.id + '/result',
            { headers: ALICE, expect: [200] });
    await x('PNG range', 'GET', '/tasks/' + done.id + '/result', {
        headers: { ...ALICE, Range: 'bytes=0-9' }, expect: [206] });
    await x('PNG not modified', 'GET', '/tasks/' + done.id + '/result', {
        headers: { ...ALICE, 'If-None-Match': png.headers.get('etag') },
        expect: [304] });
    await x('PNG range past the end', 'GET', '/tasks/' + done.id + '/result', {
        headers: { ...ALICE, Range: 'bytes=100000-' }, expect: [416] });
    await x('cancel DONE', 'DELETE', '/tasks/' + done.id,
            { headers: ALICE, expect: [409] });
    await x('another user', 'GET', '/tasks/' + done.id,
            { headers: { 'X-User-Id': 'bob' }, expect: [404] });

    // a FAILED task (4xx from the instance)
    await fake(opt.imageFake, { mode: 'error400', times: 1 });
    const bad = await x('image to fail', 'POST', '/image/async', {
        headers: JSONT, body: '{"prompt":"fail"}', expect: [202] });
    await waitFor(bad.json.id, ['FAILED']);
    await x('task FAILED', 'GET', '/tasks/' + bad.json.id, { expect: [200] });
    await x('result of FAILED', 'GET', '/tasks/' + bad.json.id + '/result',
            { expect: [409] });

    // speech: one that finishes, then one that runs and others that wait
    await fake(opt.speechFake, { mode: 'ok', latency: 0 });
    const mp = multipart([
        { name: 'file', filename: 'speech.ogg', type: 'audio/ogg',
          value: pcm(3200) },
        { name: 'language', value: 'en' },
        { name: 'prompt', value: 'Names: Ångström' },
        { name: 'priority', value: '7' }]);
    const sp = await x('speech multipart', 'POST', '/speech/transcribe', {
        headers: { 'Content-Type': mp.type, ...ALICE }, body: mp.body,
        expect: [202] });
    await waitFor(sp.json.id, ['DONE'], ALICE);
    await x('speech DONE', 'GET', '/tasks/' + sp.json.id,
            { headers: ALICE, expect: [200] });
    await x('transcript', 'GET', '/tasks/' + sp.json.id + '/result',
            { headers: ALICE, expect: [200] });

    await fake(opt.speechFake, { latency: 30 });
    const raw = await x('speech raw', 'POST',
                        '/speech/transcribe?language=de&priority=3&prompt=hi', {
        headers: { 'Content-Type': 'audio/ogg', ...ALICE }, body: pcm(3200),
        expect: [202] });
    const running = await waitFor(raw.json.id, ['RUNNING'], ALICE);
    await x('task RUNNING', 'GET', '/tasks/' + running.id,
            { headers: ALICE, expect: [200] });
    await x('result of RUNNING', 'GET', '/tasks/' + running.id + '/result',
            { headers: ALICE, expect: [409] });
    const p1 = await x('pcm', 'POST',
                       '/speech/pcm?sample_rate=16000&channels=1&language=en', {
        headers: { 'Content-Type': 'application/octet-stream' },
        body: pcm(3200), expect: [202] });
    await x('pcm as audio/L16', 'POST', '/speech/pcm?channels=2', {
        headers: { 'Content-Type': 'audio/L16; rate=16000' }, body: pcm(3200),
        expect: [202] });
    await x('pcm without a type', 'POST', '/speech/pcm?priority=0',
            { body: pcm(320), expect: [202] });
    await x('task QUEUED', 'GET', '/tasks/' + p1.json.id, { expect: [200] });

    for (const [what, path, type, body, st] of [
        ['no file', '/speech/transcribe', 'multipart', [
            { name: 'language', value: 'en' }], 400],
        ['unknown part', '/speech/transcribe', 'multipart', [
            { name: 'file', filename: 'a', value: 'x' },
            { name: 'model', value: 'x' }], 400],
        ['bad language', '/speech/transcribe?language=e%20n', 'audio/ogg',
         'x', 400],
        ['unknown parameter', '/speech/transcribe?model=x', 'audio/ogg',
         'x', 400],
        ['no boundary', '/speech/transcribe', 'multipart/form-data', 'x', 400],
        ['empty audio', '/speech/transcribe', 'audio/ogg', '', 400],
        ['text', '/speech/transcribe', 'text/plain', 'x', 415],
        ['too large', '/speech/transcribe', 'audio/ogg',
         pcm(300 * 1024), 413],
        ['pcm partial sample', '/speech/pcm', 'audio/pcm', 'xyz', 400],
        ['pcm rate', '/speech/pcm?sample_rate=4000', 'audio/pcm', 'xy', 400],
        ['pcm channels', '/speech/pcm?channels=3', 'audio/pcm', 'xy', 400],
        ['pcm prompt', '/speech/pcm?prompt=x', 'audio/pcm', 'xy', 400],
        ['pcm empty', '/speech/pcm', 'audio/pcm', '', 400],
        ['pcm type', '/speech/pcm', 'audio/ogg', 'xy', 415],
        ['pcm too large', '/speech/pcm', 'audio/pcm', pcm(300 * 1024), 413],
    ]) {
        let headers = { 'Content-Type': type };
        let data = body;
        if (type === 'multipart') {
            const m = multipart(body);
            headers = { 'Content-Type': m.type };
            data = m.body;
        }
        await x('speech: ' + what, 'POST', path,
                { headers, body: data, expect: [st] });
    }
    await x('pcm: GET', 'GET', '/speech/pcm', { expect: [405] });
    await x('transcribe: DELETE', 'DELETE', '/speech/transcribe',
            { expect: [405] });

    // listings, their pages and faults
    await x('list', 'GET', '/tasks', { headers: ALICE, expect: [200] });
    const page = await x('list page', 'GET', '/tasks?limit=1&kind=speech',
                         { headers: ALICE, expect: [200] });
    await x('list next page', 'GET', '/tasks?limit=1&kind=speech&cursor='
            + page.json.next_cursor, { headers: ALICE, expect: [200] });
    await x('list by status', 'GET', '/tasks?status=QUEUED&limit=100',
            { expect: [200] });
    await x('list HEAD', 'HEAD', '/tasks', { expect: [200] });
    await x('list HEAD, bad limit', 'HEAD', '/tasks?limit=0',
            { expect: [400] });
    for (const [what, q] of [['status', 'status=done'], ['kind', 'kind=x'],
                             ['limit', 'limit=101'], ['cursor', 'cursor=x'],
                             ['parameter', 'user=bob'], ['id', 'id=x']]) {
        await x('list: ' + what, 'GET', '/tasks?' + q, { expect: [400] });
    }
    await x('list: no such id', 'GET', '/tasks?id=' + ID0, { expect: [404] });
    await x('list: POST', 'POST', '/tasks', { body: 'x', expect: [405] });

    // one task: faults
    await x('malformed id', 'GET', '/tasks/xyz', { expect: [400] });
    await x('no such task', 'GET', '/tasks/' + ID0, { expect: [404] });
    await x('no such task HEAD', 'HEAD', '/tasks/' + ID0, { expect: [404] });
    await x('cancel malformed', 'DELETE', '/tasks/xyz', { expect: [400] });
    await x('cancel no such task', 'DELETE', '/tasks/' + ID0,
            { expect: [404] });
    await x('task: PUT', 'PUT', '/tasks/' + ID0, { body: 'x',
                                                   expect: [405] });
    await x('result malformed', 'GET', '/tasks/xyz/result', { expect: [400] });
    await x('result no such task', 'GET', '/tasks/' + ID0 + '/result',
            { expect: [404] });
    await x('result HEAD of QUEUED', 'HEAD', '/tasks/' + p1.json.id
            + '/result', { expect: [409] });
    await x('result: DELETE', 'DELETE', '/tasks/' + ID0 + '/result',
            { expect: [405] });

    // the figures
    await x('stats', 'GET', '/system/stats', { expect: [200] });
    await x('stats HEAD', 'HEAD', '/system/stats', { expect: [200] });
    await x('stats: POST', 'POST', '/system/stats', { body: 'x',
                                                      expect: [405] });

    // paths that are no endpoint
    for (const p of ['/tasks/', '/Tasks', '/tasks/' + ID0 + '/results',
                     '/x/tasks', '/system']) {
        await x('no endpoint ' + p, 'GET', p, { expect: [404] });
    }

    // the queue full: every submission answers 429, then cancels free it
    const queued = [];
    for (let i = 0; i < 20; i++) {
        const r = await fetch(opt.base + '/speech/pcm', { method: 'POST',
            headers: { 'Content-Type': 'audio/pcm' }, body: pcm(32) });
        const t = await r.json();
        if (r.status !== 202) {
            break;
        }
        queued.push(t.id);
    }
    await submissions('queue full', 429);

    await x('cancel QUEUED', 'DELETE', '/tasks/' + p1.json.id,
            { expect: [200] });
    await x('cancel RUNNING', 'DELETE', '/tasks/' + running.id,
            { headers: ALICE, expect: [200] });
    await x('cancel again', 'DELETE', '/tasks/' + running.id,
            { headers: ALICE, expect: [409] });
    for (const id of queued) {
        await fetch(opt.base + '/tasks/' + id, { method: 'DELETE' });
    }
    const list = await x('list after', 'GET', '/tasks?limit=100',
                         { expect: [200] });
    for (const t of list.json.tasks) {
        if (t.status === 'QUEUED' || t.status === 'RUNNING') {
            await fetch(opt.base + '/tasks/' + t.id, { method: 'DELETE' });
        }
    }

    // errors that nginx raises below the API's location
    if (opt.lockedBase) {
        await x('forbidden', 'GET', '/system/stats',
                { base: opt.lockedBase, expect: [403] });
        await x('forbidden HEAD', 'HEAD', '/system/stats',
                { base: opt.lockedBase, expect: [403] });
        await x('forbidden submit', 'POST', '/image/async', {
            base: opt.lockedBase, headers: JSONT, body: '{"prompt":"x"}',
            expect: [403] });
    }
}

main().then(() => {
    const out = {};
    for (const [k, v] of Object.entries(covered)) {
        out[k] = [...v].sort();
    }
    process.stdout.write(JSON.stringify({ checked, failures, covered: out },
                                        null, 1) + '\n');
    process.exit(failures.length ? 1 : 0);
}, (err) => {
    process.stderr.write('contract.js: ' + err.stack
                         + (err.cause ? ' (' + err.cause + ')' : '') + '\n');
    process.exit(2);
});
