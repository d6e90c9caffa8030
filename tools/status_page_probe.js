#!/usr/bin/env node
// status_page_probe.js: loads the status page in headless Chromium and
// reports what its DOM shows, for t/103-status-page.t.
//
//   node tools/status_page_probe.js URL [--refreshes N] [--wait-line]
//        [--after N] [--until-error] [--screenshot FILE] [--chromium PATH]
//
// Drives Chromium through the DevTools protocol over a pipe
// (--remote-debugging-pipe: no port, no npm module). Waits until the page
// has read system/stats N times (its body's data-refreshes), then, with
// --wait-line, prints "ready" and waits for a line on stdin (the test
// changes the gateway meanwhile) and for N' (--after) more reads; with
// --until-error, waits until the page shows an error instead. Prints
// one JSON object: the instance and kind rows, the figures by element id,
// the page's HTML, its title, and the script errors and console errors
// the page raised; saves a PNG screenshot with --screenshot.

'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

function usage() {
    process.stderr.write('usage: status_page_probe.js URL [--refreshes N] '
        + '[--wait-line] [--after N] [--until-error] [--screenshot FILE] '
        + '[--chromium PATH]\n');
    process.exit(2);
}

const argv = process.argv.slice(2);
const opt = { refreshes: 2, after: 2, waitLine: false, untilError: false,
              screenshot: null,
              chromium: process.env.CHROMIUM || 'chromium', url: null };

for (let i = 0; i < argv.length; i++) {
    switch (argv[i]) {
    case '--refreshes': opt.refreshes = Number(argv[++i]); break;
    case '--after': opt.after = Number(argv[++i]); break;
    case '--wait-line': opt.waitLine = true; break;
    case '--until-error': opt.untilError = true; break;
    case '--screenshot': opt.screenshot = argv[++i]; break;
    case '--chromium': opt.chromium = argv[++i]; break;
    default:
        if (opt.url !== null || argv[i].startsWith('--')) {
            usage();
        }
        opt.url = argv[i];
    }
}

if (opt.url === null) {
    usage();
}

const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'status-page-'));

const browser = spawn(opt.chromium, [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--no-default-browser-check', '--disable-extensions',
    '--disable-background-networking', '--disable-dev-shm-usage',
    '--hide-scrollbars', '--remote-debugging-pipe',
    '--user-data-dir=' + profile, '--window-size=1280,900', 'about:blank',
], { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] });

const toBrowser = browser.stdio[3];
const fromBrowser = browser.stdio[4];

let nextId = 1;
const pending = new Map();
const events = [];
const problems = [];
let buffered = Buffer.alloc(0);

fromBrowser.on('data', (chunk) => {
    let end;

    buffered = Buffer.concat([buffered, chunk]);

    while ((end = buffered.indexOf(0)) >= 0) {
        const msg = JSON.parse(buffered.subarray(0, end).toString('utf8'));
        buffered = buffered.subarray(end + 1);

        if (msg.id !== undefined && pending.has(msg.id)) {
            const { resolve, reject } = pending.get(msg.id);
            pending.delete(msg.id);
            if (msg.error) {
                reject(new Error(JSON.stringify(msg.error)));
            } else {
                resolve(msg.result);
            }
        } else if (msg.method) {
            events.push(msg);
        }
    }
});

function send(method, params, sessionId) {
    const id = nextId++;
    const msg = { id, method, params: params || {} };

    if (sessionId) {
        msg.sessionId = sessionId;
    }

    return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        toBrowser.write(JSON.stringify(msg) + '\0');
    });
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

async function evaluate(session, expression) {
    const r = await send('Runtime.evaluate',
                         { expression, returnByValue: true }, session);
    if (r.exceptionDetails) {
        throw new Error('evaluate: ' + JSON.stringify(r.exceptionDetails));
    }
    return r.result.value;
}

async function refreshes(session) {
    return Number(await evaluate(session,
        'document.body ? document.body.getAttribute("data-refreshes") : 0'))
        || 0;
}

async function waitFor(session, expression, what, tries = 300) {
    for (let i = 0; i < tries; i++) {
        if (await evaluate(session, expression)) {
            return;
        }
        await sleep(100);
    }
    throw new Error('the page did not get to ' + what);
}

function waitRefreshes(session, n, what) {
    return waitFor(session, 'Number(document.body && document.body'
                   + '.getAttribute("data-refreshes")) >= ' + Number(n),
                   n + ' reads of the figures (' + what + ')',
                   Math.max(300, n * 30));
}

function readLine() {
    return new Promise((resolve) => {
        const rl = readline.createInterface({ input: process.stdin });
        rl.once('line', (line) => {
            rl.close();
            resolve(line);
        });
    });
}

// what the DOM shows, read with the DOM's own accessors
const SNAPSHOT = `(() => {
    const cells = (tr) => {
        const o = {};
        for (const td of tr.querySelectorAll('td[class]')) {
            o[td.classList[0] === 'num' ? td.classList[1]
                                        : td.classList[0]] = td.textContent;
        }
        for (const s of tr.querySelectorAll('span[class]')) {
            o[s.classList[0]] = s.textContent;
        }
        for (const a of tr.getAttributeNames()) {
            if (a.startsWith('data-')) {
                o[a] = tr.getAttribute(a);
            }
        }
        return o;
    };
    const ids = {};
    for (const e of document.querySelectorAll('[id]')) {
        ids[e.id] = e.textContent;
    }
    const counts = {};
    for (const c of document.querySelectorAll('#counts .count')) {
        counts[c.querySelector('.label').textContent] =
            c.querySelector('.value').textContent;
    }
    return {
        title: document.title,
        refreshes: Number(document.body.getAttribute('data-refreshes') || 0),
        error_shown: document.getElementById('error').classList
                     .contains('shown'),
        ids, counts,
        instances: [...document.querySelectorAll('#instances tr')]
                   .map(cells),
        kinds: [...document.querySelectorAll('#kinds tr')].map((tr) => {
            const o = cells(tr);
            const svg = tr.querySelector('svg');
            o.samples = svg ? Number(svg.getAttribute('data-samples')) : 0;
            return o;
        }),
        queue_kinds: [...document.querySelectorAll('#queue-kinds tr')]
                     .map((tr) => {
            const o = cells(tr);
            const svg = tr.querySelector('svg');
            o.samples = svg ? Number(svg.getAttribute('data-samples')) : 0;
            o.meter = tr.querySelector('.meter > div').style.width;
            return o;
        }),
        sparklines: document.querySelectorAll('svg.spark polyline').length,
        elements: [...new Set([...document.querySelectorAll('*')]
                              .map((e) => e.localName))].sort(),
        injected: typeof window.injected !== 'undefined',
        scripts: document.scripts.length,
        html: document.documentElement.outerHTML,
    };
})()`;

async function main() {
    const { targetId } = await send('Target.createTarget',
                                    { url: 'about:blank' });
    const { sessionId } = await send('Target.attachToTarget',
                                     { targetId, flatten: true });

    await send('Runtime.enable', {}, sessionId);
    await send('Log.enable', {}, sessionId);
    await send('Page.enable', {}, sessionId);
    await send('Emulation.setDeviceMetricsOverride',
               { width: 1280, height: 900, deviceScaleFactor: 1,
                 mobile: false }, sessionId);
    await send('Page.navigate', { url: opt.url }, sessionId);

    await waitRefreshes(sessionId, opt.refreshes, 'at load');

    if (opt.untilError) {
        await waitFor(sessionId, 'document.getElementById("error")'
                      + ' && document.getElementById("error").classList'
                      + '.contains("shown")', 'an error shown');
    }

    if (opt.waitLine) {
        const n = await refreshes(sessionId);
        process.stdout.write('ready\n');
        await readLine();
        await waitRefreshes(sessionId, n + opt.after, 'after the change');
    }

    const snap = await evaluate(sessionId, SNAPSHOT);

    for (const e of events) {
        if (e.method === 'Runtime.exceptionThrown') {
            problems.push('exception: '
                          + JSON.stringify(e.params.exceptionDetails));
        } else if (e.method === 'Log.entryAdded'
                   && e.params.entry.level === 'error')
        {
            problems.push(e.params.entry.source + ': '
                          + e.params.entry.text);
        } else if (e.method === 'Runtime.consoleAPICalled'
                   && e.params.type === 'error')
        {
            problems.push('console.error');
        }
    }
    snap.problems = problems;

    if (opt.screenshot) {
        const shot = await send('Page.captureScreenshot',
                                { format: 'png', captureBeyondViewport: true },
                                sessionId);
        fs.writeFileSync(opt.screenshot, Buffer.from(shot.data, 'base64'));
    }

    process.stdout.write(JSON.stringify(snap) + '\n');
}

// the profile is removed once Chromium has exited, as it writes there
// to the end
function finish(code) {
    const done = () => {
        try {
            fs.rmSync(profile, { recursive: true, force: true,
                                 maxRetries: 10, retryDelay: 100 });
        } catch (err) {
            process.stderr.write('status_page_probe: ' + err.message + '\n');
        }
        process.exit(code);
    };

    if (browser.exitCode !== null || browser.signalCode !== null) {
        done();
        return;
    }
    browser.removeAllListeners('exit');
    browser.on('exit', done);
    toBrowser.write(JSON.stringify({ id: nextId++, method: 'Browser.close' })
                    + '\0');
    setTimeout(() => browser.kill('SIGKILL'), 5000).unref();
}

browser.on('exit', (code) => {
    process.stderr.write('status_page_probe: chromium exited (' + code
                         + ')\n');
    finish(1);
});

const watchdog = setTimeout(() => {
    process.stderr.write('status_page_probe: timed out\n');
    finish(1);
}, 120000);

main().then(() => {
    clearTimeout(watchdog);
    finish(0);
}, (err) => {
    process.stderr.write('status_page_probe: ' + err.message + '\n');
    finish(1);
});
